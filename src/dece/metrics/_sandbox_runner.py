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
   it) with a pipe as its stdin and another for its replies, sends it the program, and
   * without ``check``: waits for the worker; it passed when it said "done" and exited 0;
   * with ``check``: runs the (trusted) test code itself, in this process, where each name of
     ``entry_points`` is a proxy that calls the program's function in the worker and decodes
     the answer into plain builtin values (no object of the program's crosses over);
5. writes the verdict to the verdict descriptor (one JSON line with the verified protections
   before the program starts, one with the outcome at the end) and exits, which kills every
   process left in the namespace.

Verdict integrity (with ``check``): the program's process never holds the tests, the expected
values or anything derived from them. The worker is told only *whether* to serve calls; the test
code and its prelude stay in this process (non-dumpable, its memory unreachable), whose output
while they run is discarded. The program's process sees nothing but the arguments of the calls
the tests make, and answers each with a value in the tagged encoding of
:mod:`dece.metrics._sandbox_codec` (a value that cannot be encoded makes the call an ``error``,
never a crash of the worker).

Residual limit: without ``check`` the tests run in the program's own process, so code that means
to can tell the supervisor "done" and exit 0 without running them (it holds its end of the
channel), or read the tests: that mode is for trusted code only. A malformed message there makes
the call an ``error`` with its reason.
"""

import builtins
import ctypes
import json
import os
import select
import signal
import subprocess
import sys
import traceback

if __name__ != "__main__":  # imported (tests); run as a script, its sources come first
    from dece.metrics._sandbox_checks import set_rlimits, verify
    from dece.metrics._sandbox_codec import decode, encode, frame, recv, send, send_bytes

PR_SET_DUMPABLE = 4


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
    """The worker and the channel to it: two pipes (no socket: where no memory cgroup bounds
    the call, seccomp denies sockets, whose buffers no rlimit counts). Returns (proc, (read fd,
    write fd)); the worker reads requests on its stdin and writes replies to ``reply_fd``."""
    to_r, to_w = os.pipe()
    from_r, from_w = os.pipe()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-B", "-c", cfg["runner_source"], "worker"],
            stdin=to_r,
            pass_fds=(from_w,),
            close_fds=True,
            cwd=cfg["workdir"],
            env=_worker_env(cfg),
        )
    except BaseException:
        for fd in (to_r, to_w, from_r, from_w):
            os.close(fd)
        raise
    os.close(to_r)
    os.close(from_w)
    job = {k: cfg[k] for k in ("code", "entry_points", "audit_hooks", "allow_subprocess")}
    send(to_w, {**job, "reply_fd": from_w})
    # Whether to serve calls, never the tests: nothing of them may reach the program's process.
    serve = cfg["check"] is not None
    send(to_w, {"sys_path": cfg["sys_path"], "workdir": cfg["workdir"], "serve": serve})
    return proc, (from_r, to_w)


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


def recv_while_alive(channel, pidfd):
    """Next message from the worker; EOFError once it has exited and nothing is left to read
    (a child it forked may hold the channel open: its exit, not EOF, is what ends the wait)."""
    fd = channel[0]
    readable, _, _ = select.select([fd, pidfd], [], [])
    if fd not in readable:
        readable, _, _ = select.select([fd], [], [], 0)
        if not readable:
            raise EOFError("the program's process exited")
    return recv(fd)


def _run_plain(proc, channel, pidfd):
    """Without ``check``: passed when the worker said "done" and exited 0; a malformed message
    is an ``error`` with its reason (the worker is then killed)."""
    done, error = False, None
    try:
        while True:
            msg = recv_while_alive(channel, pidfd)
            if type(msg) is not dict:
                raise ValueError(f"a {type(msg).__name__} instead of an object")
            if msg.get("done") is True:
                done = True
            elif isinstance(msg.get("error"), str):
                error = msg["error"]
    except (EOFError, OSError):
        pass
    except ValueError as exc:
        proc.kill()
        return "error", f"malformed message from the program's process: {exc}"[:1000], _wait(proc)
    code = _wait(proc)
    if code == 0 and done:
        return "passed", "completed", code
    if code == 0 and error is None:
        return "failed", "exited with status 0 before running to its end", code
    status, reason = _worker_outcome(code, error)
    return status, reason, code


class Unjudgeable(BaseException):
    """A call whose result cannot be judged: the program's process stopped, broke the protocol,
    or returned a value that cannot cross the boundary. A BaseException, and also recorded by the
    proxy, so that tests which catch exceptions cannot turn it into a pass."""


class _Proxy:
    """Calls the program's function in the worker; the answer comes back decoded from the tagged
    encoding (builtin, fractions, decimal and numpy values only)."""

    def __init__(self, channel, pidfd, name, problems):
        self._channel, self._pidfd, self.__name__, self._problems = channel, pidfd, name, problems

    def _unjudgeable(self, kind, reason):
        self._problems.append((kind, reason[:1000]))
        raise Unjudgeable(reason)

    def __call__(self, *args, **kwargs):
        try:
            request = {"call": self.__name__, "args": encode(list(args)), "kwargs": encode(kwargs)}
        except TypeError as exc:  # the tests' own argument: not the program's failure
            self._unjudgeable("error", f"an argument of {self.__name__}(): {exc}")
        try:
            send(self._channel[1], request)
            reply = recv_while_alive(self._channel, self._pidfd)
        except (EOFError, OSError) as exc:
            self._unjudgeable("stopped", str(exc))
        except ValueError as exc:
            self._unjudgeable("error", f"malformed reply from the program's process: {exc}")
        if type(reply) is not dict:
            self._unjudgeable("error", "malformed reply from the program's process")
        if "ok" in reply:
            try:
                return decode(reply["ok"])
            except ValueError as exc:
                self._unjudgeable("error", f"malformed result of {self.__name__}(): {exc}")
        if isinstance(reply.get("unencodable"), str):
            self._unjudgeable("error", f"the result of {self.__name__}() {reply['unencodable']}")
        raised = reply.get("raise")
        if not (type(raised) is list and len(raised) == 2 and all(type(v) is str for v in raised)):
            self._unjudgeable("error", "malformed reply from the program's process")
        name, message = raised[0][:100], raised[1][:1000]
        exc_type = getattr(builtins, name, None)
        if not (isinstance(exc_type, type) and issubclass(exc_type, Exception)):
            exc_type, message = RuntimeError, f"{name}: {message}"
        raise exc_type(message)


def _run_check(cfg, proc, channel, pidfd):
    """With ``check``: the test code runs here; only the entry points run in the worker."""
    try:
        ready = recv_while_alive(channel, pidfd)
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
    problems, failure = [], None
    saved = sys.stdout, sys.stderr
    sink = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - closed below
    sys.stdout = sys.stderr = sink  # the tests' own output never reaches the program's files
    try:
        exec(compile(cfg["check_prelude"], "check_prelude.py", "exec"), namespace)
        for name in cfg["entry_points"]:
            namespace[name] = _Proxy(channel, pidfd, name, problems)
        exec(compile(cfg["check"], "check.py", "exec"), namespace)
    except BaseException as exc:  # noqa: BLE001 - a failing test is a result
        failure = f"{type(exc).__name__}: {_message(exc)}"[:1000]
    finally:
        sys.stdout, sys.stderr = saved
        sink.close()
    if problems:  # first what made a call unjudgeable, even where the tests caught it
        kind, reason = problems[0]
        if kind == "stopped":
            code = _wait(proc, 1)
            status, why = _worker_outcome(code, None)
            return status, f"the program's process stopped during the tests: {why}", code
        return "error", reason, _wait(proc, 1) if proc.poll() is not None else None
    if failure is not None:
        return "failed", failure, _wait(proc, 1) if proc.poll() is not None else None
    os.close(channel[1])  # EOF: the worker stops serving and exits
    return "passed", "all checks passed", _wait(proc, 1)


def _message(exc):
    try:
        return str(exc)
    except BaseException:  # noqa: BLE001 - a str() that raises is still a result
        return "<unprintable>"


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
            proc, channel = _spawn_worker(cfg)
        except OSError as exc:  # e.g. the program's interpreter cannot start under the limits
            status, reason, code = "error", f"the program's process did not start: {exc}", None
        else:
            pidfd = os.pidfd_open(proc.pid)
            if cfg["check"] is None:
                status, reason, code = _run_plain(proc, channel, pidfd)
            else:
                status, reason, code = _run_check(cfg, proc, channel, pidfd)
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


def _reply(fn, msg):
    """The framed answer to one call; an exception of the program's is reported to the tests,
    a result that cannot be encoded as ``unencodable`` (the supervisor then reports an error)."""
    try:
        result = fn(*decode(msg["args"]), **decode(msg["kwargs"]))
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - reported to the tests as an exception
        return frame({"raise": [type(exc).__name__, _message(exc)[:1000]]})
    try:
        return frame({"ok": encode(result)})
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - e.g. TypeError, RecursionError, MemoryError
        reason = f"cannot cross the sandbox boundary: {type(exc).__name__}: {_message(exc)}"
        return frame({"unencodable": reason[:1000]})


def _serve(rfd, wfd, namespace):
    while True:
        try:
            msg = recv(rfd)
        except (EOFError, OSError, ValueError):
            return
        try:
            data = _reply(namespace[msg["call"]], msg)
        except SystemExit as exc:
            sys.stdout.flush()
            os._exit(_exit_code_of(exc))
        except BaseException as exc:  # noqa: BLE001 - the entry point is missing or not callable
            data = frame({"raise": [type(exc).__name__, _message(exc)[:1000]]})
        try:
            send_bytes(wfd, data)
        except OSError:
            return


def _try_send(fd, obj):
    try:
        send(fd, obj)
    except (OSError, TypeError, ValueError):
        pass


def worker():
    rfd = os.dup(0)
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    job, env = recv(rfd), recv(rfd)
    fd = job["reply_fd"]
    os.set_inheritable(fd, False)
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
        _try_send(fd, {"error": f"{type(exc).__name__}: {_message(exc)}"[:1000]})
        code = 1
    else:
        if not env["serve"]:
            _try_send(fd, {"done": True})
        else:
            _try_send(fd, {"ready": True})
            _serve(rfd, fd, namespace)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # noqa: BLE001
        pass
    os._exit(code)


if __name__ == "__main__":
    {"supervisor": supervisor, "worker": worker}[sys.argv[1]]()
