"""DeceTrainer: the registry loss is what the Trainer optimises, with the right targets/epochs."""

from __future__ import annotations

import pytest
import torch
from test_train_support import synthetic_texts, tiny_bart, tiny_llama, tiny_tokenizer
from transformers import TrainingArguments

from dece.data import load_dataset
from dece.losses import get_loss
from dece.training.callbacks import EpochTracker
from dece.training.collate import Collator, encode_examples
from dece.training.trainer import DeceTrainer


class SpyLoss:
    """Delegates to a real registry loss and records every call."""

    def __init__(self, name: str = "dece", **kwargs):
        self.inner = get_loss(name, **kwargs)
        self.calls: list[dict] = []

    def __call__(self, logits, target, *, epoch=1.0, num_items_in_batch=None, **kw):
        out = self.inner(logits, target, epoch=epoch, num_items_in_batch=num_items_in_batch, **kw)
        self.calls.append(
            {"epoch": epoch, "value": out.detach().clone(), "shape": tuple(logits.shape)}
        )
        return out


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer(synthetic_texts(16))


def make_trainer(tmp_path, tok, *, loss_fn, task="seq2seq", n=4, batch=2, epochs=1, ga=1,
                 dropout=0.0, mode="integer", max_steps=-1, lr=1e-3, seed=0):  # fmt: skip
    rows = load_dataset("synthetic:16")["train"][:n]
    feats = encode_examples(tok, rows, task=task, max_source_length=48, max_target_length=48)
    if task == "seq2seq":
        model = tiny_bart(len(tok), dropout=dropout, seed=seed)
        collator = Collator("seq2seq", pad_token_id=0, decoder_start_token_id=2)
    else:
        model = tiny_llama(len(tok), seed=seed)
        collator = Collator("causal", pad_token_id=0)
    args = TrainingArguments(
        output_dir=str(tmp_path / "ckpt"), per_device_train_batch_size=batch,
        gradient_accumulation_steps=ga, num_train_epochs=epochs, max_steps=max_steps,
        learning_rate=lr, optim="adamw_torch", report_to="none", save_strategy="no",
        use_cpu=True, remove_unused_columns=False, logging_steps=1, disable_tqdm=True, seed=seed,
        max_grad_norm=0.0,
    )  # fmt: skip
    return DeceTrainer(model=model, args=args, train_dataset=feats, data_collator=collator,
                       loss_fn=loss_fn, epoch_tracker=EpochTracker(mode))  # fmt: skip


@pytest.mark.parametrize("task", ["seq2seq", "causal"])
def test_one_step_changes_every_trainable_parameter(tmp_path, tok, task):
    trainer = make_trainer(tmp_path, tok, loss_fn=get_loss("dece"), task=task, max_steps=1)
    before = {k: p.detach().clone() for k, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    after = dict(trainer.model.named_parameters())
    unchanged = [k for k, v in before.items() if torch.equal(v, after[k].detach())]
    assert not unchanged, f"parameters not updated by one step: {unchanged}"


@pytest.mark.parametrize("task", ["seq2seq", "causal"])
def test_ce_loss_equals_the_models_own_loss(tmp_path, tok, task):
    """Oracle: with CE, compute_loss must equal transformers' loss given the labels (so targets
    are aligned: no double shift, -100 ignored)."""
    trainer = make_trainer(tmp_path, tok, loss_fn=get_loss("ce"), task=task)
    batch = next(iter(trainer.get_train_dataloader()))
    model = trainer.model.eval()
    with torch.no_grad():
        ours = trainer.compute_loss(model, dict(batch))
        inputs = {k: v for k, v in batch.items() if k != "shift_labels"}
        theirs = model(**inputs).loss
    torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize(("mode", "expected"), [
    ("integer", [1.0, 1.0, 2.0, 2.0, 3.0, 3.0]),
    ("continuous", [1.0, 1.5, 2.0, 2.5, 3.0, 3.5]),
])  # fmt: skip
def test_dece_receives_the_epoch_in_order(tmp_path, tok, mode, expected):
    spy = SpyLoss("dece")
    trainer = make_trainer(tmp_path, tok, loss_fn=spy, n=4, batch=2, epochs=3, mode=mode)
    trainer.train()
    assert [c["epoch"] for c in spy.calls] == expected


def test_logged_loss_is_the_spy_loss(tmp_path, tok):
    """The loss the Trainer logs is exactly the value the configured loss returned."""
    spy = SpyLoss("gce")
    trainer = make_trainer(tmp_path, tok, loss_fn=spy, n=4, batch=2, epochs=1)
    trainer.train()
    logged = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    assert logged == pytest.approx([float(c["value"]) for c in spy.calls], rel=1e-5)


def test_gradient_accumulation_matches_one_big_batch(tmp_path, tok):
    """num_items_in_batch: 2 micro-batches of 2 == 1 batch of 4 (token-weighted mean)."""
    a = make_trainer(tmp_path / "a", tok, loss_fn=get_loss("dece"), n=4, batch=4, max_steps=1)
    b = make_trainer(tmp_path / "b", tok, loss_fn=get_loss("dece"), n=4, batch=2, ga=2, max_steps=1)
    # Same sample order in both: disable shuffling.
    a._get_train_sampler = b._get_train_sampler = lambda *args, **kw: None
    a.train()
    b.train()
    for (k, pa), (_, pb) in zip(
        a.model.named_parameters(), b.model.named_parameters(), strict=True
    ):
        torch.testing.assert_close(pa, pb, rtol=1e-4, atol=1e-6, msg=k)
    assert a.epoch_train_loss() == pytest.approx(b.epoch_train_loss(), rel=1e-5)


def test_loss_fn_must_be_callable(tmp_path, tok):
    with pytest.raises(ValueError, match="loss_fn"):
        make_trainer(tmp_path, tok, loss_fn="dece")


def test_group_by_length_counts_source_plus_target(tmp_path, tok):
    """Planted lengths: source order and source + target order disagree, so only a sampler that
    counts both puts the longest *row* first (LengthGroupedSampler sorts one megabatch of up to
    50 batches by length, longest first)."""
    trainer = make_trainer(tmp_path, tok, loss_fn=get_loss("ce"), n=4, batch=2)
    trainer.args.train_sampling_strategy = "group_by_length"
    # source lengths 9, 8, 7, 6; target lengths 1, 2, 3, 20 -> totals 10, 10, 10, 26
    trainer.train_dataset = [
        {"input_ids": [5] * src, "labels": [5] * tgt}
        for src, tgt in ((9, 1), (8, 2), (7, 3), (6, 20))
    ]
    order = list(trainer._get_train_sampler())
    assert sorted(order) == [0, 1, 2, 3] and order[0] == 3
    # classification rows (one int label) are grouped by their input length alone
    trainer.train_dataset = [{"input_ids": [5] * n, "labels": 1} for n in (3, 9, 5)]
    assert list(trainer._get_train_sampler())[0] == 1
    # the default strategy keeps the Trainer's random sampler
    trainer.args.train_sampling_strategy = "random"
    assert type(trainer._get_train_sampler()).__name__ == "RandomSampler"
