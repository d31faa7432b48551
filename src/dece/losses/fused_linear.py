"""Fused linear + DeCE: the loss of ``hidden @ weight.T + bias`` without the ``[N, V]`` logits.

``fused_linear_dece_loss(hidden, weight, target, ...)`` equals
``dece_loss(hidden @ weight.T + bias, target, ...)`` (value and gradients of ``hidden``,
``weight`` and ``bias``), but walks the non-ignored tokens in chunks of ``C`` rows:

    z   = h_c @ W.T + b                    # [C, V] chunk logits (one reused buffer)
    L_c, z <- DeCE(z), scale * dL/dz       # dece.losses.dece._dece_chunk, gradient in place
    dh_c = z @ W                           # [C, H]
    dW  += z.T @ h_c ;  db += z.sum(0)     # fp32 accumulators for fp16/bf16 inputs

so the largest temporaries are one ``[C, V]`` chunk buffer (``_GEMM_CHUNK_BYTES``) and the DeCE
work buffers of :mod:`dece.losses.dece` (16 MiB each); the gradient is computed in ``forward``
(three matrix products per chunk, the same count as an unfused forward + backward), and
``backward`` only hands the buffers over (scaled when the incoming gradient is not 1). Ignored
tokens are dropped before the first product: they cost nothing and get exactly zero gradient.
``reduction="none"`` cannot fold per-token output gradients into ``dW`` ahead of time, so it
computes only the losses in ``forward`` and recomputes the chunks, weighted, in ``backward``
(four products instead of three).

Precision: fp32/fp64 inputs run in their own dtype. For fp16/bf16 the chunk logits are computed as
``hidden @ weight.T + bias`` in the input dtype (the same rounding as the unfused reference) and
upcast to fp32 for the DeCE math; ``dh`` is ``z.to(dtype) @ W`` as in the unfused backward;
``dW``/``db`` are accumulated over chunks in fp32 (one fp32 ``[V, H]`` buffer) and cast once.

Why written here rather than on liger-kernel: liger-kernel's fused linear cross-entropy is a
Triton kernel (GPU only) that takes hard labels and label smoothing, not a soft-target loss.
Its generic ``chunked_loss`` bases are plain PyTorch but serve paired/teacher-student losses
(preference, distillation, PPO), not a single token-level loss; they differentiate each chunk
with ``torch.func.grad_and_value`` (autograd keeps several ``[C, V]`` intermediates) under
``torch.compile`` (which on CPU needs a C++ toolchain at run time), add a full-size ``[V, H]``
temporary into the weight gradient per chunk, and the package hard-depends on Triton. DeCE's
gradient has a closed form that :mod:`dece.losses.dece` already computes in place, so the fused
loss is that chunk function between three matrix products, the same on CPU and GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, overload

import torch
from torch import Tensor

from dece.losses._reduce import (
    check_reduction,
    check_target,
    check_unit_interval,
    denominator,
    flat_targets,
)
from dece.losses.dece import _chunk_rows, _dece_chunk, dece_alpha

__all__ = ["fused_linear_dece_loss"]

# Bytes of the one [C, V] chunk-logit buffer (fp32): 256 MiB is ~440 rows at V = 151,936 and
# ~1,360 at V = 49,152. Larger chunks make fewer passes over the [V, H] weight gradient (each
# chunk reads and writes it once); smaller ones hold less. Tuned with
# benchmarks/fused_loss_bench.py.
_GEMM_CHUNK_BYTES = 1 << 28

_LOW_PRECISION = (torch.float16, torch.bfloat16)


@dataclass(frozen=True)
class _Rows:
    """Validated inputs restricted to the non-ignored tokens.

    hidden: ``[M, H]`` rows of the non-ignored tokens (M <= N); target: ``[M]`` int64 in [0, V)
    index: ``[M]`` their positions among the ``N`` flattened tokens, or None when M == N
    n_rows: N; target_shape: the caller's target shape
    """

    hidden: Tensor
    target: Tensor
    index: Tensor | None
    n_rows: int
    target_shape: torch.Size


def _check_operands(hidden: Tensor, weight: Tensor, bias: Tensor | None) -> None:
    if not isinstance(hidden, Tensor) or not hidden.is_floating_point():
        raise ValueError("hidden must be a floating-point torch.Tensor")
    if hidden.dim() not in (2, 3):
        raise ValueError(f"hidden must be [N, H] or [B, T, H], got shape {tuple(hidden.shape)}")
    if not isinstance(weight, Tensor) or weight.dim() != 2:
        raise ValueError(f"weight must be a [V, H] torch.Tensor, got {_describe(weight)}")
    if weight.shape[1] != hidden.shape[-1]:
        raise ValueError(
            f"weight shape {tuple(weight.shape)} does not match hidden size {hidden.shape[-1]} "
            f"(expected [V, {hidden.shape[-1]}])"
        )
    if weight.shape[0] < 1:
        raise ValueError("weight must have at least one row (vocabulary entry)")
    if bias is not None and (not isinstance(bias, Tensor) or tuple(bias.shape) != weight.shape[:1]):
        raise ValueError(f"bias must be None or [V] = [{weight.shape[0]}], got {_describe(bias)}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is None:
            continue
        if t.dtype != hidden.dtype:
            raise ValueError(f"{name} dtype {t.dtype} differs from hidden dtype {hidden.dtype}")
        if t.device != hidden.device:
            raise ValueError(f"{name} is on {t.device} but hidden on {hidden.device}")


def _describe(x: object) -> str:
    return f"shape {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__


def _select_rows(hidden: Tensor, target: Tensor, vocab: int, ignore_index: int) -> _Rows:
    """Check ``target`` against ``hidden [.., H]`` and keep the rows whose target is not
    ignored (ValueError naming ``target`` on a bad dtype, shape, device or class index)."""
    check_target(target, hidden, "hidden")
    flat_t, valid = flat_targets(target, vocab, ignore_index)
    flat_h = hidden.reshape(-1, hidden.shape[-1])  # [N, H]
    n_rows = flat_h.shape[0]
    if bool(valid.all()):
        return _Rows(flat_h, flat_t, None, n_rows, target.shape)
    index = valid.nonzero().squeeze(1)  # [M]
    return _Rows(flat_h.index_select(0, index), flat_t[index], index, n_rows, target.shape)


@dataclass
class _Pass:
    """What one walk over the chunks produced (M = non-ignored rows).

    losses: ``[M]`` compute dtype; token_ce: ``[M]`` or None; grad_hidden: ``[M, H]`` (input
    dtype) or None; grad_weight: ``[V, H]`` and grad_bias ``[V]`` in the accumulation dtype, or
    None
    """

    losses: Tensor
    token_ce: Tensor | None
    grad_hidden: Tensor | None
    grad_weight: Tensor | None
    grad_bias: Tensor | None


def _gemm_rows(n_rows: int, vocab: int, itemsize: int) -> int:
    return max(1, min(n_rows, _GEMM_CHUNK_BYTES // max(1, vocab * itemsize)))


def _compute_fused(
    hidden: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    target: Tensor,
    *,
    alpha: float,
    eps: float,
    scale: float,
    row_weight: Tensor | None = None,
    needs: tuple[bool, bool, bool] = (False, False, False),
    want_ce: bool = False,
) -> _Pass:
    """Chunked DeCE of ``hidden @ weight.T + bias`` with gradients accumulated as requested.

    hidden: ``[M, H]`` (non-ignored rows only); weight ``[V, H]``; bias ``[V]`` or None;
    target: ``[M]`` int64 in [0, V); scale: multiplies every gradient (1 / denominator);
    row_weight: ``[M]`` extra per-row gradient factor (``reduction="none"`` backward) or None;
    needs: which of (hidden, weight, bias) gradients to compute; want_ce: also return the
    plain per-row cross-entropy ``logsumexp(z) - z_t``.
    """
    n_rows, vocab = hidden.shape[0], weight.shape[0]
    dtype, device = hidden.dtype, hidden.device
    cdtype = torch.float64 if dtype == torch.float64 else torch.float32
    low = dtype in _LOW_PRECISION
    need_h, need_w, need_b = needs
    need_grad = any(needs)
    out = _Pass(
        losses=torch.zeros(n_rows, dtype=cdtype, device=device),
        token_ce=torch.zeros(n_rows, dtype=cdtype, device=device) if want_ce else None,
        grad_hidden=torch.empty(hidden.shape, dtype=dtype, device=device) if need_h else None,
        grad_weight=torch.zeros(weight.shape, dtype=cdtype, device=device) if need_w else None,
        grad_bias=torch.zeros(vocab, dtype=cdtype, device=device) if need_b else None,
    )
    if n_rows == 0:
        return out
    itemsize = torch.finfo(cdtype).bits // 8
    step = _gemm_rows(n_rows, vocab, itemsize)
    sub = _chunk_rows(step, vocab, itemsize)
    zbuf = torch.empty(step, vocab, dtype=cdtype, device=device)  # logits, then their gradient
    lowbuf = torch.empty(step, vocab, dtype=dtype, device=device) if low else None
    work = tuple(torch.empty(sub, vocab, dtype=cdtype, device=device) for _ in range(3))
    weight_t = weight.t()  # [H, V] view

    for start in range(0, n_rows, step):
        stop = min(start + step, n_rows)
        h_c, z = hidden[start:stop], zbuf[: stop - start]  # [C, H], [C, V]
        _chunk_logits(h_c, weight_t, bias, z, lowbuf)
        _chunk_dece(z, target[start:stop], alpha, eps, scale, work, out, start, need_grad)
        if not need_grad:
            continue
        if row_weight is not None:
            z.mul_(row_weight[start:stop].to(cdtype).unsqueeze(1))
        if need_h:
            g = z if lowbuf is None else lowbuf[: stop - start].copy_(z)  # input dtype
            torch.mm(g, weight, out=out.grad_hidden[start:stop])
        if need_w:
            out.grad_weight.addmm_(z.t(), h_c if not low else h_c.to(cdtype))
        if need_b:
            out.grad_bias.add_(z.sum(0))
    return out


def _chunk_logits(
    h_c: Tensor, weight_t: Tensor, bias: Tensor | None, z: Tensor, lowbuf: Tensor | None
) -> None:
    """``z[:] = h_c @ weight_t + bias`` (in the input dtype first when that is fp16/bf16)."""
    if lowbuf is None:
        if bias is None:
            torch.mm(h_c, weight_t, out=z)
        else:
            torch.addmm(bias, h_c, weight_t, out=z)
        return
    low = lowbuf[: z.shape[0]]
    torch.mm(h_c, weight_t, out=low)
    if bias is not None:
        low.add_(bias)
    z.copy_(low)


def _chunk_dece(
    z: Tensor,
    t: Tensor,
    alpha: float,
    eps: float,
    scale: float,
    work: tuple[Tensor, Tensor, Tensor],
    out: _Pass,
    offset: int,
    need_grad: bool,
) -> None:
    """DeCE losses (and CE) of chunk logits ``z [C, V]`` into ``out`` at rows ``offset + ...``;
    with ``need_grad`` ``z`` is overwritten by ``scale * dL/dz``, walked in sub-chunks of the
    work buffers' size. ``_dece_chunk`` reads its logits only before it writes the gradient,
    so the gradient can go into the same rows (all three of its paths are tested for this)."""
    sub = work[0].shape[0]
    for s in range(0, z.shape[0], sub):
        e = min(s + sub, z.shape[0])
        z_s, t_s = z[s:e], t[s:e]
        if out.token_ce is not None:
            z_t = z_s.gather(1, t_s.unsqueeze(1)).squeeze(1)
            out.token_ce[offset + s : offset + e] = torch.logsumexp(z_s, 1) - z_t
        out.losses[offset + s : offset + e] = _dece_chunk(
            z_s, t_s, alpha, eps, scale, work, z_s if need_grad else None
        )


class _FusedLinearDeCEFunction(torch.autograd.Function):
    """(hidden [M, H], weight [V, H], bias [V] | None) -> (reduced loss, per-row CE [M] | None).

    ``mean``/``sum``: gradients computed in ``forward`` and handed over in ``backward``;
    ``none``: per-row losses in ``forward``, the chunks recomputed with the per-row output
    gradients in ``backward``.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        hidden: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        target: Tensor,
        alpha: float,
        eps: float,
        reduction: str,
        denom: float,
        want_ce: bool,
        grad_enabled: bool,
    ) -> tuple[Tensor, Tensor | None]:
        # needs_input_grad follows requires_grad even under torch.no_grad(): check the mode too
        h_, w_, b_ = (grad_enabled and n for n in ctx.needs_input_grad[:3])
        needs = (h_, w_, b_ and bias is not None)
        ctx.hp = (alpha, eps, reduction)
        ctx.weight_dtype = weight.dtype
        eager = reduction != "none"
        res = _compute_fused(
            hidden,
            weight,
            bias,
            target,
            alpha=alpha,
            eps=eps,
            scale=1.0 / denom,
            needs=needs if eager else (False, False, False),
            want_ce=want_ce,
        )
        if eager:
            ctx.grads = (res.grad_hidden, res.grad_weight, res.grad_bias)
        else:
            ctx.save_for_backward(hidden, weight, bias, target)
            ctx.needs = needs
        if res.token_ce is not None:
            ctx.mark_non_differentiable(res.token_ce)
        if reduction == "none":
            loss = res.losses
        else:
            loss = res.losses.sum() / denom if reduction == "mean" else res.losses.sum()
        return loss, res.token_ce

    @staticmethod
    def backward(ctx, grad_loss: Tensor, _grad_ce: Tensor | None):  # type: ignore[override]
        alpha, eps, reduction = ctx.hp
        if reduction == "none":
            hidden, weight, bias, target = ctx.saved_tensors
            res = _compute_fused(
                hidden,
                weight,
                bias,
                target,
                alpha=alpha,
                eps=eps,
                scale=1.0,
                row_weight=grad_loss,
                needs=ctx.needs,
            )
            grads = (res.grad_hidden, res.grad_weight, res.grad_bias)
        else:
            if ctx.grads is None:
                raise RuntimeError(
                    "fused_linear_dece_loss: a second backward through the same graph is not "
                    "supported for reduction='mean'/'sum' (the gradient buffers are handed over "
                    "by the first); recompute the loss instead"
                )
            grads, ctx.grads = ctx.grads, None
            if not bool(grad_loss == 1):
                grads = tuple(None if g is None else g.mul_(grad_loss.to(g.dtype)) for g in grads)
        g_h, g_w, g_b = (
            None if g is None else g.to(ctx.weight_dtype) if g.dtype != ctx.weight_dtype else g
            for g in grads
        )
        return g_h, g_w, g_b, None, None, None, None, None, None, None


