"""Load finished cells (``result.json`` + ``metrics.jsonl``) from a runs directory into rows.

A :class:`ResultRow` holds one value per grid axis (``values``, keyed by the axis field: the
identity the cell was hashed from), its display labels and its grid position, both also keyed by
axis field, so the rows follow :data:`dece.experiments.axes.AXES` without naming them.

Two finished ``result.json`` files of the same cell (e.g. a grid copied under two directories,
or run twice into different output dirs under one parent) are an error naming both: averaging
them would count one cell twice as if it were two seeds (CE ASR 95.0 and 0.0 became 47.5), and
keeping one silently (the newest, say) could hide a stale or different result. The user keeps
one, by moving or deleting the other, or by reporting on one grid's directory.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dece._jsonl import read_jsonl
from dece.experiments.axes import AXES, AXIS_BY_FIELD, UNDEFENDED, display_name
from dece.experiments.store import CELL_FILE, RESULT_FILE, LockHolder, cell_state, lock_holder
from dece.rundir import RunDir

__all__ = [
    "DuplicateResultsError",
    "ResultRow",
    "find_running",
    "find_unfinished",
    "load_history",
    "load_results",
]

logger = logging.getLogger(__name__)


@dataclass
class ResultRow:
    """One finished cell. Scores follow the project scales: BLEU 0-100, the rest in [0, 1]."""

    hash: str
    grid: str
    values: dict[str, Any]  # axis field -> identity ({"name", "args"} for specs, else the value)
    labels: dict[str, str]  # axis field -> display label
    order: dict[str, int]  # axis field -> position in the grid
    final: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    path: Path | None = None
    finished_at: str = ""

    # -- the axes' values, by name (derived; see AXES) ---------------------------------------
    def label(self, axis_field: str) -> str:
        return self.labels.get(axis_field, "")

    @property
    def dataset(self) -> str:
        return str(self.values["dataset"])

    @property
    def model(self) -> str:
        return str(self.values["model"])

    @property
    def rate(self) -> float:
        return float(self.values["rate"])

    @property
    def seed(self) -> int:
        return int(self.values["seed"])

    @property
    def attack(self) -> str:
        """The attack's display label, e.g. ``"BadPre"``."""
        return self.label("attack")

    @property
    def trigger(self) -> str:
        return str(self.values["attack"]["trigger"])

    @property
    def loss(self) -> str:
        return str(self.values["loss"]["name"])

    @property
    def loss_args(self) -> dict[str, Any]:
        return dict(self.values["loss"].get("args") or {})

    @property
    def defense(self) -> str:
        return str(self.values.get("defense", {}).get("name", UNDEFENDED))

    @property
    def method(self) -> str:
        """The row label of the method: the loss label, ``"<loss> w. <defense>"`` when defended."""
        defense = self.label("defense")
        return f"{self.label('loss')} w. {defense}" if defense else self.label("loss")

    def metric(self, name: str) -> float | None:
        value = self.final.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            where = self.path / RESULT_FILE if self.path is not None else f"cell {self.hash}"
            raise ValueError(
                f"{where}: key 'final.{name}': expected a number, got {type(value).__name__} "
                f"{str(value)[:60]!r}"
            )
        return float(value)

    def flat(self) -> dict[str, Any]:
        """A flat dict (one CSV row): per axis its value (a spec's name or trigger; the spec as
        JSON in ``<axis>_spec`` and its label in ``<axis>_label``), then the final metrics."""
        out: dict[str, Any] = {"hash": self.hash, "grid": self.grid}
        for axis in AXES:
            value = self.values.get(axis.field)
            if isinstance(value, dict):
                out[axis.field] = value.get("name", value.get("trigger"))
                out[f"{axis.field}_spec"] = json.dumps(value, sort_keys=True)
                out[f"{axis.field}_label"] = self.labels.get(axis.field, "")
            else:
                out[axis.field] = value
        out.update(self.final)
        return out


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


