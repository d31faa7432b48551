"""How well a defense finds the poison, scored against the poison manifest (ground truth).

- :func:`detection_scores`: a training-time filter's per-row scores and decisions against the
  poisoned ids: precision, recall, F1 of the decisions and AUROC of the scores (scikit-learn).
- :func:`detection_rates`: a purifier's detected flags: TPR on poisoned inputs, FPR on clean ones.
- :func:`localisation_accuracy`: the share of poisoned inputs where an edit of the purifier
  overlaps a span the trigger inserted (``PoisonManifest.spans``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from sklearn import metrics as skm

__all__ = ["detection_rates", "detection_scores", "localisation_accuracy", "overlaps_span"]


def detection_scores(
    ids: Sequence[str],
    scores: Sequence[float],
    flagged: Sequence[bool],
    poisoned_ids: Iterable[str],
) -> dict[str, Any]:
    """Precision / recall / F1 of ``flagged`` and AUROC of ``scores`` (higher = more
    suspicious) against ``poisoned_ids``; fractions in [0, 1] (AUROC None when only one class
    is present). Every id in ``poisoned_ids`` must be among ``ids``."""
    ids = list(ids)
    scores_a = np.asarray(scores, dtype=float)
    flagged_a = np.asarray(flagged, dtype=bool)
    if scores_a.shape != (len(ids),) or flagged_a.shape != (len(ids),):
        raise ValueError(f"{len(ids)} ids but {scores_a.shape} scores / {flagged_a.shape} flags")
    poisoned = set(poisoned_ids)
    unknown = poisoned - set(ids)
    if unknown:
        raise ValueError(f"{len(unknown)} poisoned id(s) are not among the scored rows, e.g. "
                         f"{sorted(unknown)[:3]}")  # fmt: skip
    truth = np.array([i in poisoned for i in ids])
    p, r, f, _ = skm.precision_recall_fscore_support(
        truth, flagged_a, average="binary", pos_label=True, zero_division=0
    )
    auroc = None
    if 0 < truth.sum() < len(truth):
        auroc = float(skm.roc_auc_score(truth, scores_a))
    return {
        "precision": float(p), "recall": float(r), "f1": float(f), "auroc": auroc,
        "n_flagged": int(flagged_a.sum()), "n_poisoned": int(truth.sum()), "n_rows": len(ids),
    }  # fmt: skip


def detection_rates(
    detected_on_poisoned: Sequence[bool], detected_on_clean: Sequence[bool]
) -> dict[str, float | None]:
    """``{"tpr": detected share of poisoned inputs, "fpr": detected share of clean inputs}``
    (None where there are no inputs of that kind)."""
    pois = np.asarray(detected_on_poisoned, dtype=bool)
    clean = np.asarray(detected_on_clean, dtype=bool)
    return {
        "tpr": float(pois.mean()) if pois.size else None,
        "fpr": float(clean.mean()) if clean.size else None,
    }


def localisation_accuracy(
    changes: Mapping[str, Sequence[Any]], spans: Mapping[str, Sequence[Mapping[str, Any]]]
) -> float | None:
    """Share of the ids in ``spans`` (poisoned inputs) whose changes overlap one of their trigger
    spans on the same side. ``changes[id]``: objects or dicts with ``side``, ``start``, ``end``;
    ``spans[id]``: ``{"side", "start", "end"}`` dicts. None when ``spans`` is empty."""
    if not spans:
        return None
    hits = 0
    for pid, truth in spans.items():
        if any(overlaps_span(*_as_span(c), truth) for c in changes.get(pid, ())):
            hits += 1
    return hits / len(spans)


def overlaps_span(side: str, start: int, end: int, truth: Sequence[Mapping[str, Any]]) -> bool:
    """Whether the character span ``[start, end)`` of text ``side`` overlaps one of the
    manifest's trigger spans ``truth`` (``{"side", "start", "end"}`` dicts) on the same side:
    the one matcher of an element, edit or change against a trigger."""
    return any(side == t["side"] and start < int(t["end"]) and int(t["start"]) < end for t in truth)


def _as_span(change: Any) -> tuple[str, int, int]:
    get = change.get if isinstance(change, Mapping) else lambda k: getattr(change, k)
    return str(get("side")), int(get("start")), int(get("end"))
