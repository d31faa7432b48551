"""Every shipped grid config loads, expands and passes the training-stack checks, and keeps its
cell hashes (golden_cell_hashes.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dece.experiments import expand_grid, load_grid_config
from dece.experiments.runner import build_train_config, check_cells

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize(
    ("name", "n_cells"),
    [("demo.yaml", 2), ("lyra_table5.yaml", 3 * 5), ("dece_sensitivity.yaml", 1 + 4 * 4),
     ("lyra_smollm2.yaml", 3 * 2), ("lyra_smollm2_pilot.yaml", 2), ("lyra_smollm2_full.yaml", 3 * 2),
     ("codepurify_defect5.yaml", 3 * 7), ("codepurify_repair5.yaml", 3 * 7),
     ("codepurify_defect1.yaml", 3 * 7), ("codepurify_repair1.yaml", 3 * 7)],
)  # fmt: skip
def test_shipped_config_is_valid(name, n_cells):
    config = load_grid_config(CONFIGS / name)
    cells = expand_grid(config)
    assert len(cells) == n_cells
    check_cells(config, cells)  # loss hyperparameters + TrainConfig keys and values


# The cell hashes (cells and their parents) of each shipped config, recorded from the code
# before the runner turned on per-epoch checkpoints and resume: those settings are operational,
# so no cell may change its hash (runs and the archived results under benchmarks/results/cells/
# are found by it). A config may gain cells; it never renames one.
GOLDEN_HASHES = json.loads((Path(__file__).with_name("golden_cell_hashes.json")).read_text())
# The archived cells themselves: test_archived_cells.py.


def _cell_hashes(name: str) -> list[str]:
    cells = expand_grid(load_grid_config(CONFIGS / name))
    return sorted({c.hash for c in cells} | {c.parent().hash for c in cells if c.parent()})


@pytest.mark.parametrize("name", sorted(GOLDEN_HASHES))
def test_shipped_config_keeps_its_cell_hashes(name):
    missing = sorted(set(GOLDEN_HASHES[name]) - set(_cell_hashes(name)))
    assert not missing, f"{name}: cells renamed or gone: {missing}"


def test_the_runner_turns_on_checkpoints_and_resume_over_the_yaml(tmp_path):
    cell = expand_grid(load_grid_config(CONFIGS / "demo.yaml"))[0]
    assert cell.resolved()["training"]["save_checkpoints"] is False  # hashed as written
    cfg = build_train_config(cell.to_config(), tmp_path / cell.hash)
    assert (cfg.save_checkpoints, cfg.save_total_limit, cfg.resume) == (True, 1, True)
