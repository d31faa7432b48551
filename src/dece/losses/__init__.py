"""dece.losses: DeCE (exact, chunked, memory-lean) and the noisy-label baselines it is compared to.

All losses share one convention: logits ``[N, V]`` or ``[B, T, V]``, target ``[N]`` or ``[B, T]``,
``ignore_index=-100``, ``reduction`` in ``{"mean", "sum", "none"}`` and ``num_items_in_batch``
(transformers' gradient-accumulation divisor). Build them by name with :func:`get_loss`.
:func:`fused_linear_dece_loss` takes the last hidden states and the LM head instead of logits.
"""

from __future__ import annotations

from dece.losses.ce import CELoss, ce_loss
from dece.losses.dece import DeCELoss, dece_alpha, dece_loss
from dece.losses.fused_linear import fused_linear_dece_loss
from dece.losses.gce import GCELoss, gce_loss
from dece.losses.in_trust import InTrustLoss, in_trust_loss
from dece.losses.registry import LOSSES, LossFn, get_loss
from dece.losses.sce import SCELoss, sce_loss

__all__ = [
    "LOSSES",
    "CELoss",
    "DeCELoss",
    "GCELoss",
    "InTrustLoss",
    "LossFn",
    "SCELoss",
    "ce_loss",
    "dece_alpha",
    "dece_loss",
    "fused_linear_dece_loss",
    "gce_loss",
    "get_loss",
    "in_trust_loss",
    "sce_loss",
]
