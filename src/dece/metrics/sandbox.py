"""Run untrusted Python (model output) isolated by bubblewrap; never trust the program.

Every call runs in a fresh bubblewrap sandbox (see :mod:`dece.metrics._bwrap` for what it
mounts). Inside, a supervisor (PID 1, non-dumpable) verifies the protections from inside, starts
the program in a second process and reports the verdict on a descriptor only it holds
(:mod:`dece.metrics._sandbox_runner`). Each result lists in ``protections`` what was *verified*
for that call, not what was requested; a call whose mandatory protections are not all verified
runs nothing and returns ``status="error"``.

Mandatory, as root and as a non-root user:

* ``user_namespace pid_namespace net_namespace ipc_namespace uts_namespace mnt_namespace``: the
  namespace differs from the caller's (inode compared inside); ``loopback_only``: the network
  namespace has no interface but ``lo``, so 127.0.0.1/::1 of the host, abstract unix sockets and
  every other address are unreachable; ``userns_disabled``: no nested user namespace can be made.
* ``sandbox_uid`` (uid/gid 65534 inside), ``host_uid_unprivileged`` (the sandbox's uid on the host,
  read by the caller, is not 0), ``no_capabilities`` (all five capability sets empty),
  ``no_new_privs``, ``new_session``, ``die_with_parent``, ``non_dumpable_supervisor``.
* ``readonly_filesystem`` (every mount read-only but the working tmpfs, ``/proc`` and the device
  nodes), ``private_tmpfs`` (size-limited), ``fresh_procfs`` (the PID namespace's own, so no
  process of the host and none of its ``environ``), ``minimal_root`` (a walk of ``/`` finds
  nothing but the declared binds: no project, no home, no ``/etc``).
* ``rlimit_as rlimit_nproc rlimit_fsize rlimit_cpu rlimit_nofile rlimit_core`` (read back).
* ``seccomp`` wherever libseccomp is installed (:mod:`dece.metrics._seccomp`): keyrings, ptrace,
  bpf, perf, io_uring, mounts, namespaces, module loading and sockets denied.

Additionally mandatory as root, where the controllers are mounted and writable (on this machine,
cgroup v1): ``cgroup_memory`` (total memory of the call: every process, memfd, tmpfs, page
cache), ``cgroup_pids`` and ``cgroup_cpu``, verified by reading the sandbox's cgroups from the
host. As root, bubblewrap runs as uid 65534 (``host_uid_unprivileged`` is 65534, not root in a
namespace), so ``RLIMIT_NPROC`` is enforced and nothing in the sandbox is owned by it.

As a non-root user there is no cgroup: memory is bounded per process (``RLIMIT_AS``), the
working tmpfs by its size, processes by ``RLIMIT_NPROC`` (counted in the sandbox's own user
namespace), and the seccomp filter also denies what holds memory ``RLIMIT_AS`` does not see:
``memfd_create``, ``memfd_secret``, ``shmget`` and ``msgget`` (sockets, whose buffers it does not
see either, are denied in every mode). The total is therefore bounded by about ``(max_processes + 1) * memory_mb`` plus the
tmpfs plus pipe buffers (at most ``fs.pipe-user-pages-soft``, 64 MiB by default, then one page
per pipe), not by ``memory_mb`` (residual limit). Without libseccomp nothing bounds socket
buffers, so a non-root call raises :class:`SandboxUnavailableError` unless
``allow_unbounded_memory=True``. The interpreter must be readable by that user: a pyenv Python
under ``/root`` is not, so pass ``python=`` one that is (e.g. ``/usr/bin/python3.11``); otherwise
:class:`SandboxUnavailableError` names the directory that blocks it.

At the deadline the sandbox's PID 1 is killed (the kernel then kills every process of its PID
namespace, daemons included) and, as root, the cgroup is emptied with SIGKILL; the call waits
until the namespace is gone. Audit hooks in the program's process (no write outside the working
directory, no socket, no process creation unless ``allow_subprocess``) are defence in depth only.

Result integrity: with ``check`` (how pass@k uses it), the tests run in the supervisor and every
call to an entry point is answered by the program's process with a value in a tagged encoding
(builtins, ``Fraction``, ``Decimal``, numpy; :mod:`dece.metrics._sandbox_codec`), so no object,
descriptor or memory of the program's reaches the verdict. The program's process never holds the
tests, their expected values or anything derived from them: it is told only to serve calls and
sees only their arguments (``hidden_paths`` keeps files such as a benchmark's data out of the
sandbox). A result that cannot be encoded, or a reply that breaks the protocol, makes the call an
``error``. Without ``check`` the tests run inside the program's process, which can read them or
report "ran to its end" without running them: that mode is for trusted code only (the exit status
and the kernel limits still hold; a malformed message is an ``error`` with its reason).

No backend (bubblewrap missing, too old, or unable to create namespaces here) raises
:class:`SandboxUnavailableError` naming what is missing; ``allow_unsandboxed_trusted_code=True``
instead runs the code with rlimits only, for trusted code, and records ``UNSANDBOXED``.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from dece.metrics import _cgroup, _seccomp
from dece.metrics._bwrap import (
    INSTALL_HINT,
    SITE_DIR,
    Interpreter,
    SandboxUnavailableError,
    bwrap_supports_disable_userns,
    find_bwrap,
    inspect_interpreter,
    package_binds,
    system_binds,
    world_reachable,
)
from dece.metrics._sandbox_exec import Job, Plan, execute

logger = logging.getLogger(__name__)

Status = Literal["passed", "failed", "timeout", "error"]

__all__ = [
    "MANDATORY",
    "SandboxResult",
    "SandboxUnavailableError",
    "ensure_hidden",
    "run_untrusted",
]

MANDATORY = (
    "user_namespace",
    "pid_namespace",
    "net_namespace",
    "ipc_namespace",
    "uts_namespace",
    "mnt_namespace",
    "loopback_only",
    "userns_disabled",
    "sandbox_uid",
    "host_uid_unprivileged",
    "no_capabilities",
    "no_new_privs",
    "new_session",
    "die_with_parent",
    "non_dumpable_supervisor",
    "readonly_filesystem",
    "private_tmpfs",
    "fresh_procfs",
    "minimal_root",
    "rlimit_as",
    "rlimit_nproc",
    "rlimit_fsize",
    "rlimit_cpu",
    "rlimit_nofile",
    "rlimit_core",
)


@dataclass(frozen=True)
class SandboxResult:
    """Outcome of one sandboxed run.

    status: ``passed`` (ran to its end and exited 0; with ``check``: every check passed),
    ``failed`` (exception, failed check, non-zero exit, early exit), ``timeout`` (wall-clock or
    CPU limit), ``error`` (killed by a signal or limit other than time, or the sandbox refused
    to run it). ``reason`` says why in one line. ``returncode``: the program's process's exit
    status as it was (negative: killed by that signal; None when it never exited on its own).
    ``protections``: what was verified for this call. ``peak_memory_bytes``: the call's memory
    cgroup peak (None without one). ``pid_namespace``: inode of the sandbox's PID namespace.
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
    backend: str = "bwrap"
    peak_memory_bytes: int | None = None
    pid_namespace: int | None = None

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @property
    def network_protection(self) -> str:
        """``namespace`` (a network namespace with only loopback) or ``none``."""
        ok = {"net_namespace", "loopback_only"} <= set(self.protections)
        return "namespace" if ok else "none"

    @property
    def process_protection(self) -> str:
        """What bounds the number of processes: ``cgroup_pids``, ``rlimit_nproc`` or ``none``."""
        for name in ("cgroup_pids", "rlimit_nproc"):
            if name in self.protections:
                return name
        return "none"

    @property
    def memory_protection(self) -> str:
        """What bounds memory: ``cgroup_memory`` (total), ``rlimit_as`` (per process), ``none``."""
        for name in ("cgroup_memory", "rlimit_as"):
            if name in self.protections:
                return name
        return "none"


