"""Hostile programs against dece.metrics.sandbox; every escape is looked for from OUTSIDE.

Each probe runs with the audit hooks off, so only the kernel-level isolation stands between it and
the host. After every probe the host is checked, whatever the probe printed:

* a canary secret (in the initial environment of a host process of uid 65534, in a
  world-readable file of the caller, in the trusted check code) never appears in the output;
* a world-writable directory of the caller is unchanged (no entry appears, disappears or
  changes); no ``pwned*`` file appears in the packages and stdlib the sandbox binds, the
  repository or the host's /tmp, and none of their entries disappears;
* real TCP/UDP listeners on every host address (v4 and v6, loopback included), a unix socket at a
  path, an abstract unix socket and a FIFO received nothing;
* a process of uid 65534 (the sandbox's uid on the host, so only isolation protects it) is alive
  and untraced; no process of the sandbox's PID namespace is left.

Probe-specific checks add the memory peak of the call's cgroup, the deadline, the verdict, the
host's hostname, clock, keys and cgroup limits. ``test_probe_is_potent`` runs a sample of the
probes outside the sandbox and requires that the same checks then DO see the escape.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy
import pytest
from _nonroot import nonroot_command

from dece.metrics.sandbox import MANDATORY, SandboxResult, run_untrusted

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="the sandbox needs Linux"),
    pytest.mark.timeout(120),
]
REPO = Path(__file__).resolve().parents[2]
MEMORY_MB = 256
MiB = 1024 * 1024


# ------------------------------------------------------------------------------ the host side
class Listener:
    """A real socket or FIFO on the host that records everything it receives."""

    def __init__(self, kind: str, make: Callable[[], object]) -> None:
        self.kind, self.hits = kind, []
        self._stop = threading.Event()
        self.obj = make()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        obj = self.obj
        while not self._stop.is_set():
            try:
                if isinstance(obj, int):  # FIFO read end (non-blocking)
                    data = os.read(obj, 4096)
                    if data:
                        self.hits.append(data)
                    time.sleep(0.01)
                elif obj.type == socket.SOCK_DGRAM:
                    self.hits.append(obj.recvfrom(4096)[0])
                else:
                    conn, _ = obj.accept()
                    conn.settimeout(0.5)
                    with contextlib.suppress(OSError):
                        self.hits.append(b"connect:" + conn.recv(4096))
                    conn.close()
            except (BlockingIOError, TimeoutError):
                continue
            except OSError:
                time.sleep(0.01)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        os.close(self.obj) if isinstance(self.obj, int) else self.obj.close()


def _socket(family: int, kind: int, address: object) -> socket.socket:
    s = socket.socket(family, kind)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind(address)
    if kind == socket.SOCK_STREAM:
        s.listen(16)
    s.settimeout(0.2)
    return s


def _host_ips() -> list[str]:
    """The host's non-loopback addresses (v4 and global v6)."""
    ip = shutil.which("ip")
    if ip is None:
        return []
    out = subprocess.run([ip, "-o", "addr"], capture_output=True, text=True).stdout
    ips = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) > 3 and parts[2] in ("inet", "inet6") and parts[1] != "lo":
            addr = parts[3].split("/")[0]
            if not addr.startswith("fe80"):
                ips.append(addr)
    return ips


def _snapshot(paths: list[Path]) -> dict[str, tuple]:
    """Every entry under ``paths`` with its type, mode and content hash."""
    snap = {}
    for top in paths:
        if not top.exists():
            continue
        for root, dirs, files in os.walk(top):
            for name in dirs + files:
                p = Path(root) / name
                st = p.lstat()
                digest = ""
                if p.is_file() and not p.is_symlink() and st.st_size < 1 << 20:
                    digest = hashlib.sha256(p.read_bytes()).hexdigest()
                snap[str(p)] = (st.st_mode, st.st_size, st.st_mtime_ns, digest)
    return snap


def _watched_state(paths: list[Path]) -> tuple[set[str], set[str]]:
    """(``pwned*`` entries anywhere at the top of ``paths``, all entries of the ones that
    nobody else changes: packages and stdlib). Others edit the repository and /tmp meanwhile."""
    names = {str(p / n) for p in paths if p.is_dir() for n in os.listdir(p)}
    stable = {n for n in names if not n.startswith(("/tmp/", str(REPO)))}
    return {n for n in names if "pwned" in os.path.basename(n)}, stable


def _start_victim(token: str) -> subprocess.Popen:
    """A host process of uid 65534 (the sandbox's host uid: only isolation protects it) with a
    secret in its initial environment."""
    as_nobody = {"user": 65534, "group": 65534, "extra_groups": []} if os.geteuid() == 0 else {}
    env = {"PATH": "/usr/bin:/bin", "DECE_HOSTILE_CANARY": token}
    return subprocess.Popen(["sleep", "600"], env=env, **as_nobody)


