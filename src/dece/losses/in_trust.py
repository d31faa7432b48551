"""In-trust loss (Huang et al., "Named Entity Recognition via Noise Aware Training Mechanism with
Data Filter", Findings of ACL-IJCNLP 2021), used as a baseline in the DeCE paper.

Formula implemented, per token with ``p = softmax(z)`` and one-hot label ``y`` of target ``t``::

    L_IT  = alpha * L_CE + beta * L_DCE
    L_CE  = -log p_t
    L_DCE = -sum_i p_i * log(delta * p_i + (1 - delta) * y_i)

``L_DCE`` ("distrust" CE) trusts the label only partly: the model's own prediction ``p`` is the
target and ``delta * p + (1 - delta) * y`` the prediction. Off the target column
``log(delta p_i) = log delta + log p_i`` is finite, so the formula needs no clamping. The authors'
reference code (``In_trust_Loss``, defaults ``alpha=1, beta=0.8, delta=0.5``) clamps ``p`` to
``>= 1e-7`` and the one-hot to ``>= 1e-4``; ``label_floor=1e-4`` reproduces the latter
(``y_i = max(onehot_i, label_floor)``). The DeCE authors' baseline used ``alpha=0.2, beta=0.8``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dece.losses._module import LossModule
from dece.losses._reduce import (
    check_nonnegative,
    check_reduction,
    check_unit_interval,
    denominator,
    flatten_inputs,
    masked_rows,
    reduce_rows,
    upcast,
)

__all__ = ["InTrustLoss", "in_trust_loss"]


def _check_hparams(alpha: float, beta: float, delta: float, label_floor: float) -> None:
    check_nonnegative("alpha", alpha)
    check_nonnegative("beta", beta)
    check_unit_interval("delta", delta, low_open=True, high_open=False)
    check_unit_interval("label_floor", label_floor, low_open=False, high_open=True)


def in_trust_loss(
    logits: Tensor,
    target: Tensor,
    *,
    alpha: float = 1.0,
    beta: float = 0.8,
    delta: float = 0.5,
    label_floor: float = 0.0,
    ignore_index: int = -100,
    reduction: str = "mean",
    num_items_in_batch: int | float | Tensor | None = None,
) -> Tensor:
    """In-trust loss ``alpha * CE + beta * DCE`` (formula and source in the module docstring).

    ``delta`` in ``(0, 1]``, ``alpha, beta >= 0``, ``label_floor`` in ``[0, 1)``.
    logits ``[N, V]`` / ``[B, T, V]``, target ``[N]`` / ``[B, T]``; reduction and
    ``num_items_in_batch`` as in :func:`dece.losses.dece_loss`. Builds dense ``[N, V]``
    temporaries (a baseline, not tuned for memory).
    """
    _check_hparams(alpha, beta, delta, label_floor)
    check_reduction(reduction)
    flat = flatten_inputs(logits, target, ignore_index)
    denom = denominator(reduction, flat.n_valid, num_items_in_batch)
    tt = flat.target[:, None]  # [N, 1]
    logp = torch.log_softmax(upcast(flat.logits), -1)  # [N, V]
    p = logp.exp()
    logp_t = logp.gather(1, tt)  # [N, 1]
    if label_floor > 0:  # log(delta p_i + (1 - delta) floor) off the target
        m = torch.logaddexp(
            logp + math.log(delta),
            torch.full_like(logp[:1, :1], math.log((1 - delta) * label_floor)),
        )
    else:
        m = logp + math.log(delta)
    m_t = torch.log(delta * logp_t.exp() + (1.0 - delta))  # target column, y_t = 1
    dce = -(p * m.scatter(1, tt, m_t)).sum(1)  # [N]
    per_row = alpha * (-logp_t[:, 0]) + beta * dce
    return reduce_rows(masked_rows(per_row, flat.valid), flat, reduction, denom)


class InTrustLoss(LossModule):
    """Module form of :func:`in_trust_loss`.

    ``forward(logits [N, V] | [B, T, V], target [N] | [B, T], epoch=None, num_items_in_batch=None)``
    (``epoch`` is accepted and ignored).
    """

    def __init__(
        self,
        alpha: float = 1.0,
        beta: float = 0.8,
        delta: float = 0.5,
        label_floor: float = 0.0,
        ignore_index: int = -100,
        reduction: str = "mean",
    ) -> None:
        _check_hparams(alpha, beta, delta, label_floor)
        hparams = {"alpha": alpha, "beta": beta, "delta": delta, "label_floor": label_floor}
        super().__init__(in_trust_loss, hparams, ignore_index, reduction)
