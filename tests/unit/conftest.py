"""Shared fixtures of the unit tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def seed_data() -> Path:
    """The sample inputs kept next to the repository, in ``../shared/data``; skips when absent."""
    folder = Path(__file__).resolve().parents[2].parent / "shared" / "data"
    if not folder.is_dir():
        pytest.skip("seed data folder ../shared/data is absent")
    return folder
