"""``dece.rundir.RunDir``: the run-directory layout in one place. The names are an on-disk format
(existing runs and the archived cells under ``benchmarks/results/cells`` are read by them), so
they are checked against literal golden names, and the archived cells are read through it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from dece.rundir import RunDir

ARCHIVE = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "cells"


def test_paths_are_the_golden_names(tmp_path):
    run = RunDir(str(tmp_path))
    assert run.root == tmp_path
    golden = {
        run.config: "config.yaml",
        run.model: "model",
        run.metrics: "metrics.jsonl",
        run.final_metrics: "final_metrics.json",
        run.example_losses(): "example_losses.jsonl",
        run.example_losses(0): "example_losses.jsonl",
        run.example_losses(3): "example_losses.rank3.jsonl",
        run.poison_manifest: "poison_manifest.json",
        run.filter_rows: "filter.jsonl",
        run.filter_summary: "filter.json",
        run.checkpoints: "checkpoints",
        run.tensorboard: "runs",
        run.predictions_dir: "predictions",
        run.purified_dir: "purified",
        run.predictions("test", "clean"): "predictions/test_clean.jsonl",
        run.predictions("valid", "poisoned"): "predictions/valid_poisoned.jsonl",
        run.poisoned_manifest("test"): "predictions/test_poisoned_manifest.json",
        run.purified("test", "poisoned"): "purified/test_poisoned.jsonl",
    }
    for path, name in golden.items():
        assert path == tmp_path / name
    assert not any(tmp_path.iterdir())  # asking for a path creates nothing


def test_reading_an_empty_and_a_filled_run(tmp_path):
    run = RunDir(tmp_path)
    assert run.history() == [] and run.read_final() is None and run.read_filter_summary() is None
    assert not run.has_model()
    (tmp_path / "config.yaml").write_text("model: x\n")
    assert not run.has_model()  # config without model/
    (tmp_path / "model").mkdir()
    assert run.has_model()
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1, "asr": 0.5}\n{"epoch": 2, "asr": 0}\n')
    (tmp_path / "final_metrics.json").write_text('{"asr": 0.25}')
    assert run.history() == [{"epoch": 1, "asr": 0.5}, {"epoch": 2, "asr": 0}]
    assert run.read_final() == {"asr": 0.25}
    (tmp_path / "filter.json").write_text("[1]")
    with pytest.raises(ValueError, match="filter.json: expected a JSON object"):
        run.read_filter_summary()


def _archived_cells() -> list[Path]:
    return sorted(p for p in ARCHIVE.glob("*/*") if (p / "result.json").is_file())


def test_archived_cells_read_through_rundir():
    """Every archived cell's history holds exactly epochs 1..ceil(epochs) of its result, and its
    filter record counts the rows its result says the filter removed."""
    cells = _archived_cells()
    assert len(cells) >= 20, f"expected the archived cells under {ARCHIVE}"
    histories = filters = 0
    for cell in cells:
        run = RunDir(cell)
        final = json.loads((cell / "result.json").read_text(encoding="utf-8"))["final"]
        if run.metrics.is_file() and final.get("epochs") is not None:
            epochs = [int(row["epoch"]) for row in run.history()]
            assert epochs == list(range(1, math.ceil(float(final["epochs"]) - 1e-6) + 1)), cell
            histories += 1
        summary = run.read_filter_summary()
        if summary is not None:
            assert summary["filter_removed"] == final["filter_removed"], cell
            filters += 1
    assert histories >= 20 and filters >= 5
