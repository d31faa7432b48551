"""dece.metrics.sandbox: verdicts, limits, verified protections, fail-closed behaviour.

The hostile-code probes (escapes checked from outside) are in test_hostile_sandbox.py.
"""

from __future__ import annotations

import math
import os
import sys
import time

import pytest

from dece.metrics import _sandbox_runner as runner
from dece.metrics import sandbox
from dece.metrics.sandbox import MANDATORY, SandboxUnavailableError, run_untrusted

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the sandbox needs Linux")


def _processes_in_pid_namespace(inode: int | None) -> list[int]:
    """Host pids whose PID namespace is ``inode`` (the sandbox's): must be [] after a call."""
    assert inode is not None
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.readlink(f"/proc/{name}/ns/pid") == f"pid:[{inode}]":
                    found.append(int(name))
            except OSError:
                pass
    return found


def test_pass_fail_and_output():
    ok = run_untrusted("print('hello')", timeout_s=10)
    assert ok.status == "passed" and ok.stdout == "hello\n" and ok.returncode == 0
    bad = run_untrusted("assert 1 == 2, 'boom'", timeout_s=10)
    assert bad.status == "failed" and bad.reason == "AssertionError: boom"
    assert "Traceback" in bad.stderr and bad.returncode == 1
    syntax = run_untrusted("def f(:\n", timeout_s=10)
    assert syntax.status == "failed" and syntax.reason.startswith("SyntaxError")


@pytest.mark.parametrize(
    ("code", "status", "returncode"),
    [
        ("import os; os._exit(0)", "failed", 0),  # early exit is not a pass
        ("import sys; sys.exit(0)", "failed", 0),
        ("import sys; sys.exit(3)", "failed", 3),
        ("import os; os._exit(7)", "failed", 7),
        ("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)", "error", -11),
    ],
)
def test_exit_codes_reported_as_they_were(code, status, returncode):
    res = run_untrusted(code, timeout_s=10, audit_hooks=False)
    assert (res.status, res.returncode) == (status, returncode), res


def test_every_mandatory_protection_is_verified_and_reported():
    res = run_untrusted("pass", timeout_s=10)
    assert res.passed and res.backend == "bwrap"
    assert set(MANDATORY) <= set(res.protections), set(MANDATORY) - set(res.protections)
    assert res.network_protection == "namespace"
    if os.geteuid() == 0:
        assert {"cgroup_memory", "cgroup_pids"} <= set(res.protections)
        assert res.memory_protection == "cgroup_memory" and res.peak_memory_bytes > 0


