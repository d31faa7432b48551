"""One sandbox call: start it, verify from the host what can only be seen from there, enforce the
deadline, make sure nothing of it survives, and turn the supervisor's verdict into a result."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dece.metrics import _seccomp
from dece.metrics._bwrap import (
    SANDBOX_UID,
    WORKDIR,
    Interpreter,
    bwrap_argv,
    root_prefix,
)
from dece.metrics._cgroup import CallCgroup

if TYPE_CHECKING:
    from dece.metrics.sandbox import SandboxResult

logger = logging.getLogger(__name__)

# One script: the supervisor's checks, the channel's codec, then the supervisor and worker.
RUNNER_SOURCE = "\n\n".join(
    Path(__file__).with_name(name).read_text(encoding="utf-8")
    for name in ("_sandbox_checks.py", "_sandbox_codec.py", "_sandbox_runner.py")
)
NAMESPACES = ("user", "pid", "net", "ipc", "uts", "mnt", "cgroup")
WRITABLE_MOUNTS = (WORKDIR, "/proc", *(f"/dev/{d}" for d in ("null", "zero", "full", "random")))
WRITABLE_MOUNTS += ("/dev/urandom",)
HOST_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Plan:
    """How calls with one interpreter and set of packages are run (``bwrap`` None: unsandboxed).
    ``staged``: binds whose source uid 65534 cannot reach (root stages them first)."""

    bwrap: str | None
    interpreter: Interpreter
    binds: tuple[tuple[str, str], ...]
    staged: tuple[tuple[str, str], ...]
    links: tuple[tuple[str, str], ...]
    visible: tuple[str, ...]
    sys_path: tuple[str, ...]
    mandatory: tuple[str, ...]
    unsandboxed_reason: str
    seccomp_deny_memory: bool | None = None  # None: no seccomp filter


@dataclass(frozen=True)
class Job:
    """What to run and with which limits (validated by the caller)."""

    code: str
    timeout_s: float
    memory_mb: int
    max_processes: int
    check: str | None = None
    check_prelude: str = ""
    entry_points: tuple[str, ...] = ()
    cpu_time_s: int = 11
    cpus: float = 1.0
    max_output_bytes: int = 64 * 1024
    max_file_bytes: int = 16 * 1024 * 1024
    tmpfs_mb: int = 64
    audit_hooks: bool = True
    allow_subprocess: bool = False


@dataclass
class _Call:
    """What the host learns about a running call."""

    proc: subprocess.Popen
    info: dict
    pidfd: int | None
    host_checks: list[str]
    problems: list[str]


def execute(plan: Plan, job: Job) -> SandboxResult:
    start = time.monotonic()
    root = os.geteuid() == 0
    cgroup = None
    if plan.bwrap is not None and root:
        cgroup = CallCgroup(
            job.memory_mb * 1024 * 1024, job.max_processes + 2, job.cpus
        )  # + bubblewrap's monitor and the supervisor
    try:
        with tempfile.TemporaryDirectory(prefix="dece-sandbox-") as tmp:
            return _execute_in(plan, job, Path(tmp), cgroup, start)
    finally:
        if cgroup is not None:
            cgroup.remove()


def _config(plan: Plan, job: Job, workdir: str, verdict_fd: int) -> dict:
    host_ns = {}
    for ns in NAMESPACES:
        with contextlib.suppress(OSError):
            host_ns[ns] = os.readlink(f"/proc/self/ns/{ns}")
    return {
        "code": job.code,
        "check": job.check,
        "check_prelude": job.check_prelude,
        "entry_points": list(job.entry_points),
        "audit_hooks": job.audit_hooks,
        "allow_subprocess": job.allow_subprocess,
        "cpu_time_s": job.cpu_time_s,
        "memory_bytes": job.memory_mb * 1024 * 1024,
        "max_file_bytes": job.max_file_bytes,
        "max_processes": job.max_processes,
        "sandbox_uid": SANDBOX_UID,
        "host_namespaces": host_ns,
        "writable_mounts": list(WRITABLE_MOUNTS),
        "workdir": workdir,
        "visible_paths": list(plan.visible),
        "mandatory": [m for m in plan.mandatory if not m.startswith(("cgroup_", "host_"))],
        "sandboxed": plan.bwrap is not None,
        "verdict_fd": verdict_fd,
        "sys_path": list(plan.sys_path),
        "runner_source": RUNNER_SOURCE,
    }


def _command(
    plan: Plan, job: Job, tmp: Path, cgroup: CallCgroup | None, info_fd: int, seccomp_fd: int | None
) -> tuple[list[str], str]:
    runner = [plan.interpreter.executable, "-I", "-S", "-B", "-c", RUNNER_SOURCE, "supervisor"]
    if plan.bwrap is None:
        workdir = tmp / "work"
        workdir.mkdir()
        return runner, str(workdir)
    binds = list(plan.binds)
    staged = []
    if plan.staged:  # root only: mount points uid 65534 can reach, in the call's own directory
        os.chmod(tmp, 0o711)
        for i, (src, dst) in enumerate(plan.staged):
            point = tmp / f"m{i}"
            point.mkdir() if os.path.isdir(src) else point.touch()
            staged.append((src, str(point)))
            binds.append((str(point), dst))
    tmpfs = job.tmpfs_mb * 1024 * 1024
    argv = bwrap_argv(plan.bwrap, binds, list(plan.links), tmpfs, info_fd, seccomp_fd)
    if os.geteuid() == 0:
        procs = cgroup.procs_files if cgroup is not None else []
        argv = root_prefix(procs, staged) + argv
    return argv + ["--"] + runner, WORKDIR


def _private(path: str, flags: int) -> int:
    """Files of the call are the caller's only (its directory may be 0711 for staged binds)."""
    return os.open(path, flags, 0o600)


