"""A cell runner for the crash-safety tests: logs ``<hash> <pid>`` to ``$DECE_TEST_CELL_LOG``
(one ``O_APPEND`` write per call, so concurrent workers never interleave), then runs the fake
runner. Spawned workers import it by name (the tests put this directory on ``PYTHONPATH``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dece.experiments.fake import fake_run_cell

LOG_ENV = "DECE_TEST_CELL_LOG"
SPEC = "crash_runner:logged_fake_run_cell"


def logged_fake_run_cell(cell_config: dict[str, Any], cell_dir: Path) -> dict[str, Any]:
    fd = os.open(os.environ[LOG_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{cell_config['hash']} {os.getpid()}\n".encode())
    finally:
        os.close(fd)
    return fake_run_cell(cell_config, cell_dir)


def read_calls(path: Path) -> list[tuple[str, int]]:
    """The ``(hash, pid)`` of every call logged so far, in order."""
    if not path.exists():
        return []
    return [(h, int(pid)) for h, pid in (line.split() for line in path.read_text().splitlines())]
