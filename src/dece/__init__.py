"""dece: defend code language models against data-poisoning backdoors with DeCE, and measure it."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
