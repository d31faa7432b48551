"""The one ``nn.Module`` wrapper behind every loss class in `dece.losses`.

A concrete class validates its own hyperparameters in ``__init__`` and hands them, with its
functional loss, to :class:`LossModule`, which stores them as float attributes next to
``ignore_index`` and ``reduction`` and calls the function with them in ``forward``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor, nn

from dece.losses._reduce import check_reduction

__all__ = ["LossModule"]


class LossModule(nn.Module):
    """Module form of a functional loss ``loss_fn(logits, target, *, <hyperparameters>,
    ignore_index, reduction, num_items_in_batch)``.

    ``forward(logits [N, V] | [B, T, V], target [N] | [B, T], epoch=None, num_items_in_batch=None)``
    returns a scalar (``"mean"``/``"sum"``) or a ``target``-shaped tensor (``"none"``); ``epoch``
    is accepted and ignored, for a drop-in swap with :class:`dece.losses.DeCELoss`. The
    hyperparameters are read from the attributes at each call.
    """

    def __init__(
        self,
        loss_fn: Callable[..., Tensor],
        hyperparameters: Mapping[str, float],
        ignore_index: int,
        reduction: str,
    ) -> None:
        super().__init__()
        self._loss_fn = loss_fn
        self._hparam_names = tuple(hyperparameters)
        for name, value in hyperparameters.items():
            setattr(self, name, float(value))
        self.ignore_index = int(ignore_index)
        self.reduction = check_reduction(reduction)

    def _loss(
        self,
        logits: Tensor,
        target: Tensor,
        num_items_in_batch: int | float | Tensor | None,
        **call_kwargs: Any,
    ) -> Tensor:
        """``loss_fn`` with the stored hyperparameters plus ``call_kwargs`` (e.g. ``epoch``)."""
        return self._loss_fn(
            logits,
            target,
            **call_kwargs,
            **{name: getattr(self, name) for name in self._hparam_names},
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            num_items_in_batch=num_items_in_batch,
        )

    def forward(
        self,
        logits: Tensor,
        target: Tensor,
        epoch: float | None = None,
        num_items_in_batch: int | float | Tensor | None = None,
    ) -> Tensor:
        return self._loss(logits, target, num_items_in_batch)

    def extra_repr(self) -> str:
        names = (*self._hparam_names, "ignore_index", "reduction")
        return ", ".join(f"{name}={getattr(self, name)!r}" for name in names)
