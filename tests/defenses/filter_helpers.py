"""Planted data for the filter tests: a stand-in victim whose representations the test chooses,
so each filter's recall can be checked against what its design implies."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from dece.data import Example
from dece.victim import VictimStats


class PlantedVictim:
    """A ``Victim`` stand-in: ``embed`` returns ``represent(example)`` per row (``[N, H]``) and
    counts its calls like the real one."""

    def __init__(self, represent: Callable[[Example], np.ndarray]) -> None:
        self.represent = represent
        self.stats = VictimStats()
        self.run_dir = None

    def embed(self, examples: Sequence[Example]) -> np.ndarray:
        self.stats.add("embed", len(examples), 0.0)
        return np.stack([np.asarray(self.represent(ex), dtype=float) for ex in examples])


def table_victim(reps: dict[str, np.ndarray]) -> PlantedVictim:
    """A victim whose representation of each row is looked up by the row's id."""
    return PlantedVictim(lambda ex: reps[ex.id])


def blobs(
    n_clean: int, n_poison: int, *, dim: int = 16, shift: float = 12.0, seed: int = 0
) -> tuple[list[Example], dict[str, np.ndarray], list[str]]:
    """Rows whose representations are N(0, I) (clean) or N(shift * u, I) (poisoned, ``u`` a unit
    direction); returns (rows, representation by id, poisoned ids). Poisoned rows are spread
    through the input order."""
    rng = np.random.default_rng(seed)
    n = n_clean + n_poison
    poisoned_pos = set(rng.choice(n, size=n_poison, replace=False).tolist())
    direction = rng.normal(size=dim)
    direction /= np.linalg.norm(direction)
    rows, reps, poisoned = [], {}, []
    for i in range(n):
        rid = f"train-{i}"
        rows.append(Example(rid, f"row {i}", "t"))
        reps[rid] = rng.normal(size=dim) + (shift * direction if i in poisoned_pos else 0.0)
        if i in poisoned_pos:
            poisoned.append(rid)
    return rows, reps, poisoned
