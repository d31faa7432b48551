"""The training-dynamics detector on a synthetic recording: planted late-learnt rows rank first
(no label or manifest read), the step normalisation cancels a per-step offset exactly, and the
recording is found through the victim's run directory."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from dece.data import Example
from dece.defenses import get_defense
from dece.defenses.dynamics import dynamics_scores
from dece.metrics import detection_scores

N, LATE, BATCH, EPOCHS = 120, 9, 10, 3


def _recording(seed: int = 0) -> tuple[list[dict], list[str], set[str]]:
    """Each epoch visits the rows in a random order, ``BATCH`` per step. Clean rows' losses fall
    with training progress (so a row seen late in an epoch looks easier); the planted rows keep
    their few hard tokens (high ``ce_top3``) for two epochs and are learnt in the third; the
    mean over tokens barely shows them."""
    rng = np.random.default_rng(seed)
    ids = [f"train-{i}" for i in range(N)]
    late = set(rng.choice(ids, size=LATE, replace=False).tolist())
    records, step = [], 0
    for epoch in range(1, EPOCHS + 1):
        order = rng.permutation(N)
        for start in range(0, N, BATCH):
            step += 1
            progress = step / (EPOCHS * N / BATCH)
            for i in order[start : start + BATCH]:
                rid = ids[i]
                base = 3.0 * np.exp(-3 * progress) + rng.normal(0, 0.05)
                hard = 4.0 if (rid in late and epoch <= 2) else 0.0
                records.append({"epoch": epoch, "step": step, "id": rid,
                                "ce_mean": base + hard * 3 / 80, "ce_max": base + 1.5 + hard,
                                "ce_top3": base + 1.0 + hard})  # fmt: skip
    return records, ids, late


def test_planted_late_rows_rank_first():
    records, ids, late = _recording()
    scores = dynamics_scores(records, ids, value="ce_top3", epochs=2)
    top = {ids[i] for i in np.argsort(-scores)[:LATE]}
    assert top == late
    d = detection_scores(ids, scores, np.zeros(N, bool), late)
    assert d["auroc"] == 1.0


def test_step_normalisation_cancels_a_per_step_offset():
    records, ids, _ = _recording(seed=1)
    shifted = [{**r, "ce_top3": r["ce_top3"] + 0.7 * r["step"]} for r in records]
    a = dynamics_scores(records, ids, epochs=2)
    b = dynamics_scores(shifted, ids, epochs=2)
    np.testing.assert_allclose(a, b, atol=1e-12)
    # without it, the offset leaks in: rows happen to be seen at different steps
    c = dynamics_scores(shifted, ids, epochs=2, normalize="none")
    assert not np.allclose(a, c - c.mean())


def test_filter_reads_the_victim_run_directory(tmp_path: Path):
    records, ids, late = _recording(seed=2)
    run = tmp_path / "run"
    run.mkdir()
    with (run / "example_losses.jsonl").open("w") as fh:
        for r in records:
            fh.write(json.dumps(r) + "\n")
    rows = [Example(i, "x", "y") for i in reversed(ids)]  # any order: scores follow the input
    victim = SimpleNamespace(run_dir=run, stats=None)
    result = get_defense("dynamics", expected_rate=LATE / N, multiplier=1.0).score(rows, victim)
    assert result.ids == [ex.id for ex in rows]
    assert {i for i, f in zip(result.ids, result.flagged, strict=True) if f} == late
    assert result.info["cost"]["model_passes"] == 0.0
    # the recording can be named directly, without a model
    by_path = get_defense("dynamics", losses=str(run / "example_losses.jsonl"))
    assert not by_path.needs_victim
    np.testing.assert_allclose(by_path.score(rows).scores, result.scores)


def test_missing_rows_and_recordings_are_errors(tmp_path: Path):
    records, ids, _ = _recording()
    with pytest.raises(ValueError, match="no recorded loss"):
        dynamics_scores(records, [*ids, "train-999"])
    victim = SimpleNamespace(run_dir=tmp_path, stats=None)
    with pytest.raises(FileNotFoundError, match="record_example_losses"):
        get_defense("dynamics").score([Example("a", "x", "y")], victim)
    with pytest.raises(ValueError, match="value"):
        get_defense("dynamics", value="ce_median")
