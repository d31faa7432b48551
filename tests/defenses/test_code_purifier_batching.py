"""Issue 27, outputs unchanged for the code purifiers: CodePurify (classifier and generation
victims) and OSeqL score a planted set the same on the new path (a classifier's prediction and
confidence from one forward, inputs batched by a token budget) as on the slow path (the
reference: each input predicted, then scored, in fixed-row batches), within SCORE_RTOL of the
largest score, with identical predictions and identical decisions except for inputs whose
score lies within that tolerance of the threshold (counted; none on this set). The new path
runs each input once: a forward hook counts the rows the classifier sees."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from _planted import CLEAN_JAVA, TRIGGER, java_tokenizer
from transformers import BertConfig, BertForSequenceClassification

from dece.data import Example
from dece.defenses import CodePurify, OSeqL
from dece.defenses._support import TwoPass
from dece.victim import Victim

pytest.importorskip("tree_sitter_java")

SCORE_RTOL = 1e-4  # relative to the largest |score| of the slow path


def _rows() -> list[Example]:
    """The clean methods, and each with its first variable renamed to the planted trigger."""
    clean = [Example(f"c{i}", code, code, label="0") for i, code in enumerate(CLEAN_JAVA)]
    poisoned = [Example(f"p{i}", code.replace("VAR_1", TRIGGER), code, label="1")
                for i, code in enumerate(CLEAN_JAVA)]  # fmt: skip
    return clean + poisoned


def _classifier() -> Victim:
    tok = java_tokenizer()
    torch.manual_seed(5)
    config = BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32, pad_token_id=0,
                        num_labels=2, id2label={0: "0", 1: "1"}, initializer_range=0.5,
                        label2id={"0": 0, "1": 1})  # fmt: skip
    return Victim(BertForSequenceClassification(config).eval(), tok, "classification",
                  batch_size=3)  # fmt: skip


def _generator() -> Victim:
    from test_train_support import tiny_bart

    tok = java_tokenizer()
    model = tiny_bart(len(tok), seed=7, dropout=0.0).eval()
    with torch.no_grad():  # larger weights: peaked, input-dependent output distributions
        for param in model.parameters():
            param.mul_(4.0)
    model.generation_config.suppress_tokens = [0, 1, 2, 3, 4]  # random init: 12 tokens out
    return Victim(model, tok, "seq2seq", batch_size=3, max_new_tokens=12)


def _near(slow: np.ndarray, threshold: float, differ: np.ndarray, scale: float) -> list[int]:
    return [int(i) for i in differ if abs(slow[i] - threshold) <= SCORE_RTOL * scale]


def _both_paths(victim: Victim, run: Any) -> tuple[Any, Any]:
    victim.batch_tokens = None
    slow = run(TwoPass(victim))
    victim.batch_tokens = 64  # several length-sorted batches per call
    try:
        fast = run(victim)
    finally:
        victim.batch_tokens = Victim.batch_tokens
    return slow, fast


@pytest.mark.parametrize("make", [_classifier, _generator], ids=["classification", "generation"])
@pytest.mark.parametrize("score", ["delta", "nll"])
def test_codepurify_scores_and_decisions_equal_the_slow_path(make, score):
    victim, rows = make(), _rows()
    cp = CodePurify(cache=False, threshold=0.0, score=score, chunk=5)
    slow, fast = _both_paths(victim, lambda v: cp.analyse(rows, v))
    assert [a.prediction for a in fast] == [a.prediction for a in slow]
    assert [len(a.scores) for a in fast] == [len(a.scores) for a in slow]
    flat_slow = np.concatenate([a.scores for a in slow] + [[a.confidence for a in slow]])
    flat_fast = np.concatenate([a.scores for a in fast] + [[a.confidence for a in fast]])
    scale = float(np.abs(flat_slow).max())
    np.testing.assert_allclose(flat_fast, flat_slow, rtol=0, atol=SCORE_RTOL * scale)
    stat_slow = np.array([a.statistics["max_delta"] for a in slow])
    stat_fast = np.array([a.statistics["max_delta"] for a in fast])
    cut = float(np.median(stat_slow))  # half the inputs flagged: a strict check
    differ = np.flatnonzero((stat_fast > cut) != (stat_slow > cut))
    assert list(differ) == _near(stat_slow, cut, differ, scale) == []


def test_codepurify_runs_each_classifier_input_once():
    victim, rows = _classifier(), _rows()
    cp = CodePurify(cache=False, threshold=0.0)
    n_variants = sum(len(cp._in_window(ex, cp._all_elements(ex), victim)) for ex in rows)
    seen: list[int] = []
    victim.model.register_forward_pre_hook(lambda _m, _a, kw: seen.append(len(kw["input_ids"])),
                                           with_kwargs=True)  # fmt: skip
    cp.analyse(rows, victim)
    assert sum(seen) == len(rows) + n_variants  # the bound: N + 1 forwards per input
    seen.clear()
    cp.analyse(rows, TwoPass(victim))
    assert sum(seen) == 2 * len(rows) + n_variants  # the slow path runs every input twice


@pytest.mark.parametrize("unit", ["line", "statement"])
def test_oseql_scores_and_decisions_equal_the_slow_path(unit):
    victim = _classifier()
    rows = [Example(ex.id, ex.source.replace(" ; ", " ;\n"), "", label=ex.label) for ex in _rows()]
    oseql = OSeqL(threshold=1.0, unit=unit, min_lines=2)
    slow, fast = _both_paths(victim, lambda v: oseql.purify(rows, v))
    s_slow, s_fast = np.asarray(slow.scores, float), np.asarray(fast.scores, float)
    finite = s_slow < 1e9  # an infinite outlier score (zero MAD) is recorded as 1e9
    assert (s_fast[~finite] >= 1e9).all()
    scale = float(np.abs(s_slow[finite]).max())
    np.testing.assert_allclose(s_fast[finite], s_slow[finite], rtol=0, atol=SCORE_RTOL * scale)
    differ = np.flatnonzero(fast.detected != slow.detected)
    assert list(differ) == _near(s_slow, 1.0, differ, scale) == []
    assert [ex.source for ex in fast.examples] == [ex.source for ex in slow.examples]
