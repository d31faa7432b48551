"""Where dece keeps what it builds once and reuses: the pretrained tiny presets, converted
checkpoints, the purifiers' and filters' disk caches.

One function, :func:`cache_root`: ``$DECE_CACHE_DIR`` when it is set (and not empty), else the
platform's per-user cache directory for ``dece`` from ``platformdirs`` (a small, maintained
library that knows each platform's convention, ``$XDG_CACHE_HOME`` included, instead of a
hand-written ``~/.cache``). On Linux, without ``$XDG_CACHE_HOME``, that is ``~/.cache/dece``,
the directory every earlier version used, so existing caches keep working.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

__all__ = ["CACHE_ENV", "cache_root"]

CACHE_ENV = "DECE_CACHE_DIR"


def cache_root(sub: str | None = None) -> Path:
    """``$DECE_CACHE_DIR`` if set and not empty, else ``platformdirs.user_cache_dir("dece")``;
    its subdirectory ``sub`` when given. Creates nothing."""
    env = os.environ.get(CACHE_ENV)
    root = Path(env) if env else Path(platformdirs.user_cache_dir("dece", appauthor=False))
    return root / sub if sub else root
