"""Grid expansion into cells, stable cell hashes and deterministic shards.

A *cell* is one training run. Its identity is its resolved config (dataset, attack, rate,
model, loss + args, seed, training overrides), hashed with SHA-256 over canonical JSON, so the
same cell gets the same directory name on every machine and in every process. Display labels
and the cell's position in the grid are kept beside the identity but are not hashed: relabelling
a method or reordering a list never reruns finished cells.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass
from typing import Any

from dece.experiments.config import AttackSpec, ConfigError, GridConfig, LossSpec

__all__ = ["Cell", "cell_hash", "expand_grid", "parse_shard", "shard_cells"]

HASH_LENGTH = 12


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def cell_hash(resolved: dict[str, Any]) -> str:
    """First 12 hex digits of SHA-256 over the canonical JSON of a resolved cell config."""
    return hashlib.sha256(_canonical(resolved).encode("utf-8")).hexdigest()[:HASH_LENGTH]


@dataclass(frozen=True)
class Cell:
    """One grid cell: the resolved config of a single training run."""

    grid: str
    dataset: str
    attack: AttackSpec
    rate: float
    model: str
    loss: LossSpec
    seed: int
    training: tuple[tuple[str, Any], ...]  # sorted (key, value) pairs, hashable
    order: tuple[int, ...]  # positions in (datasets, attacks, rates, models, losses, seeds)

    def resolved(self) -> dict[str, Any]:
        """The hashed identity of the cell (JSON-serialisable)."""
        return {
            "dataset": self.dataset,
            "attack": self.attack.resolved(),
            "rate": self.rate,
            "model": self.model,
            "loss": self.loss.resolved(),
            "seed": self.seed,
            "training": dict(self.training),
        }

    @property
    def hash(self) -> str:
        return cell_hash(self.resolved())

    def to_config(self) -> dict[str, Any]:
        """What a cell runner receives and ``config.yaml`` holds: identity + labels."""
        return {
            **self.resolved(),
            "hash": self.hash,
            "grid": self.grid,
            "labels": {"attack": self.attack.label, "method": self.loss.label},
            "order": dict(
                zip(
                    ("dataset", "attack", "rate", "model", "loss", "seed"),
                    self.order,
                    strict=True,
                )
            ),
        }


def expand_grid(config: GridConfig) -> list[Cell]:
    """All cells of ``config`` in a deterministic order (datasets outermost, seeds innermost).

    Raises :class:`ConfigError` when two cells resolve to the same config (e.g. a loss listed
    twice with different labels), since they would share a directory.
    """
    training = tuple(sorted(config.training.items()))
    cells: list[Cell] = []
    seen: dict[str, Cell] = {}
    for (di, dataset), (ai, attack), (ri, rate), (mi, model), (li, loss), (
        si,
        seed,
    ) in itertools.product(
        enumerate(config.datasets),
        enumerate(config.attacks),
        enumerate(config.rates),
        enumerate(config.models),
        enumerate(config.losses),
        enumerate(config.seeds),
    ):
        cell = Cell(
            grid=config.name,
            dataset=dataset,
            attack=attack,
            rate=rate,
            model=model,
            loss=loss,
            seed=seed,
            training=training,
            order=(di, ai, ri, mi, li, si),
        )
        h = cell.hash
        if h in seen:
            other = seen[h]
            raise ConfigError(
                config.source,
                "losses" if other.loss.label != loss.label else "<grid>",
                f"two grid entries resolve to the same run (cell {h}: "
                f"{other.loss.label}/{other.attack.label} and {loss.label}/{attack.label}); "
                "remove the duplicate",
            )
        seen[h] = cell
        cells.append(cell)
    return cells


_SHARD_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def parse_shard(text: str) -> tuple[int, int]:
    """Parse ``"i/n"`` (0-based ``i``, ``0 <= i < n``) into ``(i, n)``."""
    match = _SHARD_RE.match(text or "")
    if not match:
        raise ValueError(f"--shard must look like 'i/n' (e.g. 0/4), got {text!r}")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"--shard {text!r}: need n >= 1 and 0 <= i < n (i is 0-based)")
    return index, count


def shard_cells(cells: list[Cell], index: int, count: int) -> list[Cell]:
    """The cells of shard ``index`` out of ``count``: every ``count``-th cell from ``index``.

    The shards of one grid are pairwise disjoint and their union is the grid, whatever the
    process or machine, since the order comes from the config alone. Round-robin slicing spreads
    neighbouring (similar-cost) cells over different shards.
    """
    if count < 1 or not 0 <= index < count:
        raise ValueError(
            f"shard index {index} / count {count}: need count >= 1, 0 <= index < count"
        )
    return cells[index::count]
