"""dece_loss / DeCELoss against a naive dense float64 reference, closed forms and F.cross_entropy."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import dece.losses.dece as dece_mod
from dece.losses import DeCELoss, dece_loss

IGNORE = -100


def ref_dece(
    z, t, *, epoch, alpha_base, eps, reduction="mean", num_items=None, ignore_index=IGNORE
):
    """Naive dense reference, written straight from the paper's formula (float64, autograd)."""
    v = z.shape[-1]
    z = z.double()
    valid = t != ignore_index
    onehot = F.one_hot(torch.where(valid, t, 0).long(), v).double()
    y = (1 - eps) * onehot + eps / v
    a = alpha_base**epoch
    p_blend = a * torch.softmax(z, -1) + (1 - a) * y
    per_tok = -(y * torch.log(p_blend)).sum(-1)
    per_tok = torch.where(valid, per_tok, torch.zeros_like(per_tok))
    if reduction == "none":
        return per_tok
    if reduction == "sum":
        return per_tok.sum()
    denom = num_items if num_items is not None else max(int(valid.sum()), 1)
    return per_tok.sum() / denom


def make(shape, v, *, seed=0, ignore_frac=0.0, scale=3.0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    gen_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    z = (torch.randn(*shape, v, generator=g, dtype=gen_dtype) * scale).to(dtype)
    t = torch.randint(0, v, shape, generator=g)
    if ignore_frac:
        t[torch.rand(shape, generator=g) < ignore_frac] = IGNORE
    return z, t


def value_and_grad(fn, z):
    z = z.detach().clone().requires_grad_()
    out = fn(z)
    out.backward()
    return out.detach(), z.grad


# ---- value AND gradient vs the dense reference --------------------------------------------------

HPARAMS = [  # (eps, alpha_base, epoch)
    (0.0, 0.99, 1.0),
    (0.1, 0.99, 1.0),
    (0.1, 0.5, 2.5),
    (0.5, 0.9, 7.0),
    (0.2, 1.0, 3.0),  # alpha_base = 1 -> label-smoothed CE
    (0.05, 0.8, 0.0),  # epoch = 0 -> label-smoothed CE
    (1e-6, 0.3, 0.37),  # fractional epoch, tiny eps
]


@pytest.mark.parametrize("shape,v", [((1, 1), 2), ((3, 7), 11), ((5,), 3)])
@pytest.mark.parametrize("eps,alpha_base,epoch", HPARAMS)
@pytest.mark.parametrize("ignore_frac", [0.0, 0.3])
def test_matches_dense_reference_fp64(shape, v, eps, alpha_base, epoch, ignore_frac):
    z, t = make(shape, v, ignore_frac=ignore_frac, dtype=torch.float64)
    kw = dict(epoch=epoch, alpha_base=alpha_base)
    got, g_got = value_and_grad(lambda x: dece_loss(x, t, label_smoothing=eps, **kw), z)
    ref, g_ref = value_and_grad(lambda x: ref_dece(x, t, eps=eps, **kw), z)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g_got, g_ref, rtol=1e-10, atol=1e-12)


def test_large_odd_shape_41x401x1271():
    """Many chunks with ignored tokens inside them, fp32 input; the fp64 reference is evaluated on
    a random subset of rows (rows are independent) to keep the test fast."""
    z, t = make((41, 401), 1271, ignore_frac=0.2, seed=1)
    t[3] = IGNORE  # a whole sequence ignored
    kw = dict(epoch=2.0, alpha_base=0.9)
    got, g_got = value_and_grad(lambda x: dece_loss(x, t, label_smoothing=0.1, **kw), z)
    per_tok = dece_loss(z, t, label_smoothing=0.1, reduction="none", **kw)
    n_valid = int((t != IGNORE).sum())
    assert g_got.dtype == torch.float32 and g_got.shape == z.shape
    assert torch.all(g_got[3] == 0) and torch.all(per_tok[3] == 0)
    torch.testing.assert_close(got, per_tok.sum() / n_valid, rtol=1e-5, atol=0)

    rows = torch.randperm(41 * 401, generator=torch.Generator().manual_seed(0))[:1500]
    rows = torch.cat([rows, torch.arange(3 * 401, 3 * 401 + 5)])  # some ignored ones too
    z_sub, t_sub = z.reshape(-1, 1271)[rows].double(), t.reshape(-1)[rows]
    ref_tok = ref_dece(z_sub, t_sub, eps=0.1, reduction="none", **kw)
    _, g_ref = value_and_grad(lambda x: ref_dece(x, t_sub, eps=0.1, reduction="sum", **kw), z_sub)
    torch.testing.assert_close(per_tok.reshape(-1)[rows].double(), ref_tok, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        g_got.reshape(-1, 1271)[rows].double(), g_ref / n_valid, rtol=1e-4, atol=1e-10
    )