def _seccomp_file(plan: Plan, tmp: Path) -> Path | None:
    if plan.bwrap is None or plan.seccomp_deny_memory is None:
        return None
    path = tmp / "seccomp.bpf"
    return path if _seccomp.write_filter(str(path), plan.seccomp_deny_memory) else None


def _execute_in(
    plan: Plan, job: Job, tmp: Path, cgroup: CallCgroup | None, start: float
) -> SandboxResult:
    info_r, info_w = os.pipe()
    bpf = _seccomp_file(plan, tmp)
    try:
        with (
            open(bpf or os.devnull, "rb") as bpf_f,
            open(tmp / "verdict", "wb", opener=_private) as verdict_f,
            open(tmp / "stdout", "wb", opener=_private) as out_f,
            open(tmp / "stderr", "wb", opener=_private) as err_f,
        ):
            bpf_fd = bpf_f.fileno() if bpf is not None else None
            argv, workdir = _command(plan, job, tmp, cgroup, info_w, bpf_fd)
            cfg = _config(plan, job, workdir, verdict_f.fileno())
            with open(tmp / "config", "w", encoding="utf-8", opener=_private) as f:
                json.dump(cfg, f)
            with open(tmp / "config", "rb") as cfg_f:
                try:
                    proc = subprocess.Popen(
                        argv,
                        stdin=cfg_f,
                        stdout=out_f,
                        stderr=err_f,
                        pass_fds=(verdict_f.fileno(), info_w, bpf_f.fileno()),
                        cwd=workdir if plan.bwrap is None else "/",
                        env={"PATH": HOST_PATH, "LANG": "C.UTF-8"},
                        start_new_session=True,
                    )
                except OSError as exc:
                    return _result("error", f"could not start the sandbox: {exc}", start)
            os.close(info_w)
            info_w = -1
            call = _start_checks(plan, proc, info_r, cgroup, start + job.timeout_s)
            timed_out = _wait(call, cgroup, start + job.timeout_s)
        peak, oom_kills = cgroup.memory_stats() if cgroup is not None else (None, 0)
        return _classify(plan, job, tmp, call, timed_out, peak, oom_kills, start)
    finally:
        os.close(info_r)
        if info_w >= 0:
            os.close(info_w)


def _read_info(info_r: int, deadline: float) -> dict:
    """bubblewrap's ``--info-fd`` JSON (child-pid and namespace inodes), read until EOF."""
    data = b""
    while True:
        left = max(0.0, deadline - time.monotonic())
        ready, _, _ = select.select([info_r], [], [], left)
        if not ready:
            break
        chunk = os.read(info_r, 4096)
        if not chunk:
            break
        data += chunk
    try:
        return json.loads(data) if data else {}
    except ValueError:
        return {}


def _start_checks(
    plan: Plan, proc: subprocess.Popen, info_r: int, cgroup: CallCgroup | None, deadline: float
) -> _Call:
    """Read what only the host can see while the sandbox starts: its uid on the host and its
    cgroups (read from bubblewrap's monitor, whose uid and cgroups the sandbox inherits)."""
    if plan.bwrap is None:
        return _Call(proc, {}, None, [], [])
    info = _read_info(info_r, min(deadline, time.monotonic() + 30))
    pidfd = None
    if isinstance(info.get("child-pid"), int):
        with contextlib.suppress(OSError):
            pidfd = os.pidfd_open(info["child-pid"])
    checks, problems = [], []
    try:
        uid_line = next(
            line for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines()
            if line.startswith("Uid:")
        )  # fmt: skip
        if all(int(u) != 0 for u in uid_line.split()[1:]):
            checks.append("host_uid_unprivileged")
    except (OSError, StopIteration, ValueError):
        pass
    if cgroup is not None and cgroup.contains(proc.pid):
        checks += cgroup.applied
    missing = [m for m in plan.mandatory if m.startswith(("cgroup_", "host_")) and m not in checks]
    if missing and info:
        problems.append(f"protections not in force: {missing}")
    return _Call(proc, info, pidfd, checks, problems)