def load_history(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a ``metrics.jsonl`` file ([] when it does not exist)."""
    return read_jsonl(path, missing_ok=True)


def _visible(path: Path, root: Path) -> bool:
    return not any(part.startswith(".") for part in path.relative_to(root).parts)


def _labels(config: dict[str, Any]) -> dict[str, str]:
    """Per-axis labels; cells written before labels were keyed by axis field had
    ``{"attack", "method"}``."""
    labels = dict(config.get("labels") or {})
    if "method" in labels and "loss" not in labels:
        labels["loss"] = labels.pop("method")
    labels.setdefault("attack", display_name(config["attack"]["trigger"]))
    labels.setdefault("loss", display_name(config["loss"]["name"]))
    labels.setdefault("defense", "")
    return labels


def _row_from_result(path: Path) -> ResultRow:
    data = _read_json(path)
    try:
        config = data["config"]
        values = {a.field: config[a.field] for a in AXES if a.field in config}
        values.setdefault("defense", {"name": UNDEFENDED, "args": {}})
        missing = [a.field for a in AXES if a.field not in values]
        if missing:
            raise KeyError(missing[0])
        order = {k: int(v) for k, v in (config.get("order") or {}).items() if k in AXIS_BY_FIELD}
        return ResultRow(
            hash=str(data.get("hash", path.parent.name)), grid=str(config.get("grid", "")),
            values=values, labels=_labels(config), order=order, final=dict(data["final"]),
            history=RunDir(path.parent).history(), path=path.parent,
            finished_at=str(data.get("finished_at", "")),
        )  # fmt: skip
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path}: missing or malformed field {exc}") from None


def load_results(runs_dir: str | Path) -> list[ResultRow]:
    """Every finished cell under ``runs_dir`` (searched recursively; hidden dirs skipped),
    in grid order, one row per cell hash. Cells still running and unfinished cells are not rows
    (:func:`find_running` and :func:`find_unfinished` list them; both are logged as warnings).
    Two finished results of one cell raise
    :class:`DuplicateResultsError` naming both files."""
    root = Path(runs_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"runs directory {str(root)!r} does not exist")
    by_hash: dict[str, ResultRow] = {}
    duplicates: list[tuple[ResultRow, ResultRow]] = []
    for p in sorted(root.rglob(RESULT_FILE)):
        if not _visible(p, root):
            continue
        row = _row_from_result(p)  # an unreadable result.json is an error naming the file
        if cell_state(p.parent) != "done":
            continue  # inconsistent with its history: listed by find_unfinished
        if row.hash in by_hash:
            duplicates.append((by_hash[row.hash], row))
        else:
            by_hash[row.hash] = row
    if duplicates:
        raise DuplicateResultsError(root, duplicates)
    _warn_not_finished(root)
    rows = list(by_hash.values())
    rows.sort(key=lambda r: (r.grid, tuple(r.order.get(a.field, 0) for a in AXES), r.hash))
    return rows


class DuplicateResultsError(ValueError):
    """Several finished results of one cell under a runs directory; the message names them."""

    def __init__(self, root: Path, pairs: list[tuple[ResultRow, ResultRow]]) -> None:
        lines = [
            f"  cell {a.hash}: {a.path / RESULT_FILE} (finished {a.finished_at or '?'}) and "
            f"{b.path / RESULT_FILE} (finished {b.finished_at or '?'})"
            for a, b in pairs
        ]
        super().__init__(
            f"{root}: {len(pairs)} cell(s) have more than one result; averaging them would count "
            "a cell twice, as if it were two seeds:\n" + "\n".join(lines) + "\nKeep one result "
            "per cell: move or delete the other directory (or rename it to start with '.', "
            "which is skipped), or report on one grid's directory only."
        )
        self.pairs = pairs


def _warn_not_finished(root: Path) -> None:
    running = find_running(root)
    if running:
        logger.warning(
            "%d cell(s) under %s are still running, not in the results yet: %s",
            len(running), root,
            "; ".join(f"{p.name} ({holder.describe()})" for p, holder in running.items()),
        )  # fmt: skip
    unfinished = find_unfinished(root)
    if unfinished:
        logger.warning(
            "%d unfinished cell(s) under %s are not in the results: %s",
            len(unfinished), root, ", ".join(p.name for p in unfinished),
        )  # fmt: skip


def _not_done(root: Path) -> list[Path]:
    """Cell directories that hold a ``cell.yaml`` but no complete result."""
    return [
        p.parent
        for p in sorted(root.rglob(CELL_FILE))
        if _visible(p, root) and cell_state(p.parent) != "done"
    ]


def _holder(cell_dir: Path) -> LockHolder | None:
    """The live process running ``cell_dir`` (its grid's lock), None when none is."""
    return lock_holder(cell_dir.parent, cell_dir.name)


def find_running(runs_dir: str | Path) -> dict[Path, LockHolder]:
    """Cell directories without a complete result whose lock a live process holds, with that
    process (pid, host, since when)."""
    running = {}
    for cell_dir in _not_done(Path(runs_dir)):
        holder = _holder(cell_dir)
        if holder is not None:
            running[cell_dir] = holder
    return running


def find_unfinished(runs_dir: str | Path) -> list[Path]:
    """Cell directories without a complete result that no live process is running: stopped
    runs, which a rerun of their grid restarts (:func:`find_running` lists the others)."""
    return [p for p in _not_done(Path(runs_dir)) if _holder(p) is None]
