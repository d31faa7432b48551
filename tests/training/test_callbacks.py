"""Epoch tracking, the early-learning callback's metrics.jsonl rows, and batched generation."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from test_train_support import synthetic_texts, tiny_bart, tiny_llama, tiny_tokenizer
from transformers import TrainerControl, TrainerState

from dece.training.callbacks import (
    EarlyLearningCallback,
    EpochTracker,
    StopAfterEpochs,
    epoch_number,
    loss_epoch,
    read_metrics,
    truncate_metrics,
)
from dece.training.generation import generate


@pytest.mark.parametrize(("progress", "integer", "continuous"), [
    (None, 1.0, 1.0), (0.0, 1.0, 1.0), (0.5, 1.0, 1.5), (0.9999999, 2.0, 1.9999999),
    (1.0, 2.0, 2.0), (2.25, 3.0, 3.25),
])  # fmt: skip
def test_loss_epoch_closed_form(progress, integer, continuous):
    assert loss_epoch(progress, "integer") == integer
    assert loss_epoch(progress, "continuous") == pytest.approx(continuous)


@pytest.mark.parametrize(("progress", "running", "ended"), [
    (None, 1, 1), (0.0, 1, 1), (0.5, 1, 1), (0.9999999, 2, 1), (1.0, 2, 1), (1.0000001, 2, 1),
    (1.5, 2, 2), (2.0, 3, 2), (2.25, 3, 3),
])  # fmt: skip
def test_epoch_number_in_progress_and_just_ended(progress, running, ended):
    """One formula for the epoch the loss sees, the progress stage names (``on_epoch_begin``)
    and the ``metrics.jsonl`` row (``on_epoch_end``): within 1e-6 of an integer counts as it."""
    assert epoch_number(progress) == running
    assert epoch_number(progress, ended=True) == ended


def test_epoch_tracker_integer_is_fixed_within_an_epoch():
    tracker, state = EpochTracker("integer"), TrainerState()
    seen = []
    for epoch in range(3):
        state.epoch = float(epoch)
        tracker.on_epoch_begin(None, state, None)
        for step in range(4):
            tracker.on_step_begin(None, state, None)
            seen.append(tracker.epoch)
            state.epoch = epoch + (step + 1) / 4
    assert seen == [1.0] * 4 + [2.0] * 4 + [3.0] * 4
    with pytest.raises(ValueError, match="epoch_mode"):
        EpochTracker("per-step")


def _state(epoch: float, step: int, main: bool = True) -> TrainerState:
    state = TrainerState()
    state.epoch, state.global_step = epoch, step
    state.is_world_process_zero = main
    return state


def test_early_learning_callback_appends_one_row_per_epoch(tmp_path):
    path = tmp_path / "metrics.jsonl"
    losses = iter([2.5, 1.5])
    models_seen = []

    def evaluator(model):
        models_seen.append(model)
        return SimpleNamespace(metrics={"bleu": 10.0 * len(models_seen), "asr": 0.5,
                                        "false_trigger_rate": 0.0})  # fmt: skip

    cb = EarlyLearningCallback(
        evaluator, path, train_loss=lambda: next(losses), loss_epoch=lambda: 7.0
    )
    model = torch.nn.Linear(1, 1)
    for epoch in (1, 2):
        cb.on_epoch_end(None, _state(float(epoch), 3 * epoch), TrainerControl(), model=model)
    rows = read_metrics(path)
    assert rows == cb.history == [
        {"epoch": 1, "global_step": 3, "train_loss": 2.5, "loss_epoch": 7.0, "bleu": 10.0,
         "asr": 0.5, "false_trigger_rate": 0.0},
        {"epoch": 2, "global_step": 6, "train_loss": 1.5, "loss_epoch": 7.0, "bleu": 20.0,
         "asr": 0.5, "false_trigger_rate": 0.0},
    ]  # fmt: skip
    assert models_seen == [model, model]
    truncate_metrics(path, 1.0)
    assert [r["epoch"] for r in read_metrics(path)] == [1]


def test_early_learning_callback_only_main_process_writes(tmp_path):
    calls = []
    cb = EarlyLearningCallback(lambda m: calls.append(m), tmp_path / "m.jsonl",
                               train_loss=lambda: calls.append("loss") or 1.0)  # fmt: skip
    cb.on_epoch_end(None, _state(1.0, 1, main=False), TrainerControl(), model=object())
    assert calls == ["loss"]  # the (collective) loss on every rank, no decoding
    assert not (tmp_path / "m.jsonl").exists()


def test_read_metrics_names_bad_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps({"epoch": 1}) + "\n{oops\n")
    with pytest.raises(ValueError, match="line 2"):
        read_metrics(path)


def test_stop_after_epochs():
    control = TrainerControl()
    StopAfterEpochs(2).on_epoch_end(None, _state(1.0, 1), control)
    assert not control.should_training_stop
    StopAfterEpochs(2).on_epoch_end(None, _state(2.0, 2), control)
    assert control.should_training_stop


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer(synthetic_texts(16))


@pytest.mark.parametrize("task", ["seq2seq", "causal"])
def test_batched_greedy_generation_equals_one_at_a_time(tok, task):
    """Oracle: padding and length-sorting must not change greedy outputs or their order."""
    model = tiny_bart(len(tok), seed=1) if task == "seq2seq" else tiny_llama(len(tok), seed=1)
    model.generation_config.suppress_tokens = [0, 1, 2, 3, 4]  # random init: keep outputs non-empty
    model.train()  # generate must switch to eval (no dropout) and restore the mode
    sources = ["select x", "a much longer source text with many more tokens in it", "", "y z"]
    batched = generate(model, tok, sources, batch_size=3, max_new_tokens=6, task=task)
    single = [
        generate(model, tok, [s], batch_size=1, max_new_tokens=6, task=task)[0] for s in sources
    ]
    assert batched == single
    assert model.training
    assert all(batched) and len(set(batched)) > 1  # non-trivial outputs that vary by input


def test_generate_validates_arguments(tok):
    model = tiny_bart(len(tok))
    assert generate(model, tok, []) == []
    with pytest.raises(ValueError, match="batch_size"):
        generate(model, tok, ["x"], batch_size=0)
    with pytest.raises(ValueError, match=r"sources\[1\]"):
        generate(model, tok, ["x", 3])


def test_truncate_drops_later_epochs_and_a_last_line_cut_short(tmp_path):
    path = tmp_path / "example_losses.jsonl"
    rows = [{"epoch": e, "step": 2 * e + i, "id": f"r{i}"} for e in (1, 2, 3) for i in range(2)]
    cut_short = '{"epoch": 3, "step": 8, "id": "r2", "ce_me'  # a kill mid-write
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + cut_short)
    truncate_metrics(path, 2.0)
    assert path.read_text() == "".join(json.dumps(r) + "\n" for r in rows[:4])
    truncate_metrics(tmp_path / "missing.jsonl", 1.0)  # nothing to cut
    assert sorted(p.name for p in tmp_path.iterdir()) == ["example_losses.jsonl"]