_probe_lock = threading.Lock()
_probed: dict[tuple, Plan] = {}


def _plan(
    python: str, packages: tuple[str, ...], allow_unsandboxed: bool, allow_unbounded: bool
) -> Plan:
    interp = inspect_interpreter(python)
    pkg = package_binds(packages, interp.version)
    bwrap = find_bwrap()
    if bwrap is None:
        problem = f"bubblewrap (bwrap) is not installed: {INSTALL_HINT}"
        return _unsandboxed(problem, interp, pkg, allow_unsandboxed)
    if not bwrap_supports_disable_userns(bwrap):
        problem = f"{bwrap} is older than bubblewrap 0.8 (no --disable-userns): {INSTALL_HINT}"
        return _unsandboxed(problem, interp, pkg, allow_unsandboxed)
    sys_binds, links = system_binds()
    covered = tuple(dst + os.sep for _, dst in sys_binds)  # e.g. /usr/lib/python3.11
    binds = sys_binds + [(p, p) for p in interp.paths if not p.startswith(covered)] + pkg
    root = os.geteuid() == 0
    direct = tuple(b for b in binds if not root or world_reachable(b[0]))
    staged = tuple(b for b in binds if root and not world_reachable(b[0]))
    mandatory = list(MANDATORY)
    if root:
        mandatory += sorted({f"cgroup_{c}" for h in _cgroup.hierarchies() for c in h.controllers})
    deny_memory = "cgroup_memory" not in mandatory
    seccomp = deny_memory if _seccomp.filter_bytes(deny_memory) is not None else None
    if seccomp is not None:
        mandatory.append("seccomp")
    elif deny_memory and not allow_unbounded:
        raise SandboxUnavailableError(
            "libseccomp (libseccomp.so.2) is not installed, and without it nothing bounds the "
            "socket buffers, memfds and shared memory of a call that has no memory cgroup (a "
            "non-root caller). Nothing was executed. Install it (Debian/Ubuntu: `apt-get install "
            "-y libseccomp2`), run as root, or pass allow_unbounded_memory=True"
        )
    visible = tuple([dst for _, dst in binds] + [dst for _, dst in links])
    return Plan(
        bwrap, interp, direct, staged, tuple(links), visible, (SITE_DIR,) if pkg else (),
        tuple(mandatory), "", seccomp,
    )  # fmt: skip


