"""One progress display for long work: pretraining, training epochs, decoding, grid cells.

Library code reports progress through :func:`task`::

    with progress.task("train epoch 1/3", total=steps, unit="step") as advance:
        for batch in batches:
            ...
            advance()          # or advance(n)

and stays silent unless a *sink* is active: :func:`use` installs one for the current context
(a ``contextvars`` variable, so nothing global is patched). :class:`TqdmSink` draws each stage
with :func:`bar`; the grid runner gives each worker process a :class:`QueueSink` whose events the
parent draws as one line per worker under the grid bar (:class:`QueueRenderer`). ``dece``
commands turn the display on; ``--no-progress`` turns it off.

What :func:`bar` draws depends on the stream it writes to. On a terminal: a live ``tqdm`` bar
(stage name, done/total, rate and ETA). Anywhere else (a file, a pipe: CI, ``nohup``, SLURM
logs): plain lines (:class:`LineBar`), never a carriage return or a cursor escape::

    train epoch 1/3: start 0/120 step
    train epoch 1/3: 57/120 step, elapsed 30.2s, ETA 33.4s
    train epoch 1/3: done 120/120 step in 01:03
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import os
import queue as queue_module
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TextIO

from tqdm.auto import tqdm

__all__ = [
    "DEFAULT_INTERVAL",
    "LineBar",
    "ProgressSink",
    "QueueRenderer",
    "QueueSink",
    "TqdmSink",
    "active",
    "bar",
    "is_terminal",
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


DEFAULT_INTERVAL = 30.0  # seconds between two progress lines of a stage, off a terminal


def is_terminal(stream: Any) -> bool:
    """Whether ``stream`` is an interactive terminal (a closed or odd stream is not)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def bar(
    stage: str,
    total: int | None = None,
    unit: str = "it",
    *,
    stream: TextIO | None = None,
    position: int = 0,
    leave: bool = False,
    disable: bool = False,
    interval: float = DEFAULT_INTERVAL,
    clock: Callable[[], float] = time.monotonic,
) -> Any:
    """One stage's display on ``stream`` (default stderr), with ``update(n)``,
    ``set_postfix_str(s)``, ``refresh()`` and ``close()``: a live ``tqdm`` bar on line
    ``position`` of a terminal (kept after ``close`` if ``leave``), else a :class:`LineBar`
    (``interval`` seconds between its progress lines, timed by ``clock``). ``disable``: draws
    nothing."""
    stream = stream or sys.stderr
    if disable:
        return tqdm(total=total, disable=True)
    if not is_terminal(stream):
        return LineBar(stage, total, unit, stream=stream, interval=interval, clock=clock)
    return tqdm(
        total=total, desc=stage, unit=unit, file=stream, leave=leave, position=position,
        dynamic_ncols=True, mininterval=0.5,
    )  # fmt: skip


