"""The per-example loss hook: what DeceTrainer records equals a naive recomputation."""

from __future__ import annotations

import pytest
import torch
from test_train_support import save_tiny_seq2seq

from dece.pipeline import DataBundle, Victim, fit
from dece.training import TrainConfig
from dece.training.example_losses import ExampleLossRecorder, read_example_losses


def test_recorder_reductions_closed_form(tmp_path):
    rec = ExampleLossRecorder(["a", "b"], tmp_path / "x.jsonl", top_k=2)
    ce = torch.tensor([[1.0, 4.0, 2.0, 9.0], [3.0, 0.0, 0.0, 0.0]])
    valid = torch.tensor([[True, True, True, False], [True, False, False, False]])
    rec.record(2.5, 7, torch.tensor([1, 0]), ce, valid)
    rec.close()
    rows = read_example_losses(tmp_path / "x.jsonl")
    assert len(rows) == 2
    first, second = rows  # batch row 0 is training position 1 ("b"), row 1 is "a"
    assert (first["id"], first["epoch"], first["step"]) == ("b", 2, 7)
    assert first["ce_mean"] == pytest.approx(7 / 3)
    assert (first["ce_max"], first["ce_top2"]) == (4.0, 3.0)  # the ignored 9 never counts
    assert (second["id"], second["ce_mean"], second["ce_max"], second["ce_top2"]) == (
        "a",
        3.0,
        3.0,
        3.0,
    )


def test_recorded_first_step_losses_equal_the_victims_example_loss(tmp_path, one_thread):
    from dece.data import load_dataset

    model_dir = save_tiny_seq2seq(tmp_path / "m")
    rows = load_dataset("synthetic:16")["train"]
    bundle = DataBundle.from_examples(rows)
    cfg = TrainConfig(output_dir=str(tmp_path / "run"), model=str(model_dir), loss="dece",
                      num_epochs=1, batch_size=16, learning_rate=1e-3, max_source_length=64,
                      max_target_length=64, eval_each_epoch=False, save_checkpoints=False,
                      save_model=False, record_example_losses=True, use_cpu=True)  # fmt: skip
    initial = Victim.load(model_dir, max_source_length=64, max_target_length=64)
    # dropout off so the training forward equals the victim's eval forward
    for module in initial.model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    expected = dict(zip([ex.id for ex in rows], initial.example_loss(rows), strict=True))
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_dir)
    for key in ("dropout", "attention_dropout", "activation_dropout"):
        setattr(config, key, 0.0)
    config.save_pretrained(model_dir)
    fit(cfg, bundle)
    recorded = read_example_losses(tmp_path / "run" / "example_losses.jsonl")
    assert sorted(r["id"] for r in recorded) == sorted(expected)  # one step, every row once
    for row in recorded:
        assert row["epoch"] == 1 and row["step"] == 0
        assert row["ce_mean"] == pytest.approx(expected[row["id"]], rel=1e-4)
        assert row["ce_max"] >= row["ce_top3"] >= row["ce_mean"] - 1e-6