# dtype -> (value rtol, gradient atol relative to max |grad|)
DTYPE_TOL = {
    torch.float64: (1e-12, 1e-12),
    torch.float32: (1e-5, 1e-6),
    torch.float16: (1e-5, 2e-3),
    torch.bfloat16: (1e-5, 1e-2),
}


@pytest.mark.parametrize("dtype", list(DTYPE_TOL))
@pytest.mark.parametrize(
    "eps,alpha_base,epoch", [(0.1, 0.99, 1.0), (0.0, 0.7, 2.0), (0.1, 1.0, 1.0)]
)
def test_dtype_tolerance_table(dtype, eps, alpha_base, epoch):
    """Low precision input is computed in fp32; only the returned gradient is rounded."""
    z, t = make((4, 33), 257, ignore_frac=0.1, dtype=dtype, seed=2)
    kw = dict(epoch=epoch, alpha_base=alpha_base)
    got, g_got = value_and_grad(lambda x: dece_loss(x, t, label_smoothing=eps, **kw), z)
    ref, g_ref = value_and_grad(lambda x: ref_dece(x, t, eps=eps, **kw), z.double())
    rtol, gtol = DTYPE_TOL[dtype]
    assert g_got.dtype == dtype
    assert got.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    torch.testing.assert_close(got.double(), ref, rtol=rtol, atol=rtol)
    err = (g_got.double() - g_ref).abs().max() / g_ref.abs().max()
    assert err <= gtol, f"{dtype}: relative gradient error {err:.2e} > {gtol:.0e}"


@pytest.mark.parametrize("chunk_bytes", [1, 3 * 11 * 4, 10**9])
def test_chunking_does_not_change_result(monkeypatch, chunk_bytes):
    """1 row, 3 rows and one chunk per call, with ignored rows inside chunks."""
    monkeypatch.setattr(dece_mod, "_CHUNK_BYTES", chunk_bytes)
    z, t = make((3, 7), 11, ignore_frac=0.4, dtype=torch.float64, seed=3)
    for eps, ab, ep in [(0.1, 0.9, 1.5), (0.0, 0.9, 1.5), (0.1, 1.0, 1.0)]:
        kw = dict(epoch=ep, alpha_base=ab)
        got, g_got = value_and_grad(
            lambda x, kw=kw, e=eps: dece_loss(x, t, label_smoothing=e, **kw), z
        )
        ref, g_ref = value_and_grad(lambda x, kw=kw, e=eps: ref_dece(x, t, eps=e, **kw), z)
        torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(g_got, g_ref, rtol=1e-10, atol=1e-12)


def test_gradcheck_finite_differences():
    z, t = make((2, 3), 5, ignore_frac=0.3, dtype=torch.float64, seed=4)
    z.requires_grad_()
    # gradcheck re-runs backward on one graph: supported for reduction="none" only
    assert torch.autograd.gradcheck(
        lambda x: dece_loss(x, t, epoch=1.3, alpha_base=0.8, label_smoothing=0.2, reduction="none"),
        (z,),
    )


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 9),
    v=st.integers(2, 40),
    eps=st.sampled_from([0.0, 1e-3, 0.1, 0.9]),
    alpha_base=st.floats(0.05, 1.0),
    epoch=st.floats(0.0, 20.0),
    seed=st.integers(0, 2**16),
)
def test_property_matches_reference(n, v, eps, alpha_base, epoch, seed):
    z, t = make((n,), v, ignore_frac=0.25, dtype=torch.float64, seed=seed, scale=5.0)
    got, g_got = value_and_grad(
        lambda x: dece_loss(x, t, epoch=epoch, alpha_base=alpha_base, label_smoothing=eps), z
    )
    ref, g_ref = value_and_grad(
        lambda x: ref_dece(x, t, epoch=epoch, alpha_base=alpha_base, eps=eps), z
    )
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(g_got, g_ref, rtol=1e-8, atol=1e-10)


# ---- reductions ---------------------------------------------------------------------------------


@pytest.mark.parametrize("num_items", [7, torch.tensor(7), torch.tensor(7.0)])
def test_num_items_in_batch_divides_the_sum(num_items):
    z, t = make((2, 5), 13, ignore_frac=0.3, dtype=torch.float64, seed=5)
    kw = dict(epoch=1.0, alpha_base=0.9)
    got, g_got = value_and_grad(
        lambda x: dece_loss(x, t, label_smoothing=0.1, num_items_in_batch=num_items, **kw), z
    )
    ref, g_ref = value_and_grad(lambda x: ref_dece(x, t, eps=0.1, num_items=7, **kw), z)
    torch.testing.assert_close(got, ref)
    torch.testing.assert_close(g_got, g_ref)


