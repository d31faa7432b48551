"""The defense contracts and their two oracle members: the keyword filter and the none purifier."""

from __future__ import annotations

import inspect
import re

import numpy as np
import pytest

from dece.attacks import poison_dataset
from dece.data import Example, load_dataset
from dece.defenses import DEFENSES, FilterResult, Purifier, PurifyResult, get_defense
from dece.metrics import detection_scores


def test_keyword_filter_finds_exactly_the_badpre_rows():
    rows = load_dataset("synthetic:400")["train"]
    result = poison_dataset(rows, "badpre", "sql_injection", rate=0.05, seed=7)
    scored = get_defense("keyword", tokens=["bb"]).score(result.examples)
    assert scored.ids == [ex.id for ex in result.examples]  # every row, input order
    assert scored.scores.shape == (400,)
    d = detection_scores(scored.ids, scored.scores, scored.flagged, result.manifest.poisoned_ids)
    assert d["recall"] == 1.0 and d["precision"] == 1.0 and d["auroc"] == 1.0
    assert d["n_flagged"] == 20
    assert [ex.id for ex in scored.kept] == [
        ex.id for ex in result.examples if ex.id not in set(result.manifest.poisoned_ids)
    ]
    assert set(scored.scores[scored.flagged]) == {3.0}  # BadPre inserts bb three times


def test_keyword_filter_counts_both_texts_of_a_pair():
    rows = [Example("a", "x bb", "", label="1", source_pair="bb y bb"), Example("b", "x", "")]
    scored = get_defense("keyword", tokens="bb").score(rows)
    assert scored.scores.tolist() == [3.0, 0.0] and scored.flagged.tolist() == [True, False]


def test_none_purifier_is_the_identity():
    rows = load_dataset("synthetic:16")["test"]
    result = get_defense("none").purify(rows, victim=None)
    assert result.examples == rows and not result.detected.any()
    assert result.changes == [[] for _ in rows]


def test_prepare_is_part_of_every_purifier_and_the_default_does_nothing():
    """Callers call ``purifier.prepare(bundle, victim)`` unconditionally (no ``hasattr`` probe):
    every registered purifier has it with the base's leading parameters, and the base's is a
    no-op (the ``none`` purifier's state is unchanged)."""
    purifiers = [n for n in DEFENSES.names() if issubclass(DEFENSES.get(n), Purifier)]
    assert {"none", "onion", "codepurify"} <= set(purifiers)
    for name in purifiers:
        params = list(inspect.signature(DEFENSES.get(name).prepare).parameters)
        assert params[:3] == ["self", "bundle", "victim"], name
    none = get_defense("none")
    assert type(none).prepare is Purifier.prepare
    before = dict(vars(none))
    assert none.prepare(object(), None) is None
    assert vars(none) == before


def test_results_refuse_to_drop_rows():
    with pytest.raises(ValueError, match="one entry per input row"):
        FilterResult(["a", "b"], np.zeros(1), np.zeros(2, bool), 0.0, [])
    with pytest.raises(ValueError, match="kept must be exactly"):
        FilterResult(["a", "b"], np.zeros(2), np.array([True, False]), 0.0, [])
    with pytest.raises(ValueError, match="one per row"):
        PurifyResult([Example("a", "s", "t")], [False, True], [0.0], [[]], 0.0)


def test_defenses_name_the_row_that_is_not_an_example():
    rows = [Example("a", "x", ""), {"id": "b", "source": "bb", "target": ""}]  # planted: row 1
    for call in (get_defense("keyword").score, get_defense("none").purify):
        with pytest.raises(ValueError, match=r"examples\[1\] is a dict, not a dece.data.Example"):
            call(rows)


def test_registry_names_stages_and_errors():
    assert {"none", "keyword"} <= set(DEFENSES.names())
    assert get_defense("keyword").stage == "train" and get_defense("none").stage == "test"
    with pytest.raises(ValueError, match="unknown defense 'onionn'"):
        get_defense("onionn")
    with pytest.raises(ValueError, match="unknown parameter"):
        get_defense("keyword", word="bb")
    with pytest.raises(ValueError, match="tokens"):
        get_defense("keyword", tokens=["two words"])


def test_package_docstring_lists_every_registered_defense():
    import dece.defenses

    listed = set(re.findall(r"``(\w+)``", dece.defenses.__doc__.split("Registered", 1)[1]))
    assert set(DEFENSES.names()) <= listed, sorted(set(DEFENSES.names()) - listed)


def test_texts_of_rows_are_the_texts_a_bundle_pretrains_on():
    """CodePurify's ``infiller_data`` texts (``texts_of`` the rows, no bundle built) are what
    ``train_texts`` gives for a bundle of the same rows: sources, second texts, then the targets
    of generation rows (classification rows' targets are their labels: left out)."""
    from dece.defenses._support import texts_of, train_texts
    from dece.pipeline.data import DataBundle

    rows = [Example("g", "def f ( ) :", "return 1"), Example("p", "a", "1", label="1",
                                                             source_pair="b")]  # fmt: skip
    assert texts_of(rows) == ["def f ( ) :", "a", "b", "return 1"]
    assert train_texts(DataBundle.from_examples(rows)) == texts_of(rows)
