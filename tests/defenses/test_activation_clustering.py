"""Activation Clustering: two well-separated Gaussian blobs -> the small blob exactly (ICA and
PCA); a balanced split is not judged poisoned; classes are clustered separately."""

from __future__ import annotations

import numpy as np
import pytest
from filter_helpers import blobs, table_victim

from dece.data import Example
from dece.defenses import get_defense
from dece.defenses.activation_clustering import cluster_representations
from dece.metrics import detection_scores


@pytest.mark.parametrize("reduce", ["ica", "pca"])
def test_small_blob_is_recovered_exactly(reduce):
    rows, reps, poisoned = blobs(190, 10, dim=32, shift=15.0, seed=7)
    result = get_defense("activation_clustering", reduce=reduce).score(rows, table_victim(reps))
    flagged = {i for i, f in zip(result.ids, result.flagged, strict=True) if f}
    assert flagged == set(poisoned)
    d = detection_scores(result.ids, result.scores, result.flagged, poisoned)
    assert d["auroc"] == 1.0
    (cls,) = result.info["classes"].values()
    assert cls["relative_size"] == pytest.approx(10 / 200) and cls["poisoned"]
    # the score is the 2-means margin: positive exactly in the smaller cluster
    assert ((result.scores > 0) == result.flagged).all()


def test_balanced_clusters_are_not_flagged():
    rows, reps, _ = blobs(100, 100, dim=16, shift=15.0, seed=8)
    result = get_defense("activation_clustering").score(rows, table_victim(reps))
    assert result.n_removed == 0 and result.threshold == np.inf
    (cls,) = result.info["classes"].values()
    assert cls["relative_size"] == pytest.approx(0.5) and not cls["poisoned"]


def test_each_class_is_clustered_separately():
    rows, reps, poisoned = blobs(140, 10, dim=16, shift=15.0, seed=9)
    clean, clean_reps, _ = blobs(150, 0, dim=16, seed=10)
    labelled = [Example(ex.id, ex.source, "", label="pos") for ex in rows]
    labelled += [Example(f"n-{ex.id}", ex.source, "", label="neg") for ex in clean]
    reps.update({f"n-{k}": v for k, v in clean_reps.items()})
    result = get_defense("activation_clustering").score(labelled, table_victim(reps))
    assert {i for i, f in zip(result.ids, result.flagged, strict=True) if f} == set(poisoned)
    assert result.info["classes"]["pos"]["poisoned"]
    assert not result.info["classes"]["neg"]["poisoned"]  # one Gaussian: no small cluster


def test_cluster_function_is_seeded_and_checks_inputs():
    reps = np.random.default_rng(0).normal(size=(40, 12))
    a = cluster_representations(reps, seed=3)
    b = cluster_representations(reps, seed=3)
    np.testing.assert_array_equal(a.margin, b.margin)
    with pytest.raises(ValueError, match="reduce"):
        cluster_representations(reps, reduce="tsne")
    with pytest.raises(ValueError, match="size_threshold"):
        get_defense("activation_clustering", size_threshold=0.9)
