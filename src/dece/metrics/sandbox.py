"""Run untrusted Python (model output) in a contained child process.

Layers, outermost first (each result lists the ones that applied in ``protections``):

* ``process_group``: the child starts a new session; on the wall-clock timeout the whole process
  group is killed with SIGKILL (and, after dropping privileges, every process of the sandbox uid).
* ``pid_namespace`` / ``network_namespace`` (``unshare --pid --fork --kill-child --net``, when the
  kernel and our privileges allow it): the program's init is PID 1 of a fresh namespace, so every
  process it created dies with it; the network namespace has only a downed loopback, so no socket
  can reach anything, 127.0.0.1 included.
* resource limits: ``rlimit_cpu`` (SIGXCPU, then SIGKILL a second later), ``rlimit_as`` (address
  space; a 10 GB allocation raises ``MemoryError``), ``rlimit_fsize`` (bounds every file written,
  captured output included), ``rlimit_nofile``, ``rlimit_core``.
* ``cgroup_pids``: when root and a ``pids`` cgroup (v2, else v1) is writable, the program runs in a
  fresh cgroup whose ``pids.max`` is ``max_processes + 2``; it is emptied with SIGKILL and removed
  afterwards. This is what contains a fork bomb as root, where ``RLIMIT_NPROC`` is not enforced.
* ``setuid`` + ``rlimit_nproc``: when run as root, the program drops to a dedicated unprivileged
  uid/gid (one per call), for which the kernel enforces ``RLIMIT_NPROC`` (it does not for root):
  writes to root-owned paths then fail with ``EACCES``. It is skipped (``setuid_skipped_...``)
  when the interpreter would be unreadable by that uid (e.g. a pyenv Python under ``/root``).
  Not root: ``RLIMIT_NPROC`` is set to the processes our uid already has + ``max_processes``.
* audit hooks (PEP 578): ``audit_hook_files`` (no write, rename, removal ... outside the working
  directory), ``audit_hook_subprocess`` (no fork/exec/spawn/ctypes unless ``allow_subprocess``),
  ``audit_hook_socket`` (no socket, the fallback when no network namespace could be created).
  Audit hooks stop ordinary code, not code that exploits the interpreter; the kernel layers above
  are the real boundary when available.
* a private temporary working directory (also ``HOME`` and ``TMPDIR``), removed afterwards; the
  captured stdout/stderr are bounded (``max_output_bytes`` returned, ``max_file_bytes`` on disk).

:func:`run_untrusted` never raises on hostile code: every outcome is a :class:`SandboxResult`.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

logger = logging.getLogger(__name__)

Status = Literal["passed", "failed", "timeout", "error"]

_RUNNER = Path(__file__).with_name("_sandbox_runner.py")
_UID_BASE = 1_500_000_000  # far above any uid a distribution hands out
_uid_counter = itertools.count()


@dataclass(frozen=True)
class SandboxResult:
    """Outcome of one sandboxed run.

    status: ``passed`` (ran to its end, exit 0), ``failed`` (uncaught exception or non-zero exit),
    ``timeout`` (wall-clock or CPU limit), ``error`` (killed by a signal or limit other than time,
    or the sandbox could not start). ``reason`` says why in one line.
    """

    status: Status
    reason: str
    returncode: int | None
    stdout: str
    stderr: str
    stdout_truncated: bool
    stderr_truncated: bool
    duration_s: float
    protections: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @property
    def network_protection(self) -> str:
        """``namespace``, ``audit_hook`` or ``none``."""
        if "network_namespace" in self.protections:
            return "namespace"
        if "audit_hook_socket" in self.protections:
            return "audit_hook"
        return "none"

    @property
    def process_protection(self) -> str:
        """What bounds the number of processes (kernel first): ``cgroup_pids``, ``rlimit_nproc``,
        ``audit_hook`` or ``none``."""
        if "cgroup_pids" in self.protections:
            return "cgroup_pids"
        if "rlimit_nproc" in self.protections:
            return "rlimit_nproc"
        if "audit_hook_subprocess" in self.protections:
            return "audit_hook"
        return "none"


@functools.lru_cache(maxsize=1)
def namespaces_available() -> bool:
    """Whether ``unshare --pid --fork --kill-child --net`` works here (checked once)."""
    exe = shutil.which("unshare")
    if exe is None:
        return False
    try:
        proc = subprocess.run(
            [exe, "--pid", "--fork", "--kill-child", "--net", "true"],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return proc.returncode == 0


def _next_uid() -> int:
    return _UID_BASE + (os.getpid() % 100_000) * 1000 + next(_uid_counter) % 1000


def _pids_of_uid(uid: int) -> list[int]:
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status", encoding="ascii", errors="replace") as f:
                for line in f:
                    if line.startswith("Uid:"):
                        if int(line.split()[1]) == uid:
                            pids.append(int(entry.name))
                        break
        except (OSError, ValueError, IndexError):
            continue
    return pids


def _kill_everything(proc: subprocess.Popen, uid: int | None) -> None:
    """SIGKILL the process group, then (repeatedly) every process of the sandbox uid."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if uid is None or not os.path.isdir("/proc"):
        return
    for _ in range(50):  # a fork bomb keeps forking while we kill: repeat until none is left
        pids = _pids_of_uid(uid)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.01)
    logger.warning("sandbox: processes of uid %d survived 50 kill rounds", uid)


