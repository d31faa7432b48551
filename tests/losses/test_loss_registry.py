"""get_loss: one call signature for every registered loss."""

from __future__ import annotations

import pytest
import torch

from dece.losses import LOSSES, ce_loss, dece_loss, gce_loss, get_loss, in_trust_loss, sce_loss

IGNORE = -100


def _inputs():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 5, 11, generator=g, dtype=torch.float64)
    t = torch.randint(0, 11, (2, 5), generator=g)
    t[0, 3:] = IGNORE
    return z, t


def test_registered_names():
    assert LOSSES.names() == ["ce", "dece", "gce", "in_trust", "sce"]


@pytest.mark.parametrize(
    "name,hp,direct",
    [
        ("ce", {}, lambda z, t: ce_loss(z, t)),
        ("ce", {"label_smoothing": 0.1}, lambda z, t: ce_loss(z, t, label_smoothing=0.1)),
        ("gce", {"q": 0.5}, lambda z, t: gce_loss(z, t, q=0.5)),
        ("in_trust", {}, lambda z, t: in_trust_loss(z, t)),
        ("sce", {"alpha": 0.2}, lambda z, t: sce_loss(z, t, alpha=0.2)),
        (
            "dece",
            {"alpha_base": 0.9, "label_smoothing": 0.05},
            lambda z, t: dece_loss(z, t, epoch=2.5, alpha_base=0.9, label_smoothing=0.05),
        ),
    ],
)
def test_get_loss_matches_direct_call(name, hp, direct):
    z, t = _inputs()
    fn = get_loss(name, **hp)
    torch.testing.assert_close(fn(z, t, epoch=2.5), direct(z, t))
    # num_items_in_batch as a tensor (transformers >= 4.46 passes one)
    n = int((t != IGNORE).sum())
    torch.testing.assert_close(
        fn(z, t, epoch=2.5, num_items_in_batch=torch.tensor(2 * n)), direct(z, t) / 2
    )
    # custom ignore_index
    t2 = torch.where(t == IGNORE, 7, t)
    assert fn(z, t2, epoch=2.5, ignore_index=7).isfinite()
    assert name in repr(fn)


def test_epoch_changes_dece_but_not_baselines():
    z, t = _inputs()
    dece, ce = get_loss("dece"), get_loss("ce")
    assert not torch.allclose(dece(z, t, epoch=0.0), dece(z, t, epoch=5.0))
    torch.testing.assert_close(ce(z, t, epoch=0.0), ce(z, t, epoch=5.0))


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown loss 'focal'"):
        get_loss("focal")
    with pytest.raises(ValueError, match="unknown hyperparameter.*'beta'"):
        get_loss("dece", beta=0.3)
    with pytest.raises(ValueError, match="alpha_base"):
        get_loss("dece", alpha_base=2.0)
    with pytest.raises(ValueError, match="q"):
        get_loss("gce", q=-1.0)
