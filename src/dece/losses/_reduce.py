"""Shared input validation, ignore_index handling and reduction for every loss in `dece.losses`.

Conventions (the same as transformers' ``loss/loss_utils.py``):

* logits ``[N, V]`` or ``[B, T, V]``, target ``[N]`` or ``[B, T]`` (no shifting inside the loss);
* tokens whose target equals ``ignore_index`` contribute neither loss nor gradient and are not
  counted;
* ``reduction="mean"`` divides the summed loss by the number of non-ignored tokens, or by
  ``num_items_in_batch`` when given (gradient accumulation); ``"sum"`` sums; ``"none"`` returns
  per-token losses shaped like ``target`` with 0 at ignored positions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

REDUCTIONS = ("mean", "sum", "none")


@dataclass(frozen=True)
class Flat:
    """Validated inputs flattened to rows.

    logits: ``[N, V]`` (a view of the input when it is contiguous)
    target: ``[N]`` int64 with ignored positions replaced by 0 (safe for ``gather``)
    valid: ``[N]`` bool, False at ignored positions
    n_valid: number of non-ignored tokens
    target_shape: the shape of the caller's target (for ``reduction="none"``)
    """

    logits: Tensor
    target: Tensor
    valid: Tensor
    n_valid: int
    target_shape: torch.Size


def check_unit_interval(name: str, value: float, *, low_open: bool, high_open: bool) -> float:
    """Return ``float(value)`` or raise ValueError unless it lies in the interval named by the
    flags (e.g. ``(0, 1]`` for ``low_open=True, high_open=False``)."""
    v = float(value)
    lo_ok = v > 0.0 if low_open else v >= 0.0
    hi_ok = v < 1.0 if high_open else v <= 1.0
    if not (math.isfinite(v) and lo_ok and hi_ok):
        interval = f"{'(' if low_open else '['}0, 1{')' if high_open else ']'}"
        raise ValueError(f"{name} must lie in {interval}, got {value!r}")
    return v


def check_nonnegative(name: str, value: float) -> float:
    """Return ``float(value)`` or raise ValueError unless it is finite and ``>= 0``."""
    v = float(value)
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


def check_reduction(reduction: str) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def check_target(target: Tensor, ref: Tensor, ref_name: str) -> None:
    """ValueError naming ``target`` unless it is an integer tensor shaped like ``ref [..., X]``
    without its last dimension and on ``ref``'s device (``ref_name``: logits or hidden)."""
    if not isinstance(target, Tensor) or target.is_floating_point() or target.is_complex():
        raise ValueError("target must be an integer torch.Tensor of class indices")
    if tuple(target.shape) != tuple(ref.shape[:-1]):
        raise ValueError(
            f"target shape {tuple(target.shape)} does not match {ref_name} shape "
            f"{tuple(ref.shape)} (expected {tuple(ref.shape[:-1])})"
        )
    if target.device != ref.device:
        raise ValueError(f"target is on {target.device} but {ref_name} on {ref.device}")


def flat_targets(target: Tensor, vocab: int, ignore_index: int) -> tuple[Tensor, Tensor]:
    """``target`` flattened to ``[N]`` (int64) and its ``[N]`` mask of non-ignored positions;
    ValueError naming the first flat position whose class is outside ``[0, vocab)``."""
    flat_t = target.reshape(-1).long()
    valid = flat_t != ignore_index
    bad = valid & ((flat_t < 0) | (flat_t >= vocab))
    if bool(bad.any()):
        first = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"target out of range: flat position {first} holds {int(flat_t[first])}, expected a "
            f"class in [0, {vocab}) or ignore_index={ignore_index}"
        )
    return flat_t, valid


def flatten_inputs(logits: Tensor, target: Tensor, ignore_index: int) -> Flat:
    """Validate ``logits``/``target`` and flatten them to ``[N, V]`` / ``[N]``.

    Raises ValueError naming ``logits`` or ``target`` on a wrong rank, dtype, shape mismatch or a
    target outside ``[0, V)`` that is not ``ignore_index``.
    """
    if not isinstance(logits, Tensor) or not logits.is_floating_point():
        raise ValueError("logits must be a floating-point torch.Tensor")
    if logits.dim() not in (2, 3):
        raise ValueError(f"logits must be [N, V] or [B, T, V], got shape {tuple(logits.shape)}")
    check_target(target, logits, "logits")
    vocab = logits.shape[-1]
    if vocab < 1:
        raise ValueError("logits must have a non-empty last (vocabulary) dimension")
    flat_t, valid = flat_targets(target, vocab, ignore_index)
    safe_t = torch.where(valid, flat_t, torch.zeros_like(flat_t))
    return Flat(
        logits=logits.reshape(-1, vocab),
        target=safe_t,
        valid=valid,
        n_valid=int(valid.sum()),
        target_shape=target.shape,
    )


def denominator(
    reduction: str, n_valid: int, num_items_in_batch: int | float | Tensor | None
) -> float:
    """The number the summed loss is divided by: 1 for ``"sum"``/``"none"``; for ``"mean"``
    ``num_items_in_batch`` when given, else the number of non-ignored tokens (1 when there are
    none, so an all-ignored batch gives a loss of 0, not NaN)."""
    if reduction != "mean":
        return 1.0
    if num_items_in_batch is None:
        return float(max(n_valid, 1))
    value = float(
        num_items_in_batch.item() if isinstance(num_items_in_batch, Tensor) else num_items_in_batch
    )
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"num_items_in_batch must be a finite number >= 0, got {value!r}")
    if value == 0:
        if n_valid > 0:
            raise ValueError(
                f"num_items_in_batch is 0 but the batch holds {n_valid} non-ignored tokens"
            )
        return 1.0
    return value


def reduce_rows(per_row: Tensor, flat: Flat, reduction: str, denom: float) -> Tensor:
    """Reduce per-row losses ``[N]`` (already 0 at ignored rows) with autograd: a scalar for
    ``"mean"``/``"sum"``, a tensor shaped like the target for ``"none"``."""
    if reduction == "none":
        return per_row.reshape(flat.target_shape)
    total = per_row.sum()
    return total / denom if reduction == "mean" else total


def masked_rows(per_row: Tensor, valid: Tensor) -> Tensor:
    """Zero ignored rows with ``where`` (not a product) so non-finite values there cannot leak."""
    return torch.where(valid, per_row, torch.zeros_like(per_row))


def upcast(logits: Tensor) -> Tensor:
    """fp16/bf16 -> fp32 for numerically safe baselines; fp32/fp64 unchanged."""
    return logits if logits.dtype in (torch.float32, torch.float64) else logits.float()
