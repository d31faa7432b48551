"""Loss registry: ``get_loss(name, **hyperparameters)`` returns a callable with one signature.

Every returned :class:`LossFn` is called as::

    fn(logits [N, V] | [B, T, V], target [N] | [B, T], *, epoch=1.0, ignore_index=-100,
       num_items_in_batch=None) -> scalar ("mean" unless reduction is given as a hyperparameter)

Baselines ignore ``epoch``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import Tensor

from dece.losses.ce import ce_loss
from dece.losses.dece import dece_loss
from dece.losses.gce import gce_loss
from dece.losses.in_trust import in_trust_loss
from dece.losses.sce import sce_loss
from dece.registry import Registry

__all__ = ["LOSSES", "LossFn", "get_loss"]

LOSSES: Registry[Callable[..., Tensor]] = Registry("loss")
for _name, _display, _fn in (
    ("ce", "CE", ce_loss),
    ("dece", "DeCE", dece_loss),
    ("gce", "GCE", gce_loss),
    ("in_trust", "In-trust", in_trust_loss),
    ("sce", "SCE", sce_loss),
):
    LOSSES.register(_name, display=_display)(_fn)

_CALL_ARGS = frozenset({"logits", "target", "epoch", "ignore_index", "num_items_in_batch"})


class LossFn(Protocol):
    def __call__(
        self,
        logits: Tensor,
        target: Tensor,
        *,
        epoch: float = 1.0,
        ignore_index: int = -100,
        num_items_in_batch: int | Tensor | None = None,
    ) -> Tensor: ...


class _BoundLoss:
    """A registered loss function with its hyperparameters fixed."""

    def __init__(self, name: str, fn: Callable[..., Tensor], hyperparameters: dict[str, Any]):
        self.name = name
        self.hyperparameters = dict(hyperparameters)
        self._fn = fn
        self._takes_epoch = "epoch" in inspect.signature(fn).parameters

    def __call__(
        self,
        logits: Tensor,
        target: Tensor,
        *,
        epoch: float = 1.0,
        ignore_index: int = -100,
        num_items_in_batch: int | Tensor | None = None,
    ) -> Tensor:
        extra = {"epoch": epoch} if self._takes_epoch else {}
        return self._fn(
            logits,
            target,
            ignore_index=ignore_index,
            num_items_in_batch=num_items_in_batch,
            **extra,
            **self.hyperparameters,
        )

    def __repr__(self) -> str:
        hp = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters.items())
        return f"get_loss({self.name!r}{', ' if hp else ''}{hp})"


def get_loss(name: str, **hyperparameters: Any) -> LossFn:
    """Build the loss registered as ``name`` ("ce", "dece", "gce", "in_trust", "sce") with its
    hyperparameters fixed (e.g. ``get_loss("dece", alpha_base=0.98, label_smoothing=0.05)``).

    Raises ValueError for an unknown name, an unknown hyperparameter, or an invalid value (checked
    now, on a one-token dummy batch, rather than at the first training step).
    """
    fn = LOSSES.get(name)
    params = inspect.signature(fn).parameters
    allowed = sorted(set(params) - _CALL_ARGS)
    unknown = sorted(set(hyperparameters) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown hyperparameter(s) {unknown} for loss {name!r}; allowed: {allowed}"
        )
    bound = _BoundLoss(name, fn, hyperparameters)
    bound(torch.zeros(1, 2), torch.zeros(1, dtype=torch.long), epoch=1.0)  # validates values
    return bound
