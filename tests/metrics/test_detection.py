"""Detection scores against closed forms: pairwise-count AUROC, hand-counted P/R/F1, overlaps."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from dece.metrics import detection_rates, detection_scores, localisation_accuracy


def _auroc_by_pairs(scores, truth):
    pos = [s for s, t in zip(scores, truth, strict=True) if t]
    neg = [s for s, t in zip(scores, truth, strict=True) if not t]
    wins = sum((p > n) + 0.5 * (p == n) for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_detection_scores_closed_form():
    rng = np.random.default_rng(0)
    ids = [f"r{i}" for i in range(40)]
    scores = rng.normal(size=40).round(1)  # ties included
    poisoned = [ids[i] for i in (1, 5, 9, 22, 30)]
    flagged = scores > 0.8
    d = detection_scores(ids, scores, flagged, poisoned)
    truth = [i in poisoned for i in ids]
    tp = sum(f and t for f, t in zip(flagged, truth, strict=True))
    assert d["precision"] == pytest.approx(tp / flagged.sum())
    assert d["recall"] == pytest.approx(tp / 5)
    assert d["auroc"] == pytest.approx(_auroc_by_pairs(scores, truth))
    assert d["n_poisoned"] == 5 and d["n_rows"] == 40
    with pytest.raises(ValueError, match="not among the scored rows"):
        detection_scores(ids[:3], scores[:3], flagged[:3], ["zzz"])
    assert detection_scores(ids[:2], [0, 1], [False, True], [])["auroc"] is None


def test_rates_and_localisation():
    assert detection_rates([True, True, False, True], [False, True]) == {"tpr": 0.75, "fpr": 0.5}
    spans = {"a": [{"side": "source", "start": 4, "end": 6}],
             "b": [{"side": "pair", "start": 0, "end": 2}],
             "c": [{"side": "source", "start": 10, "end": 12}]}  # fmt: skip
    changes = {
        "a": [{"side": "source", "start": 5, "end": 9}],  # overlaps
        "b": [{"side": "source", "start": 0, "end": 2}],  # wrong side
        "c": [{"side": "source", "start": 12, "end": 14}],
    }  # touches, no overlap
    assert localisation_accuracy(changes, spans) == pytest.approx(1 / 3)
    assert localisation_accuracy({}, {}) is None