def _cgroup_root() -> Path | None:
    """A writable ``pids`` cgroup directory (v2 with the pids controller, else v1), or None."""
    if os.geteuid() != 0:
        return None
    v2 = Path("/sys/fs/cgroup")
    try:
        if "pids" in (v2 / "cgroup.controllers").read_text().split() and os.access(v2, os.W_OK):
            return v2
    except OSError:
        pass
    v1 = v2 / "pids"
    if (v1 / "cgroup.procs").exists() and os.access(v1, os.W_OK):
        return v1
    return None


def _make_cgroup(max_processes: int, tag: int) -> Path | None:
    base = _cgroup_root()
    if base is None:
        return None
    path = base / f"dece-sandbox-{os.getpid()}-{tag}"
    try:
        path.mkdir()
        (path / "pids.max").write_text(str(max_processes))
    except OSError as exc:
        logger.debug("sandbox: no pids cgroup (%s)", exc)
        with contextlib.suppress(OSError):
            path.rmdir()
        return None
    return path


def _remove_cgroup(path: Path) -> None:
    for _ in range(200):
        try:
            pids = [int(p) for p in (path / "cgroup.procs").read_text().split()]
        except OSError:
            pids = []
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        try:
            path.rmdir()
            return
        except OSError:
            time.sleep(0.01)
    logger.warning("sandbox: could not remove cgroup %s", path)


def _read_bounded(path: Path, limit: int) -> tuple[str, bool]:
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            data = f.read(limit)
    except OSError:
        return "", False
    return data.decode("utf-8", "replace"), size > limit


def _validate(timeout_s: float, memory_mb: int, max_processes: int, max_output_bytes: int) -> None:
    if not (isinstance(timeout_s, int | float) and math.isfinite(timeout_s) and timeout_s > 0):
        raise ValueError(f"timeout_s must be a positive number, got {timeout_s!r}")
    if not (isinstance(memory_mb, int) and memory_mb >= 64):
        raise ValueError(f"memory_mb must be an int >= 64, got {memory_mb!r}")
    if not (isinstance(max_processes, int) and max_processes >= 1):
        raise ValueError(f"max_processes must be an int >= 1, got {max_processes!r}")
    if not (isinstance(max_output_bytes, int) and max_output_bytes >= 0):
        raise ValueError(f"max_output_bytes must be an int >= 0, got {max_output_bytes!r}")


