"""Memory of a non-root call (no cgroup): what ``RLIMIT_AS`` does not count is denied or bounded.

The probe of issue 25, scaled down: 3 processes of a call with ``memory_mb=64`` each queue as
many bytes as they can (the program stops each kind at :data:`CAP` bytes, its own cap in place
of an outer cgroup's, which on cgroup v1 would not see socket buffers anyway) into unix-socket
buffers, pipe buffers, SysV message queues and a memfd, and report what they got. The oracle is read from outside, on the host (``MemAvailable``), for the
same probe twice: with the sandbox as it is, the host loses little (sockets, message queues and
memfds are denied; pipes stop at the per-user pipe allowance); with the seccomp filter removed
(the positive control: what a call without libseccomp would do, now refused unless
``allow_unbounded_memory=True``) the same probe takes several times more.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from _nonroot import nonroot_command

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="the sandbox needs Linux"),
    pytest.mark.timeout(300),
]
MiB = 1 << 20
CAP = 256 * MiB  # per process and per kind: the most the probe itself will queue
PROBE = """
import fcntl, json, os, socket, sys, time
CAP = __CAP__

def sockets(held):
    n = 0
    while n < CAP:
        a, b = socket.socketpair()
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        a.setblocking(False)
        held.append((a, b))
        try:
            while n < CAP:
                n += a.send(b"x" * 65536)
        except BlockingIOError:
            pass
    return n

def pipes(held):
    n = 0
    while n < CAP:
        try:
            r, w = os.pipe()
        except OSError:  # out of descriptors (RLIMIT_NOFILE): what is queued stays queued
            return n
        held.append((r, w))
        try:
            fcntl.fcntl(w, 1031, 1 << 20)  # F_SETPIPE_SZ
        except OSError:
            pass
        os.set_blocking(w, False)
        try:
            while n < CAP:
                n += os.write(w, b"x" * 65536)
        except BlockingIOError:
            pass
    return n

