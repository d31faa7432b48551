"""Hostile-code suite for dece.metrics.sandbox. Every kernel-level claim is checked by effect."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from dece.metrics.sandbox import namespaces_available, run_untrusted

RUNNER_MARK = "Minimal PID-1"  # text of the runner source, present in every sandbox's cmdline


def _sandbox_processes() -> list[int]:
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    if RUNNER_MARK.encode() in f.read():
                        pids.append(int(name))
            except OSError:
                pass
    return pids


def test_pass_fail_and_output():
    ok = run_untrusted("print('hello')", timeout_s=10)
    assert ok.status == "passed" and ok.stdout == "hello\n" and ok.returncode == 0
    bad = run_untrusted("assert 1 == 2, 'boom'", timeout_s=10)
    assert bad.status == "failed" and bad.reason == "AssertionError: boom"
    syntax = run_untrusted("def f(:\n", timeout_s=10)
    assert syntax.status == "failed" and syntax.reason.startswith("SyntaxError")


def test_early_exit_is_not_a_pass():
    assert run_untrusted("import os; os._exit(0)", timeout_s=10).status == "failed"
    assert run_untrusted("import sys; sys.exit(0)", timeout_s=10).status == "failed"


def test_infinite_loop_killed_within_timeout_plus_one_second():
    start = time.monotonic()
    res = run_untrusted("while True:\n    pass\n", timeout_s=1.0)
    elapsed = time.monotonic() - start
    assert res.status == "timeout"
    assert elapsed < 2.0, elapsed
    assert _sandbox_processes() == []


def test_sleeping_child_in_other_session_is_killed():
    code = "import os, time\nif os.fork() == 0:\n    os.setsid(); time.sleep(60)\ntime.sleep(60)\n"
    res = run_untrusted(code, timeout_s=1.0, allow_subprocess=True)
    assert res.status in ("timeout", "failed")
    time.sleep(0.2)
    assert _sandbox_processes() == []


def test_large_allocation_fails():
    res = run_untrusted("x = bytearray(10 * 1024**3)\n", timeout_s=10, memory_mb=512)
    assert res.status == "failed" and "MemoryError" in res.reason
    assert "rlimit_as" in res.protections


def _kernel_process_limit() -> str:
    probe = run_untrusted("pass", timeout_s=10, allow_subprocess=True)
    return probe.process_protection


def test_bounded_bomb_capped_by_kernel():
    """Forks up to 200 sleepers: the kernel limit must stop it at max_processes."""
    if _kernel_process_limit() not in ("cgroup_pids", "rlimit_nproc"):
        pytest.skip("no kernel process limit here (forking is blocked by the audit hook instead)")
    code = (
        "import os, time\nn = 0\nfor i in range(200):\n    try:\n        pid = os.fork()\n"
        "    except OSError:\n        break\n    if pid == 0:\n        time.sleep(5); os._exit(0)\n"
        "    n += 1\nprint(n)\n"
    )
    res = run_untrusted(code, timeout_s=10, allow_subprocess=True, max_processes=16)
    assert res.status == "passed", res
    assert 1 <= int(res.stdout) <= 16
    time.sleep(0.2)
    assert _sandbox_processes() == []


def test_fork_bomb_contained():
    if _kernel_process_limit() not in ("cgroup_pids", "rlimit_nproc"):
        pytest.skip("no kernel process limit here (forking is blocked by the audit hook instead)")
    code = (
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    )
    start = time.monotonic()
    res = run_untrusted(code, timeout_s=2.0, allow_subprocess=True, max_processes=16)
    assert res.status == "timeout"
    assert time.monotonic() - start < 4.0
    time.sleep(0.2)
    assert _sandbox_processes() == []


def test_fork_blocked_by_default():
    res = run_untrusted("import os\nwhile True:\n    os.fork()\n", timeout_s=5)
    assert res.status == "failed" and "process creation is blocked" in res.reason
    assert run_untrusted("import subprocess; subprocess.run(['true'])", timeout_s=5).status == (
        "failed"
    )


@pytest.fixture
def server():
    """A TCP server on 127.0.0.1 that records whether anything connected."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(0.2)
    hits: list[bytes] = []
    stop = threading.Event()

    def accept():
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            hits.append(conn.recv(100))
            conn.close()

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield srv.getsockname()[1], hits
    stop.set()
    t.join()
    srv.close()


def _connect_code(port: int) -> str:
    return f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\n" + (
        "s.sendall(b'leak')\n"
    )


@pytest.mark.parametrize("use_namespaces", [True, False])
def test_socket_to_localhost_blocked(server, use_namespaces):
    port, hits = server
    # the oracle: the same code outside the sandbox does connect
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(b"control")
    res = run_untrusted(_connect_code(port), timeout_s=5, use_namespaces=use_namespaces)
    time.sleep(0.3)
    assert res.status == "failed"
    assert hits == [b"control"]
    if use_namespaces and namespaces_available():
        assert res.network_protection == "namespace"
    else:
        assert res.network_protection == "audit_hook"
        assert "network access is blocked" in res.reason


def test_write_outside_directory_blocked(tmp_path):
    target = tmp_path / "outside.txt"
    res = run_untrusted(f"open({str(target)!r}, 'w').write('x')\n", timeout_s=5)
    assert res.status == "failed" and not target.exists()
    code = f"import os\nos.open({str(target)!r}, os.O_CREAT | os.O_WRONLY)\n"
    res = run_untrusted(code, timeout_s=5)
    assert res.status == "failed" and not target.exists()
    # the oracle: the same write outside the sandbox does create the file
    open(target, "w").close()
    assert target.exists()


def test_write_inside_private_directory_allowed():
    res = run_untrusted(
        "import os\nopen('a.txt', 'w').write('x')\nprint(os.getcwd(), open('a.txt').read())\n",
        timeout_s=5,
    )
    assert res.status == "passed", res
    cwd, content = res.stdout.split()
    assert content == "x" and "dece-sandbox-" in cwd and not os.path.exists(cwd)


def test_output_is_bounded():
    res = run_untrusted("print('x' * 1_000_000)\n", timeout_s=10, max_output_bytes=100)
    assert res.status == "passed" and len(res.stdout) == 100 and res.stdout_truncated
    res = run_untrusted("print('x' * 1_000_000)\n", timeout_s=10, max_file_bytes=1000)
    assert res.status == "failed"  # the write past RLIMIT_FSIZE fails


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="timeout_s"):
        run_untrusted("pass", timeout_s=0)
    with pytest.raises(ValueError, match="code"):
        run_untrusted(b"pass", timeout_s=1)  # type: ignore[arg-type]
