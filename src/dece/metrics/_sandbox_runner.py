"""The trusted first stage of :func:`dece.metrics.sandbox.run_untrusted`.

This file is not imported: its source is handed to ``python -I -B -c`` by the parent, with one JSON
argument. It runs inside the fresh namespaces (when the parent could create them), still as the
parent's user, and in this order:

1. if it is PID 1 of a new PID namespace, it forks: the parent half stays a minimal init that reaps
   children and reports the exit status of the program; when it exits, the kernel kills every
   process left in the namespace;
2. sets the resource limits (core, CPU, address space, file size, open files, processes);
3. when running as root, drops to a dedicated unprivileged uid/gid (so that ``RLIMIT_NPROC`` is
   enforced by the kernel: it is not for root) unless the interpreter would then be unreadable;
4. installs audit hooks (sockets, writes outside the working directory, process creation, ctypes);
5. reports the protections that applied on the status file, then executes the program.

Status lines (one per line, on the status fd): ``READY <comma-separated protections>``,
``EXC <type>: <message>`` (uncaught exception), ``DONE`` (the program ran to its end),
``EXIT <code>`` (from the init half: negative = killed by that signal). The program itself can
write to the same fd, so the markers are evidence against accidents (``os._exit(0)``, a crash),
not against code written to forge them; the kernel-level limits do not depend on them.
"""

import json
import os
import resource
import stat
import sys


def _write_status(fd, line):
    try:
        os.write(fd, (line.replace("\n", " ")[:1000] + "\n").encode("utf-8", "replace"))
    except OSError:
        pass


def _init_loop(child, status_fd):
    """Minimal PID-1: reap everything, exit with the program's status."""
    code = 1
    while True:
        try:
            pid, wstatus = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if pid == child:
            code = os.waitstatus_to_exitcode(wstatus)
            _write_status(status_fd, f"EXIT {code}")
            break
    os._exit(code if code >= 0 else 128 - code)


def _tree_readable(path):
    """Whether every directory from / to ``path`` is searchable and ``path`` readable by others."""
    path = os.path.realpath(path)
    parts = path.split(os.sep)
    for i in range(1, len(parts) + 1):
        p = os.sep.join(parts[:i]) or os.sep
        try:
            mode = os.stat(p).st_mode
        except OSError:
            return False
        if stat.S_ISDIR(mode) and not mode & stat.S_IXOTH:
            return False
    return bool(os.stat(path).st_mode & stat.S_IROTH)


def _set_limits(cfg, protections):
    def lim(which, value, name):
        try:
            resource.setrlimit(which, (value, value))
            protections.append(name)
        except (ValueError, OSError):
            pass

    lim(resource.RLIMIT_CORE, 0, "rlimit_core")
    cpu = int(cfg["cpu_time_s"])
    try:  # soft limit -> SIGXCPU, hard limit one second later -> SIGKILL
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        protections.append("rlimit_cpu")
    except (ValueError, OSError):
        pass
    lim(resource.RLIMIT_AS, int(cfg["memory_bytes"]), "rlimit_as")
    lim(resource.RLIMIT_FSIZE, int(cfg["max_file_bytes"]), "rlimit_fsize")
    lim(resource.RLIMIT_NOFILE, 256, "rlimit_nofile")


def _drop_privileges(cfg, protections):
    uid = cfg["uid"]
    if uid is None or os.geteuid() != 0:
        return
    if not _tree_readable(os.path.dirname(os.__file__)) or not _tree_readable(sys.executable):
        protections.append("setuid_skipped_interpreter_unreadable")
        return
    try:
        os.chown(cfg["workdir"], uid, uid)
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        protections.append("setuid")
    except OSError as exc:
        protections.append("setuid_failed_" + type(exc).__name__)


