"""pass@k closed form and HumanEval canonical solutions through the sandbox."""

from __future__ import annotations

from math import comb

import pytest

from dece.metrics import evaluate_pass_at_k, load_humaneval_problems, mean_pass_at_k, pass_at_k


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


def test_humaneval_canonical_solutions_pass_and_wrong_fails():
    tids = [f"HumanEval/{i}" for i in (0, 2, 4, 7, 12)]
    problems = load_humaneval_problems(tids)
    completions = {t: [problems[t]["canonical_solution"]] for t in tids}
    wrong = "    return None\n"
    completions[tids[0]] = [problems[tids[0]]["canonical_solution"], wrong]
    res = evaluate_pass_at_k(problems, completions, ks=(1,), timeout_s=10, workers=2)
    assert res.num_correct == {t: 1 for t in tids}
    assert res.num_samples[tids[0]] == 2
    assert res.results[tids[0]][1].status == "failed"
    # 4 problems pass@1 = 1, the first = 1/2
    assert res.pass_at_k[1] == pytest.approx((4 + 0.5) / 5)


def test_evaluate_rejects_unknown_task():
    with pytest.raises(ValueError, match="not in problems"):
        evaluate_pass_at_k({}, {"HumanEval/0": ["pass"]})
