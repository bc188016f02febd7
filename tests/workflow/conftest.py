"""Fixtures of the workflow tests: one local runtime for the session, with faults cleared between tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from workflow_helpers import ROOT

from batch_classifier_local.bedrock_service import FaultPlan
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


@pytest.fixture(autouse=True)
def clean_faults(runtime: LocalRuntime) -> Iterator[None]:
    runtime.failures.clear()
    assert runtime.bedrock is not None
    runtime.bedrock.faults = FaultPlan()
    yield
    runtime.failures.clear()
    runtime.bedrock.faults = FaultPlan()
