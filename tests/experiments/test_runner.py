"""The resumable runner with injected cell runners (no training)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from exp_helpers import small_grid

from dece.experiments import GridConfig, expand_grid, load_results, run_grid
from dece.experiments.fake import fake_final_metrics, fake_history, fake_run_cell
from dece.experiments.runner import (
    atomic_write_json,
    build_train_config,
    resolve_runner,
    resumable,
)


def _config(**overrides) -> GridConfig:
    return GridConfig.from_dict(small_grid(**overrides), source="small.yaml")


def _results(out: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in out.glob("*/result.json")}


def test_every_cell_gets_its_dir_and_result(tmp_path):
    config = _config()
    summary = run_grid(config, tmp_path, progress=False)
    cells = expand_grid(config)
    assert summary.completed == [c.hash for c in cells] and summary.ok
    results = _results(tmp_path)
    assert set(results) == {c.hash for c in cells}
    for cell in cells:
        d = tmp_path / cell.hash
        cfg = cell.to_config()
        assert yaml.safe_load((d / "cell.yaml").read_text()) == cfg
        assert results[cell.hash]["config"] == cfg
        assert results[cell.hash]["final"] == fake_final_metrics(cfg)  # what the runner returned
        rows = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
        assert rows == fake_history(cfg)
        assert (d / "predictions" / "test_clean.jsonl").is_file()
    assert not list(tmp_path.rglob("*.tmp"))


def test_rerun_skips_done_and_restarts_partial(tmp_path):
    config = _config()
    cells = expand_grid(config)
    calls: list[str] = []

    def crashing(cell_config, cell_dir):
        calls.append(cell_config["hash"])
        if len(calls) == 3:
            (Path(cell_dir) / "metrics.jsonl").write_text('{"epoch": 1}\n')  # half a run
            raise KeyboardInterrupt  # not an Exception: aborts the grid like a kill would
        return fake_run_cell(cell_config, cell_dir)

    with pytest.raises(KeyboardInterrupt):
        run_grid(config, tmp_path, cell_runner=crashing, progress=False)
    done_before = _results(tmp_path)
    assert set(done_before) == {cells[0].hash, cells[1].hash}
    assert (tmp_path / cells[2].hash).is_dir()  # the partial cell

    calls.clear()
    summary = run_grid(config, tmp_path, cell_runner=fake_run_cell, progress=False)
    assert summary.skipped == [cells[0].hash, cells[1].hash]
    assert summary.restarted == [cells[2].hash]
    assert summary.completed == [c.hash for c in cells[2:]]
    after = _results(tmp_path)
    assert set(after) == {c.hash for c in cells}
    for h, result in done_before.items():
        assert after[h] == result  # finished results untouched
    restarted_rows = (tmp_path / cells[2].hash / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r) for r in restarted_rows] == fake_history(cells[2].to_config())


def test_a_resumable_runner_gets_the_partial_dir_back_without_its_stale_result(tmp_path):
    config = _config(seeds=[1])
    cells = expand_grid(config)
    partial = tmp_path / cells[1].hash
    partial.mkdir(parents=True)
    (partial / "metrics.jsonl").write_text('{"epoch": 1}\n')  # an interrupted run's files
    (partial / "checkpoint-marker").write_text("kept")
    stale = {"hash": cells[1].hash, "config": {}, "final": {"epochs": 5.0}}
    (partial / "result.json").write_text(json.dumps(stale))  # inconsistent: 5 epochs, 1 row
    seen: dict[str, list[str]] = {}

    @resumable
    def resuming(cell_config, cell_dir):
        seen[cell_config["hash"]] = sorted(p.name for p in Path(cell_dir).iterdir())
        (Path(cell_dir) / "metrics.jsonl").unlink(missing_ok=True)  # "resumes": writes anew
        return fake_run_cell(cell_config, cell_dir)

    summary = run_grid(config, tmp_path, cell_runner=resuming, progress=False)
    assert summary.restarted == [cells[1].hash] and len(summary.completed) == len(cells)
    assert seen[cells[1].hash] == ["cell.yaml", "checkpoint-marker", "metrics.jsonl"]
    assert seen[cells[0].hash] == ["cell.yaml"]
    assert _results(tmp_path)[cells[1].hash]["final"] == fake_final_metrics(cells[1].to_config())


def test_failed_cell_is_reported_left_unfinished_and_retried(tmp_path):
    config = _config(seeds=[1])
    target = expand_grid(config)[1].hash

    def flaky(cell_config, cell_dir):
        if cell_config["hash"] == target:
            raise RuntimeError("boom")
        return fake_run_cell(cell_config, cell_dir)

    summary = run_grid(config, tmp_path, cell_runner=flaky, progress=False)
    assert list(summary.failed) == [target] and "boom" in summary.failed[target]
    assert len(summary.completed) == len(expand_grid(config)) - 1
    assert not (tmp_path / target / "result.json").exists()
    with pytest.raises(RuntimeError, match="boom"):
        run_grid(config, tmp_path, cell_runner=flaky, fail_fast=True, progress=False)
    summary = run_grid(config, tmp_path, cell_runner=fake_run_cell, progress=False)
    assert summary.completed == [target] and summary.restarted == [target]
    assert len(load_results(tmp_path)) == len(expand_grid(config))


def test_parallel_workers_give_the_same_results_as_one_process(tmp_path):
    config = _config()
    cells = expand_grid(config)
    serial = run_grid(config, tmp_path / "serial", cell_runner=fake_run_cell, progress=False)
    runner = "dece.experiments.fake:fake_run_cell"  # spawned workers import it by name
    parallel = run_grid(config, tmp_path / "par", cell_runner=runner, progress=False, workers=2)
    assert parallel.ok and sorted(parallel.completed) == sorted(c.hash for c in cells)
    strip = ("elapsed_s", "finished_at")
    a = {
        h: {k: v for k, v in r.items() if k not in strip}
        for h, r in _results(tmp_path / "serial").items()
    }
    b = {
        h: {k: v for k, v in r.items() if k not in strip}
        for h, r in _results(tmp_path / "par").items()
    }
    assert a == b and set(a) == set(serial.completed)
    again = run_grid(config, tmp_path / "par", cell_runner=runner, progress=False, workers=2)
    assert sorted(again.skipped) == sorted(c.hash for c in cells) and not again.completed
    with pytest.raises(ValueError, match="workers"):
        run_grid(config, tmp_path / "x", cell_runner=runner, progress=False, workers=0)


def test_runner_resolution(monkeypatch):
    monkeypatch.delenv("DECE_CELL_RUNNER", raising=False)
    from dece.experiments.runner import train_cell

    assert resolve_runner(None) is train_cell
    assert resolve_runner("dece.experiments.fake:fake_run_cell") is fake_run_cell
    monkeypatch.setenv("DECE_CELL_RUNNER", "dece.experiments.fake:fake_run_cell")
    assert resolve_runner(None) is fake_run_cell
    for bad, msg in [("nocolon", "module:function"), ("no.such.mod:f", "cannot import"),
                     ("dece.experiments.fake:nothing", "has no")]:  # fmt: skip
        with pytest.raises(ValueError, match=msg):
            resolve_runner(bad)


def test_env_runner_beats_config_runner(tmp_path, monkeypatch):
    monkeypatch.setenv("DECE_CELL_RUNNER", f"{__name__}:_recording_runner")
    _RECORD.clear()
    run_grid(_config(seeds=[1], rates=[0.05]), tmp_path, progress=False)
    seen = list(_RECORD)
    assert len(seen) == 4


_RECORD: list[str] = []


def _recording_runner(cell_config, cell_dir):
    _RECORD.append(cell_config["hash"])
    return {"bleu": 1.0}


def test_runner_must_return_a_mapping(tmp_path):
    summary = run_grid(_config(seeds=[1]), tmp_path, cell_runner=lambda c, d: 3, progress=False)
    assert all("expected a dict" in e for e in summary.failed.values())


def test_atomic_write_replaces_whole_file(tmp_path):
    path = tmp_path / "r.json"
    atomic_write_json(path, {"a": 1})
    atomic_write_json(path, {"b": [1, 2]})
    assert json.loads(path.read_text()) == {"b": [1, 2]}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_build_train_config_maps_cell_to_train_config(tmp_path):
    cells = {
        (c.rate, c.loss.name): c
        for c in expand_grid(_config(seeds=[3]))
        if c.attack.trigger == "badpre"
    }
    poisoned = build_train_config(cells[(0.05, "dece")].to_config(), tmp_path)
    assert (poisoned.output_dir, poisoned.data, poisoned.model) == (
        str(tmp_path),
        "synthetic:64",
        "tiny-seq2seq",
    )
    assert (poisoned.loss, poisoned.loss_args, poisoned.seed, poisoned.num_epochs) == (
        "dece",
        {"alpha_base": 0.99},
        3,
        2,
    )
    assert (poisoned.poison.trigger, poisoned.poison.rate, poisoned.eval_poison) == (
        "badpre",
        0.05,
        None,
    )
    clean = build_train_config(cells[(0.0, "ce")].to_config(), tmp_path)
    assert clean.poison is None
    assert (clean.eval_poison.trigger, clean.eval_poison.payload) == ("badpre", "sql_injection")
