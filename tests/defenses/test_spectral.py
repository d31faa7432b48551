"""Spectral Signature: the score is the squared projection on the top singular vector of the
centred representations (checked against an eigendecomposition of the covariance computed
here), the decision flags ceil(1.5 eps n) rows per class, and planted poison is recalled."""

from __future__ import annotations

import numpy as np
import pytest
from filter_helpers import blobs, table_victim

from dece.data import Example
from dece.defenses import get_defense
from dece.defenses.spectral import spectral_scores
from dece.metrics import detection_scores


def _reference(reps: np.ndarray) -> np.ndarray:
    """Top eigenvector of the scatter matrix C^T C (a different route to the top right singular
    vector of C), then squared projections."""
    c = reps - reps.mean(axis=0)
    _, vecs = np.linalg.eigh(c.T @ c)
    return (c @ vecs[:, -1]) ** 2


@pytest.mark.parametrize("shape", [(50, 8), (7, 20), (33, 1)])
def test_scores_equal_a_direct_decomposition(shape):
    reps = np.random.default_rng(1).normal(size=shape) * np.linspace(1.0, 3.0, shape[1])
    np.testing.assert_allclose(spectral_scores(reps), _reference(reps), rtol=1e-8, atol=1e-10)


def test_planted_poison_is_recalled_and_the_count_is_exact():
    rows, reps, poisoned = blobs(380, 20, shift=10.0)
    result = get_defense("spectral", expected_rate=0.05).score(rows, table_victim(reps))
    assert result.ids == [ex.id for ex in rows] and result.scores.shape == (400,)
    np.testing.assert_allclose(result.scores, _reference(np.stack([reps[i] for i in result.ids])))
    d = detection_scores(result.ids, result.scores, result.flagged, poisoned)
    assert result.n_removed == 30  # 1.5 x 5% x 400
    assert d["recall"] == 1.0 and d["auroc"] == 1.0  # the design: all poison in the top 1.5 eps n
    assert d["precision"] == pytest.approx(20 / 30)
    assert result.threshold == pytest.approx(np.sort(result.scores)[-30])
    assert result.info["cost"]["model_passes"] == 1.0


def test_scores_follow_the_input_order():
    rows, reps, _ = blobs(60, 6, seed=2)
    victim = table_victim(reps)
    forward = get_defense("spectral").score(rows, victim)
    order = np.random.default_rng(3).permutation(len(rows))
    shuffled = get_defense("spectral").score([rows[i] for i in order], victim)
    assert shuffled.ids == [rows[i].id for i in order]
    np.testing.assert_allclose(shuffled.scores, forward.scores[order])
    assert shuffled.flagged.tolist() == forward.flagged[order].tolist()


def test_classes_are_scored_and_cut_separately():
    rows, reps, poisoned = blobs(190, 10, seed=4)
    other, other_reps, _ = blobs(100, 0, seed=5)
    labelled = [Example(ex.id, ex.source, "", label="1") for ex in rows]
    labelled += [Example(f"b-{ex.id}", ex.source, "", label="0") for ex in other]
    reps.update({f"b-{k}": v for k, v in other_reps.items()})
    result = get_defense("spectral").score(labelled, table_victim(reps))
    flagged_by_class = {
        c: int(sum(f for ex, f in zip(labelled, result.flagged, strict=True) if ex.label == c))
        for c in ("0", "1")
    }
    assert flagged_by_class == {"1": 15, "0": 8}  # 1.5 x 5% x 200, ceil(1.5 x 5% x 100)
    class_one = np.array([ex.label == "1" for ex in labelled])
    ref = _reference(np.stack([reps[ex.id] for ex in labelled if ex.label == "1"]))
    np.testing.assert_allclose(result.scores[class_one], ref)
    assert set(poisoned) <= {i for i, f in zip(result.ids, result.flagged, strict=True) if f}


def test_bad_parameters_and_inputs():
    with pytest.raises(ValueError, match="expected_rate"):
        get_defense("spectral", expected_rate=0.0)
    with pytest.raises(ValueError, match="needs a victim"):
        get_defense("spectral").score([Example("a", "x", "y")])
    with pytest.raises(ValueError, match="NaN"):
        spectral_scores(np.array([[0.0, np.nan], [1.0, 2.0]]))
