"""Load finished cells (``result.json`` + ``metrics.jsonl``) from a runs directory into rows."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dece._jsonl import read_jsonl
from dece.experiments.config import display_name
from dece.experiments.runner import CELL_FILE, RESULT_FILE

__all__ = ["ResultRow", "find_unfinished", "load_history", "load_results"]

logger = logging.getLogger(__name__)

_ORDER_KEYS = ("dataset", "attack", "rate", "model", "loss", "seed")


@dataclass
class ResultRow:
    """One finished cell. Scores follow the project scales: BLEU 0-100, the rest in [0, 1]."""

    hash: str
    grid: str
    dataset: str
    attack: str  # display label, e.g. "BadPre"
    trigger: str
    payload: str
    rate: float
    model: str
    method: str  # display label, e.g. "DeCE"
    loss: str
    loss_args: dict[str, Any]
    seed: int
    final: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    order: tuple[int, ...] = ()
    path: Path | None = None

    def metric(self, name: str) -> float | None:
        value = self.final.get(name)
        return None if value is None else float(value)

    def flat(self) -> dict[str, Any]:
        """A flat dict (one CSV row): the cell's axes then its final metrics."""
        out: dict[str, Any] = {
            "hash": self.hash,
            "grid": self.grid,
            "dataset": self.dataset,
            "attack": self.attack,
            "trigger": self.trigger,
            "payload": self.payload,
            "rate": self.rate,
            "model": self.model,
            "method": self.method,
            "loss": self.loss,
            "loss_args": json.dumps(self.loss_args, sort_keys=True),
            "seed": self.seed,
        }
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


def _row_from_result(path: Path) -> ResultRow:
    data = _read_json(path)
    try:
        config = data["config"]
        final = data["final"]
        attack = config["attack"]
        loss = config["loss"]
        labels = config.get("labels") or {}
        order = config.get("order") or {}
        return ResultRow(
            hash=str(data.get("hash", path.parent.name)),
            grid=str(config.get("grid", "")),
            dataset=str(config["dataset"]),
            attack=str(labels.get("attack") or display_name(attack["trigger"])),
            trigger=str(attack["trigger"]),
            payload=str(attack["payload"]),
            rate=float(config["rate"]),
            model=str(config["model"]),
            method=str(labels.get("method") or display_name(loss["name"])),
            loss=str(loss["name"]),
            loss_args=dict(loss.get("args") or {}),
            seed=int(config["seed"]),
            final=dict(final),
            history=load_history(path.parent / "metrics.jsonl"),
            order=tuple(int(order.get(k, 0)) for k in _ORDER_KEYS),
            path=path.parent,
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path}: missing or malformed field {exc}") from None


def load_results(runs_dir: str | Path) -> list[ResultRow]:
    """Every finished cell under ``runs_dir`` (searched recursively; hidden dirs skipped),
    in grid order. Unfinished cells are not rows; :func:`find_unfinished` lists them."""
    root = Path(runs_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"runs directory {str(root)!r} does not exist")
    rows = [_row_from_result(p) for p in sorted(root.rglob(RESULT_FILE)) if _visible(p, root)]
    unfinished = find_unfinished(root)
    if unfinished:
        logger.warning(
            "%d unfinished cell(s) under %s are not in the results: %s",
            len(unfinished), root, ", ".join(p.name for p in unfinished),
        )  # fmt: skip
    rows.sort(key=lambda r: (r.grid, r.order, r.hash))
    return rows


def find_unfinished(runs_dir: str | Path) -> list[Path]:
    """Cell directories that hold a ``cell.yaml`` but no ``result.json``."""
    root = Path(runs_dir)
    return [
        p.parent
        for p in sorted(root.rglob(CELL_FILE))
        if _visible(p, root) and not (p.parent / RESULT_FILE).exists()
    ]
