"""CodePurify's detection statistics, named presets and the premise measurements (issue 24).

**Statistics** (:func:`suspicion_statistic`), each oriented so that higher = more suspicious:

- ``entropy`` (the paper's Eq. 3, or the official code's sum normalisation): ``-H(p)``; the
  decision ``H < t`` is ``-H > -t``.
- ``max_delta`` (ours): ``max_i I_i``, the largest suspicion score.
- ``entropy_gap`` (ours): ``ln N - H(p)``, the entropy corrected for the number of elements.

Why the correction: with ``I_i`` in ``[0, 1]`` the softmax weights ``e^{I_i}`` lie in ``[1, e]``,
so for ``N >= 2`` the softmax entropy lies in ``[ln N - c_N, ln N]`` with a small ``c_N``
(:func:`softmax_entropy_floor`; ``c_N`` is at most 0.1233 nats for every ``N``): the paper's entropy
mostly counts the elements, and a trigger, which adds elements, makes an input look cleaner. With
``N = 1`` the entropy is 0 whatever the victim does. The entropy statistics therefore judge only
inputs with ``N >= 2`` (:data:`MIN_ELEMENTS`); the rest are never flagged by them, left out of
calibration and counted.

**Premise** (:func:`premise_metrics`): what the entropy test presupposes — a saturated victim
(confidence on triggered inputs near 1) whose suspicion mass sits on the trigger — measured per
cell against the poison manifest, with the threshold-free AUROC of every statistic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from dece.metrics.detection import overlaps_span

__all__ = [
    "MIN_ELEMENTS",
    "NORMALISATIONS",
    "PRESETS",
    "STATISTICS",
    "auroc",
    "premise_metrics",
    "softmax_entropy_floor",
    "suspicion_entropy",
    "suspicion_statistic",
    "trigger_rank",
    "trigger_share",
]

NORMALISATIONS = ("softmax", "sum")
STATISTICS = ("entropy", "max_delta", "entropy_gap")
#: The fewest elements an entropy statistic judges (``N = 1``: ``H = 0`` for any victim).
MIN_ELEMENTS = {"entropy": 2, "entropy_gap": 2, "max_delta": 1}

#: Named presets: the arguments each sets (explicit arguments that differ from the defaults
#: override them). Scripts named below are those of the authors' release (``codepurify24/codepurify``).
#: ``paper``: Eq. 1-3 as printed (softmax of the confidence changes, mask tokens with keywords
#: kept in statements for both the victim and the infiller, threshold calibrated on clean inputs).
#: ``official`` (issue 24's description of the released code, from its program-repair scripts
#: ``program_repair/src/*/purification_defense.py``): ``p_i = I_i / sum_j I_j``, the mean token
#: NLL of the original output per variant (no subtraction), one ``<unk>`` per masked identifier
#: occurrence / whole statement for the victim, punctuation kept in the infiller's statement
#: masks, the hard-coded ``t = 0.1``.
#: ``official_defect``: ``defect_detection/src/codebert/purification_defense.py`` as read here
#: (``calculate_important_score`` / ``compute_entropy`` / ``defensive_inference``): the same sum
#: entropy, ``<unk>`` inputs and ``t = 0.1`` (``entropy_score > 0.1`` keeps the input), but the
#: score is ``|p(X_i) - p(X)|`` of the victim's probability (``delta``) and statements are masked
#: for the infiller with C keywords kept (``keywords``). That script also skips elements whose
#: ``<unk>`` falls past ``max_length`` (as revision 2 does) and records ``max_i I_i`` beside the
#: entropy.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"normalisation": "softmax", "score": "delta", "victim_mask": "mask",
              "victim_statement": "keep", "keep": "keywords", "statistic": "entropy",
              "threshold": None},
    "official": {"normalisation": "sum", "score": "nll", "victim_mask": "unk",
                 "victim_statement": "whole", "keep": "keywords+punctuation",
                 "statistic": "entropy", "threshold": 0.1},
    "official_defect": {"normalisation": "sum", "score": "delta", "victim_mask": "unk",
                        "victim_statement": "whole", "keep": "keywords",
                        "statistic": "entropy", "threshold": 0.1},
}  # fmt: skip


def suspicion_entropy(
    scores: Sequence[float] | np.ndarray, normalisation: str = "softmax", temperature: float = 1.0
) -> float:
    """Entropy (nats) of the suspicion scores ``[n]`` normalised into a distribution.

    ``softmax``: ``p = softmax(s / temperature)`` (the paper's Eq. 3). ``sum``: ``p = s / sum(s)``
    (the official code), with ``0 log 0 = 0`` and all-zero scores read as uniform (nothing stands
    out: entropy ``log n``). No elements: ``inf`` (nothing to judge, never detected).
    """
    if normalisation not in NORMALISATIONS:
        raise ValueError(f"normalisation must be one of {NORMALISATIONS}, got {normalisation!r}")
    s = np.asarray(scores, dtype=float)
    if s.ndim != 1:
        raise ValueError(f"scores must be one-dimensional, got shape {s.shape}")
    if s.size == 0:
        return float("inf")
    if np.any(s < 0) and normalisation == "sum":
        raise ValueError("sum normalisation needs non-negative scores")
    if normalisation == "softmax":
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        z = s / temperature
        z = z - z.max()
        p = np.exp(z) / np.exp(z).sum()
    else:
        total = s.sum()
        if total <= 0:
            return float(np.log(s.size))
        p = s / total
    nz = p[p > 0]
    return float(-(nz * np.log(nz)).sum())


def softmax_entropy_floor(n: int) -> float:
    """The smallest softmax entropy of ``n >= 1`` scores in ``[0, 1]`` (temperature 1).

    The smallest over the vertices of the cube, ``k`` scores at 1 and ``n - k`` at 0
    (``k = 1..n-1``; ``n = 1``: 0); the tests check by sampling that no interior point goes
    lower. For ``n >= 2``: ``ln n - 0.1233 < floor <= ln n`` (the gap is 0.111 at ``n = 2``)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if n == 1:
        return 0.0
    best = math.log(n)
    for k in range(1, n):
        w = np.array([math.e] * k + [1.0] * (n - k))
        p = w / w.sum()
        best = min(best, float(-(p * np.log(p)).sum()))
    return best


def suspicion_statistic(
    scores: Sequence[float] | np.ndarray, statistic: str = "entropy",
    normalisation: str = "softmax", temperature: float = 1.0,
) -> float:  # fmt: skip
    """The input's suspicion under ``statistic`` (higher = more suspicious; module docstring).

    ``-inf`` where the statistic does not judge the input (fewer than :data:`MIN_ELEMENTS`)."""
    if statistic not in STATISTICS:
        raise ValueError(f"statistic must be one of {STATISTICS}, got {statistic!r}")
    s = np.asarray(scores, dtype=float)
    if s.size < MIN_ELEMENTS[statistic]:
        return float("-inf")
    if statistic == "max_delta":
        return float(s.max())
    h = suspicion_entropy(s, normalisation, temperature)
    return -h if statistic == "entropy" else float(math.log(s.size) - h)


# ------------------------------------------------------------------------------ premise
def auroc(positive: Sequence[float], negative: Sequence[float]) -> float | None:
    """``P(pos > neg) + P(pos = neg) / 2`` (Mann-Whitney), infinite values allowed; None when
    either side is empty."""
    pos = np.asarray(positive, dtype=float)
    neg = np.sort(np.asarray(negative, dtype=float))
    if pos.size == 0 or neg.size == 0:
        return None
    below = np.searchsorted(neg, pos, side="left")
    ties = np.searchsorted(neg, pos, side="right") - below
    return float((below + 0.5 * ties).sum() / (pos.size * neg.size))


def trigger_share(
    scores: Sequence[float], element_spans: Sequence[Sequence[Sequence[Any]]],
    truth: Sequence[Mapping[str, Any]],
) -> float | None:  # fmt: skip
    """Share of the suspicion mass ``sum_i I_i`` on the elements that overlap a trigger span
    (``element_spans[i]``: ``(side, start, end)`` triples; ``truth``: the manifest's span dicts).
    None when the mass is 0."""
    s = np.asarray(scores, dtype=float)
    total = float(s.sum())
    if total <= 0:
        return None
    hit = _trigger_elements(element_spans, truth)
    return float(s[hit].sum() / total) if hit.size else None


def _trigger_elements(
    element_spans: Sequence[Sequence[Sequence[Any]]], truth: Sequence[Mapping[str, Any]]
) -> np.ndarray:
    """``[N]`` bool: which elements (each a list of ``(side, start, end)``) overlap a trigger."""
    return np.asarray(
        [any(overlaps_span(side, int(a), int(b), truth) for side, a, b in spans)
         for spans in element_spans], dtype=bool,
    )  # fmt: skip


def trigger_rank(
    scores: Sequence[float], element_spans: Sequence[Sequence[Sequence[Any]]],
    truth: Sequence[Mapping[str, Any]],
) -> tuple[int, int] | None:  # fmt: skip
    """Where the trigger stands in one input's suspicion ranking: ``(rank, ties)`` of its
    highest-scored element (``rank`` 1 = first: 1 + the number of non-trigger elements scored
    strictly higher; ``ties``: non-trigger elements with exactly its score, which a top-1 choice
    may pick instead). None when no element overlaps a trigger span (trigger not scored)."""
    s = np.asarray(scores, dtype=float)
    hit = _trigger_elements(element_spans, truth)
    if not hit.any():
        return None
    best = float(s[hit].max())
    others = s[~hit]
    return 1 + int((others > best).sum()), int((others == best).sum())


def _confidence_summary(values: Sequence[float], prefix: str) -> dict[str, Any]:
    c = np.asarray(values, dtype=float)
    if c.size == 0:
        return {}
    return {
        f"{prefix}_median": float(np.median(c)),
        f"{prefix}_share_098": float((c >= 0.98).mean()),
    }


def premise_metrics(
    clean: Mapping[str, Any], poisoned: Mapping[str, Any], ids: Sequence[str],
    spans: Mapping[str, Sequence[Mapping[str, Any]]],
) -> dict[str, Any]:  # fmt: skip
    """The premise of one CodePurify cell from the ``info`` of its clean and poisoned results
    (``confidence``, ``scores``, ``element_spans``, ``statistics``; ``ids``: the poisoned rows'
    ids in order, ``spans``: the manifest's trigger spans). Keys: ``premise_conf_triggered_*`` /
    ``premise_conf_clean_*`` (median, share >= 0.98), ``premise_trigger_share`` (median over
    triggered inputs with a positive mass), ``premise_auroc_<statistic>`` (triggered vs clean)."""
    out: dict[str, Any] = {}
    out.update(_confidence_summary(poisoned.get("confidence", []), "premise_conf_triggered"))
    out.update(_confidence_summary(clean.get("confidence", []), "premise_conf_clean"))
    shares = [trigger_share(s, e, spans[i])
              for i, s, e in zip(ids, poisoned.get("scores", []),
                                 poisoned.get("element_spans", []), strict=False)
              if i in spans]  # fmt: skip
    shares = [x for x in shares if x is not None]
    if shares:
        out["premise_trigger_share"] = float(np.median(shares))
        out["premise_trigger_share_mean"] = float(np.mean(shares))
    for name in STATISTICS:
        pos = poisoned.get("statistics", {}).get(name)
        neg = clean.get("statistics", {}).get(name)
        if pos is not None and neg is not None:
            out[f"premise_auroc_{name}"] = auroc(pos, neg)
    return out
