"""``spectral``: Spectral Signature (Tran, Li & Madry, NeurIPS 2018).

A backdoor leaves a trace in the learned representations of the poisoned examples that is
strong along one direction: the top singular vector of the (centred) representation matrix.
With the representations ``R [N, H]`` of the training rows from a model trained on them
(:meth:`dece.victim.Victim.embed`: the encoder mean for seq2seq models), the outlier score of row
``i`` is its squared projection on that vector::

    C = R - mean(R)        # [N, H]
    v = top right singular vector of C
    score_i = (C_i . v)^2

and the ``ceil(1.5 * eps * n)`` highest scores are removed, ``eps`` being an upper bound on the
poisoning rate (the paper's Algorithm 1; ``multiplier`` and ``expected_rate`` are parameters).

Per class: the paper and the authors' code (MadryLab/backdoor_data_poisoning) run the procedure
separately for each label. Classification rows are therefore grouped by their label; a
generation task has one "class". Paper and code agree on the score (squared correlation with
the top singular vector of the centred representations), computed here by a direct SVD
(``numpy.linalg.svd``; no randomised approximation).

Cost: one forward pass of the victim's encoder over the training rows (``info["cost"]``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from dece.data import Example
from dece.defenses._common import check_rate, cost, flag_top, start_clock
from dece.defenses.base import DEFENSES, DataFilter

if TYPE_CHECKING:
    from dece.victim import Victim

__all__ = ["SpectralSignatureFilter", "spectral_scores"]


def spectral_scores(representations: np.ndarray) -> np.ndarray:
    """``[N]`` squared projections of the centred ``representations [N, H]`` on their top right
    singular vector (Tran et al.'s outlier score). ``N >= 2`` rows, finite values."""
    reps = np.asarray(representations, dtype=np.float64)
    if reps.ndim != 2 or reps.shape[0] < 2 or reps.shape[1] < 1:
        raise ValueError(f"representations must be [N >= 2, H >= 1], got shape {reps.shape}")
    if not np.isfinite(reps).all():
        raise ValueError("representations hold NaN or infinite values")
    centred = reps - reps.mean(axis=0, keepdims=True)  # [N, H]
    _, _, vt = np.linalg.svd(centred, full_matrices=False)  # vt [min(N, H), H]
    return (centred @ vt[0]) ** 2  # [N]


@DEFENSES.register("spectral", display="SS")
@dataclass
class SpectralSignatureFilter(DataFilter):
    """Spectral Signature filter (see the module docstring).

    Args:
        expected_rate: an upper bound on the poisoning rate (``eps``).
        multiplier: flag ``ceil(multiplier * expected_rate * n)`` rows per class (1.5 in the
            paper).
        per_class: run separately for each label (classification); generation has one class.
    """

    name = "spectral"
    needs_victim = True
    expected_rate: float = 0.05
    multiplier: float = 1.5
    per_class: bool = True

    def __post_init__(self) -> None:
        check_rate(self.expected_rate, self.multiplier)

    def _scores(
        self, examples: list[Example], victim: Victim | None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        assert victim is not None
        clock = start_clock(victim)
        reps = victim.embed(examples)  # [N, H]
        self._last_groups = _class_groups(examples) if self.per_class else None
        scores = np.zeros(len(examples))
        sizes: dict[str, int] = {}
        for key in dict.fromkeys(self._last_groups or [None]):
            idx = _members(self._last_groups, key, len(examples))
            sizes[str(key)] = int(idx.size)
            if idx.size >= 2:
                scores[idx] = spectral_scores(reps[idx])
        info = {"classes": sizes, "hidden_size": int(reps.shape[1]),
                "cost": cost(clock, len(examples), victim=victim)}  # fmt: skip
        return scores, info

    def _decide(self, scores: np.ndarray) -> tuple[np.ndarray, float]:
        return flag_top(scores, getattr(self, "_last_groups", None), self.expected_rate,
                        self.multiplier)  # fmt: skip


def _class_groups(examples: list[Example]) -> list[str] | None:
    """Each row's label when every row has one (classification), else None (one class)."""
    labels = [ex.label for ex in examples]
    return None if any(label is None for label in labels) else [str(x) for x in labels]


def _members(groups: list[str] | None, key: str | None, n: int) -> np.ndarray:
    if groups is None:
        return np.arange(n)
    return np.array([i for i, g in enumerate(groups) if g == key], dtype=int)
