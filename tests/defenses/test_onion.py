"""ONION against oracles: a tiny causal LM trained in the test on a small grammar removes a planted
out-of-vocabulary word and nothing else; batched perplexities equal one-by-one ones; words are
removed from the text byte for byte."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dece.data import Example
from dece.defenses import Onion, get_defense
from dece.defenses.onion import (
    leave_one_out_suspicion,
    perplexities,
    prefix_shared_perplexities,
    remove_words,
    token_rows,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
from test_train_support import tiny_llama, tiny_tokenizer  # noqa: E402

NAMES = ["user", "name", "price", "date", "email", "title"]
TABLES = ["books", "orders", "users", "items", "stock", "sales"]


def sentence(i: int) -> str:
    return (f"get the {NAMES[i % 6]} of the {TABLES[(i // 6) % 6]} where the id is "
            f"{i % 10}")  # fmt: skip


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory) -> Path:
    """A 1-layer Llama trained for 80 full-batch steps on 36 grammar sentences (the letters z, q
    and x never occur in them)."""
    torch.manual_seed(0)
    texts = [sentence(i) for i in range(36)]
    tok = tiny_tokenizer(texts, vocab_size=120)
    model = tiny_llama(len(tok))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    enc = tok(texts, return_tensors="pt", padding=True)
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    model.train()
    for _ in range(80):
        loss = model(**enc, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    path = tmp_path_factory.mktemp("onion_lm")
    model.eval().save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_batched_perplexities_equal_one_by_one(lm_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(lm_dir).eval()
    tok = AutoTokenizer.from_pretrained(lm_dir)
    texts = [sentence(3), "get the", sentence(40) + " and more words here"]
    batched = perplexities(model, tok, texts)
    single = np.array([perplexities(model, tok, [t])[0] for t in texts])
    np.testing.assert_allclose(batched, single, rtol=1e-4)
    sus = leave_one_out_suspicion(model, tok, "get the zqx name", max_batch=2)
    p = perplexities(model, tok, ["get the zqx name", "the zqx name", "get zqx name",
                                  "get the name", "get the zqx"])  # fmt: skip
    np.testing.assert_allclose(sus, p[0] - p[1:], rtol=1e-4)


def _naive_perplexity(model, row: list[int]) -> float:
    """exp of the mean NLL of one unpadded token row, alone in its forward pass."""
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([row])).logits[0].float(), -1)
    nll = -logp[:-1].gather(1, torch.tensor(row[1:])[:, None]).squeeze(1)
    return float(torch.exp(nll.mean())) if len(row) > 1 else 1.0


def test_prefix_shared_perplexities_equal_each_row_scored_alone(lm_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(lm_dir).eval()
    tok = AutoTokenizer.from_pretrained(lm_dir)
    base = token_rows(tok, [sentence(7) + " zqx"])[0]
    variants = [
        base[:-3] + base[-2:],  # a token removed near the end
        [base[0], *base[2:]],  # the second token removed: almost nothing shared
        base[:4],  # a prefix of the base: nothing left to run
        base[:5] + [7, 9, 11, 13, 5],  # other tokens after a shared prefix
        [6, 5, 4, *base[1:]],  # no shared prefix at all: scored in full
        base[:1],  # one token: perplexity 1
    ]
    got = prefix_shared_perplexities(model, base, variants, max_batch=2)
    expected = [_naive_perplexity(model, r) for r in [base, *variants]]
    np.testing.assert_allclose(got, expected, rtol=1e-5)


@pytest.mark.parametrize("text", [sentence(7), "get the zqx name", "a", sentence(40) + " x zq"])
def test_prefix_shared_suspicions_equal_the_full_variant_path(lm_dir, text):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(lm_dir).eval()
    tok = AutoTokenizer.from_pretrained(lm_dir)
    fast = leave_one_out_suspicion(model, tok, text, max_batch=3)
    slow = leave_one_out_suspicion(model, tok, text, prefix_cache=False)
    p0 = perplexities(model, tok, [text])[0]
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-5 * p0)  # SUSPICION_TOLERANCE


def test_prefix_shared_decisions_equal_the_full_variant_path(lm_dir, tmp_path):
    """Same threshold, same words removed; only a row whose peak suspicion lies within the
    tolerance of the threshold could differ (counted: none here)."""
    clean = [Example(f"c{i}", sentence(i), "") for i in range(60, 70)]
    planted = sentence(97).split()
    planted.insert(2, "zqxqz")
    rows = [*clean, Example("p", " ".join(planted), "")]
    slow = Onion(lm=str(lm_dir), clean_fraction=0.2, prefix_cache=False, cache=False)
    slow.calibrate(clean)
    fast = Onion(lm=str(lm_dir), threshold=slow._threshold, cache=False)
    a, b = slow.purify(rows), fast.purify(rows)
    tol = 1e-5 * float(max(perplexities(*_lm(lm_dir), [ex.source for ex in rows])))
    np.testing.assert_allclose(b.scores, a.scores, rtol=0, atol=tol)
    differ = np.flatnonzero(a.detected != b.detected)
    assert [i for i in differ if abs(a.scores[i] - slow._threshold) > tol] == []
    assert len(differ) == 0 and a.detected[-1]
    assert [ex.source for ex in b.examples] == [ex.source for ex in a.examples]


def _lm(lm_dir: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(lm_dir).eval()
    return model, AutoTokenizer.from_pretrained(lm_dir)


def test_onion_removes_the_planted_word_only(lm_dir, tmp_path):
    clean = [Example(f"c{i}", sentence(i), "") for i in range(72, 82)]
    planted = sentence(95).split()
    planted.insert(3, "zqxqz")
    poisoned = Example("p", " ".join(planted), "")
    onion = Onion(lm=str(lm_dir), clean_fraction=0.0, cache_dir=str(tmp_path))
    calibrated = onion.calibrate(clean)  # the largest word suspicion of the clean inputs
    peaks = [onion.suspicions(ex)[0].max() for ex in clean]
    assert calibrated == pytest.approx(max(peaks))
    sus = onion.suspicions(poisoned)[0]
    assert int(np.argmax(sus)) == 3 and sus[3] > calibrated
    between = (sus[3] + np.sort(sus)[-2]) / 2
    result = Onion(lm=str(lm_dir), threshold=float(between), cache_dir=str(tmp_path)).purify(
        [poisoned, clean[0]]
    )
    assert result.examples[0].source == sentence(95)
    assert [(c.old, c.start) for c in result.changes[0]] == [("zqxqz", poisoned.source.find("zq"))]
    assert result.detected.tolist() == [True, False] and result.examples[1] == clean[0]
    assert result.scores[0] == pytest.approx(sus[3])
    # cached: a second ONION with the same LM reads the suspicions from disk
    again = Onion(lm=str(lm_dir), threshold=0.0, cache_dir=str(tmp_path))
    again._lm = (None, None, onion._lm[2])  # no model: any cache miss would fail
    np.testing.assert_allclose(again.suspicions(poisoned)[0], sus)


def test_remove_words_keeps_the_rest_byte_for_byte():
    text = "a  bb\tc\nbb d"
    new, removed = remove_words(text, [False, True, False, True, False])
    assert new == "a  c\nd" and removed == [(3, 5, "bb"), (8, 10, "bb")]
    assert remove_words("bb", [True]) == ("", [(0, 2, "bb")])
    with pytest.raises(ValueError, match="flags"):
        remove_words("a b", [True])


def test_onion_needs_a_threshold_and_valid_settings():
    with pytest.raises(ValueError, match="no threshold"):
        Onion(lm="gpt2").purify([Example("a", "x", "")])
    with pytest.raises(ValueError, match="clean_fraction"):
        get_defense("onion", clean_fraction=1.5)
