"""fused_linear_dece_loss against a naive dense float64 reference of DeCE(hidden @ W.T + b),
F.cross_entropy (epoch 0, per-token CE), the unfused dece_loss, and an allocation log."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

import dece.losses.dece as dece_mod
import dece.losses.fused_linear as fused_mod
from dece.losses import dece_loss, fused_linear_dece_loss

IGNORE = -100


def ref_dece(z, t, *, epoch, alpha_base, eps, reduction="mean", num_items=None):
    """Naive dense DeCE straight from the paper's formula (float64, autograd)."""
    v = z.shape[-1]
    valid = t != IGNORE
    y = (1 - eps) * F.one_hot(torch.where(valid, t, 0).long(), v).double() + eps / v
    a = alpha_base**epoch
    per_tok = -(y * torch.log(a * torch.softmax(z, -1) + (1 - a) * y)).sum(-1)
    per_tok = torch.where(valid, per_tok, torch.zeros_like(per_tok))
    if reduction == "none":
        return per_tok
    if reduction == "sum":
        return per_tok.sum()
    return per_tok.sum() / (num_items if num_items is not None else max(int(valid.sum()), 1))


def make(shape, h, v, *, seed=0, ignore_frac=0.0, dtype=torch.float64, bias=True):
    """hidden [*shape, h], weight [v, h], bias [v] | None, target [*shape] (leaf tensors)."""
    g = torch.Generator().manual_seed(seed)
    hid = torch.randn(*shape, h, generator=g, dtype=torch.float64)
    w = torch.randn(v, h, generator=g, dtype=torch.float64) * (2.0 / h**0.5)
    b = torch.randn(v, generator=g, dtype=torch.float64) if bias else None
    t = torch.randint(0, v, shape, generator=g)
    if ignore_frac:
        t[torch.rand(shape, generator=g) < ignore_frac] = IGNORE
    leaves = [x.to(dtype).requires_grad_() if x is not None else None for x in (hid, w, b)]
    return (*leaves, t)


def grads_of(fn, tensors, grad_out=None):
    """Value of ``fn(*leaf copies)`` and the gradients of every non-None input."""
    leaves = [x.detach().clone().requires_grad_() if x is not None else None for x in tensors]
    out = fn(*leaves)
    (out if grad_out is None else out * grad_out).sum().backward()
    return out.detach(), [x.grad if x is not None else None for x in leaves]


def reference(t, **kw):
    """The dense reference as a function of (hidden, weight, bias); fp64 when given fp64."""

    def fn(h, w_, b_):
        z = h @ w_.T + (b_ if b_ is not None else 0.0)
        return ref_dece(z, t, **kw)

    return fn


def fused(t, **kw):
    def fn(h, w_, b_):
        return fused_linear_dece_loss(h, w_, t, b_, **kw)

    return fn


