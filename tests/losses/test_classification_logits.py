"""Every registered loss on classifier logits ``[B, C]`` with integer labels ``[B]``.

Oracles: each loss on ``[B, C]`` equals the same loss on ``[B, 1, C]`` (the token path, tested
against dense references in the other loss tests), value and gradient; closed forms for CE, GCE
and DeCE on two classes; DeCE's gradient written out by hand (``a (p S - r)``), which shows the
mechanism the technical-debt results turn on: against label-smoothed CE (DeCE with a = 1), DeCE
shrinks the gradient of a row whose label the model finds improbable (p_t well below 1 - a), and
leaves it nearly unchanged where the label is already probable (as for a flip to the majority
class).
"""

from __future__ import annotations

import pytest
import torch

from dece.losses import LOSSES, get_loss


def _logits(b: int, c: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(b, c, generator=g, dtype=torch.float64) * 2
    t = torch.randint(0, c, (b,), generator=g)
    return z, t


@pytest.mark.parametrize("name", LOSSES.names())
@pytest.mark.parametrize("c", [2, 5])
@pytest.mark.parametrize("epoch", [1.0, 3.0])
def test_every_loss_takes_classifier_logits(name, c, epoch):
    loss = get_loss(name)
    z, t = _logits(7, c, seed=c)
    z2 = z.clone().requires_grad_(True)
    z3 = z.clone()[:, None, :].requires_grad_(True)
    flat = loss(z2, t, epoch=epoch)
    token = loss(z3, t[:, None], epoch=epoch)
    assert flat.shape == () and torch.isfinite(flat)
    torch.testing.assert_close(flat, token)
    flat.backward()
    token.backward()
    assert torch.isfinite(z2.grad).all() and z2.grad.abs().sum() > 0
    torch.testing.assert_close(z2.grad, z3.grad[:, 0, :])


def _dece_binary(z: torch.Tensor, t: torch.Tensor, a: float, eps: float) -> torch.Tensor:
    p = torch.softmax(z, -1)
    y = (1 - eps) * torch.nn.functional.one_hot(t, 2).double() + eps / 2
    return -(y * torch.log(a * p + (1 - a) * y)).sum(-1).mean()


def test_closed_forms_on_two_classes():
    z, t = _logits(9, 2, seed=11)
    p = torch.softmax(z, -1)
    pt = p.gather(1, t[:, None])[:, 0]
    torch.testing.assert_close(get_loss("ce")(z, t), -torch.log(pt).mean())
    torch.testing.assert_close(get_loss("gce", q=0.7)(z, t), ((1 - pt**0.7) / 0.7).mean())
    for epoch in (1.0, 4.0):
        got = get_loss("dece", alpha_base=0.9, label_smoothing=0.2)(z, t, epoch=epoch)
        torch.testing.assert_close(got, _dece_binary(z, t, 0.9**epoch, 0.2))


def _dece_grad_by_hand(p_target: float, a: float, eps: float) -> float:
    """d loss / d z_target of one binary row (dL/dz_j = a (p_j S - r_j), r = y' p / p')."""
    p = torch.tensor([p_target, 1 - p_target], dtype=torch.float64)
    y = torch.tensor([1 - eps / 2, eps / 2], dtype=torch.float64)
    r = y * p / (a * p + (1 - a) * y)
    return float(a * (p[0] * r.sum() - r[0]))


@pytest.mark.parametrize("p_target", [1e-3, 0.05, 0.5, 0.9])
def test_dece_gradient_on_one_binary_row(p_target):
    logit = torch.log(torch.tensor(p_target / (1 - p_target), dtype=torch.float64))
    z = torch.stack([logit, torch.zeros((), dtype=torch.float64)])[None].requires_grad_(True)
    target = torch.tensor([0])
    get_loss("dece", alpha_base=0.99, label_smoothing=0.1)(z, target, epoch=1.0).backward()
    expected = _dece_grad_by_hand(p_target, 0.99, 0.1)
    assert float(z.grad[0, 0]) == pytest.approx(expected, rel=1e-9)
    smoothed_ce_grad = p_target - (1 - 0.1 / 2)  # label-smoothed CE (DeCE with a = 1)
    ratio = expected / smoothed_ce_grad
    if p_target <= 1e-3:  # an improbable label: a small fraction of the gradient is left
        assert ratio < 0.1
    if p_target >= 0.5:  # a probable label (e.g. the majority class): nearly all of it
        assert ratio > 0.9
