"""``transformers.Trainer`` whose loss is a :mod:`dece.losses` function given the current epoch.

The loss is plugged in through :meth:`DeceTrainer.compute_loss` (no global patching): the model
is run *without* labels, so it computes no loss of its own, and the registry loss receives the
logits, the aligned targets, the epoch from :class:`~dece.training.callbacks.EpochTracker` and
transformers' ``num_items_in_batch`` (the number of target tokens in the whole accumulated,
all-process batch), so gradient accumulation and data parallelism give the same mean loss as one
big batch.

Per-example hook: with ``example_loss_hook`` set (see :mod:`dece.training.example_losses`), every
training step also hands the plain per-token cross-entropy of the batch, computed from the same
logits, to the hook, keyed by the rows' positions in the training set (the collator's
``example_index``).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from transformers import Trainer

from dece.training.callbacks import EpochTracker
from dece.training.example_losses import ExampleLossHook, token_cross_entropy

logger = logging.getLogger(__name__)


class DeceTrainer(Trainer):
    """A ``Trainer`` computing ``loss_fn(logits, target, epoch=..., num_items_in_batch=...)``.

    Args:
        loss_fn: a ``dece.losses`` loss (``get_loss(name, **hyperparameters)``): called with logits
            ``[B, T, V]`` (``[B, C]`` for classification) and targets ``[B, T]`` (``[B]``),
            ``-100`` = ignored, returning a scalar (sum / ``num_items_in_batch`` when given).
        epoch_tracker: supplies the epoch handed to the loss; a 1-based integer tracker is added
            when omitted.
        example_loss_hook: receives per-example values each training step (module docstring).
        fused_loss: causal LMs only: ``{"loss": "dece" | "ce", **hyperparameters}`` trains with
            :func:`dece.training.fused.fused_causal_lm_loss` (the model's own output embedding,
            no ``[B, T, V]`` logits in memory) instead of ``loss_fn`` on the logits.
        *args, **kwargs: as for ``transformers.Trainer``.
    """

    def __init__(
        self,
        *args: Any,
        loss_fn: Any,
        epoch_tracker: EpochTracker | None = None,
        example_loss_hook: ExampleLossHook | None = None,
        fused_loss: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.example_loss_hook = example_loss_hook
        self.fused_loss = dict(fused_loss) if fused_loss is not None else None
        if self.fused_loss is not None:
            from dece.training.fused import fused_loss_settings

            hyper = {k: v for k, v in self.fused_loss.items() if k != "loss"}
            fused_loss_settings(self.fused_loss.get("loss", "dece"), **hyper)  # validates
        if not callable(loss_fn):
            raise ValueError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
        self.loss_fn = loss_fn
        if epoch_tracker is None:
            epoch_tracker = EpochTracker("integer")
        self.epoch_tracker = epoch_tracker
        if not any(cb is epoch_tracker for cb in self.callback_handler.callbacks):
            self.add_callback(epoch_tracker)
        # Makes the Trainer count the target tokens of each accumulated batch (all processes)
        # and pass the count to compute_loss as `num_items_in_batch`.
        self.model_accepts_loss_kwargs = True
        self._loss_sum: torch.Tensor | None = None
        self._loss_start_step: int | None = None

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        """With ``train_sampling_strategy="group_by_length"`` a row's length is :func:`_row_length`
        (source *plus* target tokens; the Trainer's default counts ``input_ids`` only, which
        misses a seq2seq row's target); otherwise the Trainer's sampler."""
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.args.train_sampling_strategy != "group_by_length" or not isinstance(dataset, list):
            return super()._get_train_sampler(train_dataset)
        from transformers.trainer_pt_utils import LengthGroupedSampler

        lengths = [_row_length(row) for row in dataset]
        batch = self.args.train_batch_size * self.args.gradient_accumulation_steps
        return LengthGroupedSampler(batch, lengths=lengths)

    # ------------------------------------------------------------------------------------------
    def current_loss_epoch(self) -> float:
        """The epoch value the loss receives now (1, 2, ... or continuous)."""
        return float(self.epoch_tracker.epoch)

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        inputs = dict(inputs)
        indices = inputs.pop("example_index", None)  # [B] positions in the training set
        labels = inputs.pop("labels", None)
        shift_labels = inputs.pop("shift_labels", None)  # causal LMs: labels moved one left
        if labels is None:
            raise ValueError("compute_loss: the batch has no 'labels'")
        target = shift_labels if shift_labels is not None else labels  # [B, T] or [B]
        record = self.example_loss_hook is not None and indices is not None and model.training
        if self.fused_loss is not None:
            loss, outputs, token_ce = self._fused_step(model, inputs, target, num_items_in_batch,
                                                       record)  # fmt: skip
            valid = target != -100
        else:
            outputs = model(**inputs)
            logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]  # [B, T, V]
            loss = self.loss_fn(
                logits, target, epoch=self.current_loss_epoch(),
                num_items_in_batch=num_items_in_batch,
            )  # fmt: skip
            if record:
                token_ce, valid = token_cross_entropy(logits, target)
        if record:
            self.example_loss_hook.record(
                self.current_loss_epoch(), int(self.state.global_step), indices, token_ce, valid
            )
        # A loss normalised by the global token count is already scaled for accumulation; with
        # DDP averaging gradients over processes, multiply back by the process count.
        self.loss_is_scaled_for_ga = num_items_in_batch is not None
        if num_items_in_batch is not None and self.args.average_tokens_across_devices:
            loss = loss * self.accelerator.num_processes
        return (loss, outputs) if return_outputs else loss

    def _fused_step(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        target: torch.Tensor,
        num_items_in_batch: torch.Tensor | int | None,
        record: bool,
    ) -> tuple[torch.Tensor, dict[str, Any], torch.Tensor | None]:
        """The fused linear loss of a causal-LM batch: (loss, outputs, per-token CE or None)."""
        from dece.training.fused import fused_causal_lm_loss

        if target.dim() != 2 or "input_ids" not in inputs:
            raise ValueError("fused_loss applies to causal LMs only (batches with shift_labels)")
        settings = dict(self.fused_loss)  # type: ignore[arg-type]
        out = fused_causal_lm_loss(
            model, inputs["input_ids"], inputs.get("attention_mask"), target,
            epoch=self.current_loss_epoch(), loss=settings.pop("loss", "dece"),
            num_items_in_batch=num_items_in_batch, return_token_ce=record, **settings,
        )  # fmt: skip
        return out.loss, {"loss": out.loss}, out.token_ce

    def training_step(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor:
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self._loss_start_step is None:
            self._loss_start_step = self.state.global_step
        self._loss_sum = loss.detach() if self._loss_sum is None else self._loss_sum + loss.detach()
        return loss

    def epoch_train_loss(self) -> float | None:
        """Mean training loss per optimizer step since the previous call (averaged over
        processes; a collective under DDP, so call it on every process), then reset."""
        if self._loss_sum is None or self._loss_start_step is None:
            return None
        steps = max(1, self.state.global_step - self._loss_start_step)
        total = self.accelerator.gather(self._loss_sum.reshape(1)).float().mean()
        self._loss_sum, self._loss_start_step = None, None
        return float(total) / steps


def _row_length(row: dict[str, Any]) -> int:
    """Tokens a training row costs: ``input_ids`` plus list ``labels`` (a seq2seq target; a causal
    row's labels repeat its length, which doubles every row alike and keeps the order; a
    classification label is one int and adds nothing)."""
    labels = row.get("labels")
    return len(row["input_ids"]) + (len(labels) if isinstance(labels, (list, tuple)) else 0)