@dataclass
class Host:
    token: str
    outside: Path
    victim: subprocess.Popen
    listeners: dict[str, Listener]
    ips: list[str]
    watched: list[Path]  # directories whose top level must not change
    values: dict = field(default_factory=dict)

    def reset_outside(self) -> None:
        """The caller's world-writable directory, as every probe finds it."""
        for entry in self.outside.iterdir():
            if entry.name in ("unix.sock", "fifo"):
                continue
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        (self.outside / "existing.txt").write_text("original")
        (self.outside / "secret.txt").write_text(f"the secret is {self.token}\n")
        (self.outside / "subdir").mkdir()
        (self.outside / "subdir" / "inner.txt").write_text("inner")
        (self.outside / "emptydir").mkdir()
        for p in self.outside.rglob("*"):
            if p.name not in ("unix.sock", "fifo"):
                p.chmod(0o777 if p.is_dir() else 0o666)
        (self.outside / "secret.txt").chmod(0o644)


@pytest.fixture(scope="module")
def host():
    token = secrets.token_hex(16)
    # Not under /tmp, which inside the sandbox is the private tmpfs; reachable by uid 65534.
    outside = Path(tempfile.mkdtemp(prefix="dece-hostile-", dir=_outside_parent()))
    outside.chmod(0o777)
    victim = _start_victim(token)
    os.mkfifo(outside / "fifo", 0o666)
    fifo_fd = os.open(outside / "fifo", os.O_RDONLY | os.O_NONBLOCK)
    listeners = {
        "tcp4": Listener("tcp4", lambda: _socket(socket.AF_INET, socket.SOCK_STREAM, ("", 0))),
        "tcp6": Listener("tcp6", lambda: _socket(socket.AF_INET6, socket.SOCK_STREAM, ("", 0))),
        "udp4": Listener("udp4", lambda: _socket(socket.AF_INET, socket.SOCK_DGRAM, ("", 0))),
        "udp6": Listener("udp6", lambda: _socket(socket.AF_INET6, socket.SOCK_DGRAM, ("", 0))),
        "unix": Listener(
            "unix", lambda: _socket(socket.AF_UNIX, socket.SOCK_STREAM, str(outside / "unix.sock"))
        ),
        "abstract": Listener(
            "abstract",
            lambda: _socket(socket.AF_UNIX, socket.SOCK_STREAM, f"\0dece-hostile-{token}"),
        ),
        "fifo": Listener("fifo", lambda: fifo_fd),
    }
    (outside / "unix.sock").chmod(0o777)
    site = Path(numpy.__file__).resolve().parents[1]
    watched = [site, Path(numpy.__file__).parent, Path(sysconfig.get_paths()["stdlib"]), REPO]
    watched.append(Path("/tmp"))
    ports = {k: v.obj.getsockname()[1] for k, v in listeners.items() if k[:3] in ("tcp", "udp")}
    h = Host(token, outside, victim, listeners, _host_ips(), watched)
    h.values = {
        "out": str(outside), "victim": victim.pid, "caller": os.getpid(), "ports": ports,
        "unix": str(outside / "unix.sock"), "abstract": f"\0dece-hostile-{token}",
        "fifo": str(outside / "fifo"), "ips": h.ips, "site": str(site), "repo": str(REPO),
        "numpy_dir": str(Path(numpy.__file__).parent),
    }  # fmt: skip
    h.reset_outside()
    _control_listeners(h)
    yield h
    h.victim.kill()
    h.victim.wait()
    for listener in listeners.values():
        listener.close()
    shutil.rmtree(outside)


def _outside_parent() -> str | None:
    for d in ("/var/tmp", "/dev/shm"):
        if os.path.isdir(d) and os.stat(d).st_mode & 0o1777 == 0o1777:
            return d
    return None


def _control_listeners(h: Host) -> None:
    """Oracle: the same traffic from the host does reach every listener."""
    v = h.values
    for addr, kind in (("127.0.0.1", "tcp4"), ("::1", "tcp6")):
        with socket.create_connection((addr, v["ports"][kind]), timeout=2) as s:
            s.sendall(b"control")
    for family, addr, kind in (
        (socket.AF_INET, "127.0.0.1", "udp4"),
        (socket.AF_INET6, "::1", "udp6"),
    ):
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.sendto(b"control", (addr, v["ports"][kind]))
    for path in (v["unix"], v["abstract"]):
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(path)
            s.sendall(b"control")
    fd = os.open(v["fifo"], os.O_WRONLY | os.O_NONBLOCK)
    os.write(fd, b"control")
    os.close(fd)
    deadline = time.monotonic() + 60  # bounded poll: returns once each listener got its message
    while time.monotonic() < deadline and not all(ls.hits for ls in h.listeners.values()):
        time.sleep(0.02)
    assert all(ls.hits for ls in h.listeners.values()), {k: v.hits for k, v in h.listeners.items()}
    for ls in h.listeners.values():
        ls.hits.clear()


