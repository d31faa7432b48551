"""The supervisor's checks, from inside the sandbox, of which protections are in force
(stdlib only).

Not imported inside the sandbox: :mod:`dece.metrics._sandbox_exec` runs this file's source
followed by :mod:`dece.metrics._sandbox_runner`'s as one script, so the supervisor finds
:func:`set_rlimits` and :func:`verify` defined. Each protection is appended to ``have`` only when
it is observed (read back, not assumed).
"""

import ctypes
import os
import resource
import signal

PR_GET_PDEATHSIG, PR_GET_DUMPABLE = 2, 3
CLONE_NEWUSER = 0x10000000
NAMESPACES = ("user", "pid", "net", "ipc", "uts", "mnt", "cgroup")


def _prctl_get(libc, option):
    value = ctypes.c_int(-1)
    if option == PR_GET_PDEATHSIG:
        libc.prctl(option, ctypes.byref(value), 0, 0, 0)
        return value.value
    return libc.prctl(option, 0, 0, 0, 0)


def _status_fields():
    fields = {}
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def set_rlimits(cfg, have):
    """Set the call's resource limits; append to ``have`` each one read back as set."""
    limits = {
        "rlimit_core": (resource.RLIMIT_CORE, 0, 0),
        "rlimit_cpu": (resource.RLIMIT_CPU, cfg["cpu_time_s"], cfg["cpu_time_s"] + 1),
        "rlimit_as": (resource.RLIMIT_AS, cfg["memory_bytes"], cfg["memory_bytes"]),
        "rlimit_fsize": (resource.RLIMIT_FSIZE, cfg["max_file_bytes"], cfg["max_file_bytes"]),
        "rlimit_nofile": (resource.RLIMIT_NOFILE, 256, 256),
        # counted per uid of this user namespace: the supervisor + max_processes
        "rlimit_nproc": (resource.RLIMIT_NPROC, cfg["max_processes"] + 1, cfg["max_processes"] + 1),
    }
    for name, (which, soft, hard) in limits.items():
        try:
            resource.setrlimit(which, (soft, hard))
            if resource.getrlimit(which) == (soft, hard):  # read back, not assumed
                have.append(name)
        except (ValueError, OSError):
            pass


def _mounts():
    """(mount point, per-mount options, fs type, super options) from /proc/self/mountinfo."""
    out = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, rfields = left.split(), right.split()
            point = fields[4].replace("\\040", " ")
            out.append((point, fields[5].split(","), rfields[0], rfields[2].split(",")))
    return out


def _filesystem_checks(cfg, have):
    mounts = _mounts()
    writable_ok = set(cfg["writable_mounts"])
    if all("ro" in opts or point in writable_ok for point, opts, _, _ in mounts):
        have.append("readonly_filesystem")
    tmp = [m for m in mounts if m[0] == cfg["workdir"]]
    if tmp and tmp[-1][2] == "tmpfs" and any(o.startswith("size=") for o in tmp[-1][3]):
        have.append("private_tmpfs")
    if os.readlink("/proc/self") == str(os.getpid()) and os.getpid() == 1:
        have.append("fresh_procfs")
    # Nothing is visible but the declared binds, their parent directories and the symlinks.
    allowed = set(cfg["visible_paths"])
    parents = {"/"}
    for path in allowed:
        while path != "/":
            path = os.path.dirname(path)
            parents.add(path)
    skip = {"/proc", "/dev", cfg["workdir"]} | allowed
    stray = []
    for root, dirs, files in os.walk("/"):
        for name in list(dirs) + files:
            path = os.path.join(root, name)
            if path not in skip and path not in parents:
                stray.append(path)
        dirs[:] = [d for d in dirs if os.path.join(root, d) not in skip]
    if not stray:
        have.append("minimal_root")
    return stray


def _userns_disabled(libc):
    pid = os.fork()
    if pid == 0:
        os._exit(0 if libc.unshare(CLONE_NEWUSER) != 0 else 1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def verify(cfg, libc, have):
    """Append the protections that hold (each checked here, from inside); return problems."""
    status = _status_fields()
    if os.getuid() == os.geteuid() == cfg["sandbox_uid"] and os.getgid() == cfg["sandbox_uid"]:
        have.append("sandbox_uid")
    caps = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")
    if all(int(status.get(c, "1"), 16) == 0 for c in caps):
        have.append("no_capabilities")
    if status.get("NoNewPrivs") == "1":
        have.append("no_new_privs")
    if status.get("Seccomp") == "2":
        have.append("seccomp")
    for ns in NAMESPACES:
        host = cfg["host_namespaces"].get(ns)
        try:
            mine = os.readlink(f"/proc/self/ns/{ns}")
        except OSError:
            continue
        if host is not None and mine != host:
            have.append(f"{ns}_namespace")
    with open("/proc/self/net/dev", encoding="ascii") as f:
        ifaces = {line.split(":")[0].strip() for line in f.readlines()[2:]}
    if ifaces == {"lo"}:
        have.append("loopback_only")
    stray = _filesystem_checks(cfg, have)
    if _userns_disabled(libc):
        have.append("userns_disabled")
    if os.getsid(0) == os.getpid():
        have.append("new_session")
    if _prctl_get(libc, PR_GET_PDEATHSIG) == signal.SIGKILL:
        have.append("die_with_parent")
    if _prctl_get(libc, PR_GET_DUMPABLE) == 0:
        have.append("non_dumpable_supervisor")
    problems = []
    if stray:
        problems.append(f"unexpected paths visible in the sandbox: {stray[:5]}")
    return problems
