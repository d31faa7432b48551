"""DeCE, the Deceptive Cross-Entropy loss, as a chunked, memory-lean custom autograd Function.

For one token with logits ``z`` in R^V, target ``t``, label smoothing ``eps`` and
``a = alpha_base ** epoch``::

    p   = softmax(z)
    y'  = (1 - eps) * onehot(t) + eps / V            # smoothed target
    p'  = a * p + (1 - a) * y'                       # "deceptive" blend of prediction and label
    L   = -sum_i y'_i * log(p'_i)
        = -(eps / V) * sum_i log p'_i - (1 - eps) * log p'_t

With ``r_i = y'_i * p_i / p'_i`` and ``S = sum_i r_i`` the gradient is::

    dL/dz_j = a * (p_j * S - r_j)

(from ``dL/dp_k = -a y'_k / p'_k`` and ``dp_k/dz_j = p_k (delta_kj - p_j)``). For ``a = 1``
(``epoch = 0`` or ``alpha_base = 1``) ``r = y'``, ``S = 1`` and the loss is exactly label-smoothed
cross-entropy, which is computed through ``log_softmax``.

Numerics: for ``a < 1`` every ``p'_i >= (1 - a) * y'_i``, so with ``eps > 0`` ``log p'_i`` is
finite; with ``eps = 0`` only ``log p'_t >= log((1 - a))`` is needed and the other terms vanish
exactly (no ``0 * log 0``). ``p' = a p + (1 - a) y'`` is a sum of non-negative terms, so computing
it from ``p = exp(log_softmax(z))`` loses no relative precision, and underflowing ``p_i`` only
make ``r_i`` exactly 0.

Memory: rows are walked in chunks (``_CHUNK_BYTES``); per chunk three fp32 (fp64 for fp64 input) ``[C, V]`` work
buffers are reused, and the gradient (already scaled by the reduction) is written into one
``[N, V]`` buffer of the input dtype. Nothing else of size tokens x vocabulary is kept.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dece.losses._module import LossModule
from dece.losses._reduce import (
    Flat,
    check_reduction,
    check_unit_interval,
    denominator,
    flatten_inputs,
)

__all__ = ["DeCELoss", "dece_alpha", "dece_loss"]

# Bytes of one fp32 work buffer per chunk (three are kept: 48 MiB, ~9% of the gradient buffer at
# 4096 x 32,100). Each [C, V] op is one intra-op parallel region with a barrier; chunks much
# smaller than this (e.g. 4 MiB) made the loss ~5x slower with 2 threads on a loaded 2-core
# machine, where a barrier waits for a descheduled thread. Tuned with benchmarks/loss_bench.py.
_CHUNK_BYTES = 1 << 24


def dece_alpha(alpha_base: float, epoch: float) -> float:
    """``alpha = alpha_base ** epoch`` after validating both (``alpha_base`` in (0, 1],
    ``epoch`` finite and >= 0)."""
    alpha_base = check_unit_interval("alpha_base", alpha_base, low_open=True, high_open=False)
    epoch = float(epoch)
    if not math.isfinite(epoch) or epoch < 0:
        raise ValueError(f"epoch must be a finite number >= 0, got {epoch!r}")
    return alpha_base**epoch


def _chunk_rows(n_rows: int, vocab: int, itemsize: int) -> int:
    return max(1, min(n_rows, _CHUNK_BYTES // max(1, vocab * itemsize)))


def _dece_chunk(
    z: Tensor,
    t: Tensor,
    alpha: float,
    eps: float,
    scale: float,
    work: tuple[Tensor, Tensor, Tensor],
    grad_out: Tensor | None,
) -> Tensor:
    """Per-row DeCE loss of one chunk, writing ``scale * dL/dz`` into ``grad_out``.

    z: ``[C, V]`` logits (any float dtype); t: ``[C]`` int64 targets (all valid)
    work: three ``[>=C, V]`` buffers of the compute dtype, overwritten
    grad_out: ``[C, V]`` slice of the gradient buffer, or None when no gradient is needed
    returns: ``[C]`` losses in the compute dtype
    """
    rows, vocab = z.shape
    P, Q, R = (w[:rows] for w in work)
    c = eps / vocab  # y'_i for i != t
    y_t = 1.0 - eps + c  # y'_t
    tt = t.unsqueeze(1)  # [C, 1]

    if alpha == 1.0 or eps == 0.0:
        torch.log_softmax(z, 1, dtype=P.dtype, out=P)  # P = log p
        logp_t = P.gather(1, tt).squeeze(1)  # [C]
    if alpha == 1.0:  # label-smoothed cross-entropy
        loss = -(1.0 - eps) * logp_t
        if eps > 0:
            loss = loss - c * P.sum(1)
        if grad_out is not None:  # scale * (p - y')
            P.exp_()
            if c > 0:
                P.sub_(c)
            P.scatter_(1, tt, (logp_t.exp() - y_t).unsqueeze(1))
            torch.mul(P, scale, out=grad_out)
        return loss

    if eps == 0.0:
        return _dece_chunk_no_smoothing(P, logp_t, tt, alpha, scale, grad_out)

    # eps > 0: every y'_i > 0, so every p'_i >= (1 - a) * c > 0. Work on the whole row with the
    # off-target values and correct the target column with [C]-sized closed forms (no scatter
    # into the work buffers), keeping the number of [C, V] passes small.
    c_blend = (1.0 - alpha) * c  # p'_i - a p_i off the target column
    torch.softmax(z, 1, dtype=P.dtype, out=P)  # P = p
    p_t = P.gather(1, tt).squeeze(1)  # [C]
    q_t = alpha * p_t + (1.0 - alpha) * y_t  # true p'_t
    q_t_off = alpha * p_t + c_blend  # what the off-target formula gives at the target column
    torch.add(P.new_tensor(c_blend), P, alpha=alpha, out=Q)  # Q = a p + (1 - a) c
    torch.reciprocal(Q, out=R)  # R = 1 / q (off-target value at t)
    log_sum = Q.log_().sum(1)  # sum_i log q_i (off-target value at t)
    loss = -c * (log_sum - q_t_off.log()) - y_t * q_t.log()
    if grad_out is None:
        return loss

    r_t = y_t * p_t / q_t  # [C]
    s = c * (torch.linalg.vecdot(P, R) - p_t / q_t_off) + r_t  # S = sum_i r_i, [C]
    k = alpha * scale
    torch.add((k * s).unsqueeze(1), R, alpha=-k * c, out=R)  # R = k (S - c / q)
    torch.mul(P, R, out=grad_out)  # k (p S - r) off the target column
    grad_out.scatter_(1, tt, (k * (p_t * s - r_t)).unsqueeze(1).to(grad_out.dtype))
    return loss


def _dece_chunk_no_smoothing(
    P: Tensor, logp_t: Tensor, tt: Tensor, alpha: float, scale: float, grad_out: Tensor | None
) -> Tensor:
    """``eps = 0``: y' is one-hot, so only the target term survives; r is zero off the target
    column and ``S = r_t``. P holds ``log p`` on entry and is overwritten."""
    p_t = logp_t.exp()
    q_t = alpha * p_t + (1.0 - alpha)
    loss = -q_t.log()
    if grad_out is None:
        return loss
    r_t = p_t / q_t
    P.exp_()
    P.mul_((alpha * scale) * r_t.unsqueeze(1))
    P.scatter_(1, tt, ((alpha * scale) * (p_t * r_t - r_t)).unsqueeze(1))
    grad_out.copy_(P)
    return loss


def _compute_dece(
    logits: Tensor,
    target: Tensor,
    valid: Tensor,
    alpha: float,
    eps: float,
    scale: float,
    need_grad: bool,
) -> tuple[Tensor, Tensor | None]:
    """Per-row losses ``[N]`` (compute dtype, 0 at ignored rows) and, if ``need_grad``, the
    gradient ``scale * dL_row/dz`` as one ``[N, V]`` tensor of ``logits.dtype`` (0 at ignored
    rows).

    logits: ``[N, V]``; target: ``[N]`` int64 (ignored rows hold any class); valid: ``[N]`` bool
    """
    n_rows, vocab = logits.shape
    cdtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    losses = torch.zeros(n_rows, dtype=cdtype, device=logits.device)
    grad = torch.empty_like(logits, memory_format=torch.contiguous_format) if need_grad else None
    if n_rows == 0:
        return losses, grad
    step = _chunk_rows(n_rows, vocab, torch.finfo(cdtype).bits // 8)
    work = tuple(torch.empty(step, vocab, dtype=cdtype, device=logits.device) for _ in range(3))
    valid_counts = torch.cumsum(valid.long(), 0).tolist()  # one host sync for all chunks

    for start in range(0, n_rows, step):
        stop = min(start + step, n_rows)
        g_slice = grad[start:stop] if grad is not None else None
        n_ok = valid_counts[stop - 1] - (valid_counts[start - 1] if start else 0)
        if n_ok == 0:
            if g_slice is not None:
                g_slice.zero_()
            continue
        if n_ok == stop - start:  # the common case: no ignored row in this chunk
            losses[start:stop] = _dece_chunk(
                logits[start:stop], target[start:stop], alpha, eps, scale, work, g_slice
            )
            continue
        # Mixed chunk: compute the valid rows only, so ignored rows (whatever their logits)
        # get exactly 0 loss and 0 gradient.
        idx = valid[start:stop].nonzero().squeeze(1) + start
        sub_g = (
            None
            if g_slice is None
            else torch.empty(len(idx), vocab, dtype=grad.dtype, device=grad.device)
        )
        sub_loss = _dece_chunk(
            logits.index_select(0, idx), target.index_select(0, idx), alpha, eps, scale, work, sub_g
        )
        losses.index_copy_(0, idx, sub_loss)
        if g_slice is not None:
            g_slice.zero_()
            grad.index_copy_(0, idx, sub_g)
    return losses, grad


class _DeCEFunction(torch.autograd.Function):
    """logits ``[N, V]`` -> reduced loss; the gradient is computed in ``forward``."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        logits: Tensor,
        target: Tensor,
        valid: Tensor,
        alpha: float,
        eps: float,
        reduction: str,
        denom: float,
    ) -> Tensor:
        need_grad = ctx.needs_input_grad[0]
        scale = 1.0 / denom
        losses, grad = _compute_dece(logits, target, valid, alpha, eps, scale, need_grad)
        ctx.grad = grad
        ctx.reduction = reduction
        if reduction == "none":
            return losses
        total = losses.sum()
        return total * scale if reduction == "mean" else total

    @staticmethod
    def backward(ctx, grad_output: Tensor):  # type: ignore[override]
        grad = ctx.grad
        if ctx.reduction == "none":  # per-row grad_output [N]; out of place, so repeatable
            return (
                grad * grad_output.to(grad.dtype).unsqueeze(1),
                None,
                None,
                None,
                None,
                None,
                None,
            )
        if grad is None:
            raise RuntimeError(
                "dece_loss: a second backward through the same graph is not supported for "
                "reduction='mean'/'sum' (the gradient buffer is handed over, and scaled in place, "
                "by the first); recompute the loss instead"
            )
        ctx.grad = None  # hand the buffer over: autograd may keep it as logits.grad
        if not bool(grad_output == 1):
            grad.mul_(grad_output.to(grad.dtype))
        return grad, None, None, None, None, None, None


