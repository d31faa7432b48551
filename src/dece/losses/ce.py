"""Cross-entropy baseline (optionally label-smoothed) with the `dece.losses` conventions."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from dece.losses._module import LossModule
from dece.losses._reduce import (
    check_reduction,
    check_unit_interval,
    denominator,
    flatten_inputs,
    reduce_rows,
)

__all__ = ["CELoss", "ce_loss"]


def ce_loss(
    logits: Tensor,
    target: Tensor,
    *,
    label_smoothing: float = 0.0,
    ignore_index: int = -100,
    reduction: str = "mean",
    num_items_in_batch: int | float | Tensor | None = None,
) -> Tensor:
    """Token-level cross-entropy ``-sum_i y'_i log softmax(z)_i`` with
    ``y' = (1 - eps) onehot(t) + eps / V`` (``eps = label_smoothing``), i.e.
    ``F.cross_entropy(..., label_smoothing=eps)``.

    logits ``[N, V]`` / ``[B, T, V]``, target ``[N]`` / ``[B, T]``; reduction and
    ``num_items_in_batch`` as in :func:`dece.losses.dece_loss`. Returns a scalar, or a
    ``target``-shaped tensor for ``"none"``.
    """
    eps = check_unit_interval("label_smoothing", label_smoothing, low_open=False, high_open=True)
    check_reduction(reduction)
    flat = flatten_inputs(logits, target, ignore_index)
    denom = denominator(reduction, flat.n_valid, num_items_in_batch)
    per_row = F.cross_entropy(
        flat.logits,
        target.reshape(-1).long(),
        ignore_index=ignore_index,
        reduction="none",
        label_smoothing=eps,
    )  # [N], 0 at ignored rows
    return reduce_rows(per_row, flat, reduction, denom)


class CELoss(LossModule):
    """Module form of :func:`ce_loss`.

    ``forward(logits [N, V] | [B, T, V], target [N] | [B, T], epoch=None, num_items_in_batch=None)``
    (``epoch`` is accepted and ignored, for a drop-in swap with :class:`dece.losses.DeCELoss`).
    """

    def __init__(
        self, label_smoothing: float = 0.0, ignore_index: int = -100, reduction: str = "mean"
    ) -> None:
        eps = check_unit_interval(
            "label_smoothing", label_smoothing, low_open=False, high_open=True
        )
        super().__init__(ce_loss, {"label_smoothing": eps}, ignore_index, reduction)