def _install_hooks(cfg, protections, block_files, block_net, block_proc):
    workdir = os.path.realpath(cfg["workdir"])
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    path_events = {
        "os.remove": 0,
        "os.rename": 0,
        "os.rmdir": 0,
        "os.mkdir": 0,
        "os.chmod": 0,
        "os.chown": 0,
        "os.symlink": 1,
        "os.link": 1,
        "os.truncate": 0,
        "os.utime": 0,
        "shutil.rmtree": 0,
        "shutil.copyfile": 1,
        "shutil.move": 1,
    }
    proc_events = {
        "os.fork",
        "os.forkpty",
        "os.posix_spawn",
        "os.spawn",
        "os.exec",
        "os.system",
        "os.kill",
        "os.killpg",
        "subprocess.Popen",
        "pty.spawn",
        "ctypes.dlopen",
        "ctypes.dlsym",
        "ctypes.addressof",
        "ctypes.cdata",
    }
    realpath = os.path.realpath
    fspath = os.fsdecode

    def inside(path):
        if isinstance(path, int):
            return True  # an already-open descriptor
        p = realpath(fspath(path))
        return p == workdir or p.startswith(workdir + os.sep) or p == "/dev/null"

    def hook(event, args):
        if block_net and event.startswith("socket.") and event != "socket.gethostname":
            raise PermissionError(f"sandbox: network access is blocked ({event})")
        if block_proc and event in proc_events:
            raise PermissionError(f"sandbox: process creation is blocked ({event})")
        if not block_files:
            return
        if event == "open":
            path, mode, flags = args
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & write_flags
            )
            if writing and path is not None and not inside(path):
                raise PermissionError(f"sandbox: write outside the working directory: {path!r}")
        elif event in path_events:
            if not inside(args[path_events[event]]):
                raise PermissionError(f"sandbox: {event} outside the working directory")

    sys.addaudithook(hook)
    if block_files:
        protections.append("audit_hook_files")
    if block_net:
        protections.append("audit_hook_socket")
    if block_proc:
        protections.append("audit_hook_subprocess")


def main():
    cfg = json.loads(sys.argv[1])
    status_fd = int(cfg["status_fd"])
    protections = list(cfg["outer_protections"])
    if cfg["cgroup"]:  # join the pids cgroup first: the init half and the program both count
        try:
            with open(os.path.join(cfg["cgroup"], "cgroup.procs"), "w") as f:
                f.write("0")
            protections.append("cgroup_pids")
        except OSError:
            pass
    if os.getpid() == 1:  # PID 1 of a new namespace: keep a reaper, run the program in a child
        child = os.fork()
        if child:
            _init_loop(child, status_fd)
    os.chdir(cfg["workdir"])
    _set_limits(cfg, protections)
    _drop_privileges(cfg, protections)
    if "setuid" in protections or os.geteuid() != 0:
        # Enforced by the kernel for a non-root uid; counts every process of that uid.
        try:
            n = int(cfg["nproc_limit"])
            resource.setrlimit(resource.RLIMIT_NPROC, (n, n))
            protections.append("rlimit_nproc")
        except (ValueError, OSError):
            pass
    with open(cfg["program"], encoding="utf-8") as f:
        source = f.read()
    # Fail closed: without a kernel bound on processes, forking stays blocked even if allowed.
    kernel_nproc = "cgroup_pids" in protections or "rlimit_nproc" in protections
    block_proc = cfg["audit_hooks"] and not cfg["allow_subprocess"]
    if not kernel_nproc and not block_proc:
        block_proc = True
        protections.append("subprocess_blocked_no_kernel_process_limit")
    block_net = bool(cfg["block_network_hook"])  # no network namespace: always blocked
    if cfg["audit_hooks"] or block_proc or block_net:
        _install_hooks(cfg, protections, cfg["audit_hooks"], block_net, block_proc)
    _write_status(status_fd, "READY " + ",".join(protections))
    namespace = {"__name__": "__main__", "__file__": "program.py", "__builtins__": __builtins__}
    try:
        exec(compile(source, "program.py", "exec"), namespace)
    except BaseException as exc:  # noqa: BLE001 - every failure of untrusted code is reported
        import traceback

        _write_status(status_fd, f"EXC {type(exc).__name__}: {exc}")
        try:
            traceback.print_exc()
            sys.stderr.flush()
        except BaseException:  # noqa: BLE001
            pass
        os._exit(1)
    _write_status(status_fd, "DONE")
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # noqa: BLE001
        pass
    os._exit(0)


main()
