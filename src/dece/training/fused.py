"""Causal-LM training loss without logits: the model body, then the fused linear DeCE / CE.

:func:`fused_causal_lm_loss` runs the model's ordinary ``forward`` (so DDP, accelerate and PEFT
wrappers see a normal call) with a temporary forward pre-hook on the model's output embedding
that keeps its input, the last hidden states ``[B, T, H]``, and hands the head an empty
``[B, 0, H]`` slice instead: the model returns ``[B, 0, V]`` logits and nothing of size tokens x
vocabulary is ever formed. The hidden states then go through
:func:`dece.losses.fused_linear_dece_loss` with the head's own ``weight`` (tied to the input
embedding or not) and ``bias``, whose gradients reach the parameters like any other use of them.
The hook lives on the model instance for the duration of one call (no global patching).

Supported heads: a plain ``nn.Linear`` (or subclass), also inside PEFT's ``modules_to_save``
wrapper. A head adapted by LoRA itself, and models that transform logits after the head
(``final_logit_softcapping``, ``logit_scale``, ``logits_scaling``), are refused with a
``ValueError``: the fused loss would not equal the model's own logits there.

Losses (``FUSED_LOSSES``): ``"dece"`` (``alpha_base`` 0.99, ``label_smoothing`` 0.1 by default,
as :func:`dece.losses.dece_loss`) and ``"ce"`` (``label_smoothing`` 0.0 by default, as
:func:`dece.losses.ce_loss`), computed as DeCE with ``alpha = 1`` (``epoch = 0``), which is
exactly label-smoothed cross-entropy; the ``epoch`` argument is then ignored.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from dece.losses import fused_linear_dece_loss

__all__ = ["FUSED_LOSSES", "FusedLMOutput", "fused_causal_lm_loss", "fused_loss_settings"]

#: loss name -> its hyperparameters and their defaults
FUSED_LOSSES: Mapping[str, Mapping[str, float]] = {
    "dece": {"alpha_base": 0.99, "label_smoothing": 0.1},
    "ce": {"label_smoothing": 0.0},
}
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling")


@dataclass(frozen=True)
class FusedLMOutput:
    """loss: scalar (sum / ``num_items_in_batch``, or / the number of target tokens);
    token_ce: ``[B, T]`` plain per-token cross-entropy (detached, 0 at ignored positions) when
    requested, else None."""

    loss: Tensor
    token_ce: Tensor | None = None


def fused_loss_settings(loss: str, **hyperparameters: float) -> dict[str, float]:
    """``alpha_base``/``label_smoothing`` for :func:`fused_linear_dece_loss`, from a loss name and
    its hyperparameters (defaults filled in); ValueError for an unknown name or hyperparameter.
    ``"ce"`` returns ``alpha_base=1.0`` (label-smoothed cross-entropy)."""
    if loss not in FUSED_LOSSES:
        raise ValueError(
            f"loss must be one of {sorted(FUSED_LOSSES)} for the fused path, got {loss!r}"
        )
    allowed = FUSED_LOSSES[loss]
    unknown = sorted(set(hyperparameters) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown hyperparameter(s) {unknown} for fused loss {loss!r}; allowed: {sorted(allowed)}"
        )
    settings = {"alpha_base": 1.0, **allowed, **hyperparameters}
    return {k: float(v) for k, v in settings.items()}


def fused_causal_lm_loss(
    model: nn.Module,
    input_ids: Tensor,
    attention_mask: Tensor | None,
    shift_labels: Tensor,
    *,
    epoch: float,
    loss: str = "dece",
    num_items_in_batch: int | float | Tensor | None = None,
    return_token_ce: bool = False,
    ignore_index: int = -100,
    model_kwargs: Mapping[str, Any] | None = None,
    **hyperparameters: float,
) -> FusedLMOutput:
    """The training loss of a causal LM on one batch, with no logits in memory.

    Args:
        model: a Hugging Face causal LM, optionally PEFT-wrapped and/or wrapped by DDP /
            accelerate (anything whose ``forward`` reaches the model's output embedding).
        input_ids: ``[B, T]`` token ids; attention_mask: ``[B, T]`` or None.
        shift_labels: ``[B, T]`` targets already aligned with the positions (labels moved one
            left, see :mod:`dece.training.collate`); ``ignore_index`` where not trained.
        epoch: the epoch handed to DeCE (ignored by ``"ce"``).
        loss: ``"dece"`` or ``"ce"``; ``**hyperparameters`` as in :data:`FUSED_LOSSES`.
        num_items_in_batch: divisor of the summed loss (gradient accumulation / DDP).
        return_token_ce: also return the per-token plain cross-entropy ``[B, T]``.
        model_kwargs: further keyword arguments of the model's ``forward`` (e.g. position_ids).

    Returns:
        :class:`FusedLMOutput`.
    """
    settings = fused_loss_settings(loss, **hyperparameters)
    if loss == "ce":
        epoch = 0.0
    if shift_labels.shape != input_ids.shape:
        raise ValueError(
            f"shift_labels shape {tuple(shift_labels.shape)} differs from input_ids shape "
            f"{tuple(input_ids.shape)}"
        )
    inner = _unwrap(model)
    _check_no_logit_transform(inner)
    head = inner.get_output_embeddings()
    if head is None:
        raise ValueError(f"{type(inner).__name__} has no output embedding (not a causal LM?)")
    weight, bias = _head_parameters(head)
    kwargs = dict(model_kwargs or {})
    kwargs.setdefault("use_cache", False)
    with _capture_head_input(head) as captured:
        model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
    if "hidden" not in captured:
        raise ValueError(
            f"the forward of {type(inner).__name__} never called its output embedding "
            f"{type(head).__name__}"
        )
    hidden = captured["hidden"]  # [B, T, H]
    out = fused_linear_dece_loss(
        hidden,
        weight,
        shift_labels,
        bias,
        epoch=epoch,
        alpha_base=settings["alpha_base"],
        label_smoothing=settings["label_smoothing"],
        ignore_index=ignore_index,
        num_items_in_batch=num_items_in_batch,
        return_token_ce=return_token_ce,
    )
    if return_token_ce:
        return FusedLMOutput(loss=out[0], token_ce=out[1])
    return FusedLMOutput(loss=out)


def _unwrap(model: nn.Module) -> nn.Module:
    """DDP / accelerate wrappers (``.module``) and PEFT (``get_base_model``) -> the HF model."""
    while isinstance(getattr(model, "module", None), nn.Module):
        model = model.module
    peft_config = getattr(model, "active_peft_config", None)
    if peft_config is not None and getattr(peft_config, "is_prompt_learning", False):
        raise ValueError(
            "the fused loss does not support PEFT prompt-learning methods (they change the "
            "sequence the head sees); use a LoRA-style adapter or the unfused loss"
        )
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    if not hasattr(model, "get_output_embeddings"):
        raise ValueError(f"{type(model).__name__} is not a Hugging Face model")
    return model


def _check_no_logit_transform(model: nn.Module) -> None:
    config = getattr(model, "config", None)
    for name in _LOGIT_TRANSFORMS:
        value = getattr(config, name, None)
        if value not in (None, 1, 1.0):
            raise ValueError(
                f"{type(model).__name__} applies {name}={value!r} to its logits; the fused loss "
                "takes the head's plain output, so use the unfused loss for this model"
            )


def _head_parameters(head: nn.Module) -> tuple[Tensor, Tensor | None]:
    """``(weight [V, H], bias [V] | None)`` of the module the head's forward applies."""
    active = head
    if hasattr(head, "modules_to_save") and hasattr(head, "original_module"):  # PEFT wrapper
        name = getattr(head, "active_adapter", None)
        name = name[0] if isinstance(name, list | tuple) else name
        use_copy = not getattr(head, "disable_adapters", False) and name in head.modules_to_save
        active = head.modules_to_save[name] if use_copy else head.original_module
    if not isinstance(active, nn.Linear):
        raise ValueError(
            f"the fused loss needs the output embedding to be an nn.Linear, got "
            f"{type(active).__name__} (a LoRA adapter on lm_head? leave lm_head out of "
            "target_modules, or use the unfused loss)"
        )
    return active.weight, active.bias


@contextlib.contextmanager
def _capture_head_input(head: nn.Module) -> Iterator[dict[str, Tensor]]:
    """While active, the head's input is stored under ``"hidden"`` and replaced by an empty
    slice along the position axis (``[B, 0, H]``), so the head computes no logits."""
    captured: dict[str, Tensor] = {}

    def pre_hook(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        hidden = args[0]
        if hidden.dim() != 3:
            raise ValueError(
                f"the output embedding received shape {tuple(hidden.shape)}, expected [B, T, H]"
            )
        captured["hidden"] = hidden
        return (hidden[:, :0], *args[1:])

    handle = head.register_forward_pre_hook(pre_hook)
    try:
        yield captured
    finally:
        handle.remove()
