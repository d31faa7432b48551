"""Grid cells that resume (issue 22, item 3): a ``dece run`` killed mid-cell resumes the cell
from its newest complete checkpoint and ends exactly where an uninterrupted run ends.

Oracle: the same one-cell grid run without interruption (``reference``). Two kills: SIGKILL
from outside once ``checkpoint-1`` is complete, and a kill inside the save of epoch 2's
checkpoint, after its weights and before its ``trainer_state.json`` (``resume_runner``). Both
reruns finish with the reference's final weights (``assert_close``), ``metrics.jsonl`` and
per-example losses (without the ``*time_s*`` fields), reuse the recorded filter decisions, add
up ``train_time_s`` over the segments and leave no checkpoint behind. The grid's YAML says
``save_checkpoints: false``: the runner turns checkpoints and resume on by itself.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from resume_runner import KILL_ENV, SPEC
from safetensors.torch import load_file
from test_run_cli import _dece

from dece.experiments import expand_grid, load_grid_config, run_grid
from dece.experiments.demo import QUICK_OVERRIDES

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SIGKILL")

HERE = Path(__file__).resolve().parent
EPOCHS = 3


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> Path:
    """A one-cell grid: the quick demo's model, 3 epochs, a keyword filter, per-example losses
    recorded and the model saved (to compare weights)."""
    root = tmp_path_factory.mktemp("resume")
    training = copy.deepcopy(QUICK_OVERRIDES["training"])
    assert training["save_checkpoints"] is False
    # a fresh cache: the tiny preset is pretrained here, briefly (resume does not depend on it)
    training.update(num_epochs=EPOCHS, record_example_losses=True, save_model=True,
                    cache_dir=str(root / "cache"), pretrain_steps=100)  # fmt: skip
    data = {
        "name": "resume", "datasets": ["synthetic:64"], "attacks": ["badpre"], "rates": [0.05],
        "models": ["tiny-seq2seq"], "losses": ["ce"], "seeds": [42],
        "defenses": [{"name": "keyword", "args": {"tokens": ["bb"]}}], "training": training,
    }  # fmt: skip
    path = root / "grid.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def reference(grid) -> Path:
    """The cell run without interruption."""
    out = grid.parent / "reference"
    assert run_grid(load_grid_config(grid), out, progress=False).completed
    return out / _hash(grid)


def _hash(grid: Path) -> str:
    (cell,) = expand_grid(load_grid_config(grid))
    return cell.hash


def _rows(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [{k: v for k, v in r.items() if "time_s" not in k} for r in rows]


def _checkpoints(cell_dir: Path) -> dict[str, set[str]]:
    """checkpoint name -> the files in it."""
    root = cell_dir / "checkpoints"
    return {p.name: {f.name for f in p.iterdir()} for p in root.iterdir()} if root.exists() else {}


def _plant_train_time(cell_dir: Path, seconds: float) -> None:
    """Sets the training time the newest complete checkpoint records (the planted oracle of the
    sum over segments)."""
    states = sorted((cell_dir / "checkpoints").glob("*/trainer_state.json"),
                    key=lambda p: int(p.parent.name.split("-")[1]))  # fmt: skip
    state = json.loads(states[-1].read_text())
    clock = state["stateful_callbacks"]["_TrainClock"]["attributes"]
    assert 0 < clock["train_time_s"] < seconds  # what the killed segment recorded
    clock["train_time_s"] = seconds
    states[-1].write_text(json.dumps(state))


def _resume_and_compare(grid: Path, out: Path, reference: Path) -> None:
    cell_dir = out / reference.name
    assert not (cell_dir / "result.json").exists()
    filter_stamp = (cell_dir / "filter.jsonl").stat().st_mtime_ns
    before_s = 1000.0
    _plant_train_time(cell_dir, before_s)
    started = time.perf_counter()
    summary = run_grid(load_grid_config(grid), out, progress=False)
    wall_s = time.perf_counter() - started
    assert summary.completed == summary.restarted == [reference.name] and summary.ok

    a = load_file(str(reference / "model" / "model.safetensors"))
    b = load_file(str(cell_dir / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], msg=key)
    assert [r["epoch"] for r in _rows(cell_dir / "metrics.jsonl")] == list(range(1, EPOCHS + 1))
    assert _rows(cell_dir / "metrics.jsonl") == _rows(reference / "metrics.jsonl")
    assert _rows(cell_dir / "example_losses.jsonl") == _rows(reference / "example_losses.jsonl")
    final, ref_final = (json.loads((d / "result.json").read_text())["final"]
                        for d in (cell_dir, reference))  # fmt: skip
    assert {k: v for k, v in final.items() if "time_s" not in k} == {
        k: v for k, v in ref_final.items() if "time_s" not in k
    }
    assert final["filter_removed"] > 0
    assert (cell_dir / "filter.jsonl").stat().st_mtime_ns == filter_stamp  # not filtered again
    assert before_s < final["train_time_s"] <= before_s + wall_s  # the segments added up
    assert not (cell_dir / "checkpoints").exists() and not (reference / "checkpoints").exists()


def test_killed_once_checkpoint_1_is_complete_resumes_to_the_same_end(grid, reference):
    out = grid.parent / "killed_outside"
    cell_dir = out / reference.name
    proc = _dece(["run", str(grid), "-o", str(out), "--no-progress"])
    deadline = time.monotonic() + 240
    try:
        while not list(cell_dir.glob("checkpoints/checkpoint-*/trainer_state.json")):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "checkpoint-1 never appeared"
            time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert len(_checkpoints(cell_dir)) <= 2  # the newest complete one (+ one being saved)
    _resume_and_compare(grid, out, reference)


def test_killed_between_model_save_and_trainer_state_resumes_to_the_same_end(grid, reference):
    out = grid.parent / "killed_in_save"
    cell_dir = out / reference.name
    env = {"PYTHONPATH": os.pathsep.join(filter(None, (str(HERE), os.environ.get("PYTHONPATH")))),
           KILL_ENV: "2"}  # fmt: skip
    proc = _dece(["run", str(grid), "-o", str(out), "--no-progress", "--runner", SPEC], env=env)
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == -signal.SIGKILL, stderr
    checkpoints = _checkpoints(cell_dir)
    assert len(checkpoints) == 2, checkpoints
    complete, cut = sorted(checkpoints, key=lambda name: int(name.split("-")[1]))
    assert "trainer_state.json" in checkpoints[complete]
    assert "model.safetensors" in checkpoints[cut] and "trainer_state.json" not in checkpoints[cut]
    assert [r["epoch"] for r in _rows(cell_dir / "metrics.jsonl")] == [1, 2]  # cut back to 1
    _resume_and_compare(grid, out, reference)
