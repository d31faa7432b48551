"""Fixtures shared by every test directory."""

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``$DECE_SHARED_DATA`` or ``<repo>/../shared/data``; skips the test when Lyra is absent."""
    root = Path(os.environ.get("DECE_SHARED_DATA", REPO_ROOT / ".." / "shared" / "data"))
    if not (root / "lyra" / "train.csv").is_file():
        pytest.skip(f"shared data not found at {root} (set DECE_SHARED_DATA)")
    return root


@pytest.fixture
def one_thread():
    """Tiny models gain nothing from intra-op threads; on a busy shared CPU they lose a lot."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
