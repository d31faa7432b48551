"""Grid expansion into cells, stable cell hashes, dependencies and deterministic shards.

A *cell* is one run. Its identity is its resolved config (one entry per axis, see
:mod:`dece.experiments.axes`, plus the shared training overrides), hashed with SHA-256 over
canonical JSON, so the same cell gets the same directory name on every machine and in every
process. Display labels and the cell's position in the grid are kept beside the identity but
are not hashed: relabelling a method or reordering a list never reruns finished cells. Nor are
the operational ``training`` keys of :data:`UNHASHED_TRAINING_KEYS` (the experiment trackers and
the runner's resume settings), which every cell still receives: reporting a grid to TensorBoard or
W&B, or resuming it, reruns nothing. :func:`cell_identity` reads the same identity back from a
recorded cell config (``cell.yaml``, ``result.json``'s ``config``), so an archived cell's
directory name can be checked against what it recorded.

Dependencies: a test-time purifier cell evaluates the model of its *parent*, the same cell
undefended; a training-time filter that reads a model scores the data with the model of the
same cell undefended and trained with plain CE (the grid's own CE cell when it has one).
:meth:`Cell.parent` names it; the runner makes sure a parent runs once and saves its model.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from dece.experiments.axes import AXES, UNDEFENDED, ConfigError, DefenseSpec, LossSpec
from dece.experiments.config import GridConfig
from dece.training.config import OPERATIONAL_KEYS

__all__ = [
    "HASHED_OPERATIONAL_KEYS",
    "OPERATIONAL_TRAINING_KEYS",
    "UNHASHED_TRAINING_KEYS",
    "Cell",
    "cell_hash",
    "cell_identity",
    "current_labels",
    "expand_grid",
    "parse_shard",
    "pending_commands",
    "shard_cells",
]

HASH_LENGTH = 12
#: The operational ``training`` keys, read from their one declaration on the run schema
#: (``setting(..., operational=True)`` on the ``TrainConfig`` fields:
#: :data:`dece.training.config.OPERATIONAL_KEYS`): they change where results are reported or how
#: a run survives a kill, never the results. ``report_to`` / ``run_name``: the experiment
#: trackers; ``resume`` / ``save_checkpoints`` / ``save_total_limit``: set for every trained cell
#: by the runner (:data:`dece.experiments.cell_runner.RESUME_SETTINGS`, whose keys are a subset of
#: these), whatever the grid's ``training`` says. The executor and its ``--wait`` are ``dece run``
#: flags, not ``TrainConfig`` fields, so no ``training`` block can hold them (the grid config
#: rejects unknown keys); the grid's own ``runner`` / ``output_dir`` and a cell config's
#: ``keep_model`` / ``record_example_losses`` / ``parent`` lie outside the identity by
#: construction (:meth:`Cell.resolved`, :func:`cell_identity`).
OPERATIONAL_TRAINING_KEYS: frozenset[str] = OPERATIONAL_KEYS
#: Operational keys that are nevertheless hashed as written, for compatibility: every shipped
#: config writes ``save_checkpoints: false`` and the archived cells under
#: ``benchmarks/results/cells/`` were hashed with it, so leaving it out now would rename them.
#: (The runner still overrides it at run time.)
HASHED_OPERATIONAL_KEYS: frozenset[str] = frozenset({"save_checkpoints"})
#: ``training`` keys handed to every cell but never part of its hash.
UNHASHED_TRAINING_KEYS: frozenset[str] = OPERATIONAL_TRAINING_KEYS - HASHED_OPERATIONAL_KEYS
PARENT_LOSS = LossSpec(name="ce", label="CE")  # the model a victim-reading filter scores data with


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def cell_hash(resolved: dict[str, Any]) -> str:
    """First 12 hex digits of SHA-256 over the canonical JSON of a resolved cell config."""
    return hashlib.sha256(_canonical(resolved).encode("utf-8")).hexdigest()[:HASH_LENGTH]


def _hashed_training(training: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in training.items() if k not in UNHASHED_TRAINING_KEYS}


def cell_identity(config: Mapping[str, Any]) -> dict[str, Any]:
    """The hashed identity inside a recorded cell config (what :meth:`Cell.to_config` wrote to
    ``cell.yaml`` and ``result.json``'s ``config``): the axis fields, less an axis's ``omit``
    value, and ``training`` less :data:`UNHASHED_TRAINING_KEYS`. Labels, order, ``hash``,
    ``grid``, ``parent`` and the runner's flags are left out. ``cell_hash(cell_identity(c))``
    is the cell's directory name."""
    out: dict[str, Any] = {}
    for axis in AXES:
        if axis.field in config and (axis.omit is None or config[axis.field] != axis.omit):
            out[axis.field] = config[axis.field]
    out["training"] = _hashed_training(config.get("training") or {})
    return out


@dataclass(frozen=True)
class Cell:
    """One grid cell: a value per axis (``cell.dataset``, ``cell.loss``, ...), the shared
    training overrides and the cell's position in the grid (``order``, one index per axis)."""

    grid: str
    values: tuple[tuple[str, Any], ...]  # (axis field, value) in AXES order
    training: tuple[tuple[str, Any], ...]  # sorted (key, value) pairs, hashable
    order: tuple[int, ...]

    def __getattr__(self, name: str) -> Any:
        for key, value in object.__getattribute__(self, "values"):
            if key == name:
                return value
        raise AttributeError(f"Cell has no attribute {name!r}")

    def resolved(self) -> dict[str, Any]:
        """The hashed identity of the cell (JSON-serialisable)."""
        out: dict[str, Any] = {}
        for axis, (_, value) in zip(AXES, self.values, strict=True):
            identity = axis.identity(value)
            if axis.omit is None or identity != axis.omit:
                out[axis.field] = identity
        out["training"] = _hashed_training(dict(self.training))
        return out

    @property
    def hash(self) -> str:
        return cell_hash(self.resolved())

    def labels(self) -> dict[str, str]:
        return {axis.field: axis.label(v) for axis, (_, v) in zip(AXES, self.values, strict=True)}

    def to_config(self) -> dict[str, Any]:
        """What a cell runner receives and ``cell.yaml`` holds: identity + labels + order."""
        parent = self.parent()
        config = {
            **self.resolved(),
            "training": dict(self.training),  # with the operational keys, which are not hashed
            "hash": self.hash,
            "grid": self.grid,
            "labels": self.labels(),
            "order": dict(zip((a.field for a in AXES), self.order, strict=True)),
        }
        if parent is not None:
            config["parent"] = parent.hash
        return config

    def with_values(self, **values: Any) -> Cell:
        """The same cell with some axis values replaced (its position kept)."""
        new = tuple((k, values.get(k, v)) for k, v in self.values)
        return replace(self, values=new)

    def parent(self) -> Cell | None:
        """The cell whose trained model this one needs, or None (module docstring)."""
        defense: DefenseSpec = self.defense
        if defense.stage == "test":
            return self.with_values(defense=DefenseSpec(name=UNDEFENDED))
        if defense.stage == "train" and defense.needs_victim:
            return self.with_values(defense=DefenseSpec(name=UNDEFENDED), loss=PARENT_LOSS)
        return None


def expand_grid(config: GridConfig) -> list[Cell]:
    """All cells of ``config`` in a deterministic order (first axis outermost, seeds innermost).

    Raises :class:`ConfigError` when two cells resolve to the same config (e.g. a loss listed
    twice with different labels), since they would share a directory.
    """
    training = tuple(sorted(config.training.items()))
    lists = [list(enumerate(config.axes[a.key])) for a in AXES]
    cells: list[Cell] = []
    seen: dict[str, Cell] = {}
    for combo in itertools.product(*lists):
        cell = Cell(
            grid=config.name,
            values=tuple((a.field, v) for a, (_, v) in zip(AXES, combo, strict=True)),
            training=training,
            order=tuple(i for i, _ in combo),
        )
        h = cell.hash
        if h in seen:
            a, b = seen[h].labels(), cell.labels()
            raise ConfigError(
                config.source,
                "losses" if a["loss"] != b["loss"] else "<grid>",
                f"two grid entries resolve to the same run (cell {h}: "
                f"{a['loss']}/{a['attack']} and {b['loss']}/{b['attack']}); remove the duplicate",
            )
        seen[h] = cell
        cells.append(cell)
    return cells


def current_labels(configs: Sequence[GridConfig]) -> dict[str, dict[str, str]]:
    """``{cell hash: labels}`` of every cell of ``configs`` as they label it now.

    A finished cell keeps the labels it was run under (``cell.yaml``, ``result.json``); since
    labels are not hashed, a config may relabel its cells later (issue 22: the RIPPLe cells with
    Kurita et al.'s five words became ``RIPPLe (Kurita words)`` when the paper's one-``bb``
    RIPPLe took the ``RIPPLe`` label). A results script updates its rows with this mapping so a
    relabelled cell neither shows its old label nor collides with a new cell that took it.
    Where two configs share a cell, the first one's labels win.
    """
    out: dict[str, dict[str, str]] = {}
    for config in configs:
        for cell in expand_grid(config):
            out.setdefault(cell.hash, cell.labels())
    return out


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


def pending_commands(
    cells: Sequence[Cell],
    done: Collection[str],
    config: str,
    *,
    subset: Sequence[Cell] | None = None,
) -> list[str]:
    """One markdown bullet per cell of ``subset`` (default: all ``cells``, the whole grid of the
    config file ``config``) whose hash is not in ``done``: its hash, labels and the command that
    runs it alone, ``dece run <config> --shard i/n`` with ``n = len(cells)`` (shard ``i`` of a
    grid of ``n`` cells is exactly cell ``i``: :func:`shard_cells`)."""
    index = {c.hash: i for i, c in enumerate(cells)}
    out = []
    for cell in cells if subset is None else subset:
        if cell.hash in done:
            continue
        labels = cell.labels()
        defense = f" w. {labels['defense']}" if labels.get("defense") else ""
        out.append(
            f"- `{cell.hash}` {labels['attack']} {labels['rate']} {labels['loss']}{defense} seed "
            f"{labels['seed']}: `dece run {config} --shard {index[cell.hash]}/{len(cells)}`"
        )
    return out
