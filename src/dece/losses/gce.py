"""Generalized cross-entropy (Zhang & Sabuncu, "Generalized Cross Entropy Loss for Training Deep
Neural Networks with Noisy Labels", NeurIPS 2018)."""

from __future__ import annotations

import torch
from torch import Tensor

from dece.losses._module import LossModule
from dece.losses._reduce import (
    check_reduction,
    check_unit_interval,
    denominator,
    flatten_inputs,
    masked_rows,
    reduce_rows,
    upcast,
)

__all__ = ["GCELoss", "gce_loss"]


def _check_q(q: float) -> float:
    return check_unit_interval("q", q, low_open=True, high_open=False)


def gce_loss(
    logits: Tensor,
    target: Tensor,
    *,
    q: float = 0.7,
    ignore_index: int = -100,
    reduction: str = "mean",
    num_items_in_batch: int | float | Tensor | None = None,
) -> Tensor:
    """Per token ``L_q = (1 - p_t ** q) / q`` with ``p = softmax(z)``, ``q`` in ``(0, 1]``
    (``q -> 0`` is CE, ``q = 1`` is MAE). ``p_t ** q`` is computed as ``exp(q * log_softmax_t)``.

    logits ``[N, V]`` / ``[B, T, V]``, target ``[N]`` / ``[B, T]``; reduction and
    ``num_items_in_batch`` as in :func:`dece.losses.dece_loss`.
    """
    q = _check_q(q)
    check_reduction(reduction)
    flat = flatten_inputs(logits, target, ignore_index)
    denom = denominator(reduction, flat.n_valid, num_items_in_batch)
    logp_t = torch.log_softmax(upcast(flat.logits), -1).gather(1, flat.target[:, None])[:, 0]
    per_row = -torch.expm1(q * logp_t) / q  # (1 - p_t^q) / q, [N]
    return reduce_rows(masked_rows(per_row, flat.valid), flat, reduction, denom)


class GCELoss(LossModule):
    """Module form of :func:`gce_loss`.

    ``forward(logits [N, V] | [B, T, V], target [N] | [B, T], epoch=None, num_items_in_batch=None)``
    (``epoch`` is accepted and ignored).
    """

    def __init__(self, q: float = 0.7, ignore_index: int = -100, reduction: str = "mean") -> None:
        super().__init__(gce_loss, {"q": _check_q(q)}, ignore_index, reduction)