def _pid_namespace_members(inode: int | None) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{name}/ns/pid") == f"pid:[{inode}]":
                    found.append(int(name))
    return found


def _victim_disturbed(pid: int) -> bool:
    """Whether the victim is traced or stopped (a ptrace attach leaves it stopped)."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return fields["TracerPid"].strip() != "0" or fields["State"].strip()[0] in "Tt"


def _escapes(h: Host, res: SandboxResult, before: tuple) -> list[str]:
    """Everything a probe could have done to the host, looked at from the host."""
    found = []
    text = res.stdout + res.stderr + res.reason
    if h.token in text:
        found.append("the canary secret reached the program")
    if _snapshot([h.outside]) != before[0]:
        found.append("the caller's directory changed")
    pwned, stable = _watched_state(h.watched)
    if pwned or before[1] - stable:
        found.append(f"files appeared or disappeared: {pwned} {before[1] - stable}")
    hits = {k: ls.hits for k, ls in h.listeners.items() if ls.hits}
    if hits:
        found.append(f"listeners received {hits}")
    if h.victim.poll() is not None:
        found.append("the uid-65534 victim process was killed")
    elif _victim_disturbed(h.victim.pid):
        found.append("the victim is traced or stopped")
    if res.pid_namespace is None or _pid_namespace_members(res.pid_namespace):
        found.append("processes of the sandbox survived the call")
    return found


# ------------------------------------------------------------------------------ the probes
@dataclass(frozen=True)
class Probe:
    name: str
    code: str
    verify: Callable[[Host, SandboxResult], None] | None = None  # probe-specific outside check
    kwargs: dict = field(default_factory=dict)


def not_passed(h: Host, res: SandboxResult) -> None:
    assert res.status != "passed", res


def memory_bounded(h: Host, res: SandboxResult) -> None:
    assert res.peak_memory_bytes is not None and res.peak_memory_bytes <= MEMORY_MB * MiB, res


def deadline_held(h: Host, res: SandboxResult) -> None:
    assert res.status == "timeout" and res.duration_s < 3 + 2.0, res


def stdout_lacks(path: str) -> Callable[[Host, SandboxResult], None]:
    def check(h: Host, res: SandboxResult) -> None:
        with contextlib.suppress(OSError):
            for line in Path(path).read_text(errors="replace").splitlines():
                if len(line) > 8:
                    assert line not in res.stdout, f"{path} leaked"

    return check


def listeners_silent_later(h: Host, res: SandboxResult) -> None:
    time.sleep(2.5)  # the daemon would act 1.5 s after the call returned
    assert not any(ls.hits for ls in h.listeners.values())
    assert not list(h.outside.glob("pwned*"))


def hostname_unchanged(h: Host, res: SandboxResult) -> None:
    assert socket.gethostname() == HOSTNAME


def clock_unchanged(h: Host, res: SandboxResult) -> None:
    assert abs(time.time() - time.monotonic() - CLOCK_OFFSET) < 5


def output_bounded(h: Host, res: SandboxResult) -> None:
    memory_bounded(h, res)
    assert len(res.stdout) <= 64 * 1024 and res.stdout_truncated


def cgroup_and_keys_unchanged(h: Host, res: SandboxResult) -> None:
    memory_bounded(h, res)
    assert "pwned" not in Path("/proc/keys").read_text()


HOSTNAME = socket.gethostname()
CLOCK_OFFSET = time.time() - time.monotonic()
CHECK_CODE = "SECRET_EXPECTED = 'CANARY'\nassert add(2, 3) == 5\nassert add(1, 1) == 2\n"
CHECK = {"check": CHECK_CODE, "entry_points": ("add",)}
WRONG_ADD = "\ndef add(a, b):\n    return a - b\n"
LIBC = "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
CONNECT = """
import socket
def tcp(addr, port, fam):
    try:
        s = socket.socket(fam); s.settimeout(1); s.connect((addr, port)); s.sendall(b'pwned')
        print('connected', addr)
    except OSError as e: print('tcp', addr, e)
def udp(addr, port, fam):
    try: socket.socket(fam, socket.SOCK_DGRAM).sendto(b'pwned', (addr, port))
    except OSError as e: print('udp', addr, e)