class LineBar:
    """A stage as a few plain lines, for a stream that is not a terminal: one when it starts,
    one per ``interval`` seconds while it advances and one per new postfix (count, elapsed time,
    ETA when the total is known, postfix), one when it ends (count, elapsed time). Each line is
    written and flushed whole."""

    def __init__(
        self,
        stage: str,
        total: int | None = None,
        unit: str = "it",
        *,
        stream: TextIO,
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval < 0:
            raise ValueError(f"interval must be >= 0 seconds, got {interval}")
        self.stage, self.total, self.unit = stage, total, unit
        self.stream, self.interval, self.clock = stream, interval, clock
        self.n = 0
        self.postfix = ""
        self._started = self._last_line = clock()
        self._closed = False
        self._write(f"start {self._count()}" if total is not None else "start")

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self.clock()
        if now - self._last_line >= self.interval:
            self._progress_line(now)

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        """Shown after the count; a new one (the grid's next cell) is written at once."""
        if s != self.postfix:
            self.postfix = s
            self._progress_line(self.clock())

    def refresh(self) -> None:
        pass  # lines are written as the stage goes; nothing is redrawn

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        count = "" if self.total is None and self.n == 0 else f" {self._count()}"
        self._write(f"done{count} in {_duration(self.clock() - self._started)}")

    def _progress_line(self, now: float) -> None:
        self._last_line = now
        elapsed = now - self._started
        line = f"{self._count()}, elapsed {_duration(elapsed)}"
        if self.total is not None and 0 < self.n <= self.total:
            line += f", ETA {_duration(elapsed * (self.total - self.n) / self.n)}"
        self._write(line + (f" ({self.postfix})" if self.postfix else ""))

    def _count(self) -> str:
        done = f"{self.n}/{self.total}" if self.total is not None else f"{self.n}"
        return f"{done} {self.unit}"

    def _write(self, text: str) -> None:
        with contextlib.suppress(Exception):  # a dead display never breaks the work
            self.stream.write(f"{self.stage}: {text}\n")
            self.stream.flush()


def _duration(seconds: float) -> str:
    """``12.3s`` under a minute, else tqdm's ``01:02`` / ``1:01:40``."""
    return f"{seconds:.1f}s" if seconds < 60 else tqdm.format_interval(seconds)


class TqdmSink:
    """Draws each stage with :func:`bar` on ``stream`` (default stderr): a ``tqdm`` bar below
    ``position`` on a terminal, else plain lines (``interval`` seconds apart, timed by ``clock``).
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        position: int = 0,
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.position = position
        self.interval = interval
        self.clock = clock
        self._bars: dict[int, Any] = {}

    def start(self, key: int, stage: str, total: int | None, unit: str) -> None:
        self._bars[key] = bar(
            stage, total, unit, stream=self.stream, position=self.position + len(self._bars),
            interval=self.interval, clock=self.clock,
        )  # fmt: skip

    def update(self, key: int, n: int) -> None:
        drawn = self._bars.get(key)
        if drawn is not None:
            drawn.update(n)

    def close(self, key: int) -> None:
        drawn = self._bars.pop(key, None)
        if drawn is not None:
            drawn.refresh()  # the final count is always drawn once, however fast the stage ran
            drawn.close()


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
    """Draws the events of the workers' :class:`QueueSink` objects with :func:`bar`: on a
    terminal one line per worker process (its current stage) below the caller's own bar; else
    plain lines, each stage named after its worker (``[worker 1] train epoch 1/3: ...``). Runs a
    daemon thread until :meth:`stop`, which first draws the events still queued."""

    def __init__(
        self,
        queue: Any,
        stream: TextIO | None = None,
        *,
        first_position: int = 1,
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.queue = queue
        self.stream = stream
        self.first_position = first_position
        self.interval = interval
        self.clock = clock
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
        for drawn in self._bars.values():
            drawn.close()
        self._bars.clear()

    def _loop(self) -> None:
        while True:
            try:
                event = self.queue.get(timeout=0.2)
            except (queue_module.Empty, EOFError, OSError):
                if self._stop.is_set():  # stopped and nothing left to draw
                    return
                continue
            self._handle(*event)

    def _handle(self, pid: int, kind: str, key: int, *args: Any) -> None:
        slot = self._slots.setdefault(pid, self.first_position + len(self._slots))
        if kind == "start":
            stage, total, unit = args
            old = self._bars.pop((pid, key), None)
            if old is not None:
                old.close()
            if not is_terminal(self.stream or sys.stderr):
                stage = f"[worker {slot - self.first_position + 1}] {stage}"
            self._bars[(pid, key)] = bar(
                stage, total, unit, stream=self.stream, position=slot, interval=self.interval,
                clock=self.clock,
            )  # fmt: skip
        elif kind == "update" and (pid, key) in self._bars:
            self._bars[(pid, key)].update(int(args[0]))
        elif kind == "close":
            drawn = self._bars.pop((pid, key), None)
            if drawn is not None:
                drawn.refresh()
                drawn.close()
