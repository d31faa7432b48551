"""Crash safety of the parallel grid (issue 14, item 5), checked from outside the runner.

- ``kill -9`` of the main ``dece run -j 2`` process (only that pid, not its process group):
  every process it started is gone within seconds, nothing is written after the kill, and a
  resumed run runs each unfinished cell exactly once (a call log kept by the cell runner) with
  every epoch in its history, leaving finished results byte for byte as they were;
- the same kill while the workers are still starting (before their set-up ran);
- a cell locked by another live process is reported ``busy`` (with the holder its sidecar
  records) and left alone;
- a ``result.json`` that disagrees with ``metrics.jsonl`` is unfinished and is rerun.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from crash_runner import GATE_ENV, HOLD_ENV, LOG_ENV, SPEC, read_calls
from test_run_cli import _dece, _grid, _state

from dece.cli import main
from dece.experiments import expand_grid, find_unfinished, load_grid_config, load_results, run_grid
from dece.experiments.fake import fake_history
from dece.experiments.runner import LOCK_DIR, cell_state
from dece.experiments.store import LockHolder, holder_path

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

HERE = Path(__file__).resolve().parent
GONE_WITHIN_S = 5.0  # a worker that is running a cell
# A worker killed while it boots can only act once its interpreter has imported the pool's
# initializer (``dece`` imports torch: ~2 s on a quiet machine, 10-15 s on a loaded one).
BOOTING_GONE_WITHIN_S = 90.0


def _env(log: Path, epoch_s: str | None, hold: tuple[int, Path] | None = None) -> dict[str, str]:
    """The cell runner's environment; ``hold`` = (N, gate): calls N and later stop mid-cell until
    the gate file appears (:mod:`crash_runner`)."""
    path = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)
    env = {"PYTHONPATH": path, LOG_ENV: str(log), "DECE_FAKE_EPOCH_SECONDS": epoch_s or "0"}
    if hold is not None:
        env.update({HOLD_ENV: str(hold[0]), GATE_ENV: str(hold[1])})
    return env


def _wait_until(
    predicate, proc: subprocess.Popen, what: str, within_s: float = 600.0, poll_s: float = 0.05
) -> None:
    """Bounded poll: ``predicate()`` becomes true while ``proc`` lives, within ``within_s`` (a
    generous bound: a loaded machine takes long to start the workers, which import torch)."""
    deadline = time.monotonic() + within_s
    while not predicate():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"timed out after {within_s} s waiting for {what}"
        time.sleep(poll_s)


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, process group) of ``pid`` from /proc, None when it no longer exists."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text.rsplit(")", 1)[1].split()  # the command name may hold spaces and ")"
    return fields[0], int(fields[1]), int(fields[2])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "?"


def _live_in_group(pgid: int) -> dict[int, str]:
    """Processes of process group ``pgid`` that still run (zombies excluded): pid -> cmdline."""
    live = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            st = _stat(int(entry.name))
            if st is not None and st[2] == pgid and st[0] != "Z":
                live[int(entry.name)] = _cmdline(int(entry.name))
    return live


def _spawned_children(pid: int) -> list[int]:
    """Pool workers (multiprocessing spawn children) of ``pid``, from its threads' children."""
    children = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            children += [int(c) for c in task.read_text().split()]
    return sorted(c for c in children if "spawn_main" in _cmdline(c))