"""
SEARCH_FILES = """
import os, sys, sysconfig
LIBS = ('/usr/lib', '/usr/lib64', '/opt/dece-site', sysconfig.get_paths()['stdlib'])
def search(top):  # every path, and the content of every file not of the Python install
    for root, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if os.path.join(root, d) not in ('/proc', '/sys')]
        for f in files:
            p = os.path.join(root, f); print(p)
            if p.startswith(LIBS) or p == sys.executable: continue
            try: print(open(p, 'rb').read(1 << 16))
            except OSError as e: print(e)
"""
DAEMON = """
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        {body}
    os._exit(0)
print('parent done')
"""


def _p(name: str, code: str, verify=None, **kwargs) -> Probe:
    return Probe(name, textwrap.dedent(code), verify, kwargs)


PROBES = [
    # --- secrets: /etc/shadow, home, the environment of a host process, the caller's files
    _p("read_etc_shadow", "print(open('/etc/shadow').read())", stdout_lacks("/etc/shadow")),
    _p("read_etc_passwd", "print(open('/etc/passwd').read())", stdout_lacks("/etc/passwd")),
    _p("read_root_home", SEARCH_FILES + "search('/root')", stdout_lacks("/root/.bashrc")),
    _p("read_caller_env_via_proc", """
        import glob
        for p in glob.glob('/proc/*/environ') + glob.glob('/proc/*/task/*/environ'):
            try: print(open(p, 'rb').read())
            except OSError as e: print(p, e)
    """),
    _p("read_proc_1_of_supervisor", """
        for n in ('environ', 'cmdline', 'mem', 'maps', 'fd'):
            try: print(n, open('/proc/1/' + n, 'rb').read(1000))
            except OSError as e: print(e)
    """),
    _p("walk_whole_filesystem_for_secret", SEARCH_FILES + "search('/')"),
    _p("read_caller_file_by_path", "print(open(H['out'] + '/secret.txt').read())"),
    _p("read_project_tree", "print(open(H['repo'] + '/README.md').read())",
       stdout_lacks(str(REPO / "README.md"))),
    _p("find_caller_tempdirs", "import glob\nprint(glob.glob('/tmp/*'), glob.glob('/tmp/dece-*/*'))"),
    # --- writes, deletes and renames outside, through every path API
    _p("open_write", "open(H['out'] + '/pwned_open', 'w').write('x')"),
    _p("os_open_creat", "import os\nos.open(H['out'] + '/pwned_osopen', os.O_CREAT | os.O_WRONLY)"),
    _p("os_open_dir_fd", """
        import os
        d = os.open(H['out'], os.O_RDONLY)
        os.open('pwned_dirfd', os.O_CREAT | os.O_WRONLY, dir_fd=d)
    """),
    _p("rename_target_outside", """
        import os
        open('x', 'w').write('x')
        os.rename('x', H['out'] + '/pwned_rename')
    """),
    _p("rename_source_outside", "import os\nos.rename(H['out'] + '/existing.txt', 'stolen')"),
    _p("replace_outside_file", """
        import os
        open('x', 'w').write('evil')
        os.replace('x', H['out'] + '/existing.txt')
    """),
    _p("mkfifo_outside", "import os\nos.mkfifo(H['out'] + '/pwned_fifo')"),
    _p("bind_unix_socket_outside", """
        import socket
        socket.socket(socket.AF_UNIX).bind(H['out'] + '/pwned_sock')
    """),
    _p("unlink_dir_fd", "import os\nos.unlink('existing.txt', dir_fd=os.open(H['out'], os.O_RDONLY))"),
    _p("remove_and_rmdir", """
        import os
        os.remove(H['out'] + '/existing.txt')
        os.rmdir(H['out'] + '/emptydir')
    """),
    _p("shutil_rmtree", "import shutil\nshutil.rmtree(H['out'] + '/subdir')"),
    _p("hard_links", """
        import os
        open('x', 'w').write('x')
        try: os.link(H['out'] + '/existing.txt', 'h')
        except OSError as e: print(e)
        os.link('x', H['out'] + '/pwned_link')
    """),
    _p("symlink_outside", "import os\nos.symlink('/tmp', H['out'] + '/pwned_symlink')"),
    _p("shutil_copy_move", """
        import shutil
        open('x', 'w').write('x')
        try: shutil.copy('x', H['out'] + '/pwned_copy')
        except OSError as e: print(e)
        shutil.move('x', H['out'] + '/pwned_move')
    """),
    _p("mkdir_makedirs", "import os\nos.makedirs(H['out'] + '/pwned_dir/a/b')"),
    _p("chmod_utime_truncate_chown", """
        import os
        p = H['out'] + '/existing.txt'
        for f in (lambda: os.chmod(p, 0o700), lambda: os.utime(p, (0, 0)),
                  lambda: os.truncate(p, 0), lambda: os.chown(p, 65534, 65534)):
            try: f()
            except OSError as e: print(e)
    """),
    _p("mknod_outside", "import os, stat\nos.mknod(H['out'] + '/pwned_node', stat.S_IFREG | 0o666)"),
    _p("write_through_proc_root", """
        import glob
        for p in glob.glob('/proc/*/root') + glob.glob('/proc/*/cwd'):
            try: open(p + H['out'] + '/pwned_proc', 'w').write('x'); print('wrote', p)
            except OSError as e: print(p, e)
    """),
    _p("write_project_tree", "open(H['repo'] + '/pwned_repo.txt', 'w').write('x')"),
    _p("write_readonly_mounts", """
        import sysconfig
        for d in ('/', '/dev', '/usr/lib', '/opt/dece-site', '/opt/dece-site/numpy',
                  sysconfig.get_paths()['stdlib']):
            try: open(d + '/pwned_ro', 'w'); print('wrote', d)
            except OSError as e: print(d, e)
    """),
    _p("sitepackages_pth", """
        import sysconfig
        for d in (H['site'], H['numpy_dir'], '/opt/dece-site', sysconfig.get_paths()['purelib']):
            try: open(d + '/pwned.pth', 'w').write('import os')
            except OSError as e: print(d, e)
    """),
    _p("write_host_tmp", "open('/tmp/pwned_tmp_probe', 'w').write('x')\nprint('private tmp')"),
    # --- fifos and unix sockets
    _p("unix_socket_connect", """
        import socket
        s = socket.socket(socket.AF_UNIX)
        s.connect(H['unix'])
        s.sendall(b'pwned')
    """),
    _p("abstract_unix_socket", """
        import socket
        s = socket.socket(socket.AF_UNIX)
        s.connect(H['abstract'])
        s.sendall(b'pwned')
    """),
    _p("write_caller_fifo", """
        import os
        fd = os.open(H['fifo'], os.O_WRONLY | os.O_NONBLOCK)
        os.write(fd, b'pwned')
    """),
    # --- network: TCP/UDP v4/v6 to loopback and every host address, the host's netns, raw
    _p("tcp_v4_loopback", CONNECT + "tcp('127.0.0.1', H['ports']['tcp4'], socket.AF_INET)"),
    _p("tcp_v6_loopback", CONNECT + "tcp('::1', H['ports']['tcp6'], socket.AF_INET6)"),
    _p("udp_v4_loopback", CONNECT + "udp('127.0.0.1', H['ports']['udp4'], socket.AF_INET)"),
    _p("udp_v6_loopback", CONNECT + "udp('::1', H['ports']['udp6'], socket.AF_INET6)"),
    _p("tcp_udp_host_addresses", CONNECT + """
