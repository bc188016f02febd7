"""Fixtures of the workflow tests: the session's local runtime (tests/conftest.py), faults cleared between tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from workflow_helpers import clear_faults

from batch_classifier_local.runtime import LocalRuntime


@pytest.fixture(autouse=True)
def clean_faults(runtime: LocalRuntime) -> Iterator[None]:
    clear_faults(runtime)
    yield
    clear_faults(runtime)
