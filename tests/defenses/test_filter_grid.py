"""Filters in the grid with the real cell runner on a tiny local model: detection without
retraining (``run_detection``) trains the CE parent once, with per-example losses recorded for
the dynamics cell, and the parent's hash is the undefended CE cell's; the retrain cells reuse that
parent; the moderate-fitting recipe trains with LoRA; the detection table reads both kinds of
record."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
from test_train_support import save_tiny_seq2seq  # noqa: E402

from dece.experiments import GridConfig, expand_grid, run_grid  # noqa: E402
from dece.experiments.detection_table import (  # noqa: E402
    format_detection_table,
    load_detection_rows,
    run_detection,
)
from dece.experiments.markdown import md_unpadded  # noqa: E402

TRAINING = {
    "num_epochs": 2, "batch_size": 8, "learning_rate": 1e-3, "max_source_length": 64,
    "max_target_length": 64, "eval_max_examples": 2, "test_max_examples": 3,
    "generation_max_new_tokens": 6, "eval_batch_size": 8, "use_cpu": True, "codebleu": False,
    "save_checkpoints": False, "eval_each_epoch": False,
}  # fmt: skip


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return save_tiny_seq2seq(tmp_path_factory.mktemp("tiny_bart"))


def _grid(model_dir: Path, defenses: list) -> GridConfig:
    return GridConfig.from_dict({
        "name": "filters", "datasets": ["synthetic:40"], "attacks": ["badpre"], "rates": [0.1],
        "models": [str(model_dir)], "losses": ["ce"], "seeds": [3], "defenses": defenses,
        "training": TRAINING,
    })  # fmt: skip


def test_detection_then_retrain_share_one_parent(tmp_path, model_dir, one_thread):
    config = _grid(model_dir, ["undefended", {"name": "dynamics", "args": {"epochs": 1}},
                               {"name": "spectral", "label": "SS"}])  # fmt: skip
    cells = {c.defense.name: c for c in expand_grid(config)}
    parent = cells["undefended"].hash
    assert cells["dynamics"].parent().hash == parent == cells["spectral"].parent().hash
    out = tmp_path / "runs"

    written = run_detection(config, out)
    assert sorted(p.parent.name for p in written) == sorted(
        [cells["dynamics"].hash, cells["spectral"].hash]
    )
    # the parent: trained once, model kept, per-example losses recorded (2 epochs x 40 rows)
    assert (out / parent / "model").is_dir() and (out / parent / "result.json").is_file()
    losses = (out / parent / "example_losses.jsonl").read_text().splitlines()
    assert len(losses) == 2 * 40
    record = json.loads(written[0].read_text())
    assert record["filter_n_rows"] == 40 and record["filter_n_poisoned"] == 4
    assert 0.0 <= record["filter_auroc"] <= 1.0 and record["cost"]["seconds"] >= 0
    assert not (out / cells["dynamics"].hash).exists()  # nothing retrained
    rows = (out / "detection" / cells["spectral"].hash / "filter.jsonl").read_text().splitlines()
    assert len(rows) == 40

    summary = run_grid(config, out, progress=False)
    assert parent in summary.skipped  # the detection run's parent is the grid's CE cell
    assert sorted(summary.completed) == sorted([cells["dynamics"].hash, cells["spectral"].hash])
    final = json.loads((out / cells["dynamics"].hash / "result.json").read_text())["final"]
    assert final["filter_removed"] == 3 and final["n_train"] == 37  # ceil(1.5 * 0.05 * 40)

    table = load_detection_rows(out)
    assert {r.source for r in table} == {"cell"}  # the retrain cells' records win
    assert {r.label("defense") for r in table} == {"Dynamics", "SS"}
    text = md_unpadded(format_detection_table(table))
    assert "| Dynamics |" in text and "| SS |" in text and "AUROC" in text


def test_dynamics_cell_refuses_a_parent_without_losses(tmp_path, model_dir, one_thread):
    out = tmp_path / "runs"
    run_grid(_grid(model_dir, ["undefended"]), out, progress=False)  # parent, no recording
    summary = run_grid(_grid(model_dir, ["undefended", "dynamics"]), out, progress=False)
    (error,) = summary.failed.values()
    assert "without recording per-example losses" in error


def test_moderate_fitting_cell_trains_with_lora(tmp_path, model_dir, one_thread):
    config = _grid(
        model_dir,
        [{"name": "moderate_fitting", "args": {"r": 2, "learning_rate": 5e-3, "num_epochs": 1}}],
    )
    (cell,) = expand_grid(config)
    assert cell.parent() is None  # a recipe reads no model
    summary = run_grid(config, tmp_path / "runs", progress=False)
    assert summary.ok, summary.failed
    cell_dir = tmp_path / "runs" / cell.hash
    final = json.loads((cell_dir / "result.json").read_text())["final"]
    assert final["recipe"] == {"learning_rate": 5e-3, "num_epochs": 1,
                               "lora": {"r": 2, "alpha": 4, "dropout": 0.0}}  # fmt: skip
    assert final["epochs"] == 1.0
    assert (cell_dir / "model" / "adapter_config.json").is_file()  # LoRA adapters saved
