"""The two processes inside one sandbox call (stdlib only; run as ``python -I -S -B -c <this>``).

``supervisor`` (PID 1 of the sandbox's PID namespace, started by bubblewrap):

1. makes itself non-dumpable (``PR_SET_DUMPABLE 0``): a process of the same uid can then neither
   ptrace it nor open ``/proc/1/mem`` or ``/proc/1/fd/*``; as PID 1 it also ignores every signal
   sent from inside the namespace;
2. reads its configuration from stdin (a file the caller opened; stdin is then ``/dev/null``),
   keeps only the verdict descriptor the configuration names and closes every other one;
3. sets the resource limits and verifies, from inside, which protections are really in force
   (:mod:`dece.metrics._sandbox_checks`, whose source runs first in the same script); if a
   mandatory one is missing it reports an error and runs nothing;
4. starts the ``worker`` (a fresh interpreter, not a fork: nothing of this process's memory is in
   it) with a socketpair as its stdin, sends it the program, and
   * without ``check``: waits for the worker; it passed when it said "done" and exited 0;
   * with ``check``: runs the (trusted) test code itself, in this process, where each name of
     ``entry_points`` is a proxy that calls the program's function in the worker and decodes
     the answer into plain builtin values (no object of the program's crosses over);
5. writes the verdict to the verdict descriptor (one JSON line with the verified protections
   before the program starts, one with the outcome at the end) and exits, which kills every
   process left in the namespace.

Residual limit: without ``check`` the tests run in the program's own process, so code that means
to can tell the supervisor "done" and exit 0 without running them (the channel is its own
stdin). With ``check`` the verdict comes from a process the program cannot reach.
"""

import builtins
import ctypes
import json
import math
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import traceback

if __name__ != "__main__":  # imported (tests); run as a script, its source comes first
    from dece.metrics._sandbox_checks import set_rlimits, verify

MAX_MESSAGE = 64 * 1024 * 1024
PR_SET_DUMPABLE = 4


# ---------------------------------------------------------------- framing and value encoding
def send(fd, obj):
    data = json.dumps(obj, allow_nan=False).encode("utf-8")
    msg = struct.pack("!I", len(data)) + data
    view = memoryview(msg)
    while view:
        view = view[os.write(fd, view) :]


def _read_exact(fd, n):
    chunks, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError("the other process closed the channel")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def recv(fd):
    (n,) = struct.unpack("!I", _read_exact(fd, 4))
    if n > MAX_MESSAGE:
        raise ValueError(f"message of {n} bytes exceeds {MAX_MESSAGE}")
    return json.loads(_read_exact(fd, n).decode("utf-8"))


def encode(x, depth=0):
    """Plain builtin values -> JSON; compound values are ``[tag, ...]`` so a str stays a str."""
    if depth > 100:
        raise ValueError("value nested deeper than 100 levels")
    if x is None or isinstance(x, bool | str):
        return x
    if isinstance(x, int):
        return int(x)
    if isinstance(x, float):
        x = float(x)
        return x if math.isfinite(x) else ["f", repr(x)]
    if isinstance(x, complex):
        return ["C", encode(x.real), encode(x.imag)]
    if isinstance(x, bytes | bytearray):
        return ["B", bytes(x).hex()]
    tags = ((list, "L"), (tuple, "T"), (set, "S"), (frozenset, "F"))
    for typ, tag in tags:
        if isinstance(x, typ):
            return [tag, *(encode(v, depth + 1) for v in x)]
    if isinstance(x, dict):
        return ["D", *([encode(k, depth + 1), encode(v, depth + 1)] for k, v in x.items())]
    if hasattr(x, "tolist") and callable(x.tolist):  # numpy scalars and arrays
        return encode(x.tolist(), depth + 1)
    raise TypeError(f"a {type(x).__name__} cannot cross the sandbox boundary")


def decode(x):
    """The inverse of :func:`encode`; builds only builtin types, whatever the input."""
    if x is None or type(x) in (bool, str, int, float):
        return x
    if type(x) is not list or not x or type(x[0]) is not str:
        raise ValueError("malformed value")
    tag, rest = x[0], x[1:]
    if tag == "f" and len(rest) == 1 and rest[0] in ("nan", "inf", "-inf"):
        return float(rest[0])
    if tag == "C" and len(rest) == 2:
        return complex(decode(rest[0]), decode(rest[1]))
    if tag == "B" and len(rest) == 1 and type(rest[0]) is str:
        return bytes.fromhex(rest[0])
    containers = {"L": list, "T": tuple, "S": set, "F": frozenset}
    if tag in containers:
        return containers[tag](decode(v) for v in rest)
    if tag == "D" and all(type(kv) is list and len(kv) == 2 for kv in rest):
        return {decode(k): decode(v) for k, v in rest}
    raise ValueError(f"malformed value tagged {tag!r}")


