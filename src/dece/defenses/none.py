"""``none``: the identity purifier (changes nothing, detects nothing).

Evaluating a trained model through it must reproduce the undefended numbers exactly, which makes
it the oracle of the purifier path (grid cells that evaluate a parent's model without retraining).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from dece.data import Example, check_examples
from dece.defenses.base import DEFENSES, Purifier, PurifyResult

if TYPE_CHECKING:
    from dece.victim import Victim

__all__ = ["NonePurifier"]


@DEFENSES.register("none", display="none")
@dataclass
class NonePurifier(Purifier):
    """Returns every input unchanged; score 0 and ``detected=False`` for every row."""

    name = "none"

    def purify(self, examples: Sequence[Example], victim: Victim | None = None) -> PurifyResult:
        t0 = time.perf_counter()
        rows = check_examples(examples)
        n = len(rows)
        return PurifyResult(
            rows, np.zeros(n, bool), np.zeros(n), [[] for _ in rows], time.perf_counter() - t0
        )
