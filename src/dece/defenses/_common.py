"""Helpers shared by the training-time filters: the rank-based decision rule (Spectral Signature,
training dynamics) and the cost record every filter puts in ``FilterResult.info["cost"]``."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from dece.victim import Victim

__all__ = ["Clock", "check_rate", "cost", "flag_top", "n_to_flag", "start_clock"]


def check_rate(expected_rate: float, multiplier: float) -> None:
    """ValueError unless ``0 < expected_rate < 1`` and ``multiplier > 0``."""
    if not 0.0 < float(expected_rate) < 1.0:
        raise ValueError(f"expected_rate must be in (0, 1), got {expected_rate!r}")
    if not float(multiplier) > 0.0:
        raise ValueError(f"multiplier must be > 0, got {multiplier!r}")


def n_to_flag(n_rows: int, expected_rate: float, multiplier: float) -> int:
    """``ceil(multiplier * expected_rate * n_rows)``, at most ``n_rows`` (Tran et al.'s 1.5 eps n)."""
    return min(n_rows, math.ceil(multiplier * expected_rate * n_rows - 1e-9))


def flag_top(
    scores: np.ndarray, groups: Sequence[object] | None, expected_rate: float, multiplier: float
) -> tuple[np.ndarray, float]:
    """Flag the ``n_to_flag`` highest scores of each group (one group when ``groups`` is None).

    scores ``[N]``; returns (flagged ``[N]`` bool, the lowest flagged score; +inf when none).
    Ties at the cut are broken by input order (a stable sort), so the count is exact.
    """
    scores = np.asarray(scores, dtype=float)
    flagged = np.zeros(scores.shape[0], dtype=bool)
    keys = [None] * scores.shape[0] if groups is None else list(groups)
    for key in dict.fromkeys(keys):
        idx = np.array([i for i, k in enumerate(keys) if k == key], dtype=int)
        k = n_to_flag(idx.size, expected_rate, multiplier)
        order = np.argsort(-scores[idx], kind="stable")
        flagged[idx[order[:k]]] = True
    threshold = float(scores[flagged].min()) if flagged.any() else math.inf
    return flagged, threshold


@dataclass(frozen=True)
class Clock:
    """Where a filter's scoring started: wall time and the victim's counters at that moment."""

    started: float
    rows: dict[str, int]
    seconds: float


def start_clock(victim: Victim | None = None) -> Clock:
    if victim is None:
        return Clock(time.perf_counter(), {}, 0.0)
    return Clock(time.perf_counter(), dict(victim.stats.rows), victim.stats.total_seconds())


def cost(
    clock: Clock, n_rows: int, *, victim: Victim | None = None, data_passes: int = 1
) -> dict[str, Any]:
    """What a filter's scoring cost since ``clock``: wall seconds, passes over the data, and the
    victim's work as model passes (rows run through each victim method / ``n_rows``: 1.0 = one
    forward pass over the training split)."""
    out: dict[str, Any] = {
        "seconds": round(time.perf_counter() - clock.started, 3),
        "data_passes": int(data_passes),
        "model_passes": 0.0,
    }
    if victim is not None and n_rows:
        per_method = {m: (r - clock.rows.get(m, 0)) / n_rows for m, r in victim.stats.rows.items()}
        per_method = {m: v for m, v in per_method.items() if v > 0}
        out["model_passes"] = round(sum(per_method.values()), 3)
        out["model_passes_by_method"] = {m: round(v, 3) for m, v in per_method.items()}
        out["victim_seconds"] = round(victim.stats.total_seconds() - clock.seconds, 3)
    return out
