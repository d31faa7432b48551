"""dece: defend code language models against data-poisoning backdoors with DeCE, and measure it."""

from __future__ import annotations

__version__ = "0.1.0"

from dece.losses import DeCELoss, dece_loss, get_loss

__all__ = ["DeCELoss", "__version__", "dece_loss", "get_loss"]
