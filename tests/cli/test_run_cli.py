"""``dece run``: a grid killed with SIGKILL mid-run and rerun ends with one result per cell;
shards run from the CLI cover the grid once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from crash_runner import GATE_ENV, HOLD_ENV, LOG_ENV, SPEC

from dece.cli import main
from dece.experiments import expand_grid, load_grid_config

ENTRY = "import sys; from dece.cli import main; sys.exit(main())"
FAKE = "dece.experiments.fake:fake_run_cell"


def _grid(tmp_path: Path, **overrides) -> Path:
    data = {
        "name": "killme",
        "datasets": ["synthetic:64"],
        "attacks": [{"trigger": "badpre"}],
        "rates": [0.0, 0.05],
        "losses": [{"name": "ce"}, {"name": "dece"}],
        "seeds": [1, 2],
        "training": {"num_epochs": 3},
        "runner": FAKE,
    }
    data.update(overrides)
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _dece(args: list[str], env: dict[str, str] | None = None, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", ENTRY, *args],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        **kw,
    )


def _state(out: Path) -> tuple[set[str], set[str]]:
    """(finished cells, cells with a dir, a metrics row and no result.json)."""
    done = {p.parent.name for p in out.glob("*/result.json")}
    partial = {
        p.parent.name
        for p in out.glob("*/metrics.jsonl")
        if p.parent.name not in done and p.read_text().strip()
    }
    return done, partial


def test_kill_9_mid_run_then_rerun_gives_exactly_one_result_per_cell(tmp_path):
    config_path = _grid(tmp_path)
    out = tmp_path / "runs"
    expected = {c.hash for c in expand_grid(load_grid_config(config_path))}
    assert len(expected) == 8

    # the crash tests' runner: the first two cells finish, the third stops mid-cell (a stable
    # state to kill in, not a timed window)
    path = [str(Path(__file__).resolve().parent), os.environ.get("PYTHONPATH", "")]
    env = {"PYTHONPATH": os.pathsep.join(p for p in path if p), LOG_ENV: str(tmp_path / "log"),
           HOLD_ENV: "2", GATE_ENV: str(tmp_path / "gate")}  # fmt: skip
    proc = _dece(["run", str(config_path), "-o", str(out), "--no-progress", "--runner", SPEC],
                 env=env)  # fmt: skip
    deadline = time.monotonic() + 600  # generous: a loaded machine is slow to start dece
    try:
        while not (out.exists() and tuple(map(len, _state(out))) == (2, 1)):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the grid never reached a mid-run state"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done, partial = _state(out)
    assert len(done) >= 2 and partial and len(done) < len(expected)
    before = {h: (out / h / "result.json").read_bytes() for h in done}

    rerun = _dece(["run", str(config_path), "-o", str(out), "--no-progress"])
    stdout, stderr = rerun.communicate(timeout=600)  # generous: a loaded machine
    assert rerun.returncode == 0, stderr
    assert f"{len(expected) - len(done)} run, {len(done)} already done" in stdout
    assert f"{len(partial)} restarted" in stdout

    results = sorted(out.rglob("result.json"))
    assert [p.parent.name for p in results] == sorted(expected)  # one per cell, none extra
    for h, blob in before.items():
        assert (out / h / "result.json").read_bytes() == blob  # finished results untouched
    for p in results:
        rows = (p.parent / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(r)["epoch"] for r in rows] == [1, 2, 3]  # no rows from the killed run
    assert not list(out.rglob("*.tmp"))


def test_shards_from_the_cli_cover_the_grid_once(tmp_path, capsys):
    config_path = _grid(tmp_path)
    out = tmp_path / "runs"
    expected = {c.hash for c in expand_grid(load_grid_config(config_path))}
    ran: list[str] = []
    for i in range(3):
        assert (
            main(["run", str(config_path), "-o", str(out), "--shard", f"{i}/3", "--no-progress"])
            == 0
        )
        ran.append(capsys.readouterr().out)
    counts = [int(text.split(":")[1].split(" run")[0]) for text in ran]
    assert counts == [3, 3, 2] and sum(counts) == len(expected)
    assert {p.parent.name for p in out.glob("*/result.json")} == expected
    # a second pass over all shards runs nothing
    assert main(["run", str(config_path), "-o", str(out), "--no-progress"]) == 0
    assert "0 run, 8 already done" in capsys.readouterr().out


def test_list_shows_cells_and_state(tmp_path, capsys):
    config_path = _grid(tmp_path, seeds=[1])
    out = tmp_path / "runs"
    assert main(["run", str(config_path), "-o", str(out), "--shard", "0/2", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["run", str(config_path), "-o", str(out), "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4
    assert [line.split()[1] for line in lines] == ["done", "todo", "done", "todo"]


def test_config_error_exits_2_naming_file_and_key(tmp_path, capsys):
    config_path = _grid(tmp_path, losses=[{"name": "ce", "bogus": 1}])
    try:
        main(["run", str(config_path), "-o", str(tmp_path / "runs")])
    except SystemExit as exc:
        assert exc.code == 2
    else:
        raise AssertionError("expected exit code 2")
    err = capsys.readouterr().err
    assert str(config_path) in err and "'losses[0].bogus'" in err and "allowed: name, args" in err


def test_bad_shard_and_failed_cells_exit_codes(tmp_path, capsys, monkeypatch):
    config_path = _grid(tmp_path, seeds=[1])
    try:
        main(["run", str(config_path), "--shard", "3/3"])
    except SystemExit as exc:
        assert exc.code == 2
    assert "--shard" in capsys.readouterr().err
    monkeypatch.setenv("DECE_FAKE_EPOCH_SECONDS", "bad")  # the fake runner fails on float("bad")
    rc = main(["run", str(config_path), "-o", str(tmp_path / "r"), "--no-progress"])
    assert rc == 1
    assert "4 failed" in capsys.readouterr().out