# ---------------------------------------------------------------- shared helpers
def _libc():
    return ctypes.CDLL(None, use_errno=True)


def exit_description(code):
    if code is None:
        return "did not exit"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


# ---------------------------------------------------------------- supervisor
def _worker_env(cfg):
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": cfg["workdir"]}
    env["TMPDIR"] = cfg["workdir"]
    env["OPENBLAS_NUM_THREADS"] = env["OMP_NUM_THREADS"] = "1"
    return env


def _spawn_worker(cfg):
    mine, theirs = socket.socketpair()
    proc = subprocess.Popen(
        [sys.executable, "-I", "-S", "-B", "-c", cfg["runner_source"], "worker"],
        stdin=theirs.fileno(),
        close_fds=True,
        cwd=cfg["workdir"],
        env=_worker_env(cfg),
    )
    theirs.close()
    fd = mine.detach()
    send(fd, {k: cfg[k] for k in ("code", "entry_points", "audit_hooks", "allow_subprocess")})
    send(fd, {"sys_path": cfg["sys_path"], "workdir": cfg["workdir"], "check": cfg["check"]})
    return proc, fd


def _wait(proc, timeout=None):
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def _worker_outcome(code, error):
    """(status, reason) of a worker that stopped, from its exit code and its last message."""
    if code == -signal.SIGXCPU:
        return "timeout", "CPU time limit exceeded (SIGXCPU)"
    if code == -signal.SIGXFSZ:
        return "error", "file size limit exceeded (SIGXFSZ)"
    if code is not None and code < 0:
        return "error", exit_description(code)
    if error:
        return "failed", error
    return "failed", exit_description(code)


def recv_while_alive(fd, pidfd):
    """Next message from the worker; EOFError once it has exited and nothing is left to read
    (a child it forked may hold the channel open: its exit, not EOF, is what ends the wait)."""
    readable, _, _ = select.select([fd, pidfd], [], [])
    if fd not in readable:
        readable, _, _ = select.select([fd], [], [], 0)
        if not readable:
            raise EOFError("the program's process exited")
    return recv(fd)


def _run_plain(proc, fd, pidfd):
    """Without ``check``: passed when the worker said "done" and exited 0."""
    done, error = False, None
    try:
        while True:
            msg = recv_while_alive(fd, pidfd)
            if msg.get("done") is True:
                done = True
            elif isinstance(msg.get("error"), str):
                error = msg["error"]
    except (EOFError, ValueError, OSError, AttributeError):
        pass
    code = _wait(proc)
    if code == 0 and done:
        return "passed", "completed", code
    if code == 0 and error is None:
        return "failed", "exited with status 0 before running to its end", code
    status, reason = _worker_outcome(code, error)
    return status, reason, code


class _Proxy:
    """Calls the program's function in the worker; the answer comes back as builtins only."""

    def __init__(self, fd, pidfd, name):
        self._fd, self._pidfd, self.__name__ = fd, pidfd, name

    def __call__(self, *args, **kwargs):
        request = {"call": self.__name__, "args": encode(list(args)), "kwargs": encode(kwargs)}
        try:
            send(self._fd, request)
        except OSError as exc:
            raise EOFError("the program's process closed the channel") from exc
        reply = recv_while_alive(self._fd, self._pidfd)
        if type(reply) is not dict:
            raise RuntimeError("malformed reply from the program's process")
        if "ok" in reply:
            return decode(reply["ok"])
        name, message = (str(v)[:1000] for v in reply.get("raise", ("RuntimeError", "?"))[:2])
        exc_type = getattr(builtins, name, None)
        if not (isinstance(exc_type, type) and issubclass(exc_type, Exception)):
            exc_type, message = RuntimeError, f"{name}: {message}"
        raise exc_type(message)


def _run_check(cfg, proc, fd, pidfd):
    """With ``check``: the test code runs here; only the entry points run in the worker."""
    try:
        ready = recv_while_alive(fd, pidfd)
    except (EOFError, ValueError, OSError):
        ready = {}
    if type(ready) is not dict:
        ready = {}
    if ready.get("ready") is not True:
        try:
            code = proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return "failed", "the program's process broke the channel to the tests", None
        error = ready.get("error") if isinstance(ready.get("error"), str) else None
        status, reason = _worker_outcome(code, error)
        return status, reason, code
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    try:
        exec(compile(cfg["check_prelude"], "check_prelude.py", "exec"), namespace)
        for name in cfg["entry_points"]:
            namespace[name] = _Proxy(fd, pidfd, name)
        exec(compile(cfg["check"], "check.py", "exec"), namespace)
    except EOFError:
        code = _wait(proc, 1)
        status, reason = _worker_outcome(code, None)
        return status, f"the program's process stopped during the tests: {reason}", code
    except BaseException as exc:  # noqa: BLE001 - a failing test is a result
        code = _wait(proc, 1) if proc.poll() is not None else None
        return "failed", f"{type(exc).__name__}: {exc}"[:1000], code
    os.close(fd)
    return "passed", "all checks passed", _wait(proc, 1)