def test_program_sees_uid_65534_an_empty_root_and_no_environment():
    code = (
        "import os, json\n"
        "print(json.dumps([os.getuid(), os.getgid(), sorted(os.listdir('/')), dict(os.environ),"
        " os.getcwd(), sorted(os.listdir('/proc/self/fd'))]))\n"
    )
    res = run_untrusted(code, timeout_s=10)
    assert res.passed, res
    uid, gid, root, env, cwd, fds = __import__("json").loads(res.stdout)
    assert (uid, gid, cwd) == (65534, 65534, "/tmp")
    assert "etc" not in root and "home" not in root and "work" not in root
    assert set(env) <= {"PATH", "LANG", "HOME", "TMPDIR", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"}
    assert len(fds) <= 6  # 0 1 2, the channel to the supervisor (two pipes), the listdir fd


def test_numpy_and_tempfiles_work():
    code = (
        "import numpy as np, tempfile, os\n"
        "with tempfile.NamedTemporaryFile('w', delete=False) as f:\n"
        "    f.write('abc')\n"
        "print(int(np.arange(5).sum()), open(f.name).read(), os.path.dirname(f.name))\n"
    )
    res = run_untrusted(code, timeout_s=20)
    assert res.passed and res.stdout.split() == ["10", "abc", "/tmp"], res


def test_infinite_loop_killed_at_the_deadline_and_nothing_survives():
    start = time.monotonic()
    res = run_untrusted("while True:\n    pass\n", timeout_s=1.0)
    assert res.status == "timeout" and time.monotonic() - start < 2.5
    assert _processes_in_pid_namespace(res.pid_namespace) == []


def test_cpu_time_limit_is_a_timeout():
    res = run_untrusted("while True:\n    pass\n", timeout_s=10, cpu_time_s=1)
    assert res.status == "timeout" and "SIGXCPU" in res.reason and res.returncode == -24


def test_large_allocation_fails_with_memory_error():
    res = run_untrusted("x = bytearray(10 * 1024**3)\n", timeout_s=10, memory_mb=512)
    assert res.status == "failed" and "MemoryError" in res.reason


def test_bounded_fork_loop_capped_at_max_processes():
    code = (
        "import os, time\nn = 0\nfor i in range(200):\n    try:\n        pid = os.fork()\n"
        "    except OSError:\n        break\n    if pid == 0:\n        time.sleep(5); os._exit(0)\n"
        "    n += 1\nprint(n)\n"
    )
    res = run_untrusted(code, timeout_s=10, audit_hooks=False, max_processes=16)
    assert res.status == "passed", res
    assert int(res.stdout) == 15  # the program's process + 15 children
    assert _processes_in_pid_namespace(res.pid_namespace) == []


def test_audit_hooks_block_fork_by_default_as_defence_in_depth():
    res = run_untrusted("import os\nos.fork()\n", timeout_s=10)
    assert res.status == "failed" and "process creation is blocked" in res.reason
    assert "audit_hooks" in res.protections


def test_output_is_bounded():
    res = run_untrusted("print('x' * 1_000_000)\n", timeout_s=10, max_output_bytes=100)
    assert res.status == "passed" and len(res.stdout) == 100 and res.stdout_truncated
    res = run_untrusted("print('x' * 1_000_000)\n", timeout_s=10, max_file_bytes=1000)
    assert res.status != "passed"  # the write past RLIMIT_FSIZE fails


# ----------------------------------------------------------------- check mode (tests outside)
CHECK = "assert add(2, 3) == 5\nassert add(-1, 1) == 0\n"


@pytest.mark.parametrize(
    ("candidate", "status"),
    [
        ("def add(a, b):\n    return a + b\n", "passed"),
        ("def add(a, b):\n    return a - b\n", "failed"),
        ("def add(a, b):\n    raise ValueError('no')\n", "failed"),
        # an object equal to everything stays in the program's process: it cannot cross, and a
        # result that cannot be judged is an error, never a pass
        (
            "class A:\n    def __eq__(self, o): return True\ndef add(a, b):\n    return A()\n",
            "error",
        ),
        ("import os\nos._exit(0)\n", "failed"),
        ("def add(a, b):\n    import sys; sys.exit(0)\n", "failed"),
    ],
)
def test_check_mode_verdict_comes_from_the_tests(candidate, status):
    res = run_untrusted(candidate, check=CHECK, entry_points=("add",), timeout_s=10)
    assert res.status == status, res


def test_check_mode_exception_type_and_prelude_reach_the_tests():
    check = "try:\n    f(0)\nexcept ZeroDivisionError:\n    pass\nelse:\n    raise AssertionError\n"
    check += "assert helper() == 'prelude'\n"
    res = run_untrusted(
        "def f(x):\n    return 1 / x\n",
        check=check,
        check_prelude="def helper():\n    return 'prelude'\n",
        entry_points=("f",),
        timeout_s=10,
    )
    assert res.passed, res


VALUES = [
    None, True, 0, -(10**30), 1.5, math.inf, -math.inf, "s", b"\x00\xff", 1 + 2j, [1, [2]],
    (1, (2,)), {1, 2}, frozenset({3}), {"a": [1], (1, 2): {"b": None}}, "[\"L\", 1]",
]  # fmt: skip


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_codec_round_trips_builtin_values_exactly(value):
    out = runner.decode(runner.encode(value))
    assert out == value and type(out) is type(value)


def test_codec_keeps_nan_and_rejects_anything_else():
    assert math.isnan(runner.decode(runner.encode(math.nan)))
    for bad in (["X", 1], ["D", [1]], [1, 2], {"a": 1}, ["f", "1e9999x"]):
        with pytest.raises(ValueError):
            runner.decode(bad)
    with pytest.raises(TypeError):
        runner.encode(object())


# ----------------------------------------------------------------- fail closed
@pytest.fixture
def fresh_plans(monkeypatch):
    monkeypatch.setattr(sandbox, "_probed", {})


def test_no_bubblewrap_raises_and_names_the_install(monkeypatch, fresh_plans):
    monkeypatch.setattr(sandbox, "find_bwrap", lambda: None)
    with pytest.raises(SandboxUnavailableError, match="bubblewrap.*apt-get install -y bubblewrap"):
        run_untrusted("print('never')", timeout_s=5)


def test_unsandboxed_opt_in_is_loud_and_recorded(monkeypatch, fresh_plans):
    monkeypatch.setattr(sandbox, "find_bwrap", lambda: None)
    with pytest.warns(RuntimeWarning, match="WITHOUT A SANDBOX"):
        res = run_untrusted("print('trusted')", timeout_s=10, allow_unsandboxed_trusted_code=True)
    assert res.passed and res.stdout == "trusted\n"
    assert res.backend == "unsandboxed" and "UNSANDBOXED" in res.protections
    assert "net_namespace" not in res.protections


def test_a_protection_that_cannot_be_verified_refuses_to_run(monkeypatch, fresh_plans):
    monkeypatch.setattr(sandbox, "MANDATORY", (*MANDATORY, "made_up_protection"))
    with pytest.raises(SandboxUnavailableError, match="made_up_protection"):
        run_untrusted("print('never')", timeout_s=5)


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="timeout_s"):
        run_untrusted("pass", timeout_s=0)
    with pytest.raises(ValueError, match="code"):
        run_untrusted(b"pass", timeout_s=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="memory_mb"):
        run_untrusted("pass", memory_mb=10)
    with pytest.raises(ValueError, match="entry_points"):
        run_untrusted("pass", check="pass", entry_points=("not an identifier",))
    with pytest.raises(ValueError, match="not installed"):
        run_untrusted("pass", packages=("surely_not_a_package_xyz",))
