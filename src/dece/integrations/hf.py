"""DeCE (or any :mod:`dece.losses` loss) inside a ``transformers.Trainer`` or ``trl.SFTTrainer``.

Usage::

    loss = TrainerLoss("dece", alpha_base=0.99, label_smoothing=0.1, epoch_mode="integer")
    trainer = Trainer(model, args, train_dataset=ds, compute_loss_func=loss,
                      callbacks=[loss.callback])          # or trl.SFTTrainer(...)

How it fits the Trainer (transformers ``Trainer.compute_loss``, trl ``SFTTrainer.compute_loss``):

* the Trainer pops ``labels``, runs the model without them and calls
  ``loss(outputs, labels, num_items_in_batch=...)``;
* ``labels`` are the unshifted ``[B, T]`` ids of a causal LM (-100 where not trained); the
  target of position ``t`` is ``labels[:, t + 1]``, so they are shifted left here as in
  transformers' ``ForCausalLMLoss`` (pad with -100, drop the first), without copying the
  logits. ``shift_labels=False`` for models whose logits already align with the labels
  (seq2seq, classification);
* ``num_items_in_batch`` is the Trainer's count of target tokens over the whole accumulated batch
  and all processes; the loss is the sum divided by it, which the Trainer treats as already
  scaled for gradient accumulation, and under DDP the Trainer multiplies it by the process count
  (gradients are averaged across processes), so accumulation and data parallelism give the mean
  over the global batch, as ``dece train`` does;
* the epoch DeCE needs comes from ``loss.callback``, a
  :class:`dece.training.callbacks.EpochTracker` fed by the Trainer's ``state.epoch``: the
  paper's 1-based integer epoch or the continuous ``1 + state.epoch``.

``compute_loss_func`` receives logits the model already computed, so this path holds the
``[B, T, V]`` logits (and ``dece_loss`` their gradient). The fused path, which never forms them,
needs the hidden states: :func:`dece.training.fused.fused_causal_lm_loss`, used by
``dece train`` / ``DeceTrainer``. TRL >= 1.0 marks ``compute_loss_func`` deprecated (removal
planned for TRL 2.0) and, with it set, runs one extra no-grad forward per step for its token
accuracy / entropy metrics.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from dece.losses import get_loss
from dece.training.callbacks import EpochTracker

__all__ = ["TrainerLoss", "shift_causal_labels"]


def shift_causal_labels(labels: Tensor, ignore_index: int = -100) -> Tensor:
    """``[B, T]`` labels -> ``[B, T]`` targets aligned with the logits: ``out[:, t] =
    labels[:, t + 1]``, the last position ``ignore_index`` (transformers' ``ForCausalLMLoss``)."""
    if labels.dim() < 1 or labels.shape[-1] < 1:
        raise ValueError(f"labels must have a sequence axis, got shape {tuple(labels.shape)}")
    return F.pad(labels, (0, 1), value=ignore_index)[..., 1:]


class _StartAwareEpochTracker(EpochTracker):
    """:class:`EpochTracker` that records whether a Trainer has started it (so a loss whose
    callback was never registered fails loudly instead of staying at epoch 1)."""

    started = False

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
        self.started = True
        return super().on_train_begin(args, state, control, **kwargs)


class TrainerLoss:
    """A ``compute_loss_func`` computing a :mod:`dece.losses` loss with the Trainer's epoch.

    Args:
        loss: a registry name (``"dece"``, ``"ce"``, ``"gce"``, ``"sce"``, ``"in_trust"``).
        epoch_mode: ``"integer"`` (1 during the first epoch, 2 during the second, ...) or
            ``"continuous"`` (``1 + state.epoch``, refreshed every optimizer step).
        shift_labels: True for causal LMs (labels as the Trainer / TRL collators give them);
            False when ``logits[..., t, :]`` already predicts ``labels[..., t]``.
        ignore_index: label value that is not trained.
        **hyperparameters: the loss's own (e.g. ``alpha_base``, ``label_smoothing``), validated
            now by :func:`dece.losses.get_loss`.

    Attributes:
        callback: pass it to the Trainer (``callbacks=[loss.callback]``); it holds the epoch.
    """

    def __init__(
        self,
        loss: str = "dece",
        *,
        epoch_mode: str = "integer",
        shift_labels: bool = True,
        ignore_index: int = -100,
        **hyperparameters: Any,
    ) -> None:
        self.name = loss
        self.loss_fn = get_loss(loss, **hyperparameters)
        self.callback = _StartAwareEpochTracker(epoch_mode)
        self.shift_labels = bool(shift_labels)
        self.ignore_index = int(ignore_index)

    @property
    def epoch(self) -> float:
        """The epoch the loss receives now."""
        return float(self.callback.epoch)

    def __call__(
        self,
        outputs: Any,
        labels: Tensor | None,
        num_items_in_batch: int | Tensor | None = None,
    ) -> Tensor:
        """The loss of one micro-batch: ``outputs.logits`` ``[B, T, V]`` against ``labels``
        ``[B, T]`` (shifted when ``shift_labels``); a scalar, sum / ``num_items_in_batch`` when
        given (else the mean over target tokens)."""
        if labels is None:
            raise ValueError(
                "TrainerLoss got labels=None: the batch has no 'labels' (check the collator)"
            )
        if torch.is_grad_enabled() and not self.callback.started:
            raise ValueError(
                "TrainerLoss is training without its epoch callback: pass "
                "callbacks=[loss.callback] to the Trainer (or trainer.add_callback(loss.callback))"
            )
        logits = _logits_of(outputs)
        target = shift_causal_labels(labels, self.ignore_index) if self.shift_labels else labels
        return self.loss_fn(
            logits,
            target.to(logits.device),
            epoch=self.epoch,
            ignore_index=self.ignore_index,
            num_items_in_batch=num_items_in_batch,
        )

    def __repr__(self) -> str:
        return (
            f"TrainerLoss({self.loss_fn!r}, epoch_mode={self.callback.mode!r}, "
            f"shift_labels={self.shift_labels})"
        )


def _logits_of(outputs: Any) -> Tensor:
    if isinstance(outputs, Mapping):
        if "logits" not in outputs:
            raise ValueError(f"model outputs have no 'logits' (keys: {sorted(outputs)})")
        return outputs["logits"]
    if isinstance(outputs, tuple | list) and outputs and isinstance(outputs[0], Tensor):
        return outputs[0]
    if isinstance(outputs, Tensor):
        return outputs
    raise ValueError(f"cannot find logits in model outputs of type {type(outputs).__name__}")
