"""Grid worker processes die with the process that started them.

Two mechanisms, because each alone has a gap: ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` (Linux) makes
the kernel kill the worker when its parent dies, and a daemon thread watching ``os.getppid()``
exits the worker when it is re-parented (other POSIX systems, or a parent that died before the
``prctl`` call took effect). Written by hand: neither ``concurrent.futures`` nor
``multiprocessing`` offers it (a pool's workers outlive a ``kill -9`` of the pool's process).
:func:`init_worker` is the whole set-up of a grid worker, this included.

The parent to watch is the pid of the process that started the worker, given by the caller
(or multiprocessing's record of it), never the ``os.getppid()`` found when the set-up runs: a
worker boots for a while (interpreter, imports) before its initializer runs, and a parent killed
in that window has already been replaced by init or a subreaper, which such a worker would then
watch forever while it runs the cells already queued for it.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import multiprocessing
import os
import signal
import threading
import time
from typing import Any

from dece import progress

__all__ = ["die_with_parent", "init_worker"]

logger = logging.getLogger(__name__)
_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int | None = None, poll_s: float = 0.5) -> None:
    """Make the calling process exit when ``parent`` dies (call it first thing in a worker).

    ``parent``: the pid of the process that started this one; default the creator recorded by
    ``multiprocessing`` (``parent_process()``), else ``os.getppid()``. Exits at once when that
    process is no longer the parent (it died before this call).
    """
    if parent is None:
        creator = multiprocessing.parent_process()
        parent = creator.pid if creator is not None and creator.pid else os.getppid()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            logger.debug("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
    except (OSError, AttributeError):  # not Linux: the watchdog alone
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect (or before this call)
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="dece-die-with-parent", daemon=True).start()


def init_worker(threads: int, queue: Any, log_level: int, parent: int) -> None:
    """A grid worker's set-up (``ProcessPoolExecutor`` initializer): die with the parent (the
    runner's pid, ``parent``), ``threads`` torch threads, logging at ``log_level``, progress
    sent to the parent through ``queue`` (None: none)."""
    die_with_parent(parent)
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if log_level >= logging.WARNING:
        with contextlib.suppress(ImportError):
            import transformers

            transformers.utils.logging.set_verbosity_error()
            transformers.utils.logging.disable_progress_bar()
    with contextlib.suppress(ImportError):
        import torch

        torch.set_num_threads(threads)
    if queue is not None:
        progress._SINK.set(progress.QueueSink(queue))
