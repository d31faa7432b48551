"""What a user sees: one progress display with the stages and their counts, and nothing from
third parties ("Loading weights" bars, transformers warnings) unless ``-v``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
from test_train_support import save_tiny_seq2seq  # noqa: E402

ENTRY = "import sys; from dece.cli import main; sys.exit(main())"


def _dece(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("TRANSFORMERS_VERBOSITY", "HF_HUB_DISABLE_PROGRESS_BARS")}  # fmt: skip
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run([sys.executable, "-c", ENTRY, *args], capture_output=True, text=True,
                          env=env, timeout=timeout, check=False)  # fmt: skip


def _last_counts(text: str, stage: str) -> set[str]:
    """The ``done/total`` counts drawn for a stage (tqdm redraws with carriage returns)."""
    frames = re.split(r"[\r\n]", text)
    return {m.group(1) for f in frames if f.startswith(stage)
            for m in [re.search(r"(\d+/\d+)", f[len(stage):])] if m}  # fmt: skip


def test_train_shows_each_stage_with_its_count(tmp_path):
    model = save_tiny_seq2seq(tmp_path / "m")
    proc = _dece(
        "train", f"output_dir={tmp_path / 'run'}", f"model={model}", "data=synthetic:24",
        "num_epochs=2", "batch_size=8", "learning_rate=0.001", "max_source_length=48",
        "max_target_length=48", "eval_max_examples=3", "test_max_examples=4",
        "generation_max_new_tokens=6", "codebleu=false", "use_cpu=true", "save_checkpoints=false",
        "poison={rate: 0.25, seed: 3}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr
    # 24 rows / batch 8 = 3 steps per epoch; 3 valid rows and their poisoned copies per epoch
    assert _last_counts(err, "train epoch 1/2") >= {"3/3"}
    assert _last_counts(err, "train epoch 2/2") >= {"3/3"}
    assert _last_counts(err, "predict valid clean") >= {"3/3"}
    assert _last_counts(err, "predict test clean") >= {"3/3"}  # synthetic:24 has 3 test rows
    assert "predict test poisoned" in err
    assert "Loading weights" not in err and "Writing model shards" not in err
    assert "[transformers]" not in err
    assert "WARNING" not in err  # library logs stay quiet by default


def test_no_progress_is_silent_and_grid_counts_cells(tmp_path):
    grid = tmp_path / "g.yaml"
    grid.write_text(yaml.safe_dump({
        "name": "g", "datasets": ["synthetic:16"], "attacks": ["badpre"], "losses": ["ce", "dece"],
        "runner": "dece.experiments.fake:fake_run_cell", "training": {"num_epochs": 1},
    }))  # fmt: skip
    proc = _dece("run", str(grid), "-o", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    assert _last_counts(proc.stderr, "grid g [0/1]") >= {"2/2"}
    quiet = _dece("run", str(grid), "-o", str(tmp_path / "out2"), "--no-progress")
    assert quiet.returncode == 0 and quiet.stderr == ""


@pytest.mark.parametrize("flag", ["-v"])
def test_verbose_brings_library_logs_back(tmp_path, flag):
    grid = tmp_path / "g.yaml"
    grid.write_text(yaml.safe_dump({
        "name": "g", "datasets": ["synthetic:16"], "attacks": ["badpre"], "losses": ["ce"],
        "runner": "dece.experiments.fake:fake_run_cell",
    }))  # fmt: skip
    proc = _dece(flag, "run", str(grid), "-o", str(tmp_path / "out"), "--no-progress")
    assert proc.returncode == 0 and "INFO dece.experiments.runner" in proc.stderr