for ip in H['ips']:
    fam, v = (socket.AF_INET6, '6') if ':' in ip else (socket.AF_INET, '4')
    tcp(ip, H['ports']['tcp' + v], fam)
    udp(ip, H['ports']['udp' + v], fam)
"""),
    _p("setns_into_host_netns", CONNECT + LIBC + """
import glob, os, subprocess
for p in glob.glob('/proc/*/ns/net'):
    try: print(p, libc.setns(os.open(p, os.O_RDONLY), 0x40000000))
    except OSError as e: print(p, e)
tcp('127.0.0.1', H['ports']['tcp4'], socket.AF_INET)
for exe in ('/usr/bin/nsenter', '/bin/nsenter'):
    try: subprocess.run([exe, '-t', '1', '-n', 'true'])
    except OSError as e: print(e)
"""),
    _p("raw_and_packet_sockets", """
        import socket
        for args in ((socket.AF_PACKET, socket.SOCK_RAW, 3),
                     (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)):
            try: socket.socket(*args); print('created', args)
            except OSError as e: print(e)
    """),
    # --- fork, thread, memory, memfd, SysV shm and disk bombs; the deadline
    _p("fork_bomb", """
        import os
        while True:
            try: os.fork()
            except OSError: pass
    """, deadline_held, timeout_s=3),
    _p("thread_bomb", """
        import threading, time
        n = 0
        while True:
            try: threading.Thread(target=time.sleep, args=(30,), daemon=True).start(); n += 1
            except RuntimeError: break
        print(n)
        time.sleep(30)
    """, deadline_held, timeout_s=3),
    _p("memory_bomb_many_processes", """
        import os, time
        for i in range(8):
            if os.fork() == 0:
                x = bytearray(120 * 1024 * 1024)
                x[::4096] = b'x' * len(x[::4096])
                time.sleep(10)
        time.sleep(10)
    """, memory_bounded, timeout_s=3),
    _p("memfd_bomb", """
        import os
        fds = []
        while True:
            fd = os.memfd_create('m')
            os.write(fd, b'x' * (8 * 1024 * 1024))
            fds.append(fd)
    """, memory_bounded),
    _p("sysv_shm_bomb", LIBC + """