def run_untrusted(
    code: str,
    *,
    timeout_s: float = 10.0,
    cpu_time_s: int | None = None,
    memory_mb: int = 1024,
    max_processes: int = 32,
    max_output_bytes: int = 64 * 1024,
    max_file_bytes: int = 16 * 1024 * 1024,
    use_namespaces: bool = True,
    drop_privileges: bool = True,
    audit_hooks: bool = True,
    allow_subprocess: bool = False,
    python: str | None = None,
) -> SandboxResult:
    """Run ``code`` (Python source) in a contained child process; never raises on hostile code.

    Args:
        code: the program; it runs as ``__main__`` in a fresh interpreter (``python -I -B``).
        timeout_s: wall-clock limit; then the whole process tree is killed.
        cpu_time_s: CPU-time limit (default ``ceil(timeout_s) + 1``).
        memory_mb: address-space limit (``RLIMIT_AS``) in MiB.
        max_processes: ``RLIMIT_NPROC`` for the sandbox uid (enforced when privileges are dropped).
        max_output_bytes: how much of stdout/stderr each is returned.
        max_file_bytes: ``RLIMIT_FSIZE``: the largest file the program (and its output) may write.
        use_namespaces: create PID and network namespaces when possible.
        drop_privileges: when root, run the program as a dedicated unprivileged uid.
        audit_hooks: install the file and subprocess audit hooks. The socket hook is installed
            whenever no network namespace exists, and forking stays blocked when no kernel
            process limit applies, whatever this says (fail closed).
        allow_subprocess: let the program fork/exec (still bounded by ``max_processes``).
        python: interpreter to use (default ``sys.executable``).

    Raises:
        ValueError: only for invalid arguments (never for what the code does).
    """
    if not isinstance(code, str):
        raise ValueError(f"code must be a str, got {type(code).__name__}")
    _validate(timeout_s, memory_mb, max_processes, max_output_bytes)
    cpu = int(cpu_time_s) if cpu_time_s is not None else math.ceil(timeout_s) + 1
    if cpu < 1:
        raise ValueError(f"cpu_time_s must be >= 1, got {cpu_time_s!r}")
    start = time.monotonic()
    netns = use_namespaces and namespaces_available()
    uid = _next_uid() if drop_privileges and os.geteuid() == 0 else None
    if os.geteuid() != 0:  # RLIMIT_NPROC counts every process of our uid: allow this many more
        nproc_limit = len(_pids_of_uid(os.geteuid())) + max_processes
    else:
        nproc_limit = max_processes
    cgroup = _make_cgroup(max_processes + 2, uid or next(_uid_counter))
    try:
        return _run(
            code, timeout_s, cpu, memory_mb, max_processes, nproc_limit, max_output_bytes,
            max_file_bytes, netns, uid, cgroup, audit_hooks, allow_subprocess, python, start,
        )  # fmt: skip
    finally:
        if cgroup is not None:
            _remove_cgroup(cgroup)


