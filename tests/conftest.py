"""Fixtures of every test: the local runtime shared by the workflow tests and the fault suite (one per session: a
process holds one), and the seed data of the tests marked ``seed``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from workflow_helpers import ROOT, SEED

from batch_classifier.storage import TASKS_PREFIX
from batch_classifier.tasks import load_task
from batch_classifier_local.runtime import LocalRuntime

# Set to 1 to skip, rather than fail, the tests that need ../shared/data where that folder is absent.
SKIP_SEED = "BATCH_CLASSIFIER_SKIP_SEED"


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test of the seed data fails where ../shared/data is absent (CI has it beside the clone), unless
    BATCH_CLASSIFIER_SKIP_SEED=1 asks to skip it."""
    uses_seed = item.get_closest_marker("seed") is not None or "seed_data" in getattr(item, "fixturenames", ())
    if not uses_seed or SEED.is_dir():
        return
    if os.environ.get(SKIP_SEED, "").strip().lower() in {"1", "true", "yes"}:
        pytest.skip(f"the seed data folder ../shared/data is absent ({SKIP_SEED} is set)")
    pytest.fail(
        f"this test needs the seed data folder ../shared/data (looked for at {SEED}), which is absent: put the "
        f"shared folder beside the clone, or set {SKIP_SEED}=1 to skip the tests that need it.",
        pytrace=False,
    )


@pytest.fixture
def seed_data() -> Path:
    """The sample inputs kept next to the repository, in ``../shared/data`` (see :func:`pytest_runtest_setup`)."""
    return SEED


@pytest.fixture(scope="session")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    """One runtime for the session; jobs hold at most 100 records so that a few hundred rows make several jobs.

    Its customer bucket holds its own ``travel`` task, the bundled one at one text a request: the workflow tests and
    the fault suite count one request (one batch record) a text, as the job limits and retries do. The bundled task as
    shipped (6 texts a request) runs end to end in ``tests/workflow/test_packed.py``."""
    with LocalRuntime(
        root=ROOT,
        state_dir=tmp_path_factory.mktemp("runtime"),
        parameters={"MaxRecordsPerJob": "100", "MaxConcurrentJobs": "10", "JobTimeoutHours": "72"},
    ) as started:
        assert started.stack is not None
        one_text = load_task("travel").model_copy(update={"texts_per_request": 1})
        started.client("s3").put_object(
            Bucket=started.stack.customer_bucket, Key=f"{TASKS_PREFIX}/travel.yaml", Body=one_text.to_yaml().encode()
        )
        yield started