def _kill(call: _Call, cgroup: CallCgroup | None) -> None:
    """Kill the sandbox's PID 1 first (the kernel then kills its whole namespace) and let
    bubblewrap's monitor reap it: killing the monitor first would leave PID 1 a zombie of the
    host's init. Anything left after that (or an unsandboxed call's group) is killed directly."""
    if call.pidfd is not None:
        with contextlib.suppress(OSError):
            signal.pidfd_send_signal(call.pidfd, signal.SIGKILL)
        try:
            call.proc.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            logger.error("sandbox: bubblewrap did not exit after its PID 1 was killed")
    with contextlib.suppress(OSError):
        os.killpg(call.proc.pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        call.proc.kill()
    if cgroup is not None:
        cgroup.kill_all()
    call.proc.wait()


def _wait(call: _Call, cgroup: CallCgroup | None, deadline: float) -> bool:
    """Wait for the call until the deadline; then kill it. Returns whether it timed out. On
    return no process of the sandbox is left (PID 1 gone means its namespace is empty)."""
    timed_out = False
    if not call.problems:
        try:
            call.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out = True
    if call.proc.returncode is None:
        _kill(call, cgroup)
    if call.pidfd is not None:
        ready, _, _ = select.select([call.pidfd], [], [], 5.0)
        if not ready:
            logger.error("sandbox: PID 1 %s still alive", call.info.get("child-pid"))
        os.close(call.pidfd)
    elif call.info == {}:
        with contextlib.suppress(OSError):  # unsandboxed: the rest of the session's group
            os.killpg(call.proc.pid, signal.SIGKILL)
    return timed_out


def _read_bounded(path: Path, limit: int) -> tuple[str, bool]:
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            data = f.read(limit)
    except OSError:
        return "", False
    return data.decode("utf-8", "replace"), size > limit


def _result(status: str, reason: str, start: float, **fields: object) -> SandboxResult:
    from dece.metrics.sandbox import SandboxResult

    fields.setdefault("protections", ())
    base = {"returncode": None, "stdout": "", "stderr": "", "stdout_truncated": False}
    base["stderr_truncated"] = False
    base.update(fields)
    return SandboxResult(status, reason, duration_s=time.monotonic() - start, **base)


def _read_verdict(path: Path) -> tuple[list[str], dict | None]:
    """(protections verified before the program ran, final verdict or None)."""
    text, _ = _read_bounded(path, 1 << 20)
    lines = []
    for line in text.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            lines.append(obj)
    verified = [str(p) for p in lines[0].get("protections", [])] if lines else []
    verdict = lines[-1] if len(lines) > 1 and "status" in lines[-1] else None
    return verified, verdict


def _classify(
    plan: Plan,
    job: Job,
    tmp: Path,
    call: _Call,
    timed_out: bool,
    peak: int | None,
    oom_kills: int,
    start: float,
) -> SandboxResult:
    stdout, out_trunc = _read_bounded(tmp / "stdout", job.max_output_bytes)
    stderr, err_trunc = _read_bounded(tmp / "stderr", job.max_output_bytes)
    verified, verdict = _read_verdict(tmp / "verdict")
    protections = ["bwrap"] if plan.bwrap is not None else ["UNSANDBOXED"]
    protections += call.host_checks + verified
    if job.audit_hooks:
        protections.append("audit_hooks")
    fields = {
        "returncode": verdict.get("returncode") if verdict else None,
        "stdout": stdout, "stderr": stderr, "stdout_truncated": out_trunc,
        "stderr_truncated": err_trunc, "protections": tuple(protections),
        "backend": "bwrap" if plan.bwrap is not None else "unsandboxed",
        "peak_memory_bytes": peak, "pid_namespace": call.info.get("pid-namespace"),
    }  # fmt: skip
    memory = f"memory limit of {job.memory_mb} MiB reached (OOM kill in the call's cgroup)"
    if call.problems:
        return _result("error", "; ".join(call.problems), start, **fields)
    if timed_out:
        return _result("timeout", f"wall-clock timeout after {job.timeout_s:g} s", start, **fields)
    if verdict is None:
        if oom_kills:
            return _result("error", memory, start, **fields)
        tail = stderr.strip().splitlines()[-1:] or [f"exit status {call.proc.returncode}"]
        return _result("error", f"the sandbox failed before reporting: {tail[0]}", start, **fields)
    status = verdict.get("status")
    if status not in ("passed", "failed", "timeout", "error"):
        status = "error"
    reason = str(verdict.get("reason", ""))[:2000]
    if oom_kills and status != "passed":
        reason = f"{reason}; {memory}"
    return _result(status, reason, start, **fields)
