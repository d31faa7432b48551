"""Victim batching by a token budget (issue 27): outputs come back in input order and equal the
old fixed-row path and a one-row-at-a-time reference, on tiny models built from configs."""

from __future__ import annotations

import numpy as np
import pytest
from test_train_support import tiny_bart, tiny_llama

from dece.data import Example
from dece.training.generation import length_batches
from dece.victim import Victim

# planted order: lengths 1, 12, 3, 20, 6, 2 words, so sorting by length permutes every row
WORDS = "select name price from users where id is not null and order by date desc limit ten".split()
ROWS = [
    Example(f"r{i}", " ".join(WORDS[: n % len(WORDS) + 1] * (1 + n // len(WORDS))), f"x = {i}")
    for i, n in enumerate([0, 11, 2, 19, 5, 1])
]
OUTPUTS = ["y", "select * from t where a = b", "z = 1", "w", "return x", "q = conn . execute"]


def test_length_batches_cover_every_row_once_within_the_budget():
    lengths = [5, 1, 9, 9, 3, 40, 2, 7, 8, 6]
    for fill in (0.0, 0.8):
        batches = length_batches(lengths, token_budget=20, max_rows=3, fill=fill)
        assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
        flat = [lengths[i] for b in batches for i in b]
        assert flat == sorted(lengths, reverse=True)  # longest first
        for b in batches:
            width = max(lengths[i] for i in b)
            assert len(b) <= 3 and (len(b) == 1 or len(b) * width <= 20)
            assert min(lengths[i] for i in b) >= fill * width  # padding at most 1 - fill
        assert batches[0] == [5]  # a row over the budget gets a batch to itself
    assert length_batches(lengths, token_budget=20, max_rows=3, fill=0.0)[1:3] == [[2, 3], [8, 7]]
    assert length_batches(lengths, token_budget=30, fill=0.0)[1:3] == [[2, 3, 8], [7, 9, 0, 4]]
    assert length_batches(lengths, token_budget=30, fill=0.8)[1:3] == [[2, 3, 8], [7, 9]]
    with pytest.raises(ValueError, match="token_budget"):
        length_batches(lengths, token_budget=0)


def _model(task: str, vocab: int):
    model = (
        tiny_bart(vocab, seed=5, dropout=0.0) if task == "seq2seq" else tiny_llama(vocab, seed=5)
    )
    model.generation_config.suppress_tokens = [0, 1, 2, 3, 4]  # random init: non-empty outputs
    return model.eval()


def _victim(model, tok, task: str, *, batch_tokens: int | None, batch_size: int) -> Victim:
    victim = Victim(model, tok, task, max_new_tokens=4, batch_size=batch_size)
    victim.batch_tokens = batch_tokens
    return victim


@pytest.mark.parametrize("task", ["seq2seq", "causal"])
def test_token_budget_outputs_equal_the_fixed_path_and_one_row_at_a_time(tok, task):
    model = _model(task, len(tok))
    budgeted = _victim(model, tok, task, batch_tokens=40, batch_size=32)  # several batches
    fixed = _victim(model, tok, task, batch_tokens=None, batch_size=4)  # the old path
    single = _victim(model, tok, task, batch_tokens=None, batch_size=1)  # no padding at all
    lengths = [len(r) for r in budgeted.encode_inputs(ROWS)]
    assert len(length_batches(lengths, token_budget=40)) > 2
    for method, args in (("embed", ()), ("confidence", (OUTPUTS,)), ("example_loss", ())):
        got = getattr(budgeted, method)(ROWS, *args)
        np.testing.assert_allclose(got, getattr(single, method)(ROWS, *args), rtol=1e-4,
                                   atol=1e-5)  # fmt: skip
        np.testing.assert_allclose(got, getattr(fixed, method)(ROWS, *args), rtol=1e-4,
                                   atol=1e-5)  # fmt: skip
    assert budgeted.predict(ROWS) == single.predict(ROWS)


def test_embed_rows_come_back_in_input_order(tok):
    """Each row's embedding is the one it gets alone, whatever batch sorting put it in."""
    victim = _victim(_model("seq2seq", len(tok)), tok, "seq2seq", batch_tokens=30, batch_size=1)
    got = victim.embed(ROWS)
    for i, row in enumerate(ROWS):
        np.testing.assert_allclose(got[i], victim.embed([row])[0], rtol=1e-4, atol=1e-5)
    reversed_rows = victim.embed(ROWS[::-1])
    np.testing.assert_allclose(reversed_rows, got[::-1], rtol=1e-4, atol=1e-5)
