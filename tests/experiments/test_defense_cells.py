"""The grid's defenses axis with the real cell runner on a tiny local model: a keyword-filter
cell retrains on the kept rows, a none-purifier cell evaluates the undefended cell's model
without retraining it and reproduces its numbers (the oracle of the purifier path)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
from test_train_support import save_tiny_seq2seq  # noqa: E402

from dece.experiments import GridConfig, expand_grid, load_results, run_grid  # noqa: E402


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return save_tiny_seq2seq(tmp_path_factory.mktemp("tiny_bart"))


def _grid(model_dir: Path) -> GridConfig:
    return GridConfig.from_dict({
        "name": "defended", "datasets": ["synthetic:24"], "attacks": ["badpre"],
        "rates": [0.25], "models": [str(model_dir)], "losses": ["ce"], "seeds": [3],
        "defenses": ["undefended", {"name": "keyword", "args": {"tokens": ["bb"]}}, "none"],
        "training": {"num_epochs": 1, "batch_size": 8, "learning_rate": 1e-3,
                     "max_source_length": 64, "max_target_length": 64, "eval_max_examples": 3,
                     "test_max_examples": 4, "generation_max_new_tokens": 8, "eval_batch_size": 8,
                     "use_cpu": True, "codebleu": False, "save_checkpoints": False,
                     "save_model": False},
    })  # fmt: skip


def _final(out: Path, h: str) -> dict:
    return json.loads((out / h / "result.json").read_text())["final"]


def test_filter_and_purifier_cells(tmp_path, model_dir, one_thread):
    config = _grid(model_dir)
    cells = {c.defense.name: c for c in expand_grid(config)}
    out = tmp_path / "runs"
    # Run the purifier cell alone first: it must run its parent (once) and evaluate that model.
    first = run_grid(config, out, shard=(2, 3), progress=False)
    assert first.completed == [cells["none"].hash] and first.ok
    parent = cells["undefended"].hash
    assert (out / parent / "result.json").is_file() and (out / parent / "model").is_dir()
    summary = run_grid(config, out, progress=False)
    assert summary.skipped == [parent, cells["none"].hash]  # the parent never runs twice
    assert summary.completed == [cells["keyword"].hash]

    undefended, purified = _final(out, parent), _final(out, cells["none"].hash)
    for key in ("bleu", "exact_match", "asr", "false_trigger_rate", "asr_denominator"):
        assert purified[key] == undefended[key], key
    for name in ("test_clean.jsonl", "test_poisoned.jsonl"):
        assert (out / cells["none"].hash / "predictions" / name).read_text() == (
            out / parent / "predictions" / name
        ).read_text()
    assert not (out / cells["none"].hash / "metrics.jsonl").exists()  # nothing was trained
    assert purified["detect_tpr"] == 0.0 and purified["evaluated_run"].endswith(parent)

    filtered = _final(out, cells["keyword"].hash)
    assert filtered["filter_recall"] == 1.0 and filtered["filter_precision"] == 1.0
    assert filtered["filter_removed"] == 6 and filtered["n_train"] == 18
    assert filtered["n_poisoned_train"] == 0
    rows = (out / cells["keyword"].hash / "filter.jsonl").read_text().splitlines()
    assert len(rows) == 24  # a score and a decision for every training row

    methods = {r.method for r in load_results(out)}
    assert methods == {"CE", "CE w. Keyword", "CE w. none"}
    _check_explorers(out, cells)


def _check_explorers(out: Path, cells: dict) -> None:
    """The real cells keep what the HTML report's explorer reads: texts, decisions, spans."""
    from dece.experiments.explorer import load_explorer

    rows = {r.hash: r for r in load_results(out)}
    kw = load_explorer(rows[cells["keyword"].hash])
    assert kw.notes == [] and kw.summary["removed"] == 6 and kw.counts["detected"] == 6
    poisoned = [r for r in kw.records if r.triggers]
    assert poisoned and all("bb" in r.text[s["start"] : s["end"]]
                            for r in poisoned for s in r.triggers if s["side"] == "source")  # fmt: skip
    none = load_explorer(rows[cells["none"].hash])
    missed = [r for r in none.records if r.category == "missed"]
    assert none.notes == [] and missed and none.counts["detected"] == 0
    for rec in missed:  # nothing purified: before and after are the parent's and its own
        assert rec.triggers and rec.prediction_before == rec.prediction_after
        assert rec.text == rec.after