libc.shmat.restype = ctypes.c_void_p
for i in range(64):
    a = libc.shmat(libc.shmget(0, 32 << 20, 0o1600), None, 0)
    ctypes.memset(a, 1, 32 << 20)
    libc.shmdt(ctypes.c_void_p(a))
"""),
    _p("tmpfs_disk_bomb", """
        for i in range(512):
            with open(f'/tmp/big{i}', 'wb') as f:
                f.write(b'x' * (8 << 20))
    """, memory_bounded),
    _p("huge_output", """
        import sys
        for i in range(200):
            sys.stdout.write('y' * (1 << 20))
    """, output_bounded),
    _p("many_cpu_burners_ignoring_sigterm", """
        import os, signal
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for i in range(4):
            if os.fork() == 0: break
        while True: pass
    """, deadline_held, timeout_s=3),
    _p("zombie_flood", """
        import os, time
        for i in range(1000):
            try:
                if os.fork() == 0: os._exit(0)
            except OSError: break
        time.sleep(30)
    """, deadline_held, timeout_s=3),
    _p("new_userns_then_mount_tmpfs", LIBC + """
print(libc.unshare(0x10000000 | 0x00020000), ctypes.get_errno())
print(libc.mount(b'none', b'/tmp', b'tmpfs', 0, b'size=10g'), ctypes.get_errno())
"""),
    # --- daemons: nothing of the call may outlive it
    _p("double_fork_setsid_daemon", CONNECT + DAEMON.format(body="""time.sleep(1.5)
        tcp('127.0.0.1', H['ports']['tcp4'], socket.AF_INET)
        open(H['out'] + '/pwned_daemon', 'w')"""), listeners_silent_later),
    _p("popen_new_session_daemon", """
        import subprocess, sys
        subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'],
                         start_new_session=True)
    """),
    _p("signal_proof_renamed_daemon", LIBC + DAEMON.format(body="""import signal
        for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT): signal.signal(s, signal.SIG_IGN)
        libc.prctl(15, b'kworker/0:1', 0, 0, 0)
        time.sleep(60)""")),
    # --- signals, pidfds and ptrace against the caller and a host process of uid 65534
    _p("kill_victim_and_caller", """
        import os, signal
        for pid in (H['victim'], H['caller']):
            try: os.kill(pid, signal.SIGKILL)
            except OSError as e: print(pid, e)
    """),
    _p("kill_minus_one", "import os, signal\nos.kill(-1, signal.SIGKILL)"),
    _p("pidfd_against_victim", """
        import os, signal
        for pid in (H['victim'], H['caller']):
            try: signal.pidfd_send_signal(os.pidfd_open(pid), signal.SIGKILL)
            except OSError as e: print(pid, e)
    """),
    _p("ptrace_victim_and_supervisor", LIBC + """
for pid in (H['victim'], 1):
    print(pid, libc.ptrace(16, pid, 0, 0), ctypes.get_errno())
"""),
    # --- forged verdicts
    _p("plain_early_exit_zero", "import os\nos._exit(0)\nassert False", not_passed),
    _p("plain_fake_verdict_on_stdout", """
        import os, json
        print(json.dumps({'status': 'passed', 'done': True}))
        os._exit(0)
    """, not_passed),
    _p("check_fake_verdict_on_every_fd", """
        import os, json
        v = json.dumps({'status': 'passed'}).encode()
        for fd in range(3, 1024):
            try: os.write(fd, v)
            except OSError: pass
    """ + WRONG_ADD, not_passed, **CHECK),
    _p("check_write_supervisor_fds", """
        import glob
        for p in glob.glob('/proc/1/fd/*'):
            try: open(p, 'w').write('{"status": "passed"}'); print('wrote', p)
            except OSError as e: print(p, e)
    """ + WRONG_ADD, not_passed, **CHECK),
    _p("check_kill_supervisor", """
        import os, signal
        for s in (signal.SIGTERM, signal.SIGKILL, signal.SIGSTOP):
            os.kill(1, s)
    """ + WRONG_ADD, not_passed, **CHECK),
    _p("check_equal_to_everything", """
        class A:
            def __eq__(self, o): return True
        def add(a, b):
            return A()
    """, not_passed, **CHECK),
    _p("check_read_the_tests", SEARCH_FILES + """
