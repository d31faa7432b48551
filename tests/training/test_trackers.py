"""Experiment trackers: ``report_to`` / ``run_name`` reach ``TrainingArguments``, the per-epoch
BLEU / ASR / false-trigger rate reach the trackers (oracle: TensorBoard's event file read back
holds the values of ``metrics.jsonl``), and neither key changes a grid cell's hash."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_train_support import save_tiny_seq2seq, use_local_loader

from dece.experiments.config import load_grid_config
from dece.experiments.grid import expand_grid
from dece.pipeline import train
from dece.pipeline.fit import training_arguments
from dece.training import PoisonConfig, TrainConfig
from dece.training.callbacks import tracker_metrics


def _config(out: Path, model_dir: Path, **kw) -> TrainConfig:
    base = dict(
        output_dir=str(out), data="synthetic:16", model=str(model_dir), loss="dece",
        poison=PoisonConfig(rate=0.25, seed=3), num_epochs=2, batch_size=8, learning_rate=1e-3,
        max_source_length=48, max_target_length=48, eval_max_examples=3, test_max_examples=3,
        generation_max_new_tokens=6, eval_batch_size=8, use_cpu=True, codebleu=False,
        save_checkpoints=False, save_model=False, logging_steps=1,
    )  # fmt: skip
    return TrainConfig(**{**base, **kw})


def _scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = sorted(run_dir.rglob("events.out.tfevents.*"))
    assert files, f"no TensorBoard event file under {run_dir}"
    acc = EventAccumulator(str(files[0].parent), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_report_to_and_run_name_reach_training_arguments(tmp_path):
    cfg = _config(tmp_path, tmp_path, report_to=["tensorboard"], run_name="cell-a").resolved()
    args = training_arguments(cfg, tmp_path / "checkpoints")
    assert args.report_to == ["tensorboard"] and args.run_name == "cell-a"
    assert training_arguments(_config(tmp_path, tmp_path).resolved(), tmp_path).report_to == []


def test_report_to_rejects_a_non_name(tmp_path):
    with pytest.raises(ValueError, match="report_to must be a tracker name"):
        TrainConfig.from_dict({"output_dir": str(tmp_path), "report_to": [3]})


def test_tracker_metrics_names_and_drops_missing_values():
    row = {"epoch": 2, "global_step": 4, "train_loss": 1.5, "loss_epoch": 2.0, "asr": 0.5,
           "bleu": 12.0, "asr_raw": None, "n_clean": 3, "flag": True}  # fmt: skip
    assert tracker_metrics(row) == {
        "epoch_train_loss": 1.5, "loss_epoch": 2.0, "eval_asr": 0.5, "eval_bleu": 12.0,
        "eval_n_clean": 3.0,
    }  # fmt: skip


def test_tensorboard_event_file_holds_the_per_epoch_metrics(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard", reason="needs the [tensorboard] extra")
    monkeypatch.delenv("TENSORBOARD_LOGGING_DIR", raising=False)
    use_local_loader(monkeypatch)
    model_dir = save_tiny_seq2seq(tmp_path / "tiny_bart")
    result = train(_config(tmp_path / "run", model_dir, report_to="tensorboard", run_name="tb"))
    scalars = _scalars(tmp_path / "run" / "runs")
    assert not (tmp_path / "run" / "checkpoints" / "runs").exists()
    # Oracle: every per-epoch row of metrics.jsonl, at the step it was logged at.
    assert len(result.history) == 2
    for key, tag in (("asr", "eval/asr"), ("bleu", "eval/bleu"),
                     ("false_trigger_rate", "eval/false_trigger_rate"),
                     ("train_loss", "train/epoch_train_loss")):  # fmt: skip
        expected = [(row["global_step"], row[key]) for row in result.history]
        steps = [step for step, _ in scalars[tag]]
        values = [value for _, value in scalars[tag]]
        assert steps == [step for step, _ in expected], tag
        assert values == pytest.approx([value for _, value in expected], rel=1e-6), tag
    assert "train/loss" in scalars  # the Trainer's own step losses, in the same file


GRID = """
name: trackers
datasets: [synthetic:16]
models: [tiny-seq2seq]
attacks: [{trigger: badpre, payload: sql_injection}]
rates: [0.1]
losses: [ce]
seeds: [1]
training: {num_epochs: 1%s}
"""


def test_report_to_and_run_name_are_not_hashed(tmp_path):
    plain, tracked = tmp_path / "plain.yaml", tmp_path / "tracked.yaml"
    plain.write_text(GRID % "")
    tracked.write_text(GRID % ", report_to: [tensorboard, wandb], run_name: sweep")
    [a], [b] = expand_grid(load_grid_config(plain)), expand_grid(load_grid_config(tracked))
    assert a.hash == b.hash and a.resolved() == b.resolved()
    # ... yet every cell receives them (the runner builds its TrainConfig from this).
    training = b.to_config()["training"]
    assert training == {"num_epochs": 1, "report_to": ["tensorboard", "wandb"], "run_name": "sweep"}