def _unsandboxed(problem: str, interp: Interpreter, pkg: list, allow: bool) -> Plan:
    if not allow:
        raise SandboxUnavailableError(
            f"{problem}. Nothing was executed. Only for code you trust, "
            "allow_unsandboxed_trusted_code=True runs it without isolation."
        )
    sys_path = tuple(dict.fromkeys(os.path.dirname(host) for host, _ in pkg))
    return Plan(None, interp, (), (), (), (), sys_path, (), problem)


def _checked_plan(
    python: str, packages: tuple[str, ...], allow_unsandboxed: bool, allow_unbounded: bool = False
) -> Plan:
    """The plan for these arguments, after one probe run proved that it works (cached)."""
    key = (os.path.realpath(python), packages, os.geteuid(), allow_unsandboxed, allow_unbounded)
    with _probe_lock:
        if key in _probed:
            return _probed[key]
        plan = _plan(python, packages, allow_unsandboxed, allow_unbounded)
        if plan.bwrap is not None:
            probe = "\n".join(f"import {p}" for p in packages) or "pass"
            res = execute(plan, Job(probe, timeout_s=60.0, memory_mb=1024, max_processes=32))
            if not res.passed:
                problem = f"the bubblewrap sandbox does not work here: {res.reason}"
                tail = res.stderr.strip().splitlines()[-3:]
                if tail:
                    problem += f" ({' | '.join(tail)})"
                problem += (
                    ". Check that unprivileged user namespaces are enabled "
                    "(sysctl kernel.unprivileged_userns_clone=1, user.max_user_namespaces > 0)"
                )
                plan = _unsandboxed(problem, plan.interpreter, [], allow_unsandboxed)
        _probed[key] = plan
        return plan


