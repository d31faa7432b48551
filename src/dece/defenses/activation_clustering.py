"""``activation_clustering``: Activation Clustering (Chen et al., SafeAI@AAAI 2019,
"Detecting Backdoor Attacks on Deep Neural Networks by Activation Clustering").

The representations a model trained on poisoned data gives its training rows fall into two
groups within the attacked class: the clean rows and the triggered ones, which the model
recognises by the trigger rather than by the task's features. The method, per class:

1. the representations ``R [n, H]`` (:meth:`dece.victim.Victim.embed`) are centred and reduced
   to 10 dimensions with independent component analysis (``reduce="ica"``, as in the paper;
   ``"pca"`` is offered as an option);
2. 2-means clustering of the reduced rows;
3. relative-size analysis: the smaller cluster is judged poisoned when its share of the class is
   below ``size_threshold``.

A generation task has one "class" (every row). scikit-learn does the work (``FastICA``, ``PCA``,
``KMeans``). ICA whitens every kept component to unit variance, so the direction that separates
the poison competes with the noise directions on equal terms and 2-means has shallow local
optima: on planted Gaussian blobs (10 of 200 rows shifted, 8-32 dimensions) 10 k-means restarts
missed the small blob in 4 of 8 draws and 50 restarts found it in all, hence ``n_init = 50``
(cheap: 2-means in 10 dimensions). The paper gives no threshold value for the relative-size analysis; 0.35 is the
default of the authors' implementation (IBM Adversarial Robustness Toolbox,
``ActivationDefence``, whose defaults are also 10 ``FastICA`` dimensions and 2 ``KMeans``
clusters), so paper and code agree here.

Score (one per row, higher = more suspicious): the 2-means margin in the reduced space,
``||z - c_large|| - ||z - c_small||``; it is positive exactly for the rows 2-means puts in the
smaller cluster, so ranking by it extends the cluster decision to an AUROC. Rows are flagged when
they are in the smaller cluster of a class whose smaller cluster is below the size threshold.

Cost: one forward pass of the victim's encoder, then a decomposition and 2-means per class.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from dece.data import Example
from dece.defenses._common import cost, start_clock
from dece.defenses.base import DEFENSES, DataFilter

if TYPE_CHECKING:
    from dece.victim import Victim

__all__ = ["ActivationClusteringFilter", "ClusterResult", "cluster_representations"]

_REDUCERS = ("ica", "pca")


@dataclass
class ClusterResult:
    """2-means of one class: margin ``[n]`` (positive = in the smaller cluster), the smaller
    cluster's membership ``[n]`` bool and its relative size."""

    margin: np.ndarray
    in_small: np.ndarray
    relative_size: float
    converged: bool


def cluster_representations(
    representations: np.ndarray,
    *,
    n_components: int = 10,
    reduce: str = "ica",
    seed: int = 0,
    n_init: int = 50,
) -> ClusterResult:
    """Reduce ``representations [n, H]`` to ``n_components`` dimensions (``"ica"`` or ``"pca"``)
    and split them with 2-means (see the module docstring)."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA, FastICA
    from sklearn.exceptions import ConvergenceWarning

    reps = np.asarray(representations, dtype=np.float64)
    if reps.ndim != 2 or reps.shape[0] < 2:
        raise ValueError(f"representations must be [n >= 2, H], got shape {reps.shape}")
    if reduce not in _REDUCERS:
        raise ValueError(f"reduce must be one of {_REDUCERS}, got {reduce!r}")
    dims = max(1, min(int(n_components), reps.shape[0] - 1, reps.shape[1]))
    centred = reps - reps.mean(axis=0, keepdims=True)
    converged = True
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        if reduce == "ica":
            reducer: Any = FastICA(n_components=dims, whiten="unit-variance", random_state=seed,
                                   max_iter=1000)  # fmt: skip
        else:
            reducer = PCA(n_components=dims, random_state=seed)
        z = reducer.fit_transform(centred)  # [n, dims]
        converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    km = KMeans(n_clusters=2, n_init=n_init, random_state=seed).fit(z)
    distances = km.transform(z)  # [n, 2] distance to each centre
    counts = np.bincount(km.labels_, minlength=2)
    small = int(np.argmin(counts)) if counts[0] != counts[1] else 1
    margin = distances[:, 1 - small] - distances[:, small]  # [n]
    in_small = km.labels_ == small
    return ClusterResult(margin, in_small, float(in_small.mean()), converged)


@DEFENSES.register("activation_clustering", display="AC")
@dataclass
class ActivationClusteringFilter(DataFilter):
    """Activation Clustering filter (see the module docstring).

    Args:
        n_components: dimensions kept by the decomposition (10 in the paper).
        reduce: ``"ica"`` (the paper) or ``"pca"``.
        size_threshold: the smaller cluster is flagged when its relative size is below this.
        seed: seed of ICA / PCA and k-means.
        n_init: k-means restarts (the best is kept).
    """

    name = "activation_clustering"
    needs_victim = True
    n_components: int = 10
    reduce: str = "ica"
    size_threshold: float = 0.35
    seed: int = 0
    n_init: int = 50

    def __post_init__(self) -> None:
        if self.reduce not in _REDUCERS:
            raise ValueError(f"reduce must be one of {_REDUCERS}, got {self.reduce!r}")
        if int(self.n_components) < 1 or int(self.n_init) < 1:
            raise ValueError(f"n_components and n_init must be >= 1, got {self.n_components}, "
                             f"{self.n_init}")  # fmt: skip
        if not 0.0 < float(self.size_threshold) <= 0.5:
            raise ValueError(f"size_threshold must be in (0, 0.5], got {self.size_threshold}")

    def _scores(
        self, examples: list[Example], victim: Victim | None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        assert victim is not None
        clock = start_clock(victim)
        reps = victim.embed(examples)  # [N, H]
        labels = [ex.label for ex in examples]
        groups = ["all"] * len(examples) if any(x is None for x in labels) else labels
        scores = np.zeros(len(examples))
        self._last_flags = np.zeros(len(examples), dtype=bool)
        classes: dict[str, Any] = {}
        for key in dict.fromkeys(groups):
            idx = np.array([i for i, g in enumerate(groups) if g == key], dtype=int)
            if idx.size < 2:
                classes[str(key)] = {"rows": int(idx.size), "poisoned": False}
                continue
            res = cluster_representations(reps[idx], n_components=self.n_components,
                                          reduce=self.reduce, seed=self.seed,
                                          n_init=self.n_init)  # fmt: skip
            scores[idx] = res.margin
            poisoned = res.relative_size < self.size_threshold
            if poisoned:
                self._last_flags[idx[res.in_small]] = True
            classes[str(key)] = {"rows": int(idx.size), "relative_size": res.relative_size,
                                 "poisoned": bool(poisoned), "converged": res.converged}  # fmt: skip
        info = {"classes": classes, "cost": cost(clock, len(examples), victim=victim)}
        return scores, info

    def _decide(self, scores: np.ndarray) -> tuple[np.ndarray, float]:
        flags = getattr(self, "_last_flags", np.zeros(scores.shape[0], dtype=bool))
        return flags.copy(), (0.0 if flags.any() else math.inf)
