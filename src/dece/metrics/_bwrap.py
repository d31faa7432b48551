"""What a sandbox call mounts and the command line that starts it under bubblewrap.

The sandbox's root is an empty read-only tmpfs holding only: the interpreter binary, its standard
library and ``libpython`` (at their host paths, so the interpreter finds its prefix), ``/usr/lib``
and ``/usr/lib64`` (the C libraries the interpreter and its extension modules load), the packages
named in ``packages`` under :data:`SITE_DIR`, a fresh ``/proc``, a read-only ``/dev`` holding
``null zero full random urandom``, and a private size-limited tmpfs at :data:`WORKDIR` (the
working directory, ``HOME`` and ``TMPDIR``). Everything is bound read-only; nothing else of the
host (``/etc``, homes, the project, the caller's temporary files) exists inside.

As root, bubblewrap itself runs as uid 65534 (``setpriv``): the sandbox then is host uid 65534,
not root-in-a-namespace, and an interpreter that uid cannot reach (pyenv under ``/root``, mode
700) is first bind-mounted into a private mount namespace (``unshare -m``) by a root shell that
also moves itself into the call's cgroups; bubblewrap binds from there.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass

SITE_DIR = "/opt/dece-site"
WORKDIR = "/tmp"
SANDBOX_UID = 65534
DEVICES = ("null", "zero", "full", "random", "urandom")
INSTALL_HINT = (
    "install bubblewrap (Debian/Ubuntu: `apt-get install -y bubblewrap`, Fedora: `dnf install "
    "bubblewrap`; in this repository `make sandbox-deps`)"
)


class SandboxUnavailableError(RuntimeError):
    """No working isolation backend: nothing untrusted was executed."""


@dataclass(frozen=True)
class Interpreter:
    """A Python interpreter as the sandbox needs it: ``paths`` are bound at the same place."""

    executable: str
    version: tuple[int, int]
    paths: tuple[str, ...]


_INSPECT = """
import json, os, sys, sysconfig
paths = {sysconfig.get_path("stdlib"), sysconfig.get_path("platstdlib")}
paths |= {p for p in sys.path if p.endswith("lib-dynload") and os.path.isdir(p)}
if sysconfig.get_config_var("Py_ENABLE_SHARED"):
    lib = os.path.join(sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME"))
    if os.path.exists(lib):
        paths.add(lib)
print(json.dumps({"version": list(sys.version_info[:2]), "paths": sorted(paths)}))
"""


def find_bwrap() -> str | None:
    return shutil.which("bwrap") or shutil.which("bwrap", path="/usr/bin:/bin:/usr/local/bin")


def find_tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if path is None:
        raise SandboxUnavailableError(f"`{name}` (util-linux) is needed to run the sandbox as root")
    return path


@functools.lru_cache(maxsize=4)
def bwrap_supports_disable_userns(bwrap: str) -> bool:
    try:
        out = subprocess.run([bwrap, "--help"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return "--disable-userns" in out.stdout


def _blocking_ancestor(path: str) -> str:
    """The first directory on the way to ``path`` that the current user cannot search."""
    parts = path.split(os.sep)
    for i in range(2, len(parts) + 1):
        p = os.sep.join(parts[:i])
        if not os.access(p, os.X_OK if i < len(parts) else os.R_OK):
            try:
                st = os.stat(p)
                return f"{p} (mode {stat.S_IMODE(st.st_mode):o}, owner uid {st.st_uid})"
            except OSError:
                return p
    return path


@functools.lru_cache(maxsize=8)
def inspect_interpreter(python: str) -> Interpreter:
    """Run ``python`` once (outside the sandbox: it is the caller's trusted interpreter) to find
    the files it needs; fails closed when the current user cannot read them."""
    real = os.path.realpath(python)
    uid = os.getuid()
    if not os.access(real, os.X_OK):
        raise SandboxUnavailableError(
            f"the interpreter {python} (-> {real}) is not readable by uid {uid}: "
            f"{_blocking_ancestor(real)} blocks it. Pass python= an interpreter this user can "
            "read, e.g. /usr/bin/python3.11, with the same Python version as the packages bound"
        )
    try:
        out = subprocess.run(
            [real, "-I", "-S", "-c", _INSPECT], capture_output=True, text=True, timeout=30
        )
        info = json.loads(out.stdout)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        raise SandboxUnavailableError(f"cannot run the interpreter {real}: {exc}") from exc
    paths = [real, *info["paths"]]
    for p in paths:
        if not os.access(p, os.R_OK):
            raise SandboxUnavailableError(
                f"{p}, needed by the interpreter {real}, is not readable by uid {uid}: "
                f"{_blocking_ancestor(p)} blocks it"
            )
    unique = list(dict.fromkeys(paths))
    outermost = [p for p in unique if not any(p.startswith(q + os.sep) for q in unique)]
    return Interpreter(real, tuple(info["version"]), tuple(outermost))


def package_binds(packages: tuple[str, ...], version: tuple[int, int]) -> list[tuple[str, str]]:
    """(host path, sandbox path) for each top-level package as the caller's interpreter finds it
    (without importing it), plus its auditwheel ``<name>.libs`` directory when there is one."""
    if packages and tuple(sys.version_info[:2]) != version:
        raise ValueError(
            f"packages={packages!r} are found for Python {sys.version_info[0]}."
            f"{sys.version_info[1]} (this process) but the sandbox runs Python "
            f"{version[0]}.{version[1]}: pass packages=() or a python= of the same version"
        )
    binds = []
    for name in packages:
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"packages must be top-level module names, got {name!r}")
        spec = importlib.util.find_spec(name)
        if spec is None:
            raise ValueError(f"package {name!r} is not installed for {sys.executable}")
        locations = list(spec.submodule_search_locations or [])
        if len(locations) > 1:
            raise ValueError(f"package {name!r} is a namespace package spread over {locations}")
        host = locations[0] if locations else spec.origin
        if host is None or not os.path.exists(host):
            raise ValueError(f"package {name!r} has no file to bind (origin {spec.origin!r})")
        host = os.path.realpath(host)
        binds.append((host, f"{SITE_DIR}/{os.path.basename(host)}"))
        libs = os.path.join(os.path.dirname(host), f"{name}.libs")
        if os.path.isdir(libs):
            binds.append((os.path.realpath(libs), f"{SITE_DIR}/{name}.libs"))
    return binds


def world_reachable(path: str) -> bool:
    """Whether uid 65534 can reach ``path``: every ancestor searchable by others, path readable."""
    parts = path.split(os.sep)
    for i in range(2, len(parts) + 1):
        try:
            mode = os.stat(os.sep.join(parts[:i])).st_mode
        except OSError:
            return False
        last = i == len(parts)
        if not last and not mode & stat.S_IXOTH:
            return False
        if last and not mode & stat.S_IROTH:
            return False
    return True


def system_binds() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(binds, symlinks) for the C libraries: /usr/lib{,64} and /lib* as the host has them."""
    binds = [(p, p) for p in ("/usr/lib", "/usr/lib64") if os.path.isdir(p)]
    links = []
    for p in ("/lib", "/lib64", "/lib32", "/libx32"):
        if os.path.islink(p):
            links.append((os.readlink(p), p))
        elif os.path.isdir(p):
            binds.append((p, p))
    return binds, links


def bwrap_argv(
    bwrap: str,
    binds: list[tuple[str, str]],
    links: list[tuple[str, str]],
    tmpfs_bytes: int,
    info_fd: int,
    seccomp_fd: int | None,
) -> list[str]:
    """bubblewrap's options (everything before the command)."""
    argv = [bwrap, "--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc"]
    argv += ["--unshare-uts", "--unshare-cgroup-try", "--disable-userns", "--hostname", "sandbox"]
    argv += ["--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--cap-drop", "ALL"]
    argv += ["--die-with-parent", "--new-session", "--as-pid-1", "--info-fd", str(info_fd)]
    for src, dst in binds:
        argv += ["--ro-bind", src, dst]
    for target, dst in links:
        argv += ["--symlink", target, dst]
    argv += ["--proc", "/proc", "--tmpfs", "/dev"]
    for dev in DEVICES:
        argv += ["--dev-bind", f"/dev/{dev}", f"/dev/{dev}"]
    for i, name in enumerate(("stdin", "stdout", "stderr")):
        argv += ["--symlink", f"/proc/self/fd/{i}", f"/dev/{name}"]
    argv += ["--symlink", "/proc/self/fd", "/dev/fd", "--remount-ro", "/dev"]
    argv += ["--size", str(tmpfs_bytes), "--tmpfs", WORKDIR, "--chdir", WORKDIR]
    argv += ["--remount-ro", "/", "--clearenv", "--setenv", "LANG", "C.UTF-8"]
    if seccomp_fd is not None:
        argv += ["--seccomp", str(seccomp_fd)]
    return argv


ROOT_WRAPPER = """set -eu
n=$1; shift
while [ "$n" -gt 0 ]; do echo $$ > "$1"; shift; n=$((n - 1)); done
n=$1; shift
while [ "$n" -gt 0 ]; do mount --bind -o ro "$1" "$2"; shift 2; n=$((n - 1)); done
exec "$@"
"""


def root_prefix(procs_files: list[str], staged: list[tuple[str, str]]) -> list[str]:
    """As root: join the call's cgroups, stage unreachable sources, then become uid 65534."""
    argv = []
    if staged:
        argv += [find_tool("unshare"), "--mount", "--propagation", "private", "--"]
    argv += [find_tool("sh"), "-c", ROOT_WRAPPER, "sandbox", str(len(procs_files)), *procs_files]
    argv += [str(len(staged))]
    for src, dst in staged:
        argv += [src, dst]
    setpriv = find_tool("setpriv")
    argv += [setpriv, f"--reuid={SANDBOX_UID}", f"--regid={SANDBOX_UID}", "--clear-groups", "--"]
    return argv