def _validate(job: Job) -> None:
    t = job.timeout_s
    if isinstance(t, bool) or not (isinstance(t, int | float) and math.isfinite(t) and t > 0):
        raise ValueError(f"timeout_s must be a positive number, got {t!r}")
    ints = {
        "memory_mb": (job.memory_mb, 64),
        "max_processes": (job.max_processes, 1),
        "max_output_bytes": (job.max_output_bytes, 0),
        "max_file_bytes": (job.max_file_bytes, 1),
        "tmpfs_mb": (job.tmpfs_mb, 1),
        "cpu_time_s": (job.cpu_time_s, 1),
    }
    for name, (value, low) in ints.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    if not (isinstance(job.cpus, int | float) and math.isfinite(job.cpus) and job.cpus > 0):
        raise ValueError(f"cpus must be a positive number, got {job.cpus!r}")
    if job.check is not None and not isinstance(job.check, str):
        raise ValueError(f"check must be a str or None, got {type(job.check).__name__}")
    if not isinstance(job.check_prelude, str):
        raise ValueError(f"check_prelude must be a str, got {type(job.check_prelude).__name__}")
    for name in job.entry_points:
        if not (isinstance(name, str) and name.isidentifier()):
            raise ValueError(f"entry_points must be identifiers, got {name!r}")


def run_untrusted(
    code: str,
    *,
    timeout_s: float = 10.0,
    check: str | None = None,
    check_prelude: str = "",
    entry_points: Sequence[str] = (),
    cpu_time_s: int | None = None,
    memory_mb: int = 1024,
    max_processes: int = 32,
    cpus: float = 1.0,
    max_output_bytes: int = 64 * 1024,
    max_file_bytes: int = 16 * 1024 * 1024,
    tmpfs_mb: int = 64,
    packages: Sequence[str] = ("numpy",),
    python: str | None = None,
    audit_hooks: bool = True,
    allow_subprocess: bool = False,
    allow_unsandboxed_trusted_code: bool = False,
    allow_unbounded_memory: bool = False,
    hidden_paths: Sequence[str] = (),
) -> SandboxResult:
    """Run ``code`` (Python source, as ``__main__``) in a fresh sandbox; never raises on what the
    code does.

    Args:
        code: the untrusted program.
        timeout_s: wall-clock limit of the whole call; then everything it started is killed.
        check: trusted test code run in a separate process of the same sandbox, after
            ``check_prelude``; each name in ``entry_points`` is bound there to a proxy that calls
            ``code``'s function of that name. The verdict is then ``check``'s (raises = failed).
        cpu_time_s: CPU seconds per process (``RLIMIT_CPU``; default ``ceil(timeout_s) + 1``).
        memory_mb: memory of the call (cgroup, as root) and of each process (``RLIMIT_AS``).
        max_processes: processes (and threads) the program may have at once.
        cpus: CPU share of the call (cgroup ``cpu``, as root).
        max_output_bytes: how much of stdout/stderr each is returned.
        max_file_bytes: largest file (and captured output) the program may write.
        tmpfs_mb: size of the private working directory (``/tmp``, also HOME and TMPDIR).
        packages: top-level packages made importable read-only (as this process finds them).
        python: interpreter to run the code with (default ``sys.executable``); a non-root user
            needs one it can read.
        audit_hooks: install the in-process audit hooks (defence in depth).
        allow_subprocess: let the audit hooks allow process creation (the kernel limits hold).
        allow_unsandboxed_trusted_code: without a working sandbox backend, run the code with
            rlimits only instead of raising. Only for code you trust.
        allow_unbounded_memory: as a non-root user without libseccomp, run although nothing
            bounds socket buffers, memfds and shared memory (see the module docstring).
        hidden_paths: host files or directories that must not be visible inside (e.g. the
            file holding the tests); a bind that would expose one raises ValueError naming both.

    Raises:
        ValueError: invalid arguments.
        SandboxUnavailableError: no working isolation backend (and no opt-in).
    """
    if not isinstance(code, str):
        raise ValueError(f"code must be a str, got {type(code).__name__}")
    cpu = math.ceil(timeout_s) + 1 if cpu_time_s is None and _finite(timeout_s) else cpu_time_s
    job = Job(
        code, timeout_s=timeout_s, memory_mb=memory_mb, max_processes=max_processes,
        check=check, check_prelude=check_prelude, entry_points=tuple(entry_points),
        cpu_time_s=cpu if cpu is not None else 1, cpus=cpus, max_output_bytes=max_output_bytes,
        max_file_bytes=max_file_bytes, tmpfs_mb=tmpfs_mb, audit_hooks=bool(audit_hooks),
        allow_subprocess=bool(allow_subprocess),
    )  # fmt: skip
    _validate(job)
    plan = _hiding_plan(
        hidden_paths, packages, python, allow_unsandboxed_trusted_code, allow_unbounded_memory
    )
    if plan.bwrap is None:
        warnings.warn(
            f"running code WITHOUT A SANDBOX (allow_unsandboxed_trusted_code=True): "
            f"{plan.unsandboxed_reason}",
            RuntimeWarning,
            stacklevel=2,
        )
    return execute(plan, job)


