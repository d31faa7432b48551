"""CE, GCE, In-trust and SCE baselines against naive dense float64 references and closed forms."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dece.losses import (
    CELoss,
    GCELoss,
    InTrustLoss,
    SCELoss,
    ce_loss,
    gce_loss,
    in_trust_loss,
    sce_loss,
)

IGNORE = -100


def make(shape=(3, 5), v=13, *, seed=0, ignore_frac=0.3, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    z = (torch.randn(*shape, v, generator=g, dtype=torch.float64) * 3).to(dtype)
    t = torch.randint(0, v, shape, generator=g)
    t[torch.rand(shape, generator=g) < ignore_frac] = IGNORE
    return z, t


def _mean(per_tok, t, num_items=None):
    valid = t != IGNORE
    per_tok = torch.where(valid, per_tok, torch.zeros_like(per_tok))
    return per_tok.sum() / (num_items if num_items is not None else max(int(valid.sum()), 1))


def _dense(z, t):
    v = z.shape[-1]
    p = torch.softmax(z.double(), -1)
    y = F.one_hot(torch.where(t == IGNORE, 0, t), v).double()
    return p, y


def ref_gce(z, t, q):
    p, y = _dense(z, t)
    return _mean((1 - (p * y).sum(-1) ** q) / q, t)


def ref_in_trust(z, t, alpha, beta, delta, floor=0.0):
    p, y = _dense(z, t)
    ce = -(y * torch.log(p)).sum(-1)
    y_f = y.clamp(min=floor) if floor > 0 else y
    # off-target terms with y = 0: p * log(delta p), written out so 0 * log 0 cannot appear
    dce = -(p * torch.log(delta * p + (1 - delta) * y_f)).sum(-1)
    return _mean(alpha * ce + beta * dce, t)


def ref_sce(z, t, alpha, beta, a):
    p, y = _dense(z, t)
    ce = -(y * torch.log(p)).sum(-1)
    rce = -(p * torch.log(y.clamp(min=math.exp(a)))).sum(-1)  # log 0 := A
    return _mean(alpha * ce + beta * rce, t)


def value_and_grad(fn, z):
    z = z.detach().clone().requires_grad_()
    out = fn(z)
    out.backward()
    return out.detach(), z.grad


CASES = [
    ("gce", lambda z, t: gce_loss(z, t, q=0.7), lambda z, t: ref_gce(z, t, 0.7)),
    ("gce q=0.3", lambda z, t: gce_loss(z, t, q=0.3), lambda z, t: ref_gce(z, t, 0.3)),
    ("in_trust", lambda z, t: in_trust_loss(z, t), lambda z, t: ref_in_trust(z, t, 1.0, 0.8, 0.5)),
    (
        "in_trust floor",
        lambda z, t: in_trust_loss(z, t, alpha=0.2, beta=0.8, delta=0.3, label_floor=1e-4),
        lambda z, t: ref_in_trust(z, t, 0.2, 0.8, 0.3, 1e-4),
    ),
    ("sce", lambda z, t: sce_loss(z, t), lambda z, t: ref_sce(z, t, 0.1, 1.0, -4.0)),
    (
        "sce custom",
        lambda z, t: sce_loss(z, t, alpha=0.5, beta=2.0, log_zero=-6.0),
        lambda z, t: ref_sce(z, t, 0.5, 2.0, -6.0),
    ),
]


@pytest.mark.parametrize("name,fn,ref", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("shape,v", [((1, 1), 2), ((3, 7), 11), ((6,), 29)])
def test_baseline_matches_dense_reference(name, fn, ref, shape, v):
    z, t = make(shape, v, ignore_frac=0.0 if shape == (1, 1) else 0.3)
    got, g_got = value_and_grad(lambda x: fn(x, t), z)
    exp, g_exp = value_and_grad(lambda x: ref(x, t), z)
    torch.testing.assert_close(got, exp, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(g_got, g_exp, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_ce_equals_torch_cross_entropy(eps, reduction):
    z, t = make((2, 6), 17, dtype=torch.float32)
    got, g_got = value_and_grad(
        lambda x: ce_loss(x, t, label_smoothing=eps, reduction=reduction).sum(), z
    )
    exp, g_exp = value_and_grad(
        lambda x: F.cross_entropy(
            x.transpose(1, 2), t, label_smoothing=eps, reduction=reduction
        ).sum(),
        z,
    )
    torch.testing.assert_close(got, exp)
    torch.testing.assert_close(g_got, g_exp)


def test_closed_forms():
    z, t = make((4,), 7, ignore_frac=0.0)
    p_t = torch.softmax(z, -1).gather(1, t[:, None])[:, 0]
    # q = 1: GCE is the MAE-like 1 - p_t
    torch.testing.assert_close(gce_loss(z, t, q=1.0), (1 - p_t).mean())
    # SCE: RCE = -A (1 - p_t); alpha = 0 leaves it alone
    torch.testing.assert_close(
        sce_loss(z, t, alpha=0.0, beta=1.0, log_zero=-4.0), (4 * (1 - p_t)).mean()
    )
    # In-trust with delta = 1 and alpha = 0: DCE is the entropy of p
    p = torch.softmax(z, -1)
    entropy = -(p * torch.log(p)).sum(-1)
    torch.testing.assert_close(in_trust_loss(z, t, alpha=0.0, beta=1.0, delta=1.0), entropy.mean())
    # In-trust with beta = 0 is CE
    torch.testing.assert_close(in_trust_loss(z, t, alpha=1.0, beta=0.0), F.cross_entropy(z, t))


@pytest.mark.parametrize("fn", [ce_loss, gce_loss, in_trust_loss, sce_loss])
def test_conventions_all_ignored_none_and_num_items(fn):
    z, t = make((2, 4), 9)
    x = z.clone().requires_grad_()
    loss = fn(x, torch.full_like(t, IGNORE))
    loss.backward()
    assert loss.item() == 0.0 and torch.all(x.grad == 0)
    none = fn(z, t, reduction="none")
    assert none.shape == t.shape and torch.all(none[t == IGNORE] == 0)
    torch.testing.assert_close(fn(z, t, reduction="sum"), none.sum())
    torch.testing.assert_close(fn(z, t), none.sum() / (t != IGNORE).sum())
    torch.testing.assert_close(fn(z, t, num_items_in_batch=torch.tensor(11)), none.sum() / 11)


@pytest.mark.parametrize("fn", [ce_loss, gce_loss, in_trust_loss, sce_loss])
def test_bf16_input_and_huge_logits_finite(fn):
    z, t = make((2, 4), 50, dtype=torch.bfloat16)
    x = (z.float() * 3000).to(torch.bfloat16).requires_grad_()
    loss = fn(x, t)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all() and x.grad.dtype == torch.bfloat16


@pytest.mark.parametrize(
    "call,name",
    [
        (lambda z, t: gce_loss(z, t, q=0.0), "q"),
        (lambda z, t: gce_loss(z, t, q=1.5), "q"),
        (lambda z, t: in_trust_loss(z, t, delta=0.0), "delta"),
        (lambda z, t: in_trust_loss(z, t, alpha=-1.0), "alpha"),
        (lambda z, t: in_trust_loss(z, t, beta=float("nan")), "beta"),
        (lambda z, t: in_trust_loss(z, t, label_floor=1.0), "label_floor"),
        (lambda z, t: sce_loss(z, t, log_zero=0.0), "log_zero"),
        (lambda z, t: sce_loss(z, t, beta=-2.0), "beta"),
        (lambda z, t: ce_loss(z, t, label_smoothing=1.0), "label_smoothing"),
        (lambda z, t: ce_loss(z, t, reduction="max"), "reduction"),
        (lambda z, t: ce_loss(z, t[:, :2]), "target shape"),
        (lambda z, t: gce_loss(z, t.clamp(min=0) + 9), "target out of range"),
    ],
)
def test_bad_arguments_raise_value_error(call, name):
    z, t = make((2, 4), 9)
    with pytest.raises(ValueError, match=name):
        call(z, t)


@pytest.mark.parametrize(
    "module,fn,kw",
    [
        (CELoss, ce_loss, dict(label_smoothing=0.1)),
        (GCELoss, gce_loss, dict(q=0.5)),
        (InTrustLoss, in_trust_loss, dict(alpha=0.2, beta=0.8, delta=0.5)),
        (SCELoss, sce_loss, dict(alpha=0.1, beta=1.0, log_zero=-4.0)),
    ],
)
def test_modules_equal_functionals(module, fn, kw):
    z, t = make((2, 4), 9)
    torch.testing.assert_close(module(**kw)(z, t, 3.0), fn(z, t, **kw))  # epoch ignored
