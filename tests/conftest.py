"""Fixtures shared by every test directory."""

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``$DECE_SHARED_DATA`` or ``<repo>/../shared/data``; skips the test when Lyra is absent."""
    root = Path(os.environ.get("DECE_SHARED_DATA", REPO_ROOT / ".." / "shared" / "data"))
    if not (root / "lyra" / "train.csv").is_file():
        pytest.skip(f"shared data not found at {root} (set DECE_SHARED_DATA)")
    return root


@pytest.fixture
def one_thread():
    """Tiny models gain nothing from intra-op threads; on a busy shared CPU they lose a lot."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def torchrun() -> str:
    """The ``torchrun`` launcher of this environment; skips the test when it is not installed."""
    path = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    if not Path(path).exists():
        pytest.skip("torchrun not installed")
    return path


def _launch(cmd: list[str], cwd: Path, *, pythonpath: tuple[Path, ...] = (),
            limit_s: float = 240.0) -> None:  # fmt: skip
    """Run ``cmd`` (a launcher such as torchrun or accelerate and the processes it starts) on CPU
    with one thread, its output in ``cwd/launch-<n>.log``; after ``limit_s`` seconds the launcher
    and every process under it are killed, so a hung rendezvous fails the test instead of
    outliving it (CI once hung at exit on DDP children nobody killed)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join([*map(str, pythonpath), env.get("PYTHONPATH", "")])
    env.pop("CUDA_VISIBLE_DEVICES", None)
    log = cwd / f"launch-{len(list(cwd.glob('launch-*.log')))}.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=sink, stderr=subprocess.STDOUT)
        try:
            proc.wait(timeout=limit_s)
        except subprocess.TimeoutExpired:
            tree = psutil.Process(proc.pid).children(recursive=True) + [psutil.Process(proc.pid)]
            for p in tree:
                with contextlib.suppress(psutil.NoSuchProcess):
                    p.kill()
            psutil.wait_procs(tree, timeout=10)
            pytest.fail(f"{cmd} did not finish within {limit_s:.0f} s\n{log.read_text()[-5000:]}")
    assert proc.returncode == 0, f"{cmd}\n{log.read_text()[-5000:]}"


@pytest.fixture
def launch():
    """:func:`_launch`: run a (multi-process) launcher with a hard time limit on its whole tree."""
    return _launch
