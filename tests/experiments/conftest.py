"""Fixtures for the experiments tests (helpers live in ``exp_helpers``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from exp_helpers import make_hand_results  # noqa: E402


@pytest.fixture
def write_config(tmp_path: Path):
    def _write(data: Any, name: str = "grid.yaml") -> Path:
        path = tmp_path / name
        path.write_text(
            yaml.safe_dump(data, sort_keys=False) if not isinstance(data, str) else data
        )
        return path

    return _write


@pytest.fixture
def hand_results(tmp_path: Path) -> Path:
    return make_hand_results(tmp_path / "runs")