def _close_other_fds(keep):
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def supervisor():
    libc = _libc()
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    cfg = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    verdict_fd = int(cfg["verdict_fd"])
    _close_other_fds({0, 1, 2, verdict_fd})
    sys.path[:0] = cfg["sys_path"]
    have = []
    set_rlimits(cfg, have)
    problems = verify(cfg, libc, have) if cfg["sandboxed"] else []
    missing = [p for p in cfg["mandatory"] if p not in have]
    result = {"protections": have, "returncode": None}
    # First line: what holds, written before anything untrusted runs (a timeout keeps it).
    os.write(verdict_fd, json.dumps({"protections": have}).encode("utf-8") + b"\n")
    if missing or problems:
        result.update(status="error", reason=f"protections not in force: {missing} {problems}")
    else:
        try:
            proc, fd = _spawn_worker(cfg)
        except OSError as exc:  # e.g. the program's interpreter cannot start under the limits
            status, reason, code = "error", f"the program's process did not start: {exc}", None
        else:
            pidfd = os.pidfd_open(proc.pid)
            if cfg["check"] is None:
                status, reason, code = _run_plain(proc, fd, pidfd)
            else:
                status, reason, code = _run_check(cfg, proc, fd, pidfd)
        result.update(status=status, reason=reason, returncode=code)
    os.write(verdict_fd, json.dumps(result).encode("utf-8"))
    os._exit(0)


# ---------------------------------------------------------------- worker
def _install_audit_hooks(workdir, allow_subprocess):
    """Defence in depth only (the kernel isolation is the barrier): no write outside the working
    directory, no new socket, no process creation unless allowed."""
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    path_events = {"os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.truncate"}
    proc_events = {"os.fork", "os.forkpty", "os.posix_spawn", "os.spawn", "os.exec", "os.system"}
    proc_events |= {"subprocess.Popen", "pty.spawn", "ctypes.dlopen", "os.kill", "os.killpg"}
    realpath = os.path.realpath

    def inside(path):
        if isinstance(path, int):
            return True
        p = realpath(os.fsdecode(path))
        return p == workdir or p.startswith(workdir + os.sep) or p == "/dev/null"

    def hook(event, args):
        if event in ("socket.__new__", "socket.connect", "socket.bind", "socket.sendto"):
            raise PermissionError(f"sandbox: network access is blocked ({event})")
        if event in proc_events and not allow_subprocess:
            raise PermissionError(f"sandbox: process creation is blocked ({event})")
        if event == "open":
            path, mode, flags = args
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & write_flags
            )
            if writing and path is not None and not inside(path):
                raise PermissionError(f"sandbox: write outside the working directory: {path!r}")
        elif event in path_events and not inside(args[0]):
            raise PermissionError(f"sandbox: {event} outside the working directory")

    sys.addaudithook(hook)


def _exit_code_of(exc):
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    sys.stderr.write(f"{code}\n")
    return 1


def _serve(fd, namespace):
    while True:
        try:
            msg = recv(fd)
        except (EOFError, OSError):
            return
        try:
            fn = namespace[msg["call"]]
            value = encode(fn(*decode(msg["args"]), **decode(msg["kwargs"])))
            reply = {"ok": value}
        except SystemExit as exc:
            sys.stdout.flush()
            os._exit(_exit_code_of(exc))
        except BaseException as exc:  # noqa: BLE001 - reported to the tests as an exception
            reply = {"raise": [type(exc).__name__, str(exc)[:1000]]}
        send(fd, reply)


def _try_send(fd, obj):
    try:
        send(fd, obj)
    except (OSError, TypeError, ValueError):
        pass


def worker():
    fd = os.dup(0)
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    job, env = recv(fd), recv(fd)
    sys.path[:0] = env["sys_path"]
    os.chdir(env["workdir"])
    if job["audit_hooks"]:
        _install_audit_hooks(os.path.realpath(env["workdir"]), job["allow_subprocess"])
    namespace = {"__name__": "__main__", "__file__": "program.py", "__builtins__": builtins}
    code = 0
    try:
        exec(compile(job["code"], "program.py", "exec"), namespace)
    except SystemExit as exc:
        code = _exit_code_of(exc)
    except BaseException as exc:  # noqa: BLE001 - every failure of untrusted code is reported
        traceback.print_exc()
        _try_send(fd, {"error": f"{type(exc).__name__}: {exc}"[:1000]})
        code = 1
    else:
        if env["check"] is None:
            _try_send(fd, {"done": True})
        else:
            _try_send(fd, {"ready": True})
            _serve(fd, namespace)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # noqa: BLE001
        pass
    os._exit(code)


if __name__ == "__main__":
    {"supervisor": supervisor, "worker": worker}[sys.argv[1]]()
