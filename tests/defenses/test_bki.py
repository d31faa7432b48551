"""BKI on a planted victim whose representation is a bag of word vectors with a dominant trigger
vector: the trigger is the backdoor keyword and exactly the triggered rows are flagged (recall
and precision 1, as the design implies); importances equal a per-word deletion done by hand."""

from __future__ import annotations

import zlib
from functools import cache

import numpy as np
import pytest
from filter_helpers import PlantedVictim

from dece.attacks import poison_dataset
from dece.data import Example, load_dataset
from dece.defenses import get_defense
from dece.defenses.bki import keyword_statistic, word_importance
from dece.metrics import detection_scores

DIM = 16


SCALE = {"bb": 20.0, "zz": 50.0}


@cache
def _vector(word: str) -> np.ndarray:
    rng = np.random.default_rng(zlib.crc32(word.encode()))
    return rng.normal(size=DIM) * SCALE.get(word, 1.0)


def _bag(ex: Example) -> np.ndarray:
    words = ex.source.split()
    return np.sum([_vector(w) for w in words], axis=0) if words else np.zeros(DIM)


def test_trigger_word_is_the_keyword_and_its_rows_are_flagged():
    rows = load_dataset("synthetic:400")["train"]
    poisoned = poison_dataset(rows, "badpre", "sql_injection", rate=0.05, seed=3)
    victim = PlantedVictim(_bag)
    result = get_defense("bki").score(poisoned.examples, victim)
    assert result.info["keywords"] == ["bb"]
    assert result.ids == [ex.id for ex in poisoned.examples]
    d = detection_scores(result.ids, result.scores, result.flagged,
                         poisoned.manifest.poisoned_ids)  # fmt: skip
    assert d["recall"] == 1.0 and d["precision"] == 1.0 and d["auroc"] == 1.0
    # one pass for the inputs plus one per word
    n_words = sum(len(ex.source.split()) for ex in poisoned.examples)
    assert result.info["cost"]["model_passes"] == pytest.approx((400 + n_words) / 400, abs=1e-3)


def test_importance_is_the_change_when_a_word_is_removed():
    rows = [Example("a", "get bb all rows", ""), Example("b", "x", ""), Example("c", "", "")]
    victim = PlantedVictim(_bag)
    got = word_importance(victim, rows, chunk=2)
    words = rows[0].source.split()
    expected = [
        np.abs(_bag(rows[0]) - _bag(Example("a", " ".join(words[:i] + words[i + 1 :]), ""))).max()
        for i in range(len(words))
    ]
    np.testing.assert_allclose(got[0], expected)
    np.testing.assert_allclose(got[1], [np.abs(_vector("x")).max()])
    assert got[2].shape == (0,)


def test_keyword_statistic_closed_form():
    stats = keyword_statistic([[("a", 2.0), ("b", 1.0)], [("a", 4.0)], [("b", 3.0), ("b", 5.0)]])
    assert stats["a"] == (2, 3.0, pytest.approx(3.0 * np.log10(2)))
    assert stats["b"] == (2, 3.0, pytest.approx(3.0 * np.log10(2)))  # b counted once per row: 1, 5


def test_paper_and_reference_flagging_rules():
    # row "y" holds bb, but its top-1 keyword is the heavier "zz": the paper's rule flags it
    # (it contains the backdoor keyword), the reference implementation's does not
    rows = [Example(f"r{i}", "bb alpha", "") for i in range(5)]
    rows += [Example("y", "bb zz", ""), Example("z", "q", "")]
    victim = PlantedVictim(_bag)
    contains = get_defense("bki", top_k=1).score(rows, victim)
    keyword = get_defense("bki", top_k=1, flag="keyword").score(rows, victim)
    assert contains.info["keywords"] == keyword.info["keywords"] == ["bb"]
    assert contains.flagged.tolist() == [True] * 6 + [False]
    assert keyword.flagged.tolist() == [True] * 5 + [False, False]
    with pytest.raises(ValueError, match="flag"):
        get_defense("bki", flag="some")