def ensure_hidden(
    hidden_paths: Sequence[str],
    *,
    packages: Sequence[str] = ("numpy",),
    python: str | None = None,
    allow_unsandboxed_trusted_code: bool = False,
    allow_unbounded_memory: bool = False,
    **_: object,
) -> None:
    """Raise ValueError when a sandbox call with these arguments would make one of
    ``hidden_paths`` visible inside (what :func:`run_untrusted` checks before every call)."""
    _hiding_plan(
        hidden_paths, packages, python, allow_unsandboxed_trusted_code, allow_unbounded_memory
    )


def _hiding_plan(
    hidden_paths: Sequence[str],
    packages: Sequence[str],
    python: str | None,
    allow_unsandboxed_trusted_code: bool,
    allow_unbounded_memory: bool,
) -> Plan:
    """The checked plan of a call, after refusing one that would expose ``hidden_paths``."""
    if isinstance(packages, str):
        raise ValueError("packages must be a sequence of names, not a str")
    plan = _checked_plan(
        python or sys.executable, tuple(packages), allow_unsandboxed_trusted_code,
        bool(allow_unbounded_memory),
    )  # fmt: skip
    _refuse_exposed(plan, hidden_paths)
    return plan


def _refuse_exposed(plan: Plan, hidden_paths: Sequence[str]) -> None:
    if isinstance(hidden_paths, str) or not all(isinstance(p, str) for p in hidden_paths):
        raise ValueError(f"hidden_paths must be a sequence of str, got {hidden_paths!r}")
    if plan.bwrap is None:  # unsandboxed (trusted code only): nothing is hidden anyway
        return
    for hidden in hidden_paths:
        real = os.path.realpath(hidden)
        for src, dst in plan.binds + plan.staged:
            src_real = os.path.realpath(src)
            if real == src_real or real.startswith(src_real.rstrip(os.sep) + os.sep):
                raise ValueError(
                    f"{hidden} must not be visible in the sandbox, but the bind of {src} "
                    f"(at {dst}) exposes it: leave its package out of packages=, or install it "
                    "where the sandbox does not bind (e.g. a virtual environment)"
                )


def _finite(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) and x > 0
