"""BLEU, exact match, classification scores and CodeBLEU against hand-computed oracles."""

from __future__ import annotations

import math
import sys

import pytest

from dece.metrics import (
    MissingExtraError,
    bleu,
    classification_scores,
    codebleu,
    exact_match,
    sentence_bleu_avg,
)

CORPUS = ["def add ( a , b ) : return a + b", "int x = 0 ;", "select * from t where a = 1"]


def test_bleu_identical_is_100():
    assert bleu(CORPUS, CORPUS) == pytest.approx(100.0)
    assert sentence_bleu_avg(CORPUS, CORPUS) == pytest.approx(100.0)


def test_bleu_by_hand():
    # p1..p4 = 4/5, 3/4, 2/3, 1/2, same length -> BP = 1
    assert bleu(["a b c d x"], ["a b c d y"]) == pytest.approx(100 * (1 / 5) ** 0.25, abs=1e-6)
    # all precisions 1, hypothesis 6 vs reference 8 tokens -> BP = exp(1 - 8/6)
    assert bleu(["a b c d e f"], ["a b c d e f g h"]) == pytest.approx(
        100 * math.exp(1 - 8 / 6), abs=1e-6
    )
    # add-1 smoothing on n >= 2: 4/5, 4/5, 3/4, 2/3
    assert sentence_bleu_avg(["a b c d x"], ["a b c d y"]) == pytest.approx(
        100 * (4 / 5 * 4 / 5 * 3 / 4 * 2 / 3) ** 0.25, abs=1e-6
    )


def test_bleu_rejects_bad_input():
    with pytest.raises(ValueError, match="differ in length"):
        bleu(["a"], ["a", "b"])
    with pytest.raises(ValueError, match=r"predictions\[1\]"):
        bleu(["a", None], ["a", "b"])  # type: ignore[list-item]


def test_exact_match():
    preds = ["a  b", "c", "d e", "x"]
    refs = ["a b", "c ", "d f", "x"]
    assert exact_match(preds, refs) == 3 / 4
    assert exact_match(preds, refs, normalize_whitespace=False) == 1 / 4


def _naive(y_true, y_pred, pos):
    tp = sum(t == pos and p == pos for t, p in zip(y_true, y_pred, strict=True))
    fp = sum(t != pos and p == pos for t, p in zip(y_true, y_pred, strict=True))
    fn = sum(t == pos and p != pos for t, p in zip(y_true, y_pred, strict=True))
    prec, rec = tp / (tp + fp), tp / (tp + fn)
    return {
        "accuracy": sum(t == p for t, p in zip(y_true, y_pred, strict=True)) / len(y_true),
        "precision": prec,
        "recall": rec,
        "f1": 2 * prec * rec / (prec + rec),
    }


def test_classification_scores_match_naive_counts():
    y_true = ["1", "1", "0", "0", "1", "0", "1"]
    y_pred = ["1", "0", "0", "1", "1", "0", "1"]
    got = classification_scores(y_true, y_pred, pos_label="1")
    assert got == pytest.approx(_naive(y_true, y_pred, "1"))
    macro = classification_scores(y_true, y_pred, average="macro")
    a, b = _naive(y_true, y_pred, "1"), _naive(y_true, y_pred, "0")
    assert macro["f1"] == pytest.approx((a["f1"] + b["f1"]) / 2)
    with pytest.raises(ValueError, match="pos_label"):
        classification_scores(y_true, y_pred, pos_label=1)


@pytest.mark.codebleu
@pytest.mark.parametrize(
    ("lang", "code"),
    [
        ("python", "def f(a, b):\n    c = a + b\n    return c\n"),
        ("java", "public int f(int a, int b) { int c = a + b; return c; }"),
        ("c", "int f(int a, int b) { int c = a + b; return c; }"),
    ],
)
def test_codebleu_identical_is_one(lang, code):
    pytest.importorskip("codebleu")
    assert codebleu([code, code], [code, code], lang=lang) == pytest.approx(1.0)


@pytest.mark.codebleu
def test_codebleu_different_code_is_lower():
    pytest.importorskip("codebleu")
    score = codebleu(["def f(a):\n    return 0\n"], ["def f(a, b):\n    return a * b\n"])
    assert 0.0 <= score < 0.9


def test_codebleu_missing_extra_names_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "codebleu", None)  # import codebleu -> ImportError
    with pytest.raises(MissingExtraError, match=r"pip install 'dece\[codebleu\]'"):
        codebleu(["x"], ["x"])
    with pytest.raises(ValueError, match="lang"):
        codebleu(["x"], ["x"], lang="cobol")
