"""The command prefix and environment that run a Python process as uid 65534 (``nobody``), for
the sandbox tests with a non-root caller; skips the calling test when that cannot work here."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest


def nonroot_command() -> tuple[list[str], dict[str, str]]:
    """``(cmd, env)``: ``cmd + ["-c", ...]`` runs the system interpreter as uid 65534 with this
    checkout's ``dece`` and numpy importable. Skips without root and ``setpriv``, or when uid
    65534 cannot read the interpreter or the packages."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("switching to uid 65534 needs root and setpriv")
    python = shutil.which(f"python{sys.version_info[0]}.{sys.version_info[1]}", path="/usr/bin")
    import numpy

    import dece

    paths = [str(Path(m.__file__).resolve().parents[1]) for m in (dece, numpy)]
    if python is None or not all(os.access(p, os.R_OK) for p in paths):
        pytest.skip("no interpreter and packages readable by uid 65534")
    cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", python]
    return cmd, {"PATH": "/usr/bin:/bin", "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}
