"""benchmarks/codepurify_ranking.py and ``trigger_rank``: where a planted trigger stands in a
row's recorded suspicion scores, with the occurrences of one identifier counted once, ties and
unscored triggers counted apart, and what outranks it."""

from __future__ import annotations

import pytest
from _bench_script import load_script

from dece.defenses.codepurify_stats import trigger_rank
from dece.experiments.markdown import md_table_cells

SRC = "int f ( int a ) { int VAR = 0 ; return a + a ; }"
TRIGGER = {"side": "source", "start": SRC.index("int VAR"), "end": SRC.index(" return")}


@pytest.fixture(scope="module")
def script():
    return load_script("codepurify_ranking")


def _element(text: str, score: float, kind: str, nth: int = 0) -> dict:
    start = -1
    for _ in range(nth + 1):
        start = SRC.index(text, start + 1)
    return {"side": "source", "start": start, "end": start + len(text), "score": score,
            "kind": kind}  # fmt: skip


def _row(i: int, trigger_score: float | None, a_score: float) -> dict:
    """Identifier ``a`` (three occurrences, one score) and, unless None, the trigger statement."""
    elements = [_element("a", a_score, "identifier", n) for n in (0, 1, 2)]
    if trigger_score is not None:
        elements.append(_element("int VAR = 0 ;", trigger_score, "statement"))
    return {"id": f"r{i}", "source": SRC, "elements": elements}


def test_trigger_rank_closed_cases():
    spans = [[("source", 0, 3)], [("source", 10, 12)], [("source", 20, 25)]]
    truth = [{"side": "source", "start": 21, "end": 22}]
    assert trigger_rank([0.1, 0.2, 0.3], spans, truth) == (1, 0)
    assert trigger_rank([0.5, 0.2, 0.3], spans, truth) == (2, 0)
    assert trigger_rank([0.3, 0.3, 0.3], spans, truth) == (1, 2)
    assert trigger_rank([0.3, 0.3], spans[:2], truth) is None


def test_planted_ranks_and_what_outranks_the_trigger(script):
    rows = [_row(0, 0.9, 0.1), _row(1, 0.2, 0.5), _row(2, 0.4, 0.4), _row(3, None, 0.3),
            {"id": "clean", "source": SRC, "elements": []}]  # fmt: skip
    spans = {f"r{i}": [TRIGGER] for i in range(4)}  # "clean" has none: not counted
    summary = script.rank_summary(rows, spans)
    # identifier `a` occurs 3 times with one score: one element, so row 1 ranks the trigger 2nd
    assert dict(summary["ranks"]) == {"1": 1, "2": 1, "1 (tied)": 1, "not scored": 1}
    assert dict(summary["top_kinds"]) == {"identifier": 1}
    assert dict(summary["top_texts"]) == {"a": 1}
    assert summary["median_gap"] == pytest.approx(0.3)
    cells = md_table_cells(script.render("cell", summary))
    assert ["2", "1", "25.0"] in cells and ["not scored", "1", "25.0"] in cells
    assert ["`a`", "1"] in cells