def test_reduction_none_with_per_token_grad_output():
    z, t = make((3, 4), 9, ignore_frac=0.3, dtype=torch.float64, seed=6)
    w = torch.rand(3, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    kw = dict(epoch=2.0, alpha_base=0.7)
    got_none = dece_loss(z, t, label_smoothing=0.1, reduction="none", **kw)
    ref_none = ref_dece(z, t, eps=0.1, reduction="none", **kw)
    assert got_none.shape == t.shape
    torch.testing.assert_close(got_none, ref_none)
    assert torch.all(got_none[t == IGNORE] == 0)
    _, g_got = value_and_grad(
        lambda x: (dece_loss(x, t, label_smoothing=0.1, reduction="none", **kw) * w).sum(), z
    )
    _, g_ref = value_and_grad(
        lambda x: (ref_dece(x, t, eps=0.1, reduction="none", **kw) * w).sum(), z
    )
    torch.testing.assert_close(g_got, g_ref)
    s = dece_loss(z, t, label_smoothing=0.1, reduction="sum", **kw)
    torch.testing.assert_close(s, ref_none.sum())


def test_scaled_grad_output_and_second_backward():
    z, t = make((2, 3), 7, dtype=torch.float64, seed=7)
    kw = dict(epoch=1.0, alpha_base=0.9, label_smoothing=0.1)
    _, g1 = value_and_grad(lambda x: dece_loss(x, t, **kw), z)
    _, g3 = value_and_grad(lambda x: 3.0 * dece_loss(x, t, **kw), z)
    torch.testing.assert_close(g3, 3.0 * g1)
    x = z.clone().requires_grad_()
    loss = dece_loss(x, t, **kw)
    loss.backward(retain_graph=True)
    torch.testing.assert_close(x.grad, g1)
    with pytest.raises(RuntimeError, match="second backward"):
        loss.backward()  # the buffer was handed over to x.grad
    torch.testing.assert_close(x.grad, g1)  # and x.grad was not corrupted


# ---- closed forms and special cases ---------------------------------------------------------------


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.4])
def test_epoch_zero_is_label_smoothed_cross_entropy(eps):
    z, t = make((4, 6), 50, ignore_frac=0.2, seed=8)
    ce, g_ce = value_and_grad(
        lambda x: F.cross_entropy(x.transpose(1, 2), t, label_smoothing=eps), z
    )
    for kw in (dict(epoch=0.0, alpha_base=0.9), dict(epoch=5.0, alpha_base=1.0)):
        got, g_got = value_and_grad(lambda x, kw=kw: dece_loss(x, t, label_smoothing=eps, **kw), z)
        torch.testing.assert_close(got, ce, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(g_got, g_ce, rtol=1e-5, atol=1e-7)


def test_module_equals_functional():
    z, t = make((2, 9), 17, ignore_frac=0.2, seed=9)
    mod = DeCELoss(alpha_base=0.95, label_smoothing=0.05, reduction="sum")
    for epoch in (0.0, 1.0, 2.5):
        torch.testing.assert_close(
            mod(z, t, epoch),
            dece_loss(z, t, epoch=epoch, alpha_base=0.95, label_smoothing=0.05, reduction="sum"),
        )
    assert "alpha_base=0.95" in repr(mod)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_all_ignored_batch_gives_zero_loss_and_zero_grad(reduction):
    z, _ = make((2, 3), 5, seed=10)
    t = torch.full((2, 3), IGNORE)
    x = z.clone().requires_grad_()
    loss = dece_loss(x, t, epoch=1.0, reduction=reduction)
    loss.sum().backward()
    assert torch.all(loss == 0) and not torch.isnan(loss).any()
    assert torch.all(x.grad == 0)


def test_nan_logits_on_ignored_rows_do_not_leak():
    z, t = make((1, 6), 8, seed=11)
    t[0, 2] = IGNORE
    z[0, 2] = float("nan")
    loss, grad = value_and_grad(lambda x: dece_loss(x, t, epoch=1.0), z)
    ref = ref_dece(
        z[:, [0, 1, 3, 4, 5]], t[:, [0, 1, 3, 4, 5]], epoch=1.0, alpha_base=0.99, eps=0.1
    )
    torch.testing.assert_close(loss.double(), ref, rtol=1e-6, atol=1e-6)
    assert torch.isfinite(grad).all() and torch.all(grad[0, 2] == 0)


@pytest.mark.parametrize("eps,epoch", [(0.0, 1.0), (0.1, 1.0), (0.1, 0.0)])
def test_huge_logits_stay_finite(eps, epoch):
    g = torch.Generator().manual_seed(12)
    z = (torch.rand(3, 5, 64, generator=g) * 2 - 1) * 1e4
    t = torch.randint(0, 64, (3, 5), generator=g)
    loss, grad = value_and_grad(
        lambda x: dece_loss(x, t, epoch=epoch, alpha_base=0.9, label_smoothing=eps), z
    )
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    if epoch == 0:  # the naive reference takes log(0); compare with the fp64 library CE
        ref = F.cross_entropy(z.double().transpose(1, 2), t, label_smoothing=eps)
        torch.testing.assert_close(loss.double(), ref, rtol=1e-5, atol=1e-4)
    elif eps > 0:  # the fp64 reference is finite when every y'_i > 0 and alpha < 1
        ref = ref_dece(z, t, epoch=epoch, alpha_base=0.9, eps=eps)
        torch.testing.assert_close(loss.double(), ref, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("gap", [5.0, 10.0, 20.0, 40.0, 80.0])
def test_boundedness_target_gradient_vanishes_where_ce_goes_to_minus_one(gap):
    """Paper's argument: with p_t -> 0, d DeCE / d z_t -> 0 while d CE / d z_t -> -1.
    Closed form for eps = 0: r_t = p_t / (a p_t + 1 - a), S = r_t, dL/dz_t = a r_t (p_t - 1)."""
    v, alpha_base, epoch = 4, 0.9, 3.0
    z = torch.zeros(1, v, dtype=torch.float64)
    z[0, 0] = -gap  # target logit far below the others
    t = torch.zeros(1, dtype=torch.long)
    a = alpha_base**epoch
    p_t = math.exp(-gap) / (math.exp(-gap) + v - 1)
    r_t = p_t / (a * p_t + 1 - a)
    _, g = value_and_grad(
        lambda x: dece_loss(x, t, epoch=epoch, alpha_base=alpha_base, label_smoothing=0.0), z
    )
    _, g_ce = value_and_grad(lambda x: F.cross_entropy(x, t), z)
    assert g[0, 0].item() == pytest.approx(a * r_t * (p_t - 1), rel=1e-10)
    assert g_ce[0, 0].item() == pytest.approx(p_t - 1, rel=1e-10)
    assert abs(g[0, 0].item()) < p_t / (1 - a)  # -> 0 linearly in p_t
    assert g_ce[0, 0].item() < -0.9  # CE keeps pulling toward the (possibly poisoned) label


def test_no_grad_path_matches():
    z, t = make((3, 4), 21, ignore_frac=0.2, seed=13)
    with torch.no_grad():
        a = dece_loss(z, t, epoch=1.0)
    b = dece_loss(z.clone().requires_grad_(), t, epoch=1.0)
    torch.testing.assert_close(a, b.detach())


# ---- validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,name",
    [
        (dict(alpha_base=0.0), "alpha_base"),
        (dict(alpha_base=1.5), "alpha_base"),
        (dict(alpha_base=-0.1), "alpha_base"),
        (dict(alpha_base=float("nan")), "alpha_base"),
        (dict(label_smoothing=-0.1), "label_smoothing"),
        (dict(label_smoothing=1.0), "label_smoothing"),
        (dict(epoch=-1.0), "epoch"),
        (dict(epoch=float("inf")), "epoch"),
        (dict(reduction="avg"), "reduction"),
        (dict(num_items_in_batch=-3), "num_items_in_batch"),
    ],
)
def test_bad_hyperparameters_raise_value_error(kwargs, name):
    z, t = make((2,), 5)
    args = dict(epoch=1.0) | kwargs
    with pytest.raises(ValueError, match=name):
        dece_loss(z, t, **args)
    if name in ("alpha_base", "label_smoothing", "reduction"):
        with pytest.raises(ValueError, match=name):
            DeCELoss(**kwargs)


@pytest.mark.parametrize(
    "z_shape,t_shape,t_fill,name",
    [
        ((2, 3, 5), (2, 4), 0, "target shape"),
        ((6, 5), (2, 3), 0, "target shape"),
        ((5,), (), 0, "logits must be"),
        ((2, 5), (2,), 5, "target out of range"),
        ((2, 5), (2,), -5, "target out of range"),
    ],
)
def test_bad_inputs_raise_value_error(z_shape, t_shape, t_fill, name):
    z = torch.randn(*z_shape)
    t = torch.full(t_shape, t_fill, dtype=torch.long)
    with pytest.raises(ValueError, match=name):
        dece_loss(z, t, epoch=1.0)


def test_float_target_and_inconsistent_num_items_raise():
    z, t = make((2,), 5)
    with pytest.raises(ValueError, match="target"):
        dece_loss(z, t.float(), epoch=1.0)
    with pytest.raises(ValueError, match="num_items_in_batch"):
        dece_loss(z, t, epoch=1.0, num_items_in_batch=0)
    t_all = torch.full((2,), IGNORE)
    assert dece_loss(z, t_all, epoch=1.0, num_items_in_batch=0).item() == 0.0
