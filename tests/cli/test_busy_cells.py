"""Busy cells are named (issue 21, item 5): a cell of this run's shard that another live process
holds is reported with that process (cell, pid, host, since when); the run exits 1, or waits
with ``--wait``; ``dece report`` lists it as running, not unfinished. The flock is the truth:
a dead holder's leftover sidecar does not make a cell look running.

The holder is a real second process (``hold_cell_lock.py``) taking the lock through the
library's ``cell_lock``, so the oracle for pid is its ``Popen.pid`` and for "since" the window
in which it started.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from test_run_cli import FAKE, _grid

from dece.cli import main
from dece.experiments import expand_grid, find_unfinished, load_grid_config, load_results
from dece.experiments.demo import demo_config
from dece.experiments.grid import Cell
from dece.experiments.markdown import md_unpadded
from dece.experiments.results import find_running
from dece.experiments.store import LockHolder, holder_path, lock_holder, lock_path

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="flock + /proc")

HOLDER_SCRIPT = Path(__file__).resolve().parent / "hold_cell_lock.py"
HOST = socket.gethostname()


def _plant_partial_cell(out: Path, cell: Cell) -> None:
    """What a live run of ``cell`` has written after its first epoch."""
    (out / cell.hash).mkdir(parents=True)
    (out / cell.hash / "cell.yaml").write_text(yaml.safe_dump(cell.to_config(), sort_keys=False))
    (out / cell.hash / "metrics.jsonl").write_text('{"epoch": 1}\n')


@contextlib.contextmanager
def _holder(out: Path, h: str) -> Iterator[tuple[subprocess.Popen, LockHolder]]:
    """A second process holding cell ``h``'s lock (until the block ends or it is killed), and
    the holder its sidecar records, checked against the process's pid and start window."""
    started = dt.datetime.now(dt.UTC).replace(microsecond=0)
    proc = subprocess.Popen(
        [sys.executable, str(HOLDER_SCRIPT), str(out), h],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout.readline() == "held\n", proc.communicate()
        record = json.loads(holder_path(out, h).read_text())
        since = dt.datetime.fromisoformat(record["since"])
        assert record["pid"] == proc.pid and record["host"] == HOST
        assert started <= since <= dt.datetime.now(dt.UTC)
        yield proc, LockHolder(proc.pid, HOST, record["since"])
    finally:
        if proc.poll() is None:
            proc.stdin.close()  # releases the lock
            proc.wait(timeout=30)


def _wait_for(predicate, what: str, within_s: float = 60.0) -> None:
    deadline = time.monotonic() + within_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _messages(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in list(caplog.records) if text in r.getMessage()]


def test_run_names_the_live_holder_and_exits_1_report_lists_it_running(tmp_path, capsys, caplog):
    config_path = _grid(tmp_path, seeds=[1])
    cells = expand_grid(load_grid_config(config_path))
    out, held = tmp_path / "runs", cells[1]
    others = sorted(c.hash for c in cells if c != held)
    _plant_partial_cell(out, held)
    with _holder(out, held.hash) as (_, holder):
        described = f"pid {holder.pid} on {HOST} since {holder.since}"
        assert main(["run", str(config_path), "-o", str(out), "--no-progress"]) == 1
        captured = capsys.readouterr()
        assert "3 run, 0 already done, 0 restarted, 1 busy, 0 failed" in captured.out
        assert f"busy {held.hash}: run by {described}; left to it" in captured.out
        busy_line = f"cell {held.hash} ({out / held.hash}) is being run by another live process"
        assert f"{busy_line}: {described}" in captured.err
        assert "--wait" in captured.err
        assert (out / held.hash / "metrics.jsonl").read_text() == '{"epoch": 1}\n'  # untouched

        assert main(["run", str(config_path), "-o", str(out), "--list"]) == 0
        states = {line.split()[0]: line.split()[1] for line in capsys.readouterr().out.splitlines()}
        assert states == {**dict.fromkeys(others, "done"), held.hash: "running"}

        caplog.clear()
        assert main(["report", str(out), "--no-plots"]) == 0
        assert "(3 finished cells, 1 still running)" in capsys.readouterr().err
        (running,) = _messages(caplog, "still running")
        assert f"{held.hash} ({described})" in running
        assert not _messages(caplog, "unfinished")
        assert find_running(out) == {out / held.hash: holder}
        assert find_unfinished(out) == []
        assert sorted(r.hash for r in load_results(out)) == others


def test_run_with_wait_runs_the_cell_once_its_holder_releases_it(tmp_path, capsys, caplog):
    config_path = _grid(tmp_path, seeds=[1])
    cells = expand_grid(load_grid_config(config_path))
    out, held = tmp_path / "runs", cells[1]
    _plant_partial_cell(out, held)
    rc: list[int] = []
    with _holder(out, held.hash) as (proc, holder):
        args = ["run", str(config_path), "-o", str(out), "--no-progress", "--wait"]
        waiting = threading.Thread(target=lambda: rc.append(main(args)))
        waiting.start()
        _wait_for(lambda: _messages(caplog, "waiting for it"), "the run to wait")
        (message,) = _messages(caplog, "waiting for it")
        assert held.hash in message and f"pid {proc.pid} on {HOST} since {holder.since}" in message
        time.sleep(0.5)
        assert waiting.is_alive() and not (out / held.hash / "result.json").exists()
    waiting.join(timeout=60)  # the holder exited without finishing the cell: run here
    assert rc == [0]
    assert "4 run, 0 already done, 1 restarted, 0 busy, 0 failed" in capsys.readouterr().out
    assert sorted(p.parent.name for p in out.glob("*/result.json")) == sorted(c.hash for c in cells)
    rows = (out / held.hash / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [1, 2, 3]
    assert not holder_path(out, held.hash).exists()  # released cleanly: no record left


def test_a_dead_holders_sidecar_does_not_make_a_cell_running(tmp_path, capsys):
    config_path = _grid(tmp_path, seeds=[1])
    cells = expand_grid(load_grid_config(config_path))
    out, held = tmp_path / "runs", cells[1]
    _plant_partial_cell(out, held)
    with _holder(out, held.hash) as (proc, _):
        os.kill(proc.pid, signal.SIGKILL)  # a crash: the kernel drops the flock
        proc.wait()
    assert holder_path(out, held.hash).is_file()  # the stale record stays behind
    assert lock_holder(out, held.hash) is None
    assert find_running(out) == {} and find_unfinished(out) == [out / held.hash]
    assert main(["run", str(config_path), "-o", str(out), "--no-progress"]) == 0
    assert "4 run, 0 already done, 1 restarted, 0 busy, 0 failed" in capsys.readouterr().out
    assert sorted(p.parent.name for p in out.glob("*/result.json")) == sorted(c.hash for c in cells)


def test_a_fresh_holder_is_not_described_by_its_dead_predecessors_record(tmp_path):
    """Between taking the flock and writing its record, a new holder leaves the old record of a
    dead process in place: it is not reported as the holder."""
    out, h = tmp_path / "runs", "abc123"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer exists
    lock_path(out, h).parent.mkdir(parents=True)
    stale = {"pid": dead.pid, "host": HOST, "since": "2020-01-01T00:00:00+00:00"}
    holder_path(out, h).write_text(json.dumps(stale))
    with open(lock_path(out, h), "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # the new holder, not yet recorded
        assert lock_holder(out, h) == LockHolder(pid=None)
        fresh = {"pid": os.getpid(), "host": HOST, "since": "2030-01-01T00:00:00+00:00"}
        holder_path(out, h).write_text(json.dumps(fresh))
        assert lock_holder(out, h) == LockHolder(os.getpid(), HOST, fresh["since"])
    assert lock_holder(out, h) is None  # released: the record no longer counts


def test_demo_names_a_busy_run_or_waits_for_it(tmp_path, capsys, caplog):
    out = tmp_path / "demo"
    held = expand_grid(demo_config(quick=True))[0]
    args = ["demo", "--quick", "-o", str(out), "--runner", FAKE, "--no-progress", "-j", "1"]
    with _holder(out / "cells", held.hash) as (proc, holder):
        with pytest.raises(SystemExit) as info:
            main(args)
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert (
            f"cell {held.hash}" in err and f"pid {proc.pid} on {HOST} since {holder.since}" in err
        )
        assert not (out / "report.md").exists()

        rc: list[int] = []
        waiting = threading.Thread(target=lambda: rc.append(main([*args, "--wait"])))
        waiting.start()
        _wait_for(lambda: _messages(caplog, "waiting for it"), "the demo to wait")
        assert waiting.is_alive()
    waiting.join(timeout=60)
    assert rc == [0]
    assert "| CE | 50.00 | 25.00 | 55.00 |" in md_unpadded((out / "report.md").read_text())