def _wait_all_gone(pgid: int, within_s: float = GONE_WITHIN_S) -> dict[int, str]:
    """Waits up to ``within_s`` for the group to empty; returns what is still alive."""
    deadline = time.monotonic() + within_s
    while (live := _live_in_group(pgid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return live


def _snapshot(out: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(out)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in out.rglob("*")
        if p.is_file() and LOCK_DIR not in p.parts
    }


def _kill_main_only(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)  # the main process alone, as a crash or OOM kill would
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


def _resume_and_check(config_path: Path, out: Path, log: Path, env: dict[str, str]) -> None:
    """Resume with -j 2; each unfinished cell runs exactly once, finished ones not at all."""
    expected = {c.hash for c in expand_grid(load_grid_config(config_path))}
    done, _ = _state(out)
    before = {h: (out / h / "result.json").read_bytes() for h in done}
    n_calls = len(read_calls(log))
    rerun = _dece(["run", str(config_path), "-o", str(out), "-j", "2", "--no-progress",
                   "--runner", SPEC], env=env)  # fmt: skip
    stdout, stderr = rerun.communicate(timeout=600)  # generous: -j 2 imports torch twice
    assert rerun.returncode == 0, stderr
    assert f"{len(expected) - len(done)} run, {len(done)} already done" in stdout
    resumed = [h for h, _ in read_calls(log)[n_calls:]]
    assert sorted(resumed) == sorted(expected - done)  # every unfinished cell, exactly once
    results = sorted(out.glob("*/result.json"))
    assert {p.parent.name for p in results} == expected
    assert len(list(out.rglob("result.json"))) == len(expected)
    for h, blob in before.items():
        assert (out / h / "result.json").read_bytes() == blob  # finished results untouched
    for p in results:
        cfg = json.loads(p.read_text())["config"]
        rows = [json.loads(r) for r in (p.parent / "metrics.jsonl").read_text().splitlines()]
        assert rows == fake_history(cfg)  # epochs 1, 2, 3 once each: no row of a killed run
        assert cell_state(p.parent) == "done"
    assert not list(out.rglob("*.tmp"))


def test_kill_9_of_parallel_runner_mid_run_kills_workers_and_resumes_cleanly(tmp_path):
    config_path = _grid(tmp_path)
    out, log = tmp_path / "runs", tmp_path / "calls.log"
    expected = {c.hash for c in expand_grid(load_grid_config(config_path))}
    assert len(expected) == 8
    gate = tmp_path / "gate"  # the first two calls finish; the next ones stop mid-cell
    proc = _dece(["run", str(config_path), "-o", str(out), "-j", "2", "--no-progress",
                  "--runner", SPEC], env=_env(log, None, hold=(2, gate)))  # fmt: skip
    try:  # a stable state, not a window: 2 cells finished, both workers held mid-cell
        _wait_until(lambda: out.exists() and tuple(map(len, _state(out))) == (2, 2), proc,
                    "two cells finished and two mid-run")  # fmt: skip
        done, partial = _state(out)
        workers = _spawned_children(proc.pid)
        running = {pid for h, pid in read_calls(log) if h in partial}
    finally:
        _kill_main_only(proc)
    assert len(workers) == 2 and running == set(workers), (workers, running)

    # (a) no process of the run survives the main one (the pool's workers, its resource
    # tracker): checked from outside, by process group.
    alive = _wait_all_gone(proc.pid)
    assert not alive, f"still running {GONE_WITHIN_S}s after kill -9 of the runner: {alive}"
    # ... and nothing writes into the grid after the kill: the gate opens, so a live orphan
    # would write its cell's files at once (within a 0.02 s poll) and finish it.
    assert _state(out) == (done, partial) and len(done) < len(expected)
    snapshot = _snapshot(out)
    gate.touch()
    time.sleep(1.5)
    assert _snapshot(out) == snapshot
    assert _state(out) == (done, partial)

    # (b) the resumed run completes every cell exactly once.
    _resume_and_check(config_path, out, log, _env(log, None))


def test_kill_9_while_workers_start_leaves_no_orphan(tmp_path):
    """The kill lands before the workers' set-up (``die_with_parent``) has run: they must not
    adopt their new parent (init) as the one to watch, live on and run the cells queued for
    them. They exit as soon as their set-up runs, before taking any cell."""
    config_path = _grid(tmp_path)
    out, log = tmp_path / "runs", tmp_path / "calls.log"
    proc = _dece(["run", str(config_path), "-o", str(out), "-j", "2", "--no-progress",
                  "--runner", SPEC], env=_env(log, "0.4"))  # fmt: skip
    try:  # kill as soon as a worker exists: its set-up (after importing torch) has not run
        _wait_until(lambda: _spawned_children(proc.pid), proc, "a worker to start", poll_s=0.005)
    finally:
        _kill_main_only(proc)
    alive = _wait_all_gone(proc.pid, BOOTING_GONE_WITHIN_S)
    assert not alive, f"running {BOOTING_GONE_WITHIN_S}s after kill -9 of the runner: {alive}"
    assert read_calls(log) == []  # no cell was started by a worker of the killed run
    assert not [p for p in out.glob("*") if p.is_dir()]  # no cell dir (nor lock) was made
    _resume_and_check(config_path, out, log, _env(log, None))


@pytest.mark.parametrize("workers", [1, 2])
def test_cell_locked_by_a_live_process_is_busy_and_left_alone(tmp_path, workers):
    config_path = _grid(tmp_path, seeds=[1])
    config = load_grid_config(config_path)
    cells = expand_grid(config)
    out, log = tmp_path / "runs", tmp_path / "calls.log"
    held = cells[1].hash
    (out / LOCK_DIR).mkdir(parents=True)
    (out / held).mkdir()  # what the live run has written so far
    (out / held / "metrics.jsonl").write_text('{"epoch": 1}\n')
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": "2024-05-01T12:00:00+00:00",
    }
    holder_path(out, held).write_text(json.dumps(record))  # the live run's sidecar
    os.environ[LOG_ENV] = str(log)
    sys.path.insert(0, str(HERE))
    try:
        with open(out / LOCK_DIR / f"{held}.lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the other, live, run
            summary = run_grid(config, out, cell_runner=SPEC, progress=False, workers=workers)
            assert summary.busy == {held: LockHolder(**record)} and summary.ok
            assert sorted(summary.completed) == sorted(c.hash for c in cells if c.hash != held)
            assert held not in {h for h, _ in read_calls(log)}  # never started here
            assert (out / held / "metrics.jsonl").read_text() == '{"epoch": 1}\n'  # untouched
            assert not (out / held / "result.json").exists()
        # once the other run is gone (its lock released), a resume restarts the cell
        summary = run_grid(config, out, cell_runner=SPEC, progress=False, workers=workers)
        assert summary.completed == [held] and summary.restarted == [held] and not summary.busy
        assert cell_state(out / held) == "done"
    finally:
        os.environ.pop(LOG_ENV, None)
        sys.path.remove(str(HERE))


def test_busy_cells_are_reported_by_the_cli(tmp_path, capsys):
    """A holder that has not recorded itself (no sidecar) is still busy, described as such."""
    config_path = _grid(tmp_path, seeds=[1])
    cells = expand_grid(load_grid_config(config_path))
    out = tmp_path / "runs"
    (out / LOCK_DIR).mkdir(parents=True)
    with open(out / LOCK_DIR / f"{cells[0].hash}.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)  # flock: another open file conflicts
        assert main(["run", str(config_path), "-o", str(out), "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert "3 run, 0 already done, 0 restarted, 1 busy, 0 failed" in captured.out
    unknown = "a process that has not recorded itself yet"
    assert f"busy {cells[0].hash}: run by {unknown}" in captured.out
    assert f"cell {cells[0].hash}" in captured.err and "--wait" in captured.err


@pytest.mark.parametrize(
    ("epochs", "why"),
    [([1, 2], "an epoch missing"), ([1, 2, 2, 3], "an epoch twice"), ([1, 2, 3, 4], "an extra")],
)
def test_result_inconsistent_with_history_is_unfinished_and_rerun(tmp_path, epochs, why):
    config = load_grid_config(_grid(tmp_path, seeds=[1]))
    cells = expand_grid(config)
    out = tmp_path / "runs"
    assert run_grid(config, out, progress=False).ok
    bad = cells[2].hash
    history = out / bad / "metrics.jsonl"
    rows = {r["epoch"]: r for r in map(json.loads, history.read_text().splitlines())}
    rows[4] = {**rows[3], "epoch": 4}
    history.write_text("".join(json.dumps(rows[e]) + "\n" for e in epochs))
    stale = (out / bad / "result.json").read_bytes()

    assert cell_state(out / bad) == "partial", why
    assert bad not in {r.hash for r in load_results(out)}
    assert find_unfinished(out) == [out / bad]
    others = {c.hash: (out / c.hash / "result.json").read_bytes() for c in cells if c.hash != bad}

    summary = run_grid(config, out, progress=False)
    assert summary.restarted == [bad] and summary.completed == [bad]
    assert sorted(summary.skipped) == sorted(others)
    assert [json.loads(r)["epoch"] for r in history.read_text().splitlines()] == [1, 2, 3]
    assert cell_state(out / bad) == "done"
    fresh = json.loads((out / bad / "result.json").read_bytes())
    assert fresh["final"] == json.loads(stale)["final"]  # the same cell, rerun in full
    for h, blob in others.items():
        assert (out / h / "result.json").read_bytes() == blob