@overload
def fused_linear_dece_loss(
    hidden: Tensor,
    weight: Tensor,
    target: Tensor,
    bias: Tensor | None = ...,
    *,
    epoch: float,
    alpha_base: float = ...,
    label_smoothing: float = ...,
    ignore_index: int = ...,
    reduction: str = ...,
    num_items_in_batch: int | float | Tensor | None = ...,
    return_token_ce: Literal[False] = ...,
) -> Tensor: ...


@overload
def fused_linear_dece_loss(
    hidden: Tensor,
    weight: Tensor,
    target: Tensor,
    bias: Tensor | None = ...,
    *,
    epoch: float,
    alpha_base: float = ...,
    label_smoothing: float = ...,
    ignore_index: int = ...,
    reduction: str = ...,
    num_items_in_batch: int | float | Tensor | None = ...,
    return_token_ce: Literal[True],
) -> tuple[Tensor, Tensor]: ...


def fused_linear_dece_loss(
    hidden: Tensor,
    weight: Tensor,
    target: Tensor,
    bias: Tensor | None = None,
    *,
    epoch: float,
    alpha_base: float = 0.99,
    label_smoothing: float = 0.1,
    ignore_index: int = -100,
    reduction: str = "mean",
    num_items_in_batch: int | float | Tensor | None = None,
    return_token_ce: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """``dece_loss(hidden @ weight.T + bias, target, ...)`` without materialising the logits.

    Args:
        hidden: ``[N, H]`` or ``[B, T, H]`` last hidden states (fp32, fp64, fp16 or bf16).
        weight: ``[V, H]`` output embedding (the LM head), same dtype and device as ``hidden``.
        target: ``[N]`` or ``[B, T]`` class indices in ``[0, V)`` or ``ignore_index`` (already
            aligned with ``hidden``: for causal LMs, labels shifted left).
        bias: ``[V]`` or None.
        epoch, alpha_base, label_smoothing, ignore_index, reduction, num_items_in_batch: as in
            :func:`dece.losses.dece_loss`; ``epoch=0`` (or ``alpha_base=1``) is
            ``F.cross_entropy(hidden @ weight.T + bias, target, label_smoothing=...)``.
        return_token_ce: also return the plain per-token cross-entropy ``-log softmax(z)_t``
            (no label smoothing, no DeCE blend) of the same chunk logits: detached, shaped like
            ``target``, 0 at ignored positions (one extra log-sum-exp pass per chunk).

    Returns:
        The loss (a scalar for ``"mean"``/``"sum"``, ``target``-shaped for ``"none"``; fp32 for
        fp16/bf16/fp32 input, fp64 for fp64), or ``(loss, token_ce)`` with ``return_token_ce``.
        Gradients flow to ``hidden``, ``weight`` and ``bias`` (in their dtype).
    """
    alpha = dece_alpha(alpha_base, epoch)
    eps = check_unit_interval("label_smoothing", label_smoothing, low_open=False, high_open=True)
    check_reduction(reduction)
    _check_operands(hidden, weight, bias)
    rows = _select_rows(hidden, target, weight.shape[0], ignore_index)
    n_valid = rows.hidden.shape[0]
    denom = denominator(reduction, n_valid, num_items_in_batch)
    loss, token_ce = _FusedLinearDeCEFunction.apply(
        rows.hidden,
        weight,
        bias,
        rows.target,
        alpha,
        eps,
        reduction,
        denom,
        return_token_ce,
        torch.is_grad_enabled(),
    )
    if reduction == "none":
        loss = _expand(loss, rows).reshape(rows.target_shape)
    if not return_token_ce:
        return loss
    return loss, _expand(token_ce, rows).reshape(rows.target_shape)


def _expand(per_row: Tensor, rows: _Rows) -> Tensor:
    """Per-row values ``[M]`` of the non-ignored rows -> ``[N]`` with 0 at ignored rows."""
    if rows.index is None:
        return per_row
    return per_row.new_zeros(rows.n_rows).index_copy(0, rows.index, per_row)  # differentiable