def assert_close_all(got, ref, rtol, atol):
    value, grads = got
    ref_value, ref_grads = ref
    torch.testing.assert_close(value.double(), ref_value, rtol=rtol, atol=atol)
    for g, r in zip(grads, ref_grads, strict=True):
        assert (g is None) == (r is None)
        if g is not None:
            torch.testing.assert_close(g.double(), r, rtol=rtol, atol=atol)


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 3 rows for the products and of 2 rows for the DeCE work buffers (V <= 64)."""
    monkeypatch.setattr(fused_mod, "_GEMM_CHUNK_BYTES", 3 * 64 * 8)
    monkeypatch.setattr(dece_mod, "_CHUNK_BYTES", 2 * 64 * 8)


HPARAMS = [  # (eps, alpha_base, epoch): all three paths of dece._dece_chunk
    (0.1, 0.99, 1.0),
    (0.0, 0.9, 2.0),  # no smoothing
    (0.3, 0.5, 2.5),
    (0.2, 1.0, 3.0),  # alpha = 1: label-smoothed CE
    (0.1, 0.8, 0.0),  # epoch 0: label-smoothed CE
]


# ---- value AND gradients (hidden, weight, bias) vs the dense reference -----------------------------
@pytest.mark.parametrize("shape,h,v", [((1,), 1, 2), ((2, 7), 5, 13), ((11,), 3, 64)])
@pytest.mark.parametrize("eps,alpha_base,epoch", HPARAMS)
@pytest.mark.parametrize("ignore_frac,bias", [(0.0, True), (0.3, False), (0.4, True)])
def test_matches_dense_reference_fp64(
    small_chunks, shape, h, v, eps, alpha_base, epoch, ignore_frac, bias
):
    hid, w, b, t = make(shape, h, v, ignore_frac=ignore_frac, bias=bias, seed=len(shape) + v)
    kw = dict(epoch=epoch, alpha_base=alpha_base)
    got = grads_of(fused(t, label_smoothing=eps, **kw), (hid, w, b))
    ref = grads_of(reference(t, eps=eps, **kw), (hid, w, b))
    assert_close_all(got, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("num_items", [None, 9, torch.tensor(9.0)])
def test_reductions_and_num_items_in_batch(small_chunks, reduction, num_items):
    hid, w, b, t = make((3, 5), 4, 17, ignore_frac=0.3, seed=1)
    kw = dict(epoch=1.5, alpha_base=0.9)
    n_ref = None if num_items is None else 9
    go = torch.rand(3, 5, dtype=torch.float64) if reduction == "none" else torch.tensor(2.5)
    got = grads_of(
        fused(t, label_smoothing=0.1, reduction=reduction, num_items_in_batch=num_items, **kw),
        (hid, w, b),
        grad_out=go,
    )
    ref = grads_of(
        reference(t, eps=0.1, reduction=reduction, num_items=n_ref, **kw),
        (hid, w, b),
        grad_out=go,
    )
    assert got[0].shape == ref[0].shape == (t.shape if reduction == "none" else ())
    assert_close_all(got, ref, rtol=1e-10, atol=1e-12)
    if reduction == "none":
        assert torch.all(got[0][t == IGNORE] == 0)


def test_large_odd_shape_fp32_many_chunks(monkeypatch):
    """[B, T, H] = [5, 37, 129] at V = 1031 in fp32, 40-row product chunks, 7-row DeCE chunks."""
    monkeypatch.setattr(fused_mod, "_GEMM_CHUNK_BYTES", 40 * 1031 * 4)
    monkeypatch.setattr(dece_mod, "_CHUNK_BYTES", 7 * 1031 * 4)
    hid, w, b, t = make((5, 37), 129, 1031, ignore_frac=0.2, dtype=torch.float32, seed=2)
    t[1] = IGNORE  # a whole sequence ignored
    kw = dict(epoch=2.0, alpha_base=0.9)
    value, grads = grads_of(fused(t, label_smoothing=0.1, **kw), (hid, w, b))
    ref = grads_of(reference(t, eps=0.1, **kw), [x.double() for x in (hid, w, b)])
    assert [g.dtype for g in grads] == [torch.float32] * 3
    assert torch.all(grads[0][1] == 0)
    torch.testing.assert_close(value.double(), ref[0], rtol=1e-5, atol=1e-6)
    for g, r in zip(grads, ref[1], strict=True):
        err = (g.double() - r).abs().max() / r.abs().max()
        assert err < 1e-5, f"relative gradient error {err:.2e}"


@pytest.mark.parametrize("gemm_bytes", [1, 2 * 64 * 8, 10**9])
@pytest.mark.parametrize("work_bytes", [1, 10**9])
def test_chunk_sizes_do_not_change_the_result(monkeypatch, gemm_bytes, work_bytes):
    monkeypatch.setattr(fused_mod, "_GEMM_CHUNK_BYTES", gemm_bytes)
    monkeypatch.setattr(dece_mod, "_CHUNK_BYTES", work_bytes)
    hid, w, b, t = make((2, 9), 6, 64, ignore_frac=0.3, seed=3)
    for eps, ab, ep in HPARAMS[:2] + HPARAMS[3:4]:
        kw = dict(epoch=ep, alpha_base=ab)
        got = grads_of(fused(t, label_smoothing=eps, **kw), (hid, w, b))
        ref = grads_of(reference(t, eps=eps, **kw), (hid, w, b))
        assert_close_all(got, ref, rtol=1e-10, atol=1e-12)


# ---- dtypes -------------------------------------------------------------------------------------
# dtype -> (tolerance vs the fp64 reference on the rounded inputs, vs the unfused same-dtype path)
DTYPE_TOL = {torch.float32: (1e-5, 1e-5), torch.float16: (2e-2, 1e-2), torch.bfloat16: (1e-1, 5e-2)}


@pytest.mark.parametrize("dtype", list(DTYPE_TOL))
@pytest.mark.parametrize("eps,alpha_base,epoch", [(0.1, 0.99, 1.0), (0.0, 0.7, 2.0)])
def test_low_precision_against_reference_and_unfused(small_chunks, dtype, eps, alpha_base, epoch):
    """Low precision: logits rounded like ``hidden @ W.T + b`` in that dtype, DeCE in fp32, the
    weight/bias gradients accumulated over chunks in fp32; results within a dtype tolerance of
    the fp64 reference and of the unfused ``dece_loss`` on the same-dtype logits."""
    hid, w, b, t = make((4, 16), 8, 64, ignore_frac=0.1, dtype=dtype, seed=4)
    kw = dict(epoch=epoch, alpha_base=alpha_base, label_smoothing=eps)
    value, grads = grads_of(fused(t, **kw), (hid, w, b))
    assert value.dtype == torch.float32 and [g.dtype for g in grads] == [dtype] * 3
    unfused = grads_of(lambda h, w_, b_: dece_loss(h @ w_.T + b_, t, **kw), (hid, w, b))
    ref = grads_of(
        reference(t, eps=eps, epoch=epoch, alpha_base=alpha_base),
        [x.double() for x in (hid, w, b)],
    )
    tol_ref, tol_unfused = DTYPE_TOL[dtype]
    for (other_value, other_grads), tol in ((ref, tol_ref), (unfused, tol_unfused)):
        assert abs(value.double() - other_value.double()) <= tol * abs(other_value.double())
        for g, r in zip(grads, other_grads, strict=True):
            err = (g.double() - r.double()).abs().max() / r.double().abs().max()
            assert err <= tol, f"{dtype}: relative gradient error {err:.2e} > {tol:.0e}"


def test_bf16_weight_gradient_is_accumulated_in_fp32(monkeypatch):
    """64 one-row chunks: the fp32 accumulator rounds to bf16 once, so the weight gradient is
    the exact sum rounded to bf16 (within half a bf16 ulp, plus fp32 noise); a bf16 running sum,
    simulated here, drifts beyond that bound."""
    monkeypatch.setattr(fused_mod, "_GEMM_CHUNK_BYTES", 1)
    hid, w, _, t = make((64,), 4, 8, dtype=torch.bfloat16, seed=5, bias=False)
    _, (_, g_w, _) = grads_of(fused(t, epoch=1.0, reduction="sum"), (hid, w, None))
    zr = (hid.detach() @ w.detach().T).double().requires_grad_()  # the same bf16-rounded logits
    ref_dece(zr, t, epoch=1.0, alpha_base=0.99, eps=0.1, reduction="sum").backward()
    h64 = hid.detach().double()
    exact = zr.grad.T @ h64  # [V, H] summed in fp64
    bound = 0.5 * torch.finfo(torch.bfloat16).eps * exact.abs() + 1e-6
    assert torch.all((g_w.double() - exact).abs() <= bound)
    running = torch.zeros_like(g_w)
    for i in range(64):
        running += (zr.grad[i : i + 1].T @ h64[i : i + 1]).to(torch.bfloat16)
    assert not torch.all((running.double() - exact).abs() <= bound)


# ---- closed forms and the per-token CE ------------------------------------------------------------
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_epoch_zero_equals_f_cross_entropy(small_chunks, eps):
    hid, w, b, t = make((3, 8), 5, 40, ignore_frac=0.2, dtype=torch.float32, seed=6)

    def ce(h, w_, b_):
        return F.cross_entropy((h @ w_.T + b_).transpose(1, 2), t, label_smoothing=eps)

    ref = grads_of(ce, (hid, w, b))
    for kw in (dict(epoch=0.0, alpha_base=0.9), dict(epoch=4.0, alpha_base=1.0)):
        got = grads_of(fused(t, label_smoothing=eps, **kw), (hid, w, b))
        assert_close_all(got, (ref[0].double(), [g.double() for g in ref[1]]), 1e-5, 1e-6)


@pytest.mark.parametrize("eps,alpha_base,epoch", HPARAMS)
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_token_ce_is_plain_cross_entropy(small_chunks, eps, alpha_base, epoch, reduction):
    hid, w, b, t = make((3, 7), 5, 50, ignore_frac=0.3, seed=7)
    kw = dict(epoch=epoch, alpha_base=alpha_base, label_smoothing=eps, reduction=reduction)
    loss, token_ce = fused_linear_dece_loss(hid, w, t, b, return_token_ce=True, **kw)
    z = (hid @ w.T + b).detach()
    expected = F.cross_entropy(z.transpose(1, 2), t, reduction="none")  # 0 where ignored
    assert token_ce.shape == t.shape and not token_ce.requires_grad
    torch.testing.assert_close(token_ce, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(loss, fused_linear_dece_loss(hid, w, t, b, **kw))
    loss.sum().backward()  # the CE output does not get in the way of the loss's gradient
    assert hid.grad is not None


def test_no_logits_sized_tensor_is_ever_allocated(monkeypatch):
    """Every op output during forward + backward, logged by a dispatch mode: none reaches the
    N x V elements of the logits (here at most one 16-row chunk of them)."""
    n, h, v = 256, 12, 500
    monkeypatch.setattr(fused_mod, "_GEMM_CHUNK_BYTES", 16 * v * 4)
    monkeypatch.setattr(dece_mod, "_CHUNK_BYTES", 8 * v * 4)
    hid, w, b, t = make((n,), h, v, dtype=torch.float32, seed=8)

    class Largest(TorchDispatchMode):
        numel = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for x in out if isinstance(out, tuple | list) else (out,):
                if isinstance(x, torch.Tensor):
                    Largest.numel = max(Largest.numel, x.numel())
            return out

    with Largest():
        fused_linear_dece_loss(hid, w, t, b, epoch=1.0, return_token_ce=True)[0].backward()
    assert Largest.numel == 16 * v  # one chunk of logits (8000); the [V, H] gradient is 6000
    with Largest():  # the unfused path does hold [N, V]: the probe can see it
        dece_loss(hid @ w.T + b, t, epoch=1.0).backward()
    assert Largest.numel == n * v


# ---- gradient plumbing --------------------------------------------------------------------------
def test_frozen_weight_or_hidden_and_no_grad():
    hid, w, b, t = make((4, 5), 6, 30, ignore_frac=0.2, seed=9)
    kw = dict(epoch=1.0, alpha_base=0.9)
    _, (g_h, g_w, g_b) = grads_of(reference(t, eps=0.1, **kw), (hid, w, b))
    frozen_w = w.detach()  # LoRA-style: the head is frozen
    h1 = hid.detach().clone().requires_grad_()
    fused_linear_dece_loss(h1, frozen_w, t, b.detach(), **kw).backward()
    torch.testing.assert_close(h1.grad, g_h)
    w1, b1 = w.detach().clone().requires_grad_(), b.detach().clone().requires_grad_()
    fused_linear_dece_loss(hid.detach(), w1, t, b1, **kw).backward()
    torch.testing.assert_close(w1.grad, g_w)
    torch.testing.assert_close(b1.grad, g_b)
    products = []

    class CountProducts(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.__name__.split(".")[0] in ("mm", "addmm", "addmm_"):
                products.append(func.__name__)
            return func(*args, **(kwargs or {}))

    with torch.no_grad(), CountProducts():
        value = fused_linear_dece_loss(hid, w, t, b, **kw)
    assert not value.requires_grad
    assert len(products) == 1  # the logits only: no gradient products without autograd
    torch.testing.assert_close(value, ref_dece(hid @ w.T + b, t, eps=0.1, **kw).detach())


def test_second_backward_raises_for_mean_and_works_for_none():
    hid, w, b, t = make((2, 3), 4, 9, seed=10)
    loss = fused_linear_dece_loss(hid, w, t, b, epoch=1.0)
    loss.backward(retain_graph=True)
    first = w.grad.clone()
    with pytest.raises(RuntimeError, match="second backward"):
        loss.backward()
    torch.testing.assert_close(w.grad, first)
    w.grad = None
    per_tok = fused_linear_dece_loss(hid, w, t, b, epoch=1.0, reduction="none")
    per_tok.sum().backward(retain_graph=True)
    per_tok.sum().backward()
    torch.testing.assert_close(w.grad, 2 * first * t.numel())


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_all_ignored_gives_zero_loss_and_zero_grads(reduction):
    hid, w, b, _ = make((2, 3), 4, 9, seed=11)
    t = torch.full((2, 3), IGNORE)
    loss, token_ce = fused_linear_dece_loss(
        hid, w, t, b, epoch=1.0, reduction=reduction, return_token_ce=True
    )
    loss.sum().backward()
    assert torch.all(loss == 0) and torch.all(token_ce == 0)
    assert all(torch.all(x.grad == 0) for x in (hid, w, b))


def test_nan_hidden_on_ignored_rows_does_not_leak():
    hid, w, b, t = make((1, 6), 4, 8, seed=12)
    t[0, 2] = IGNORE
    with torch.no_grad():
        hid[0, 2] = float("nan")
    keep = [0, 1, 3, 4, 5]
    value, grads = grads_of(fused(t, epoch=1.0), (hid, w, b))
    ref = grads_of(
        lambda h, w_, b_: ref_dece(
            h[:, keep] @ w_.T + b_, t[:, keep], epoch=1.0, alpha_base=0.99, eps=0.1
        ),
        (hid, w, b),
    )
    assert all(torch.isfinite(g).all() for g in grads) and torch.all(grads[0][0, 2] == 0)
    grads[0][0, 2] = 0.0
    assert_close_all((value, grads), ref, rtol=1e-10, atol=1e-12)


# ---- validation -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs,name",
    [
        (dict(alpha_base=0.0), "alpha_base"),
        (dict(label_smoothing=1.0), "label_smoothing"),
        (dict(epoch=-1.0), "epoch"),
        (dict(reduction="avg"), "reduction"),
        (dict(num_items_in_batch=-3), "num_items_in_batch"),
    ],
)
def test_bad_hyperparameters_raise_value_error(kwargs, name):
    hid, w, b, t = make((2,), 3, 5)
    with pytest.raises(ValueError, match=name):
        fused_linear_dece_loss(hid, w, t, b, **(dict(epoch=1.0) | kwargs))


@pytest.mark.parametrize(
    "h_shape,w_shape,b_shape,t_shape,t_fill,match",
    [
        ((5,), (7, 5), None, (), 0, "hidden must be"),
        ((2, 3, 4, 5), (7, 5), None, (2, 3, 4), 0, "hidden must be"),
        ((2, 5), (7, 4), None, (2,), 0, "weight shape"),
        ((2, 5), (7,), None, (2,), 0, "weight must be"),
        ((2, 5), (7, 5), (6,), (2,), 0, "bias must be"),
        ((2, 3, 5), (7, 5), None, (2, 4), 0, "target shape"),
        ((2, 5), (7, 5), None, (2,), 7, "target out of range"),
        ((2, 5), (7, 5), None, (2,), -5, "target out of range"),
    ],
)
def test_bad_inputs_raise_value_error(h_shape, w_shape, b_shape, t_shape, t_fill, match):
    hid, w = torch.randn(*h_shape), torch.randn(*w_shape)
    b = torch.randn(*b_shape) if b_shape else None
    t = torch.full(t_shape, t_fill, dtype=torch.long)
    with pytest.raises(ValueError, match=match):
        fused_linear_dece_loss(hid, w, t, b, epoch=1.0)


def test_dtype_mismatch_and_float_target_raise():
    hid, w, _, t = make((2,), 3, 5, dtype=torch.float32)
    with pytest.raises(ValueError, match="weight dtype"):
        fused_linear_dece_loss(hid, w.double(), t, epoch=1.0)
    with pytest.raises(ValueError, match="bias dtype"):
        fused_linear_dece_loss(hid, w, t, torch.zeros(5, dtype=torch.float64), epoch=1.0)
    with pytest.raises(ValueError, match="target must be an integer"):
        fused_linear_dece_loss(hid, w, t.float(), epoch=1.0)
