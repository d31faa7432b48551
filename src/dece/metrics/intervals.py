"""Confidence interval of a binomial proportion: the Wilson score interval.

Used for pass@1 and ASR reported as counts (``passed / total``), where a normal-approximation
interval would leave [0, 1] or collapse to a point at 0 or at ``total`` (HumanEval has 164
problems: one problem moves pass@1 by 0.61 points). Wilson's interval, for ``s`` successes in
``n`` trials and ``z`` the standard-normal quantile of the confidence level::

    centre = (s + z^2 / 2) / (n + z^2)
    half   = z / (n + z^2) * sqrt(s (n - s) / n + z^2 / 4)

Closed forms at the edges: ``0 / n`` gives ``[0, z^2 / (n + z^2)]`` and ``n / n`` gives
``[n / (n + z^2), 1]`` (0/164 at 95%: [0, 2.29%]).
"""

from __future__ import annotations

import math
from statistics import NormalDist

__all__ = ["wilson_interval"]


def wilson_interval(successes: int, total: int, confidence: float = 0.95) -> tuple[float, float]:
    """``(low, high)``: the Wilson score interval of ``successes / total`` at ``confidence``.

    Raises:
        ValueError: ``total < 1``, ``successes`` outside ``[0, total]``, non-integer counts or a
            confidence outside ``(0, 1)``.
    """
    for name, value in (("successes", successes), ("total", total)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an int, got {value!r}")
    if total < 1 or not 0 <= successes <= total:
        raise ValueError(f"need total >= 1 and 0 <= successes <= total, got {successes}/{total}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    z2 = z * z
    centre = (successes + z2 / 2) / (total + z2)
    half = z / (total + z2) * math.sqrt(successes * (total - successes) / total + z2 / 4)
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == total else min(1.0, centre + half)
    return low, high
