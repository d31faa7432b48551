"""Symmetric cross-entropy (Wang et al., "Symmetric Cross Entropy for Robust Learning with Noisy
Labels", ICCV 2019).

Per token with ``p = softmax(z)`` and one-hot label ``y``::

    L_SCE = alpha * L_CE + beta * L_RCE
    L_CE  = -log p_t
    L_RCE = -sum_k p_k * log y_k = -A * (1 - p_t)      (log 0 := A, paper default A = -4)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dece.losses._module import LossModule
from dece.losses._reduce import (
    check_nonnegative,
    check_reduction,
    denominator,
    flatten_inputs,
    masked_rows,
    reduce_rows,
    upcast,
)

__all__ = ["SCELoss", "sce_loss"]


def _check_hparams(alpha: float, beta: float, log_zero: float) -> None:
    check_nonnegative("alpha", alpha)
    check_nonnegative("beta", beta)
    if not math.isfinite(float(log_zero)) or float(log_zero) >= 0:
        raise ValueError(f"log_zero must be a finite negative number, got {log_zero!r}")


def sce_loss(
    logits: Tensor,
    target: Tensor,
    *,
    alpha: float = 0.1,
    beta: float = 1.0,
    log_zero: float = -4.0,
    ignore_index: int = -100,
    reduction: str = "mean",
    num_items_in_batch: int | float | Tensor | None = None,
) -> Tensor:
    """Symmetric CE ``alpha * CE + beta * RCE`` with ``RCE = -log_zero * (1 - p_t)``.

    logits ``[N, V]`` / ``[B, T, V]``, target ``[N]`` / ``[B, T]``; reduction and
    ``num_items_in_batch`` as in :func:`dece.losses.dece_loss`.
    """
    _check_hparams(alpha, beta, log_zero)
    check_reduction(reduction)
    flat = flatten_inputs(logits, target, ignore_index)
    denom = denominator(reduction, flat.n_valid, num_items_in_batch)
    logp_t = torch.log_softmax(upcast(flat.logits), -1).gather(1, flat.target[:, None])[:, 0]
    rce = float(log_zero) * torch.expm1(logp_t)  # -A * (1 - p_t), [N]
    per_row = float(alpha) * (-logp_t) + float(beta) * rce
    return reduce_rows(masked_rows(per_row, flat.valid), flat, reduction, denom)


class SCELoss(LossModule):
    """Module form of :func:`sce_loss`.

    ``forward(logits [N, V] | [B, T, V], target [N] | [B, T], epoch=None, num_items_in_batch=None)``
    (``epoch`` is accepted and ignored).
    """

    def __init__(
        self,
        alpha: float = 0.1,
        beta: float = 1.0,
        log_zero: float = -4.0,
        ignore_index: int = -100,
        reduction: str = "mean",
    ) -> None:
        _check_hparams(alpha, beta, log_zero)
        hparams = {"alpha": alpha, "beta": beta, "log_zero": log_zero}
        super().__init__(sce_loss, hparams, ignore_index, reduction)
