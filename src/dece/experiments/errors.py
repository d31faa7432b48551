"""The grid config's one error type (re-exported by :mod:`dece.experiments.axes` and
:mod:`dece.experiments.config`)."""

from __future__ import annotations

from typing import Any

__all__ = ["ConfigError"]


class ConfigError(ValueError):
    """A grid config is invalid; the message names the file, the key and the allowed values."""

    def __init__(self, source: Any, key: str, message: str) -> None:
        self.source = str(source) if source is not None else "<dict>"
        self.key = key
        super().__init__(f"{self.source}: key {key!r}: {message}")
