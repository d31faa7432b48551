import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = Path(
        os.environ.get(
            "DECE_SHARED_DATA", Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
        )
    )
    if not (root / "lyra" / "train.csv").is_file():
        pytest.skip(f"shared data not found at {root} (set DECE_SHARED_DATA)")
    return root
