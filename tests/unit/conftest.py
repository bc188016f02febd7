"""Shared fixtures of the unit tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Powertools reads these when the handlers' module-level logger, tracer and metrics are made: set them before any
# test imports a handler. Tracing is off (no X-Ray daemon here); metrics go to stdout as EMF, as in Lambda.
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "batch-classifier")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "BatchClassifier")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "1")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture
def seed_data() -> Path:
    """The sample inputs kept next to the repository, in ``../shared/data``; skips when absent."""
    folder = Path(__file__).resolve().parents[2].parent / "shared" / "data"
    if not folder.is_dir():
        pytest.skip("seed data folder ../shared/data is absent")
    return folder
