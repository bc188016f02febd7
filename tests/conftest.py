"""The local runtime shared by the workflow tests and the fault suite: one per session (a process holds one)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from workflow_helpers import ROOT

from batch_classifier_local.runtime import LocalRuntime


@pytest.fixture(scope="session")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    """One runtime for the session; jobs hold at most 100 records so that a few hundred rows make several jobs."""
    with LocalRuntime(
        root=ROOT,
        state_dir=tmp_path_factory.mktemp("runtime"),
        parameters={"MaxRecordsPerJob": "100", "MaxConcurrentJobs": "10", "JobTimeoutHours": "72"},
    ) as started:
        yield started