def _run(flat: Flat, alpha: float, eps: float, reduction: str, denom: float) -> Tensor:
    out = _DeCEFunction.apply(flat.logits, flat.target, flat.valid, alpha, eps, reduction, denom)
    if reduction == "none":
        return out.reshape(flat.target_shape)
    return out


def dece_loss(
    logits: Tensor,
    target: Tensor,
    *,
    epoch: float,
    alpha_base: float = 0.99,
    label_smoothing: float = 0.1,
    ignore_index: int = -100,
    reduction: str = "mean",
    num_items_in_batch: int | float | Tensor | None = None,
) -> Tensor:
    """Deceptive Cross-Entropy loss (see the module docstring for the exact formula).

    Args:
        logits: ``[N, V]`` or ``[B, T, V]`` float logits (fp32, fp64, fp16 or bf16; low precision
            is computed in fp32 per chunk, the gradient comes back in the input dtype).
        target: ``[N]`` or ``[B, T]`` class indices in ``[0, V)`` or ``ignore_index``.
        epoch: training progress (may be fractional, >= 0); ``alpha = alpha_base ** epoch``.
        alpha_base: in ``(0, 1]``; 1 gives label-smoothed cross-entropy.
        label_smoothing: ``eps`` in ``[0, 1)``.
        ignore_index: target value whose tokens are skipped and not counted.
        reduction: ``"mean"`` (sum / non-ignored tokens, or / ``num_items_in_batch``), ``"sum"``
            or ``"none"`` (per-token losses shaped like ``target``, 0 where ignored).
        num_items_in_batch: divisor for ``"mean"`` under gradient accumulation (int or tensor).

    Returns:
        A scalar (``"mean"``/``"sum"``) or ``target``-shaped tensor (``"none"``), fp32 for
        fp16/bf16/fp32 input and fp64 for fp64 input.
    """
    alpha = dece_alpha(alpha_base, epoch)
    eps = check_unit_interval("label_smoothing", label_smoothing, low_open=False, high_open=True)
    check_reduction(reduction)
    flat = flatten_inputs(logits, target, ignore_index)
    denom = denominator(reduction, flat.n_valid, num_items_in_batch)
    return _run(flat, alpha, eps, reduction, denom)


class DeCELoss(LossModule):
    """Module form of :func:`dece_loss`; holds the hyperparameters, takes ``epoch`` per call.

    ``forward(logits [N, V] | [B, T, V], target [N] | [B, T], epoch, num_items_in_batch=None)``
    """

    def __init__(
        self,
        alpha_base: float = 0.99,
        label_smoothing: float = 0.1,
        ignore_index: int = -100,
        reduction: str = "mean",
    ) -> None:
        dece_alpha(alpha_base, 0.0)
        check_unit_interval("label_smoothing", label_smoothing, low_open=False, high_open=True)
        hparams = {"alpha_base": alpha_base, "label_smoothing": label_smoothing}
        super().__init__(dece_loss, hparams, ignore_index, reduction)

    def forward(  # epoch is required here, unlike the baselines' (ignored) epoch=None
        self,
        logits: Tensor,
        target: Tensor,
        epoch: float,
        num_items_in_batch: int | float | Tensor | None = None,
    ) -> Tensor:
        return self._loss(logits, target, num_items_in_batch, epoch=epoch)
