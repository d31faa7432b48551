"""TrainerLoss in a plain transformers.Trainer: label shifting as transformers does it, the
epoch from the callback, num_items_in_batch under gradient accumulation, logged loss values."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tiny_setup import IGNORE, pad_collate, tokenized_rows
from transformers import AutoModelForCausalLM, Trainer, TrainingArguments
from transformers.loss.loss_utils import ForCausalLMLoss

from dece.integrations import TrainerLoss, shift_causal_labels
from dece.losses import dece_loss

pytestmark = pytest.mark.usefixtures("one_thread")


def dense_dece_sum(logits, labels, *, epoch, alpha_base, eps):
    """Naive float64 DeCE summed over the non-ignored tokens, shifting by slicing the logits
    (``logits[:, :-1]`` predicts ``labels[:, 1:]``), independent of the library's shifting."""
    z, t = logits[:, :-1].double(), labels[:, 1:]
    valid = t != IGNORE
    y = (1 - eps) * F.one_hot(torch.where(valid, t, 0), z.shape[-1]).double() + eps / z.shape[-1]
    a = alpha_base**epoch
    per_tok = -(y * torch.log(a * torch.softmax(z, -1) + (1 - a) * y)).sum(-1)
    return per_tok[valid].sum()


def test_shifting_matches_transformers_for_causal_lm_loss():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 9, 17, generator=g)
    labels = torch.randint(0, 17, (3, 9), generator=g)
    labels[0, :4] = IGNORE
    labels[2, 6:] = IGNORE
    ce = TrainerLoss("ce")
    with torch.no_grad():
        for n in (None, 11):
            ours = ce({"logits": logits}, labels, num_items_in_batch=n)
            theirs = ForCausalLMLoss(logits, labels, vocab_size=17, num_items_in_batch=n)
            torch.testing.assert_close(ours, theirs)
        got = TrainerLoss("dece", alpha_base=0.9, label_smoothing=0.1)((logits,), labels)
    ref = dense_dece_sum(logits, labels, epoch=1.0, alpha_base=0.9, eps=0.1)
    torch.testing.assert_close(got.double(), ref / int((labels[:, 1:] != IGNORE).sum()))
    assert shift_causal_labels(labels)[:, -1].eq(IGNORE).all()


def test_unshifted_mode_and_errors():
    logits, labels = torch.randn(4, 5), torch.tensor([0, 1, 4, IGNORE])
    with torch.no_grad():
        got = TrainerLoss("dece", shift_labels=False)({"logits": logits}, labels)
    torch.testing.assert_close(got, dece_loss(logits, labels, epoch=1.0))
    loss = TrainerLoss("dece")
    with pytest.raises(ValueError, match="callbacks=\\[loss.callback\\]"):
        loss({"logits": torch.randn(1, 3, 5, requires_grad=True)}, torch.zeros(1, 3).long())
    with pytest.raises(ValueError, match="labels=None"):
        loss({"logits": logits}, None)
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        TrainerLoss("dece", beta=1.0)
    with pytest.raises(ValueError, match="epoch_mode"):
        TrainerLoss("dece", epoch_mode="weekly")


class Recorder:
    """Wraps the loss: keeps (logits, labels, num_items_in_batch, epoch) of every training call."""

    def __init__(self, loss: TrainerLoss) -> None:
        self.loss, self.calls = loss, []

    def __call__(self, outputs, labels, num_items_in_batch=None):
        value = self.loss(outputs, labels, num_items_in_batch=num_items_in_batch)
        if torch.is_grad_enabled():
            n = int(num_items_in_batch)
            self.calls.append((outputs["logits"].detach(), labels, n, self.loss.epoch))
        return value


def train(tiny_dir, rows, tmp_path, *, batch, accumulation, epoch_mode="integer", name="run"):
    loss = TrainerLoss("dece", alpha_base=0.9, label_smoothing=0.1, epoch_mode=epoch_mode)
    recorder = Recorder(loss)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    args = TrainingArguments(
        output_dir=str(tmp_path / name), per_device_train_batch_size=batch,
        gradient_accumulation_steps=accumulation, num_train_epochs=2, learning_rate=0.5,
        optim="sgd", lr_scheduler_type="constant", warmup_steps=0, max_grad_norm=0.0,
        logging_steps=1, report_to=[], save_strategy="no", use_cpu=True, seed=0,
        disable_tqdm=True,
    )  # fmt: skip
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=tokenized_rows(tiny_dir, rows),
        data_collator=pad_collate,
        compute_loss_func=recorder,
        callbacks=[loss.callback],
    )
    trainer.train()
    logged = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return model, recorder.calls, logged


def test_gradient_accumulation_epochs_and_logged_loss(tiny_dir, rows, tmp_path):
    """16 rows, global batch 8: 2 optimizer steps per epoch, 2 epochs. Batch 8 and batch 4 x 2
    accumulation steps reach the same weights (SGD exposes any wrong normalisation); the loss
    sees epoch 1, 1, 2, 2; every logged loss equals the dense fp64 DeCE of the recorded logits
    summed over the step's micro-batches / the step's target-token count."""
    start = AutoModelForCausalLM.from_pretrained(tiny_dir).state_dict()
    one, calls_one, logged_one = train(tiny_dir, rows, tmp_path, batch=8, accumulation=1)
    acc, calls_acc, logged_acc = train(tiny_dir, rows, tmp_path, batch=4, accumulation=2)
    assert [c[3] for c in calls_one] == [1.0, 1.0, 2.0, 2.0]
    assert [c[3] for c in calls_acc] == [1.0] * 4 + [2.0] * 4
    moved = 0
    for (name, p_one), p_acc in zip(
        one.state_dict().items(), acc.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(p_acc, p_one, rtol=1e-4, atol=1e-6, msg=name)
        moved += not torch.equal(p_one, start[name])
    assert moved > 0
    for calls, logged, per_step in ((calls_one, logged_one, 1), (calls_acc, logged_acc, 2)):
        assert len(logged) == 4
        for step, value in enumerate(logged):
            micro = calls[step * per_step : (step + 1) * per_step]
            n_items = sum(int((lab[:, 1:] != IGNORE).sum()) for _, lab, _, _ in micro)
            assert all(n == n_items for _, _, n, _ in micro)  # the Trainer's global count
            ref = sum(
                dense_dece_sum(z, lab, epoch=ep, alpha_base=0.9, eps=0.1) for z, lab, _, ep in micro
            )
            assert value == pytest.approx(float(ref) / n_items, rel=1e-5)


def test_continuous_epoch_advances_every_step(tiny_dir, rows, tmp_path):
    _, calls, _ = train(tiny_dir, rows, tmp_path, batch=8, accumulation=1, epoch_mode="continuous")
    assert [c[3] for c in calls] == pytest.approx([1.0, 1.5, 2.0, 2.5])
