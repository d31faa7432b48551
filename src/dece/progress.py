"""One progress display for long work: pretraining, training epochs, decoding, grid cells.

Library code reports progress through :func:`task`::

    with progress.task("train epoch 1/3", total=steps, unit="step") as advance:
        for batch in batches:
            ...
            advance()          # or advance(n)

and stays silent unless a *sink* is active: :func:`use` installs one for the current context
(a ``contextvars`` variable, so nothing global is patched). :class:`TqdmSink` draws one
``tqdm`` bar per stage (stage name, done/total, rate and ETA); the grid runner gives each worker
process a :class:`QueueSink` whose events the parent draws as one line per worker under the grid
bar (:class:`QueueRenderer`). ``dece`` commands turn the display on; ``--no-progress`` turns it
off.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import os
import queue as queue_module
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TextIO

from tqdm.auto import tqdm

__all__ = [
    "ProgressSink",
    "QueueRenderer",
    "QueueSink",
    "TqdmSink",
    "active",
    "task",
    "use",
]


class ProgressSink(Protocol):
    """Receives the events of :func:`task` (one ``key`` per open stage)."""

    def start(self, key: int, stage: str, total: int | None, unit: str) -> None: ...

    def update(self, key: int, n: int) -> None: ...

    def close(self, key: int) -> None: ...


_SINK: contextvars.ContextVar[ProgressSink | None] = contextvars.ContextVar(
    "dece_progress_sink", default=None
)
_KEYS = itertools.count()


def active() -> bool:
    """Whether a sink is installed in this context."""
    return _SINK.get() is not None


@contextlib.contextmanager
def use(sink: ProgressSink | None) -> Iterator[None]:
    """Install ``sink`` (None: silence) for the code inside the ``with`` block."""
    token = _SINK.set(sink)
    try:
        yield
    finally:
        _SINK.reset(token)


@contextlib.contextmanager
def task(stage: str, total: int | None = None, unit: str = "it") -> Iterator[Callable[..., None]]:
    """Report one stage; yields ``advance(n=1)``. A no-op when no sink is installed."""
    sink = _SINK.get()
    if sink is None:
        yield lambda n=1: None
        return
    key = next(_KEYS)
    sink.start(key, stage, total, unit)
    try:
        yield lambda n=1: sink.update(key, int(n))
    finally:
        sink.close(key)


class TqdmSink:
    """Draws each stage as a ``tqdm`` bar on ``stream`` (default stderr), below ``position``."""

    def __init__(self, stream: TextIO | None = None, *, position: int = 0) -> None:
        self.stream = stream
        self.position = position
        self._bars: dict[int, Any] = {}

    def start(self, key: int, stage: str, total: int | None, unit: str) -> None:
        self._bars[key] = tqdm(
            total=total, desc=stage, unit=unit, file=self.stream or sys.stderr, leave=False,
            position=self.position + len(self._bars), dynamic_ncols=True, mininterval=0.5,
        )  # fmt: skip

    def update(self, key: int, n: int) -> None:
        bar = self._bars.get(key)
        if bar is not None:
            bar.update(n)

    def close(self, key: int) -> None:
        bar = self._bars.pop(key, None)
        if bar is not None:
            bar.refresh()  # the final count is always drawn once, however fast the stage ran
            bar.close()


class QueueSink:
    """Sends the events to a ``multiprocessing`` queue (inside a grid worker process)."""

    def __init__(self, queue: Any, label: str = "") -> None:
        self.queue = queue
        self.label = label

    def _put(self, *event: Any) -> None:
        with contextlib.suppress(Exception):  # a dead display never breaks the work
            self.queue.put((os.getpid(), *event))

    def start(self, key: int, stage: str, total: int | None, unit: str) -> None:
        self._put("start", key, f"{self.label}{stage}", total, unit)

    def update(self, key: int, n: int) -> None:
        self._put("update", key, n)

    def close(self, key: int) -> None:
        self._put("close", key)


class QueueRenderer:
    """Draws the events of the workers' :class:`QueueSink` objects: one line per worker process
    (its current stage), below the caller's own bar. Runs a daemon thread until :meth:`stop`."""

    def __init__(self, queue: Any, stream: TextIO | None = None, *, first_position: int = 1):
        self.queue = queue
        self.stream = stream
        self.first_position = first_position
        self._slots: dict[int, int] = {}  # worker pid -> line
        self._bars: dict[tuple[int, int], Any] = {}
        self._thread = threading.Thread(target=self._loop, name="dece-progress", daemon=True)
        self._stop = threading.Event()

    def __enter__(self) -> QueueRenderer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                event = self.queue.get(timeout=0.2)
            except (queue_module.Empty, EOFError, OSError):
                continue
            self._handle(*event)

    def _handle(self, pid: int, kind: str, key: int, *args: Any) -> None:
        slot = self._slots.setdefault(pid, self.first_position + len(self._slots))
        if kind == "start":
            stage, total, unit = args
            old = self._bars.pop((pid, key), None)
            if old is not None:
                old.close()
            self._bars[(pid, key)] = tqdm(
                total=total, desc=stage, unit=unit, file=self.stream or sys.stderr, leave=False,
                position=slot, dynamic_ncols=True, mininterval=0.5,
            )  # fmt: skip
        elif kind == "update" and (pid, key) in self._bars:
            self._bars[(pid, key)].update(int(args[0]))
        elif kind == "close":
            bar = self._bars.pop((pid, key), None)
            if bar is not None:
                bar.refresh()
                bar.close()
