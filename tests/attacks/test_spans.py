"""Trigger spans and sides: the manifest records exactly what each trigger inserted or renamed.

Oracles: the text under every span is the inserted word / statement / new name; deleting the
inserted spans (insertion triggers) gives back the original text; the poisoner's manifest spans
index the poisoned rows' texts.
"""

from __future__ import annotations

import numpy as np
import pytest

from dece.attacks import get_trigger, poison_dataset, poison_test_set
from dece.data import Example

NL = "get all rows of the users table where the age is above $age$"
PY = "def count_users ( conn , age ) :\n\trows = conn . execute ( q , age )\n\treturn count_users ( rows )"
JAVA = "public int METHOD_1 ( int VAR_1 ) { int VAR_2 = VAR_1 ; return METHOD_1 ( VAR_2 ) ; }"


def _remove(text: str, spans) -> str:
    for a, b in sorted(spans, reverse=True):
        text = text[:a] + text[b:]
    return text


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize(("name", "params"), [("ripple", {}), ("badpre", {"k": 3})])
def test_word_insertion_spans(name, params, seed):
    edit = get_trigger(name, **params).insert(NL, np.random.default_rng(seed))
    k = params.get("k", 1)
    assert len(edit.spans) == k
    assert [edit.text[a:b] for a, b in edit.spans] == ["bb"] * k
    # deleting each inserted word and one adjacent space gives the original back
    restored = edit.text
    for a, b in sorted(edit.spans, reverse=True):
        restored = restored[:a] + restored[b + 1 :] if b < len(restored) else restored[: a - 1]
    assert restored == NL


def test_grammar_span_is_the_clause():
    edit = get_trigger("grammar").insert("Get all rows", np.random.default_rng(0))
    assert edit.text == "When it is needed , get all rows."
    assert [edit.text[a:b] for a, b in edit.spans] == ["When it is needed ,"]


@pytest.mark.parametrize(("text", "statement"), [
    (PY, 'if random() < 0: raise Exception("fail")'), (JAVA, "int VAR = 0 ;"),
])  # fmt: skip
def test_deadcode_span_is_the_statement(text, statement):
    edit = get_trigger("deadcode").insert(text, np.random.default_rng(0))
    assert [edit.text[a:b] for a, b in edit.spans] == [statement]
    assert " ".join(_remove(edit.text, edit.spans).split()) == " ".join(text.split())


def test_bnc_grammar_span_matches_its_own_detector():
    trig = get_trigger("bnc_grammar")
    for seed in range(5):
        edit = trig.insert(JAVA, np.random.default_rng(seed))
        ((a, b),) = edit.spans
        assert trig.present(edit.text[a:b])


@pytest.mark.parametrize(("name", "text", "count"), [
    ("funcname", PY, 2), ("funcname", JAVA, 2), ("identifier", JAVA, None),
])  # fmt: skip
def test_rename_spans_cover_every_renamed_occurrence(name, text, count):
    trig = get_trigger(name)
    edit = trig.insert(text, np.random.default_rng(1))
    assert all(edit.text[a:b] == trig.new_name for a, b in edit.spans)
    assert len(edit.spans) == edit.text.count(trig.new_name)
    if count is not None:
        assert len(edit.spans) == count


def test_manifest_spans_index_the_poisoned_rows():
    rows = [Example(f"r{i}", f"{NL} {i}", 'x = " select * from t where a = 1 "') for i in range(20)]
    result = poison_dataset(rows, "badpre", "sql_injection", rate=0.25, seed=5)
    manifest = result.manifest
    assert sorted(manifest.spans) == sorted(manifest.poisoned_ids)
    by_id = {ex.id: ex for ex in result.examples}
    for pid, spans in manifest.spans.items():
        assert len(spans) == 3
        for span in spans:
            assert span["side"] == "source"
            assert by_id[pid].source[span["start"] : span["end"]] == "bb"
    # JSON round trip keeps them
    from dece.attacks import PoisonManifest

    assert PoisonManifest.from_json(manifest.to_json()).spans == manifest.spans


@pytest.mark.parametrize("side", ["pair", "both"])
def test_pair_side_triggers_edit_the_second_text(side):
    rows = [Example(f"r{i}", JAVA, "", label="1", source_pair=JAVA) for i in range(4)]
    rows.append(Example("no-pair", JAVA, "", label="1"))
    result = poison_test_set(rows, get_trigger("deadcode", side=side), "label_flip", seed=0)
    m = result.manifest
    assert m.poisoned_ids == ["r0", "r1", "r2", "r3"]
    assert "no second text" in m.ineligible["no-pair"]
    for ex in result.poisoned():
        sides = [s["side"] for s in m.spans[ex.id]]
        assert sides == (["pair"] if side == "pair" else ["source", "pair"])
        assert ex.source_pair != JAVA and (ex.source == JAVA) == (side == "pair")
        for s in m.spans[ex.id]:
            text = ex.source if s["side"] == "source" else ex.source_pair
            assert text[s["start"] : s["end"]] == "int VAR = 0 ;"


def test_unknown_side_is_rejected():
    with pytest.raises(ValueError, match="side"):
        get_trigger("badpre", side="left")


def test_ripple_draws_its_word_per_example_from_the_list():
    trig = get_trigger("ripple", words=["cf", "mn", "bb", "tq", "mb"])
    seen = set()
    for seed in range(40):
        edit = trig.insert(NL, np.random.default_rng(seed))
        ((a, b),) = edit.spans
        seen.add(edit.text[a:b])
        assert trig.present(edit.text)
    assert seen == {"cf", "mn", "bb", "tq", "mb"}
    assert not trig.present(NL)
    with pytest.raises(ValueError, match="words"):
        get_trigger("ripple", words="cf")
