"""Fixtures shared by every test directory."""

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``$DECE_SHARED_DATA`` or ``<repo>/../shared/data``; skips the test when Lyra is absent."""
    root = Path(os.environ.get("DECE_SHARED_DATA", REPO_ROOT / ".." / "shared" / "data"))
    if not (root / "lyra" / "train.csv").is_file():
        pytest.skip(f"shared data not found at {root} (set DECE_SHARED_DATA)")
    return root
