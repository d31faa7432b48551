"""The wheel and sdist build cleanly and the wheel installs into a clean venv where ``dece`` runs.

Slow (a few minutes: two isolated builds, a venv with torch and the project's dependencies);
``make test-slow`` and CI run it. Oracles: ``twine check`` passes; the build prints no
deprecation warning; the installed ``dece --version`` is this checkout's version and its module
lies in the clean venv, not in this checkout; ``dece demo --quick`` writes its report.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import dece

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
TORCH = "torch==2.13.0"  # installed first, so pip never resolves a CUDA build of torch


def _run(args: list[str], *, cwd: Path, timeout: int = 1800) -> str:
    # Generous: a minute or two on an idle machine, far longer on a loaded one.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{output[-4000:]}"
    return output


def test_wheel_and_sdist_build_and_the_wheel_runs_in_a_clean_venv(tmp_path):
    pytest.importorskip("build", reason="needs the [dev] extra (build)")
    pytest.importorskip("twine", reason="needs the [dev] extra (twine)")
    dist = tmp_path / "dist"
    log = _run([sys.executable, "-m", "build", "--outdir", str(dist), str(REPO)], cwd=tmp_path)
    assert "deprecat" not in log.lower(), [line for line in log.splitlines() if "eprecat" in line]
    wheels, sdists = sorted(dist.glob("*.whl")), sorted(dist.glob("*.tar.gz"))
    assert [w.name for w in wheels] == [f"dece-{dece.__version__}-py3-none-any.whl"]
    assert [s.name for s in sdists] == [f"dece-{dece.__version__}.tar.gz"]
    checked = _run([sys.executable, "-m", "twine", "check", *map(str, wheels + sdists)],
                   cwd=tmp_path)  # fmt: skip
    assert checked.count("PASSED") == 2

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    _run([*pip, TORCH], cwd=tmp_path)
    _run([*pip, str(wheels[0])], cwd=tmp_path)

    version = _run([str(venv / "bin" / "dece"), "--version"], cwd=tmp_path)
    assert version.strip() == f"dece {dece.__version__}"
    where = _run([str(venv / "bin" / "python"), "-c", "import dece; print(dece.__file__)"],
                 cwd=tmp_path)  # fmt: skip
    assert Path(where.strip()).is_relative_to(venv), where
    out = tmp_path / "demo"
    _run([str(venv / "bin" / "dece"), "demo", "--quick", "-o", str(out)], cwd=tmp_path)
    assert (out / "report.md").is_file()
