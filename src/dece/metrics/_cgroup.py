"""A cgroup per sandbox call: total memory (memfd, tmpfs and every child included), process count
and CPU share of everything the call starts; emptied with SIGKILL and removed afterwards.

Written by hand because no maintained Python library handles cgroup v1 and v2 side by side (as
this kind of machine mounts them: v1 for memory, pids and cpu, v2 only for hugetlb). What is
mounted is read from ``/proc/self/mountinfo``; our own cgroup in each hierarchy from
``/proc/self/cgroup``; the call's cgroups are created *under* ours, so limits set on us still
apply. For each controller, v1 is used where it is mounted, else v2 where the controller is enabled
for our children (delegated), else nothing: the caller then falls back to rlimits.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

CONTROLLERS = ("memory", "pids", "cpu")
PREFIX = "dece-bwrap"
_counter = itertools.count()


@dataclass(frozen=True)
class Hierarchy:
    """Where children of our own cgroup are created for ``controllers``."""

    base: Path
    version: int
    controllers: tuple[str, ...]


def _mountinfo() -> list[tuple[str, str, str, list[str]]]:
    """(mount root, mount point, fs type, super options) of every cgroup mount."""
    out = []
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, rfields = left.split(), right.split()
            if rfields and rfields[0] in ("cgroup", "cgroup2"):
                out.append((fields[3], fields[4], rfields[0], rfields[2].split(",")))
    return out


def _own_cgroups() -> dict[str, str]:
    """controller (or ``""`` for v2) -> our path in that hierarchy."""
    own = {}
    with open("/proc/self/cgroup", encoding="utf-8") as f:
        for line in f:
            _, names, path = line.rstrip("\n").split(":", 2)
            for name in names.split(",") if names else [""]:
                own[name] = path
    return own


def _base(mount_root: str, mount_point: str, own: str) -> Path:
    rel = own[len(mount_root) :] if own.startswith(mount_root) else own
    return Path(mount_point) / rel.lstrip("/")


@functools.lru_cache(maxsize=1)
def hierarchies() -> tuple[Hierarchy, ...]:
    """The writable hierarchies that give us each of :data:`CONTROLLERS` (empty if not root)."""
    if os.geteuid() != 0:
        return ()
    try:
        mounts, own = _mountinfo(), _own_cgroups()
    except OSError:
        return ()
    found: dict[str, Hierarchy] = {}
    for root, point, fstype, opts in mounts:
        if fstype != "cgroup":
            continue
        names = tuple(c for c in CONTROLLERS if c in opts and c not in found)
        if names and names[0] in own:
            base = _base(root, point, own[names[0]])
            if os.access(base, os.W_OK):
                for name in names:
                    found[name] = Hierarchy(base, 1, names)
    for root, point, fstype, _ in mounts:
        if fstype != "cgroup2" or "" not in own:
            continue
        base = _base(root, point, own[""])
        try:
            delegated = (base / "cgroup.subtree_control").read_text().split()
        except OSError:
            continue
        names = tuple(c for c in CONTROLLERS if c in delegated and c not in found)
        if names and os.access(base, os.W_OK):
            for name in names:
                found[name] = Hierarchy(base, 2, names)
    unique = {h.base: h for h in found.values()}
    for h in unique.values():
        _remove_stale(h.base)
    return tuple(unique.values())


def _remove_stale(base: Path) -> None:
    """Remove empty cgroups left by sandbox calls of processes that no longer exist."""
    for entry in base.glob(f"{PREFIX}-*"):
        try:
            pid = int(entry.name.split("-")[2])
        except (IndexError, ValueError):
            continue
        if not Path(f"/proc/{pid}").exists():
            with contextlib.suppress(OSError):
                entry.rmdir()


def _write(path: Path, value: str) -> None:
    with open(path, "w", encoding="ascii") as f:
        f.write(value)


class CallCgroup:
    """The cgroups of one call. ``procs_files``: what the first process of the call writes its
    pid into; ``applied``: ``cgroup_memory``, ``cgroup_pids``, ``cgroup_cpu`` that were set."""

    def __init__(self, memory_bytes: int, max_pids: int, cpus: float) -> None:
        self.dirs: list[tuple[Hierarchy, Path]] = []
        self.applied: list[str] = []
        name = f"{PREFIX}-{os.getpid()}-{next(_counter)}"
        for h in hierarchies():
            path = h.base / name
            try:
                path.mkdir()
            except OSError as exc:
                logger.warning("sandbox: cannot create cgroup %s: %s", path, exc)
                continue
            self.dirs.append((h, path))
            for controller in h.controllers:
                try:
                    self._limit(h.version, controller, path, memory_bytes, max_pids, cpus)
                    self.applied.append(f"cgroup_{controller}")
                except OSError as exc:
                    logger.warning("sandbox: cannot limit %s in %s: %s", controller, path, exc)

    @staticmethod
    def _limit(version: int, controller: str, path: Path, mem: int, pids: int, cpus: float):
        period = 100_000
        if controller == "pids":
            _write(path / "pids.max", str(pids))
        elif controller == "memory" and version == 1:
            _write(path / "memory.limit_in_bytes", str(mem))
            if (path / "memory.memsw.limit_in_bytes").exists():  # no swapping around the limit
                _write(path / "memory.memsw.limit_in_bytes", str(mem))
        elif controller == "memory":
            _write(path / "memory.max", str(mem))
            if (path / "memory.swap.max").exists():
                _write(path / "memory.swap.max", "0")
        elif controller == "cpu" and version == 1:
            _write(path / "cpu.cfs_period_us", str(period))
            _write(path / "cpu.cfs_quota_us", str(max(1000, int(cpus * period))))
        elif controller == "cpu":
            _write(path / "cpu.max", f"{max(1000, int(cpus * period))} {period}")

    @property
    def procs_files(self) -> list[str]:
        return [str(path / "cgroup.procs") for _, path in self.dirs]

    def relative_paths(self) -> dict[str, str]:
        """Hierarchy key (controllers joined by ``,`` or ``""`` for v2) -> the cgroup path that
        ``/proc/<pid>/cgroup`` shows for a member (relative to the hierarchy's root)."""
        own = _own_cgroups()
        out = {}
        for h, path in self.dirs:
            key = "" if h.version == 2 else h.controllers[0]
            out[key] = own.get(key, "/").rstrip("/") + "/" + path.name
        return out

    def contains(self, pid: int) -> bool:
        """Whether ``pid`` is in every cgroup of this call (read from the host's view)."""
        try:
            with open(f"/proc/{pid}/cgroup", encoding="utf-8") as f:
                lines = f.read().splitlines()
        except OSError:
            return False
        member = {}
        for line in lines:
            _, names, path = line.split(":", 2)
            for name in names.split(",") if names else [""]:
                member[name] = path
        return all(member.get(k) == v for k, v in self.relative_paths().items())

    def pids(self) -> list[int]:
        out = []
        for procs in self.procs_files:
            with contextlib.suppress(OSError, ValueError):
                out += [int(p) for p in Path(procs).read_text().split()]
        return out

    def kill_all(self, rounds: int = 500) -> bool:
        """SIGKILL every member until none is left (a fork bomb forks while we kill)."""
        for _ in range(rounds):
            pids = self.pids()
            if not pids:
                return True
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.005)
        return not self.pids()

    def memory_stats(self) -> tuple[int | None, int]:
        """(peak bytes, OOM kills) of the memory cgroup, or (None, 0) without one."""
        for h, path in self.dirs:
            if "memory" not in h.controllers:
                continue
            peak_file = "memory.max_usage_in_bytes" if h.version == 1 else "memory.peak"
            events_file = "memory.oom_control" if h.version == 1 else "memory.events"
            peak = None
            with contextlib.suppress(OSError, ValueError):
                peak = int((path / peak_file).read_text())
            kills = 0
            with contextlib.suppress(OSError, ValueError):
                for line in (path / events_file).read_text().splitlines():
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        kills = int(value)
            return peak, kills
        return None, 0

    def remove(self) -> None:
        if not self.kill_all():
            logger.error("sandbox: processes survived in %s", self.procs_files)
        for _, path in self.dirs:
            for _ in range(200):
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    self.kill_all(rounds=10)
                    time.sleep(0.005)
            else:
                logger.error("sandbox: could not remove cgroup %s", path)