search('/')
for p in ('/proc/1/mem', '/proc/1/cmdline', '/proc/1/environ'):
    try: print(open(p, 'rb').read(1 << 20))
    except OSError as e: print(e)
""" + WRONG_ADD, not_passed, check=CHECK_CODE.replace("CANARY", "{token}"), entry_points=("add",)),
    _p("check_process_vm_readv_supervisor", LIBC + """
buf = ctypes.create_string_buffer(8)
print(libc.process_vm_readv(1, buf, 1, buf, 1, 0), ctypes.get_errno())
""" + WRONG_ADD, not_passed, **CHECK),
    _p("check_patch_builtins", """
        import builtins
        builtins.AssertionError = type('X', (Exception,), {})
        builtins.isinstance = lambda *a: True
    """ + WRONG_ADD, not_passed, **CHECK, timeout_s=2),
    _p("check_garbage_on_channel", """
        import os, struct
        def add(a, b):
            for fd in range(0, 64):
                try: os.write(fd, struct.pack('!I', 9) + b'{"ok": 5')
                except OSError: pass
            return 0
    """, not_passed, **CHECK),
    # --- host state: hostname, clock, keys, cgroup limits
    _p("change_hostname", LIBC + """
print(libc.sethostname(b'pwned', 5))
open('/proc/sys/kernel/hostname', 'w').write('pwned')
""", hostname_unchanged),
    _p("set_clock", LIBC + """
print(libc.clock_settime(0, (ctypes.c_long * 2)(1, 0)))
""", clock_unchanged),
    _p("cgroup_and_keyring_escape", LIBC + """
import glob
for p in glob.glob('/sys/fs/cgroup/**/*.max', recursive=True) + ['/sys/fs/cgroup/memory/x']:
    try: open(p, 'w').write('max')
    except OSError as e: print(p, e)