def _run(
    code: str,
    timeout_s: float,
    cpu: int,
    memory_mb: int,
    max_processes: int,
    nproc_limit: int,
    max_output_bytes: int,
    max_file_bytes: int,
    netns: bool,
    uid: int | None,
    cgroup: Path | None,
    audit_hooks: bool,
    allow_subprocess: bool,
    python: str | None,
    start: float,
) -> SandboxResult:
    outer: list[str] = ["process_group", "private_tmpdir"]
    with tempfile.TemporaryDirectory(prefix="dece-sandbox-") as root:
        root_path = Path(root)
        workdir = root_path / "work"
        workdir.mkdir(mode=0o700)
        program = workdir / "program.py"
        program.write_text(code, encoding="utf-8")
        program.chmod(0o644)
        out_p, err_p, status_p = (root_path / n for n in ("stdout", "stderr", "status"))
        cfg = {
            "workdir": str(workdir),
            "program": str(program),
            "cpu_time_s": cpu,
            "memory_bytes": memory_mb * 1024 * 1024,
            "max_file_bytes": int(max_file_bytes),
            "max_processes": max_processes,
            "nproc_limit": nproc_limit,
            "cgroup": str(cgroup) if cgroup is not None else None,
            "uid": uid,
            "audit_hooks": audit_hooks,
            "allow_subprocess": allow_subprocess,
            "block_network_hook": not netns,
            "outer_protections": outer + (["pid_namespace", "network_namespace"] if netns else []),
        }
        cmd = [python or sys.executable, "-I", "-B", "-c", _RUNNER.read_text(encoding="utf-8")]
        if netns:
            cmd = ["unshare", "--pid", "--fork", "--kill-child", "--net", "--", *cmd]
        env = {"PATH": "/usr/bin:/bin", "HOME": str(workdir), "TMPDIR": str(workdir)}
        env["LANG"] = "C.UTF-8"
        with (
            open(out_p, "wb") as out_f,
            open(err_p, "wb") as err_f,
            open(status_p, "wb") as status_f,
        ):
            cfg["status_fd"] = status_f.fileno()
            cmd.append(json.dumps(cfg))
            try:
                proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=out_f,
                    stderr=err_f,
                    pass_fds=(status_f.fileno(),),
                    cwd=str(workdir),
                    env=env,
                    start_new_session=True,
                )
            except OSError as exc:
                return SandboxResult(
                    "error", f"could not start the sandbox: {exc}", None, "", "", False, False,
                    time.monotonic() - start, tuple(outer),
                )  # fmt: skip
            timed_out = False
            try:
                returncode = proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
            _kill_everything(proc, uid)
            returncode = proc.wait()
        duration = time.monotonic() - start
        stdout, out_trunc = _read_bounded(out_p, max_output_bytes)
        stderr, err_trunc = _read_bounded(err_p, max_output_bytes)
        status_text, _ = _read_bounded(status_p, 64 * 1024)
        if uid is not None:
            _kill_everything(proc, uid)  # nothing of this uid may outlive the call
    return _classify(
        status_text, returncode, timed_out, timeout_s, stdout, stderr, out_trunc, err_trunc,
        duration, outer,
    )  # fmt: skip


def _classify(
    status_text: str,
    returncode: int,
    timed_out: bool,
    timeout_s: float,
    stdout: str,
    stderr: str,
    out_trunc: bool,
    err_trunc: bool,
    duration: float,
    outer: list[str],
) -> SandboxResult:
    ready = done = None
    exc_line = None
    exit_code = None
    for line in status_text.splitlines():
        if line.startswith("READY ") and ready is None:
            ready = tuple(p for p in line[6:].split(",") if p)
        elif line == "DONE":
            done = True
        elif line.startswith("EXC ") and exc_line is None:
            exc_line = line[4:]
        elif line.startswith("EXIT "):
            try:
                exit_code = int(line[5:])
            except ValueError:
                pass
    code = exit_code if exit_code is not None else returncode
    protections = ready if ready is not None else tuple(outer)

    def result(status: Status, reason: str) -> SandboxResult:
        return SandboxResult(
            status, reason, code, stdout, stderr, out_trunc, err_trunc, duration, protections
        )

    if timed_out:
        return result("timeout", f"wall-clock timeout after {timeout_s:g} s")
    if ready is None:
        tail = stderr.strip().splitlines()[-1:] or [f"exit status {code}"]
        return result("error", f"sandbox failed to start: {tail[0]}")
    if code is not None and code < 0:
        sig = -code
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        if sig == signal.SIGXCPU:
            return result("timeout", "CPU time limit exceeded (SIGXCPU)")
        if sig == signal.SIGXFSZ:
            return result("error", "file size limit exceeded (SIGXFSZ)")
        return result("error", f"killed by {name}")
    if code == 0 and done:
        return result("passed", "completed")
    if exc_line is not None:
        return result("failed", exc_line)
    if code == 0:
        return result("failed", "exited with status 0 before running to its end")
    return result("failed", f"exit status {code}")
