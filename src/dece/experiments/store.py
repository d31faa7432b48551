"""On-disk store of a grid run: one directory per cell, atomic files, per-cell locks.

Layout under the grid's output directory: ``grid.yaml`` (the grid config), ``<cell hash>/``
per cell with ``cell.yaml`` (its identity and labels, written before it runs), whatever the
cell runner writes (``metrics.jsonl``, ...) and finally ``result.json`` (identity + final
metrics), written atomically (temp file + ``os.replace``): the completion marker; and
``.locks/<hash>.lock``, one ``flock`` per cell (the kernel releases it when its holder dies).

A cell is *complete* only when its ``result.json`` is readable and consistent with its history
(``metrics.jsonl`` holds every epoch the result reports); anything else is an unfinished run.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import logging
import math
import os
import socket
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from dece._jsonl import read_jsonl

__all__ = [
    "CELL_FILE",
    "GRID_FILE",
    "LOCK_DIR",
    "RESULT_FILE",
    "atomic_write_json",
    "atomic_write_text",
    "cell_lock",
    "cell_state",
    "read_result",
    "write_result",
]

logger = logging.getLogger(__name__)

RESULT_FILE = "result.json"
CELL_FILE = "cell.yaml"  # the cell's identity + labels, written before it runs
GRID_FILE = "grid.yaml"
LOCK_DIR = ".locks"


# --------------------------------------------------------------------------- atomic writes
def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` so readers see the old file or the whole new one, never half."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    raise TypeError(f"result value of type {type(obj).__name__} is not JSON-serialisable")


# --------------------------------------------------------------------------- cell results
def write_result(
    cell_dir: Path, h: str, cell_config: Mapping[str, Any], final: Mapping[str, Any], started: float
) -> None:
    """Write the completion marker ``<cell_dir>/result.json`` (``started``: ``time.time()``
    when the cell began)."""
    result = {
        "hash": h, "config": cell_config, "final": dict(final),
        "elapsed_s": round(time.time() - started, 3),
        "finished_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
    }  # fmt: skip
    atomic_write_json(cell_dir / RESULT_FILE, result)


def read_result(cell_dir: Path) -> dict[str, Any] | None:
    """The parsed ``result.json`` of ``cell_dir``; None when missing, unreadable or lacking
    a ``final`` dict."""
    try:
        data = json.loads((cell_dir / RESULT_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("final"), dict) else None


def cell_state(cell_dir: str | Path) -> str:
    """``"done"`` (a consistent result), ``"partial"`` (a directory without one) or ``"todo"``.

    Consistent: ``result.json`` parses and, when ``metrics.jsonl`` exists and the result reports
    ``epochs``, the history holds exactly epochs ``1 .. ceil(epochs)``.
    """
    cell_dir = Path(cell_dir)
    if not cell_dir.exists():
        return "todo"
    result = read_result(cell_dir)
    if result is None:
        return "partial"
    epochs = result["final"].get("epochs")
    history_path = cell_dir / "metrics.jsonl"
    if epochs is not None and history_path.exists():
        try:
            seen = sorted(int(r["epoch"]) for r in read_jsonl(history_path))
        except (ValueError, KeyError, TypeError):
            return "partial"
        if seen != list(range(1, math.ceil(float(epochs) - 1e-6) + 1)):
            logger.warning("cell %s: result.json reports %s epochs but metrics.jsonl holds %s",
                           cell_dir.name, epochs, seen)  # fmt: skip
            return "partial"
    return "done"


# --------------------------------------------------------------------------- locks
@contextlib.contextmanager
def cell_lock(out: Path, h: str, *, wait: bool) -> Iterator[bool]:
    """Holds ``<out>/.locks/<h>.lock`` inside the block; yields False when another process
    holds it and ``wait`` is False."""
    lock_dir = out / LOCK_DIR
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / f"{h}.lock", "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