def memfd(held):
    fd = os.memfd_create("m")
    held.append(fd)
    for _ in range(CAP // (1 << 20)):
        os.write(fd, b"x" * (1 << 20))
    return CAP

def msgqueues(held):
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    n, buf = 0, ctypes.create_string_buffer(8 + 8192)
    ctypes.memmove(buf, (1).to_bytes(8, "little"), 8)
    while n < CAP:
        q = libc.msgget(0, 0o1600)
        if q < 0:
            raise OSError(ctypes.get_errno(), "msgget")
        held.append(q)
        while n < CAP and libc.msgsnd(q, buf, 8192, 0o4000) == 0:  # IPC_NOWAIT
            n += 8192
        if len(held) > 1 and n == 0:
            break
    return n

for i in range(2):
    if os.fork() == 0:
        break
held, got = [], {}
for kind in (sockets, pipes, memfd, msgqueues):
    try:
        got[kind.__name__] = kind(held)
    except OSError as e:
        got[kind.__name__] = f"errno {e.errno}"
print("GOT", os.getpid(), json.dumps(got), flush=True)
time.sleep(6)
""".replace("__CAP__", str(CAP))

SCRIPT = """
import dataclasses, json, os, sys, types
import numpy  # the call binds it (packages default)
for name in ("dece", "dece.metrics"):  # the sandbox's modules only: not torch, not the metrics
    module = types.ModuleType(name)
    module.__path__ = [os.path.join(sys.argv[3], *name.split(".")[1:])]
    sys.modules[name] = module
from dece.metrics import _seccomp
from dece.metrics.sandbox import run_untrusted
if sys.argv[2] == "no_filter":  # the positive control: the call as it would be without libseccomp
    _seccomp.filter_bytes = lambda deny: None
code = open(sys.argv[1]).read()
print("READY", flush=True)  # the host's baseline is taken now, after this process's imports
res = run_untrusted(code, python=sys.executable, memory_mb=64, max_processes=4, timeout_s=15,
                    audit_hooks=False, allow_unbounded_memory=sys.argv[2] == "no_filter")
print(json.dumps(dataclasses.asdict(res)), flush=True)
"""


def _mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def _dece_dir() -> str:
    import dece

    return str(Path(dece.__file__).resolve().parent)


def _probe(mode: str) -> tuple[dict, int]:
    """(the call's result, the largest drop of the host's MemAvailable while it ran)."""
    cmd, env = nonroot_command()
    with tempfile.TemporaryDirectory() as shared:
        os.chmod(shared, 0o755)
        (Path(shared) / "probe.py").write_text(PROBE)
        os.chmod(Path(shared) / "probe.py", 0o644)
        proc = subprocess.Popen(
            [*cmd, "-c", SCRIPT, str(Path(shared) / "probe.py"), mode, _dece_dir()],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env=env, cwd=shared,
        )  # fmt: skip
        assert proc.stdout is not None
        ready = proc.stdout.readline()
        baseline, low, done = _mem_available(), [], threading.Event()

        def watch() -> None:
            while not done.is_set():
                low.append(_mem_available())
                time.sleep(0.05)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            out, err = proc.communicate(timeout=120)
        finally:
            done.set()
            watcher.join()
            proc.kill()
    assert ready.strip() == "READY" and proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1]), baseline - min(low)


def _reports(res: dict) -> list[dict]:
    rows = [line for line in res["stdout"].splitlines() if line.startswith("GOT ")]
    return [json.loads(line.split(" ", 2)[2]) for line in rows]


def test_non_root_call_bounds_socket_pipe_and_queue_memory():
    res, drop = _probe("as_is")
    assert "seccomp" in res["protections"] and "cgroup_memory" not in res["protections"], res
    got = _reports(res)
    assert len(got) == 3, res["stdout"]
    for g in got:
        assert g["sockets"] == "errno 1" and g["msgqueues"] == "errno 1", g  # EPERM
        assert g["memfd"] == "errno 1", g
    pipes = sum(g["pipes"] for g in got)
    assert pipes <= 64 * MiB + 3 * 256 * 64 * 1024, got  # per-user allowance, then 1 page/pipe
    # 3 processes' RLIMIT_AS, the tmpfs, the pipes, and the host's own noise (other jobs)
    assert drop < 3 * 64 * MiB + 64 * MiB + pipes + 300 * MiB, (drop / MiB, got)


def test_the_probe_is_potent_without_the_filter():
    """Positive control: with the filter removed (and the opt-in a call then needs), the same
    probe queues its cap in socket buffers in each process, and the host sees it."""
    res, drop = _probe("no_filter")
    assert "seccomp" not in res["protections"], res
    got = _reports(res)
    assert len(got) == 3 and all(g["sockets"] >= CAP for g in got), res["stdout"]
    assert drop > 3 * CAP, (drop / MiB, got)


def test_without_libseccomp_a_call_without_memory_cgroup_refuses_unless_opted_in(monkeypatch):
    """Like a missing bubblewrap: nothing runs, the error names what to install and the opt-in;
    with the opt-in the call runs and its protections say what is missing."""
    from dece.metrics import _cgroup, _seccomp, sandbox

    monkeypatch.setattr(sandbox, "_probed", {})
    monkeypatch.setattr(_seccomp, "filter_bytes", lambda deny: None)
    monkeypatch.setattr(_cgroup, "hierarchies", lambda: [])  # as a non-root caller: no cgroup
    with pytest.raises(sandbox.SandboxUnavailableError, match=r"libseccomp.*Nothing was executed"
                       r".*apt-get install -y libseccomp2.*allow_unbounded_memory=True"):  # fmt: skip
        sandbox.run_untrusted("print('never')", timeout_s=10)
    res = sandbox.run_untrusted("print('ran')", timeout_s=10, allow_unbounded_memory=True)
    assert res.passed and res.stdout == "ran\n", res
    assert "seccomp" not in res.protections and "cgroup_memory" not in res.protections
