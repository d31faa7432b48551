"""Every shipped grid config loads, expands and passes the training-stack checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from dece.experiments import expand_grid, load_grid_config
from dece.experiments.runner import check_cells

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize(
    ("name", "n_cells"),
    [("demo.yaml", 2), ("lyra_table5.yaml", 3 * 5), ("dece_sensitivity.yaml", 1 + 4 * 4)],
)
def test_shipped_config_is_valid(name, n_cells):
    config = load_grid_config(CONFIGS / name)
    cells = expand_grid(config)
    assert len(cells) == n_cells
    check_cells(config, cells)  # loss hyperparameters + TrainConfig keys and values
