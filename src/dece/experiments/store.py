"""On-disk store of a grid run: one directory per cell, atomic files, per-cell locks.

Layout under the grid's output directory: ``grid.yaml`` (the grid config), ``<cell hash>/``
per cell with ``cell.yaml`` (its identity and labels, written before it runs), whatever the
cell runner writes (``metrics.jsonl``, ...) and finally ``result.json`` (identity + final
metrics), written atomically (temp file + ``os.replace``): the completion marker; and
``.locks/<hash>.lock``, one ``flock`` per cell (the kernel releases it when its holder dies),
with ``.locks/<hash>.holder.json`` beside it while it is held: the holder's pid, host and start
time, so a second run can name who runs a cell. The flock decides whether a cell is running; the
sidecar only describes the holder (a dead holder's leftover sidecar means nothing).

The lock is taken through ``filelock`` (:class:`filelock.FileLock`, ``flock`` on Linux): a
maintained library that handles the descriptor's life, ``EINTR`` and filesystems without
``flock`` (where it falls back to a marker file), instead of hand-written ``fcntl`` calls. One
use stays hand-written, :func:`lock_holder`'s probe: ``filelock`` can only *take* a lock, which
creates the lock file and, held exclusively even for an instant, would make a run starting at
that moment see its cell as busy; the probe takes a shared, non-blocking ``flock`` on a
read-only descriptor instead, so ``dece report`` never writes and two probes never conflict.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import filelock

from dece._jsonl import read_jsonl
from dece.rundir import RunDir

__all__ = [
    "CELL_FILE",
    "GRID_FILE",
    "LOCK_DIR",
    "LockHolder",
    "RESULT_FILE",
    "atomic_write_json",
    "atomic_write_text",
    "cell_lock",
    "cell_state",
    "holder_path",
    "lock_holder",
    "lock_path",
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
    history_path = RunDir(cell_dir).metrics
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
@dataclass(frozen=True)
class LockHolder:
    """Who holds a cell's lock, from its sidecar ``<hash>.holder.json``; ``pid`` None: the
    holder has not recorded itself (yet)."""

    pid: int | None
    host: str = "?"
    since: str = "?"  # ISO 8601, UTC

    def describe(self) -> str:
        if self.pid is None:
            return "a process that has not recorded itself yet"
        return f"pid {self.pid} on {self.host} since {self.since}"


_UNKNOWN_HOLDER = LockHolder(pid=None)
_SIDECAR_WAIT_S = 1.0  # how long a fresh holder may take to record itself
_POLL_S = 0.05  # how often a waiting run retries a busy cell's lock


def lock_path(out: Path, h: str) -> Path:
    """The ``flock`` file of cell ``h`` of the grid under ``out``."""
    return Path(out) / LOCK_DIR / f"{h}.lock"


def holder_path(out: Path, h: str) -> Path:
    """The sidecar describing the holder of :func:`lock_path` (the flock is the truth)."""
    return Path(out) / LOCK_DIR / f"{h}.holder.json"


@contextlib.contextmanager
def cell_lock(out: Path, h: str, *, wait: bool) -> Iterator[LockHolder | None]:
    """Holds the lock of cell ``h`` (:func:`lock_path`) inside the block, recorded in its
    sidecar (:func:`holder_path`: pid, host, start time), and yields None. When another process
    holds it and ``wait`` is False, holds nothing and yields that process (a
    :class:`LockHolder`); ``wait`` True blocks until it is released."""
    path = lock_path(out, h)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(path)
    holder = _try_lock(lock, out, h)
    if holder is not None and not wait:
        yield holder
        return
    if holder is not None:
        logger.info("cell %s is run by %s; waiting for it", h, holder.describe())
        lock.acquire(poll_interval=_POLL_S)
    try:
        _record_holder(out, h)
        yield None
    finally:
        holder_path(out, h).unlink(missing_ok=True)
        lock.release()


def _try_lock(lock: filelock.BaseFileLock, out: Path, h: str, tries: int = 20) -> LockHolder | None:
    """Takes the lock without blocking (None) or returns its holder. A holder that is gone by
    the time it is looked up (or a concurrent :func:`lock_holder` probe) means another try."""
    for _ in range(tries):
        try:
            lock.acquire(blocking=False)
            return None
        except filelock.Timeout:
            holder = lock_holder(out, h)
        if holder is not None:
            return holder
        time.sleep(0.01)
    return _UNKNOWN_HOLDER


def _record_holder(out: Path, h: str) -> None:
    since = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    record = {"pid": os.getpid(), "host": socket.gethostname(), "since": since}
    atomic_write_json(holder_path(out, h), record)


def lock_holder(out: Path, h: str) -> LockHolder | None:
    """The live process holding cell ``h``'s lock, None when no process holds it.

    The ``flock`` decides (the kernel drops it when its holder dies, so a dead holder's stale
    sidecar never counts); the sidecar only describes the holder. Never creates a file: a shared,
    non-blocking ``flock`` on a read-only descriptor (hand-written: ``filelock`` has no read-only
    probe, see the module docstring).
    """
    path = lock_path(out, h)
    try:
        fh = open(path)  # noqa: SIM115 - closed below; read-only, so a report never writes
    except FileNotFoundError:
        return None
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(out, h)
        fcntl.flock(fh, fcntl.LOCK_UN)
        return None


def _read_holder(out: Path, h: str) -> LockHolder:
    """The sidecar's holder; a missing record, or one left by a dead process on this host while
    the new holder writes its own, is waited for briefly, then reported as unknown."""
    deadline = time.monotonic() + _SIDECAR_WAIT_S
    while True:
        holder = _parse_holder(holder_path(out, h))
        if holder is not None and _plausible(holder):
            return holder
        if time.monotonic() >= deadline:
            return _UNKNOWN_HOLDER
        time.sleep(0.02)


def _parse_holder(path: Path) -> LockHolder | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return LockHolder(pid=int(data["pid"]), host=str(data["host"]), since=str(data["since"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _plausible(holder: LockHolder) -> bool:
    """False for a record of a process on this host that no longer exists."""
    if holder.pid is None or holder.host != socket.gethostname():
        return True
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True
