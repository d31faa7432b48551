"""Naturalness filter (KillBadCode): the Kneser-Ney model is a distribution for every context
(closed form), local deletion scoring equals re-scoring the whole input, and planted triggers
are the top-ranked tokens and flag exactly the triggered rows."""

from __future__ import annotations

import numpy as np
import pytest

from dece.attacks import get_trigger, poison_dataset
from dece.attacks.payloads import tokenize_code
from dece.data import load_dataset
from dece.defenses import get_defense
from dece.defenses.naturalness import EOS, KneserNeyLM, deletion_gains
from dece.metrics import detection_scores

SENTENCES = [s.split() for s in (
    "select all rows from users", "select the name from users", "get all rows from orders",
    "select all names from the users table", "count rows in orders",
)]  # fmt: skip


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("context", [(), ("select",), ("select", "all"), ("zzz", "qqq")])
def test_probabilities_sum_to_one_over_vocab_and_unknown(order, context):
    lm = KneserNeyLM(SENTENCES, order=order)
    total = sum(np.exp(lm.logprob(w, context)) for w in lm.vocab)
    total += np.exp(lm.logprob("<never seen>", context))  # the unknown type's share
    assert total == pytest.approx(1.0, abs=1e-12)
    assert EOS in lm.vocab


def _mean_nll(lm: KneserNeyLM, tokens: list[str]) -> float:
    n = lm.order
    padded = ["<s>"] * (n - 1) + tokens + [EOS]
    logp = [lm.logprob(padded[j], padded[j - n + 1 : j]) for j in range(n - 1, len(padded))]
    return -sum(logp) / (len(tokens) + 1)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_local_deletion_scoring_equals_rescoring_the_input(order):
    lm = KneserNeyLM(SENTENCES, order=order)
    for tokens in (SENTENCES[3], ["select", "bb", "all", "bb"], ["x"]):
        naive = [_mean_nll(lm, tokens) - _mean_nll(lm, tokens[:i] + tokens[i + 1 :])
                 for i in range(len(tokens))]  # fmt: skip
        np.testing.assert_allclose(deletion_gains(lm, tokens), naive, atol=1e-12)


@pytest.mark.parametrize(
    "trigger", [get_trigger("badpre"), get_trigger("ripple", words=["cf", "mn", "bb", "tq", "mb"])]
)
def test_planted_triggers_rank_first_on_synthetic_data(trigger):
    rows = load_dataset("synthetic:400")["train"]
    result = poison_dataset(rows, trigger, "sql_injection", rate=0.05, seed=3)
    words = set(getattr(trigger, "words", None) or ["bb"])
    scored = get_defense("naturalness").score(result.examples)
    assert scored.ids == [ex.id for ex in result.examples]
    # the design: the trigger words are the top-ranked types, so the rows holding them rank
    # first (the z threshold of the decision is Lyra's; see test_default_threshold_on_lyra)
    top = list(scored.info["top_tokens"])[: len(words)]
    assert set(top) == words
    d = detection_scores(scored.ids, scored.scores, scored.flagged, result.manifest.poisoned_ids)
    assert d["auroc"] == pytest.approx(1.0)
    by_z = sorted(scored.info["top_tokens"].items(), key=lambda kv: -kv[1]["z"])
    assert {t for t, _ in by_z[: len(words)]} == words


def test_default_threshold_on_lyra(shared_data):
    rows = load_dataset(str(shared_data / "lyra"))["train"]
    clean = get_defense("naturalness").score(rows)
    assert clean.n_removed == 0  # no token of the clean inputs is an outlier
    for trigger, words in ((get_trigger("badpre"), {"bb"}),
                           (get_trigger("ripple", words=["cf", "mn", "bb", "tq", "mb"]),
                            {"cf", "mn", "bb", "tq", "mb"})):  # fmt: skip
        result = poison_dataset(rows, trigger, "sql_injection", rate=0.05, seed=42)
        scored = get_defense("naturalness").score(result.examples)
        d = detection_scores(scored.ids, scored.scores, scored.flagged,
                             result.manifest.poisoned_ids)  # fmt: skip
        assert set(scored.info["triggers"]) == words
        assert d["recall"] == 1.0 and d["precision"] == 1.0


def test_tokens_and_parameters():
    assert tokenize_code("get bb all_rows(x)") == ["get", "bb", "all_rows", "(", "x", ")"]
    with pytest.raises(ValueError, match="order"):
        get_defense("naturalness", order=0)
    with pytest.raises(ValueError, match="discount"):
        KneserNeyLM(SENTENCES, discount=1.0)