print(libc.syscall(248, b'user', b'pwned', b'x', 1, -3))
""", cgroup_and_keys_unchanged),
]  # fmt: skip


def _run_probe(h: Host, probe: Probe) -> SandboxResult:
    kwargs = {"timeout_s": 5, "memory_mb": MEMORY_MB, "audit_hooks": False} | probe.kwargs
    if "check" in kwargs:
        kwargs["check"] = kwargs["check"].replace("{token}", h.token)
    return run_untrusted(f"H = {h.values!r}\n" + probe.code, **kwargs)


def test_enough_probes():
    assert len(PROBES) >= 40 and len({p.name for p in PROBES}) == len(PROBES)


@pytest.mark.parametrize("probe", PROBES, ids=lambda p: p.name)
def test_probe_is_contained(host, probe):
    host.reset_outside()
    before = (_snapshot([host.outside]), _watched_state(host.watched)[1])
    res = _run_probe(host, probe)
    assert res.backend == "bwrap" and set(MANDATORY) <= set(res.protections), res
    assert _escapes(host, res, before) == [], (res.status, res.reason, res.stdout[-2000:])
    if probe.verify is not None:
        probe.verify(host, res)


POTENT = [
    "read_caller_env_via_proc", "read_caller_file_by_path", "open_write", "os_open_dir_fd",
    "rename_source_outside", "unlink_dir_fd", "mkfifo_outside", "bind_unix_socket_outside",
    "symlink_outside", "unix_socket_connect", "abstract_unix_socket", "write_caller_fifo",
    "tcp_v4_loopback", "tcp_v6_loopback", "udp_v4_loopback", "udp_v6_loopback",
    "kill_victim_and_caller", "pidfd_against_victim", "ptrace_victim_and_supervisor",
]  # fmt: skip


@pytest.mark.parametrize("name", POTENT)
def test_probe_is_potent(host, name, tmp_path):
    """Oracle for the checks: the same probe run *outside* the sandbox (plain Python, this
    test's uid) is seen escaping."""
    probe = next(p for p in PROBES if p.name == name)
    host.reset_outside()
    before = (_snapshot([host.outside]), _watched_state(host.watched)[1])
    values = dict(host.values, caller=host.victim.pid)  # never signal this test's process
    code = f"H = {values!r}\n" + probe.code
    env = {"PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60,
        cwd=tmp_path, env=env,
    )  # fmt: skip
    res = SandboxResult(
        "passed", "", proc.returncode, proc.stdout, proc.stderr, False, False, 0.0, (),
        pid_namespace=0,
    )  # fmt: skip
    # bounded poll: returns as soon as an effect is seen (the listeners' threads may lag)
    deadline = time.monotonic() + 30
    while not (found := _escapes(host, res, before)) and time.monotonic() < deadline:
        time.sleep(0.05)
    for ls in host.listeners.values():
        ls.hits.clear()
    if host.victim.poll() is not None or _victim_disturbed(host.victim.pid):
        host.victim.kill()
        host.victim.wait()
        host.victim = _start_victim(host.token)
        host.values["victim"] = host.victim.pid
    host.reset_outside()
    assert found, f"{name} had no visible effect outside the sandbox"


# ------------------------------------------------------------------------------ as a non-root user
NONROOT = [
    "read_caller_env_via_proc", "walk_whole_filesystem_for_secret", "read_caller_file_by_path",
    "os_open_dir_fd", "rename_source_outside", "unlink_dir_fd", "bind_unix_socket_outside",
    "unix_socket_connect", "abstract_unix_socket", "write_caller_fifo", "tcp_v4_loopback",
    "tcp_v6_loopback", "udp_v4_loopback", "tcp_udp_host_addresses", "setns_into_host_netns",
    "fork_bomb", "memfd_bomb", "sysv_shm_bomb", "tmpfs_disk_bomb", "popen_new_session_daemon",
    "signal_proof_renamed_daemon", "kill_victim_and_caller", "pidfd_against_victim",
    "ptrace_victim_and_supervisor", "check_write_supervisor_fds", "check_kill_supervisor",
    "check_read_the_tests",
]  # fmt: skip
NONROOT_SCRIPT = """
import json, sys, dataclasses
from dece.metrics.sandbox import run_untrusted
for job in json.load(open(sys.argv[1])):
    res = run_untrusted(job["code"], python=sys.executable, **job["kwargs"])
    print(json.dumps(dataclasses.asdict(res)), flush=True)
"""


def _mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def test_probes_contained_for_a_non_root_caller(host, tmp_path):
    """The same probes with uid 65534 as the caller (no cgroup; the victim is then a process of
    the caller's own uid). Memory is watched on the host while they run."""
    cmd, env = nonroot_command()
    host.reset_outside()
    before = (_snapshot([host.outside]), _watched_state(host.watched)[1])
    jobs, names = [], [p.name for p in PROBES if p.name in NONROOT]
    assert set(names) == set(NONROOT)
    for probe in (p for p in PROBES if p.name in NONROOT):
        kwargs = {"timeout_s": 5, "memory_mb": MEMORY_MB, "audit_hooks": False} | probe.kwargs
        if "check" in kwargs:
            kwargs["check"] = kwargs["check"].replace("{token}", host.token)
        kwargs["entry_points"] = list(kwargs.get("entry_points", ()))
        jobs.append({"code": f"H = {host.values!r}\n" + probe.code, "kwargs": kwargs})
    low, baseline = [], _mem_available()
    with tempfile.TemporaryDirectory() as shared:  # directly under /tmp: uid 65534 reaches it
        os.chmod(shared, 0o755)
        jobs_file = Path(shared) / "jobs.json"
        jobs_file.write_text(json.dumps(jobs))
        jobs_file.chmod(0o644)
        with open(tmp_path / "out", "w+") as out_f, open(tmp_path / "err", "w+") as err_f:
            proc = subprocess.Popen(
                [*cmd, "-c", NONROOT_SCRIPT, str(jobs_file)], stdout=out_f, stderr=err_f,
                text=True, env=env, cwd=shared,
            )  # fmt: skip
            while proc.poll() is None:
                low.append(_mem_available())
                time.sleep(0.05)
            out_f.seek(0)
            err_f.seek(0)
            out, err = out_f.read(), err_f.read()
    assert proc.returncode == 0, err[-3000:]
    results = [SandboxResult(**json.loads(line)) for line in out.splitlines()]
    assert len(results) == len(jobs)
    time.sleep(0.3)
    for name, res in zip(names, results, strict=True):
        assert res.backend == "bwrap" and "cgroup_memory" not in res.protections
        assert {"net_namespace", "pid_namespace", "seccomp", "rlimit_nproc"} <= set(res.protections)
        assert res.pid_namespace and not _pid_namespace_members(res.pid_namespace), name
        assert h_token_absent(host, res), name
    assert _escapes(host, results[-1], before) == []
    assert baseline - min(low) < 2 * 1024**3, "the memory bombs consumed host memory"
    for name, res in zip(names, results, strict=True):
        if name == "memfd_bomb":  # denied by seccomp where no cgroup bounds it
            assert res.status == "failed" and "Operation not permitted" in res.reason, res
        if name.startswith("check_") or name.endswith("_bomb"):
            assert res.status != "passed", res


def h_token_absent(h: Host, res: SandboxResult) -> bool:
    return h.token not in res.stdout + res.stderr + res.reason
