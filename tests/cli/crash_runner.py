"""A cell runner for the crash-safety tests: logs ``<hash> <pid>`` to ``$DECE_TEST_CELL_LOG``
(one ``O_APPEND`` write per call, so concurrent workers never interleave), then runs the fake
runner. Spawned workers import it by name (the tests put this directory on ``PYTHONPATH``).

With ``$DECE_TEST_HOLD_FROM=N`` and ``$DECE_TEST_GATE=PATH``, the calls logged N-th and later
(counting from 0, in the log's order) stop mid-cell: they write the first epoch's row and wait
for ``PATH`` to appear, then run the cell from its start. A test that kills the run thus reaches a
stable "N cells done, the next ones mid-cell" state instead of racing a timed window, and
opening the gate after the kill makes any orphan that survived it write at once.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from dece._jsonl import write_jsonl
from dece.experiments.fake import fake_history, fake_run_cell
from dece.rundir import RunDir

LOG_ENV = "DECE_TEST_CELL_LOG"
HOLD_ENV = "DECE_TEST_HOLD_FROM"
GATE_ENV = "DECE_TEST_GATE"
SPEC = "crash_runner:logged_fake_run_cell"
GATE_TIMEOUT_S = 900.0  # a held cell that is never released (nor killed) fails, not hangs


def logged_fake_run_cell(cell_config: dict[str, Any], cell_dir: Path) -> dict[str, Any]:
    call = f"{cell_config['hash']} {os.getpid()}"
    fd = os.open(os.environ[LOG_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{call}\n".encode())
    finally:
        os.close(fd)
    hold_from = os.environ.get(HOLD_ENV)
    if hold_from is not None:
        index = Path(os.environ[LOG_ENV]).read_text().splitlines().index(call)
        if index >= int(hold_from):
            _hold_mid_cell(cell_config, Path(cell_dir), Path(os.environ[GATE_ENV]))
            RunDir(cell_dir).metrics.unlink()  # released: the cell runs from its first epoch
    return fake_run_cell(cell_config, cell_dir)


def _hold_mid_cell(cell_config: dict[str, Any], cell_dir: Path, gate: Path) -> None:
    """Writes the first epoch's row, then waits for ``gate`` to exist."""
    write_jsonl(RunDir(cell_dir).metrics, fake_history(cell_config)[:1], append=True)
    deadline = time.monotonic() + GATE_TIMEOUT_S
    while not gate.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{gate} did not appear within {GATE_TIMEOUT_S} s")
        time.sleep(0.02)


def read_calls(path: Path) -> list[tuple[str, int]]:
    """The ``(hash, pid)`` of every call logged so far, in order."""
    if not path.exists():
        return []
    return [(h, int(pid)) for h, pid in (line.split() for line in path.read_text().splitlines())]
