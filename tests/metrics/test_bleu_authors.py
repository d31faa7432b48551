"""The DeCE authors' BLEU (codebleu's BLEU per example on whitespace tokens, averaged) against
golden values computed by hand, and beside our two other variants on the pairs where the
smoothing and tokenisation choices disagree.

Per example: p_n = clipped n-gram matches / max(1, hypothesis n-grams); an order with 0 matches
counts 0.1 instead (codebleu's default ``SmoothingFunction().method1``); score =
BP * (p1 p2 p3 p4) ** (1/4) with BP = exp(1 - r / c) unless c > r; 0 when no unigram matches.
"""

from __future__ import annotations

import math
import sys

import pytest

from dece.metrics import MissingExtraError, bleu, bleu_authors, sentence_bleu_avg

# hypothesis "x = a + b", reference "x = a - b" (5 whitespace tokens each, 13a gives the same):
#   1-grams: x = a + b          -> 4 of 5 match (not "+")             p1 = 4/5
#   2-grams: x=, =a, a+, +b     -> 2 of 4 ("x =", "= a")              p2 = 2/4
#   3-grams: x=a, =a+, a+b      -> 1 of 3 ("x = a")                   p3 = 1/3
#   4-grams: x=a+, =a+b         -> 0 of 2, no 4-gram match            p4 = 0.1/2 (authors)
#   c = r = 5 -> BP = 1
NO_4GRAM = ("x = a + b", "x = a - b")
NO_4GRAM_AUTHORS = 100 * (4 / 5 * 2 / 4 * 1 / 3 * 0.1 / 2) ** 0.25  # 28.5744
# sacrebleu add-1 on n > 1: p2 = 3/5, p3 = 2/4, p4 = 1/3
NO_4GRAM_ADD1 = 100 * (4 / 5 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25  # 53.1830
# sacrebleu corpus BLEU, exp smoothing: the first zero order counts 1 / (2 * 2)
NO_4GRAM_CORPUS = 100 * (4 / 5 * 2 / 4 * 1 / 3 * 1 / (2 * 2)) ** 0.25  # 42.7287

# hypothesis = reference = "return x ;" (3 tokens, shorter than 4):
#   p1 = 3/3, p2 = 2/2, p3 = 1/1; no 4-gram in the hypothesis: 0 / max(1, 0) -> p4 = 0.1/1
#   c = r = 3 -> BP = 1
SHORT = ("return x ;", "return x ;")
SHORT_AUTHORS = 100 * (1 * 1 * 1 * 0.1) ** 0.25  # 56.2341: an exact match below 100
# sacrebleu add-1: p2 = 3/3, p3 = 2/2, p4 = (0+1)/(0+1) -> 100
SHORT_ADD1 = 100.0

# hypothesis "return x" (c = 2), reference "return x ;" (r = 3):
#   p1 = 2/2, p2 = 1/1, p3 = 0/1 -> 0.1, p4 = 0/1 -> 0.1; BP = exp(1 - 3/2)
SHORT_BP = ("return x", "return x ;")
SHORT_BP_AUTHORS = 100 * math.exp(1 - 3 / 2) * (1 * 1 * 0.1 * 0.1) ** 0.25  # 19.1802

# "f(x)" is one whitespace token (13a splits it into four and scores 100):
#   p1 = 1/1, p2 = p3 = p4 = 0/1 -> 0.1; BP = 1
ONE_TOKEN = ("f(x)", "f(x)")
ONE_TOKEN_AUTHORS = 100 * (1 * 0.1 * 0.1 * 0.1) ** 0.25  # 17.7828

# hypothesis "a a a a", reference "a b c d": clipping
#   p1: "a" 4 times, reference has 1 -> 1/4; p2 = 0/3 -> 0.1/3; p3 = 0/2 -> 0.1/2;
#   p4 = 0/1 -> 0.1/1; BP = 1
CLIPPED = ("a a a a", "a b c d")
CLIPPED_AUTHORS = 100 * (1 / 4 * 0.1 / 3 * 0.1 / 2 * 0.1 / 1) ** 0.25  # 8.0343

pytestmark = pytest.mark.codebleu


@pytest.fixture(autouse=True)
def _needs_codebleu() -> None:
    pytest.importorskip("codebleu")


@pytest.mark.parametrize(
    ("pair", "expected"),
    [
        (NO_4GRAM, NO_4GRAM_AUTHORS),
        (SHORT, SHORT_AUTHORS),
        (SHORT_BP, SHORT_BP_AUTHORS),
        (ONE_TOKEN, ONE_TOKEN_AUTHORS),
        (CLIPPED, CLIPPED_AUTHORS),
        (("a b c d e", "a b c d e"), 100.0),  # every order matches fully, BP = 1
        (("foo", "bar"), 0.0),  # no unigram match -> 0, whatever the smoothing
        (("", "a b"), 0.0),  # empty hypothesis: no unigram match -> 0
        (("a b", ""), 0.0),  # empty reference: no match
    ],
)
def test_golden_pairs(pair, expected):
    hyp, ref = pair
    assert bleu_authors([hyp], [ref]) == pytest.approx(expected, abs=1e-9)


def test_is_the_mean_over_examples_not_corpus_bleu():
    pairs = [NO_4GRAM, SHORT, SHORT_BP]
    hyps, refs = [p for p, _ in pairs], [r for _, r in pairs]
    expected = (NO_4GRAM_AUTHORS + SHORT_AUTHORS + SHORT_BP_AUTHORS) / 3  # 34.6629
    assert bleu_authors(hyps, refs) == pytest.approx(expected, abs=1e-9)


def test_whitespace_tokens_only():
    # tabs and newlines split like spaces (str.split), so layout does not matter
    assert bleu_authors(["x =\ta\n+  b"], ["x = a - b"]) == pytest.approx(NO_4GRAM_AUTHORS)


def test_the_variants_disagree_where_expected():
    hyp, ref = NO_4GRAM
    assert sentence_bleu_avg([hyp], [ref]) == pytest.approx(NO_4GRAM_ADD1, abs=1e-9)
    assert bleu([hyp], [ref]) == pytest.approx(NO_4GRAM_CORPUS, abs=1e-9)
    hyp, ref = SHORT
    assert sentence_bleu_avg([hyp], [ref]) == pytest.approx(SHORT_ADD1, abs=1e-9)
    assert bleu_authors([hyp], [ref]) < 60.0


def test_bad_input_and_missing_extra(monkeypatch):
    with pytest.raises(ValueError, match="differ in length"):
        bleu_authors(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="empty"):
        bleu_authors([], [])
    monkeypatch.setitem(sys.modules, "codebleu.bleu", None)  # import -> ImportError
    with pytest.raises(MissingExtraError, match=r"pip install 'dece\[codebleu\]'"):
        bleu_authors(["x"], ["x"])
