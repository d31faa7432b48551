"""What a user sees: one progress display with the stages and their counts, and nothing from
third parties ("Loading weights" bars, transformers warnings) unless ``-v``. On a terminal the
display is live; in a file or a pipe it is a few plain lines per stage."""

from __future__ import annotations

import collections
import io
import os
import queue
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dece import progress
from dece.experiments.demo import demo_config
from dece.experiments.grid import expand_grid
from dece.experiments.markdown import md_unpadded

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
from test_train_support import save_tiny_seq2seq  # noqa: E402

ENTRY = "import sys; from dece.cli import main; sys.exit(main())"


def _dece(*args: str, timeout: int = 300, **env_extra: str) -> subprocess.CompletedProcess:
    """``dece ARGS`` with both streams captured through pipes (not terminals)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("TRANSFORMERS_VERBOSITY", "HF_HUB_DISABLE_PROGRESS_BARS")}  # fmt: skip
    env["OMP_NUM_THREADS"] = "1"
    env.update(env_extra)
    return subprocess.run([sys.executable, "-c", ENTRY, *args], capture_output=True, text=True,
                          env=env, timeout=timeout, check=False)  # fmt: skip


def _last_counts(text: str, stage: str) -> set[str]:
    """The ``done/total`` counts drawn for a stage (a line each, or tqdm's redraws)."""
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


# ------------------------------------------------------------------ plain lines off a terminal
def _ticks(*times: float):
    """A clock that reads ``times`` in turn."""
    return iter(times).__next__


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_line_bar_writes_start_periodic_and_end_lines():
    out = io.StringIO()
    drawn = progress.LineBar("grid g [0/1]", 4, "cell", stream=out, interval=30,
                             clock=_ticks(0, 10, 20, 51, 60, 85, 90))  # fmt: skip
    drawn.update()  # t=10: under 30 s since the start line, nothing written
    drawn.set_postfix_str("ce badpre")  # t=20: a new postfix is written at once
    drawn.update()  # t=51
    drawn.update()  # t=60: 9 s since the last line
    drawn.set_postfix_str("ce badpre")  # unchanged: nothing written
    drawn.update()  # t=85
    drawn.close()  # t=90
    drawn.close()  # a second close writes nothing
    assert out.getvalue().splitlines() == [
        "grid g [0/1]: start 0/4 cell",
        "grid g [0/1]: 1/4 cell, elapsed 20.0s, ETA 01:00 (ce badpre)",
        "grid g [0/1]: 2/4 cell, elapsed 51.0s, ETA 51.0s (ce badpre)",
        "grid g [0/1]: 4/4 cell, elapsed 01:25, ETA 0.0s (ce badpre)",
        "grid g [0/1]: done 4/4 cell in 01:30",
    ]


def test_line_bar_without_total_has_no_eta_and_no_empty_count():
    out = io.StringIO()
    unknown = progress.LineBar("bki", None, "row", stream=out, interval=0, clock=_ticks(0, 2, 4))
    unknown.update(3)
    unknown.close()
    idle = progress.LineBar("cell", None, "cell", stream=out, clock=_ticks(0, 5))
    idle.close()
    assert out.getvalue().splitlines() == [
        "bki: start", "bki: 3 row, elapsed 2.0s", "bki: done 3 row in 4.0s",
        "cell: start", "cell: done in 5.0s",
    ]  # fmt: skip


def test_line_bar_rejects_a_negative_interval():
    with pytest.raises(ValueError, match="interval must be >= 0 seconds, got -1"):
        progress.LineBar("x", 1, stream=io.StringIO(), interval=-1)


def test_sink_off_a_terminal_writes_plain_lines_for_each_stage():
    out = io.StringIO()
    sink = progress.TqdmSink(out, interval=0, clock=_ticks(0, 1, 2, 3))
    with progress.use(sink), progress.task("predict", total=2, unit="row") as advance:
        advance()
        advance()
    assert out.getvalue() == (
        "predict: start 0/2 row\n"
        "predict: 1/2 row, elapsed 1.0s, ETA 1.0s\n"
        "predict: 2/2 row, elapsed 2.0s, ETA 0.0s\n"
        "predict: done 2/2 row in 3.0s\n"
    )


def test_terminal_keeps_the_live_display():
    out = _Terminal()
    with progress.use(progress.TqdmSink(out)), progress.task("predict", 2, "row") as advance:
        advance(2)
    frames = out.getvalue().split("\r")
    assert any(f.startswith("predict: 100%") and "2/2" in f for f in frames)  # tqdm's redraws
    assert "predict: start" not in out.getvalue()


def test_queue_renderer_off_a_terminal_names_each_worker_and_draws_queued_events():
    events = queue.Queue()
    for event in [
        (101, "start", 0, "CE", None, "cell"), (202, "start", 0, "DeCE", None, "cell"),
        (101, "start", 1, "train", 2, "step"), (101, "update", 1, 2), (101, "close", 1),
        (101, "close", 0), (202, "close", 0),
    ]:  # fmt: skip
        events.put(event)
    out = io.StringIO()
    with progress.QueueRenderer(events, out, interval=0, clock=lambda: 0.0):
        pass  # stopped at once: the events already queued are still drawn
    assert out.getvalue().splitlines() == [
        "[worker 1] CE: start",
        "[worker 2] DeCE: start",
        "[worker 1] train: start 0/2 step",
        "[worker 1] train: 2/2 step, elapsed 0.0s, ETA 0.0s",
        "[worker 1] train: done 2/2 step in 0.0s",
        "[worker 1] CE: done in 0.0s",
        "[worker 2] DeCE: done in 0.0s",
    ]


_LINE = re.compile(
    r"(?P<stage>.+): (?:(?P<start>start)(?: \d+/\d+ \w+)?"
    r"|\d+(?:/\d+)? \w+, elapsed \S+(?:, ETA \S+)?(?: \(.*\))?"
    r"|(?P<done>done)(?: \d+(?:/\d+)? \w+)? in \S+)"
)


def test_piped_demo_writes_plain_stage_lines_and_no_escapes(tmp_path):
    proc = _dece("demo", "--quick", "-o", str(tmp_path / "demo"),
                 DECE_CACHE_DIR=str(tmp_path / "cache"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    for text in (proc.stdout, proc.stderr):
        assert "\x1b[" not in text and "\r" not in text
    assert "| CE |" in md_unpadded(proc.stdout)  # the table still goes to stdout
    config = demo_config(quick=True)
    cells = len(expand_grid(config))
    lines = proc.stderr.splitlines()
    assert lines[0] == f"grid {config.name} [0/1]: start 0/{cells} cell"
    assert re.fullmatch(rf"grid {config.name} \[0/1\]: done {cells}/{cells} cell in \S+", lines[-1])
    parsed = [_LINE.fullmatch(line) for line in lines]
    assert all(parsed), [line for line, m in zip(lines, parsed, strict=True) if not m]
    started = collections.Counter(m["stage"] for m in parsed if m["start"])
    assert started == collections.Counter(m["stage"] for m in parsed if m["done"])
    in_workers = {re.sub(r"^\[worker \d+\] ", "", stage) for stage in started}
    assert {"predict test clean", "predict test poisoned"} <= in_workers
    first_epochs = [s for s in started if re.fullmatch(r"\[worker \d+\] train epoch 1/\d+", s)]
    assert sum(started[s] for s in first_epochs) == cells  # each cell trained in a worker
