"""Issue 27, outputs unchanged: each victim-based filter scores the same rows the same on the
token-budget path as on the fixed-row path (the reference), within SCORE_RTOL of the largest
score, and decides the same except for rows whose score lies within that tolerance of the
threshold (counted; none on this set). A tiny BART built from a config is the victim."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from dece.data import Example
from dece.defenses import get_defense
from dece.victim import Victim

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
from test_train_support import synthetic_texts, tiny_bart, tiny_tokenizer  # noqa: E402

SCORE_RTOL = 1e-4  # relative to the largest |score| of the reference path

WORDS = "get the user name price date from books orders where id is not null".split()


def _rows(n: int = 24) -> list[Example]:
    """Rows of 3 to 14 words; every fourth carries the planted word ``bb``."""
    rows = []
    for i in range(n):
        words = [WORDS[(i * 7 + j) % len(WORDS)] for j in range(3 + (i * 5) % 12)]
        if i % 4 == 0:
            words.insert(len(words) // 2, "bb")
        rows.append(Example(f"r{i}", " ".join(words), "x = 1"))
    return rows


@pytest.fixture(scope="module")
def victim() -> Victim:
    tok = tiny_tokenizer(synthetic_texts(16) + [" ".join(WORDS), "bb"])
    return Victim(tiny_bart(len(tok), seed=7, dropout=0.0).eval(), tok, "seq2seq", batch_size=5)


@pytest.mark.parametrize(
    ("name", "args"),
    [("spectral", {"expected_rate": 0.2}), ("activation_clustering", {}), ("bki", {"chunk": 8})],
)
def test_token_budget_decisions_equal_the_fixed_row_path(victim, name, args):
    rows = _rows()
    victim.batch_tokens = None
    slow = get_defense(name, **args).score(rows, victim)
    victim.batch_tokens = 48  # several length-sorted batches per call
    fast = get_defense(name, **args).score(rows, victim)
    victim.batch_tokens = Victim.batch_tokens
    scale = float(np.abs(slow.scores).max())
    np.testing.assert_allclose(fast.scores, slow.scores, rtol=0, atol=SCORE_RTOL * scale)
    differ = np.flatnonzero(fast.flagged != slow.flagged)
    near = [i for i in differ if abs(slow.scores[i] - slow.threshold) <= SCORE_RTOL * scale]
    assert list(differ) == near and len(near) == 0
