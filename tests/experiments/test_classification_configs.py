"""The classification grid configs (issue 10) load, expand, pass the training-stack checks, and
the techdebt grids share their common cells (same hash, so one run serves every grid)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dece.experiments import expand_grid, load_grid_config
from dece.experiments.runner import check_cells

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TECHDEBT = ("techdebt_table8.yaml", "techdebt_badpre.yaml", "techdebt_sweep.yaml")


@pytest.mark.parametrize(
    ("name", "n_cells"),
    [("techdebt_table8.yaml", 4 * 2 * 2), ("techdebt_badpre.yaml", 2 * 2 * 3),
     ("techdebt_sweep.yaml", 1 + 3 * 2), ("defect_table9.yaml", 3 * 2 * 2)],
)  # fmt: skip
def test_classification_config_is_valid(name, n_cells):
    config = load_grid_config(CONFIGS / name)
    cells = expand_grid(config)
    assert len(cells) == n_cells
    check_cells(config, cells)
    assert all(c.attack.payload == "label_flip" for c in cells)


def test_techdebt_grids_share_cells():
    configs = [load_grid_config(CONFIGS / name) for name in TECHDEBT]
    assert all(c.training == configs[0].training for c in configs)
    assert len({c.output_dir for c in configs}) == 1
    hashes = [{cell.hash: cell for cell in expand_grid(c)} for c in configs]
    table8, badpre, sweep = (set(h) for h in hashes)
    shared = {h.labels()["loss"] for k, h in hashes[0].items() if k in badpre}
    assert len(table8 & badpre) == 2 and shared == {"CE", "DeCE"}  # BadPre -> 0, seed 42
    assert len(sweep & table8) == 2  # CE and DeCE(alpha 0.99, eps 0.1)
    flips = {cell.attack.payload_args["target_label"] for cell in hashes[1].values()}
    assert flips == {"0", "1"}
