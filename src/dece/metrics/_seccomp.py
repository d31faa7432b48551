"""A seccomp filter for the sandbox, compiled by libseccomp (through ctypes) for bubblewrap's
``--seccomp FD``.

libseccomp resolves syscall names for the running architecture and kills any syscall made through
another ABI (i386 ``int 0x80``, x32), which a hand-written BPF program easily gets wrong; calling
the C library directly avoids a Python binding that is not kept up to date. Without
``libseccomp.so.2`` there is no filter (the result then lacks ``seccomp``).

Denied with EPERM, always: kernel interfaces a program under test never needs and that widen the
attack surface or reach outside the sandbox (keyrings, ptrace and cross-process memory, bpf,
perf, userfaultfd, io_uring, module and kexec loading, mounts, namespaces, quotas, syslog,
file handles), and ``socket`` / ``socketpair``: the network namespace has only loopback, the
channel to the program is two pipes, and a socket's buffers (up to ``net.core.wmem_max`` each,
256 descriptors per process) are counted by no rlimit and, on cgroup v1, by no memory cgroup.
Also denied where no memory cgroup bounds the call (a non-root user), for the memory
``RLIMIT_AS`` does not count: ``memfd_create``, ``memfd_secret``, ``shmget`` and ``msgget``
(SysV message queues: up to ``msgmni x msgmnb``, 500 MB by default). What is left uncounted
there is pipe buffers, bounded per user by ``fs.pipe-user-pages-soft`` (64 MiB by default) and,
beyond it, one page per pipe.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import logging
import os
import tempfile

logger = logging.getLogger(__name__)

ALWAYS_DENIED = (
    "keyctl add_key request_key ptrace process_vm_readv process_vm_writev bpf perf_event_open "
    "userfaultfd io_uring_setup io_uring_enter io_uring_register kexec_load kexec_file_load "
    "init_module finit_module delete_module mount umount2 pivot_root swapon swapoff reboot setns "
    "unshare acct quotactl open_by_handle_at name_to_handle_at syslog fanotify_init open_tree "
    "move_mount fsopen fsconfig fsmount fspick mount_setattr socket socketpair"
).split()
UNCOUNTED_MEMORY = ("memfd_create", "memfd_secret", "shmget", "msgget")

SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_ACT_ERRNO_EPERM = 0x00050000 | errno.EPERM


@functools.lru_cache(maxsize=1)
def _libseccomp() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError:
        return None
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    return lib


@functools.lru_cache(maxsize=4)
def filter_bytes(deny_uncounted_memory: bool) -> bytes | None:
    """The compiled BPF program, or None when libseccomp is unavailable."""
    lib = _libseccomp()
    if lib is None:
        return None
    names = ALWAYS_DENIED + (list(UNCOUNTED_MEMORY) if deny_uncounted_memory else [])
    ctx = lib.seccomp_init(SCMP_ACT_ALLOW)
    if not ctx:
        return None
    try:
        for name in names:
            nr = lib.seccomp_syscall_resolve_name(name.encode())
            if nr == -1:  # unknown to this libseccomp: nothing to deny
                continue
            if lib.seccomp_rule_add(ctx, SCMP_ACT_ERRNO_EPERM, nr, 0) != 0:
                logger.warning("seccomp: cannot add a rule for %s", name)
                return None
        with tempfile.TemporaryFile() as f:
            if lib.seccomp_export_bpf(ctx, f.fileno()) != 0:
                return None
            f.seek(0)
            return f.read()
    finally:
        lib.seccomp_release(ctx)


def write_filter(path: str, deny_uncounted_memory: bool) -> bool:
    """Write the filter to ``path``; False when there is none."""
    data = filter_bytes(deny_uncounted_memory)
    if not data:
        return False
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return True
