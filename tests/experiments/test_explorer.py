"""The per-input explorer's records (:mod:`dece.experiments.explorer`) and the highlighting of
:mod:`dece.experiments.html_report`, against planted defense cells (``explorer_runs``): which
inputs were detected / missed / false alarms is known, and so are the trigger spans."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from explorer_runs import N_DETECTED, make_explorer_runs  # noqa: E402

from dece.experiments import load_results  # noqa: E402
from dece.experiments.archive import archive_cells  # noqa: E402
from dece.experiments.explorer import load_explorer  # noqa: E402
from dece.experiments.html_report import format_value, highlight  # noqa: E402


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("explorer") / "runs"
    return out, make_explorer_runs(out)


def _row(out: Path, h: str):
    return next(r for r in load_results(out) if r.hash == h)


def test_purifier_records_match_the_planted_decisions(runs):
    out, facts = runs
    ex = load_explorer(_row(out, facts["onion"]))
    poisoned = facts["poisoned"]
    assert ex.kind == "purifier" and not ex.notes
    assert ex.counts == {"detected": N_DETECTED, "missed": len(poisoned) - N_DETECTED,
                         "false-alarm": 1, "clean": 5}  # fmt: skip
    missed = [r for r in ex.records if r.category == "missed"]
    assert [r.id for r in missed] == facts["missed"]
    for rec in missed:
        assert rec.text == poisoned[rec.id].source  # the input before the defense
        assert rec.triggers == facts["spans"][rec.id]
        assert rec.prediction_before == "DROP TABLE" and rec.changes == []
    caught = next(r for r in ex.records if r.category == "detected")
    span = facts["spans"][caught.id][0]
    assert caught.changes[0]["old"] == caught.text[span["start"] : span["end"]]
    assert caught.after != caught.text and caught.prediction_after == "ok"
    assert max(e["score"] for e in caught.elements) == 1.0


def test_filter_records_are_the_rows_removed_vs_the_manifest(runs):
    out, facts = runs
    ex = load_explorer(_row(out, facts["keyword"]))
    flagged = {i for i, f in zip(facts["filter"].ids, facts["filter"].flagged, strict=True) if f}
    poisoned = set(facts["train_manifest"].poisoned_ids)
    assert ex.summary["removed"] == len(flagged)
    assert ex.summary["poisoned and removed"] == len(flagged & poisoned)
    assert ex.summary["poisoned and kept"] == len(poisoned - flagged)
    assert ex.summary["clean and removed"] == len(flagged - poisoned)
    assert {r.id for r in ex.records if r.category == "detected"} == flagged & poisoned
    rec = next(r for r in ex.records if r.id in poisoned)
    assert rec.text is not None and rec.triggers == facts["train_manifest"].spans[rec.id]


def test_archived_cells_say_they_kept_only_numbers(runs, tmp_path):
    out, facts = runs
    archive_cells(out, tmp_path / "archive")
    for h in (facts["onion"], facts["keyword"]):
        ex = load_explorer(_row(tmp_path / "archive", h))
        assert ex.records == [] and "archived cell" in ex.notes[0]


def test_highlight_marks_trigger_scores_and_changes():
    text = "a <bb> c"
    html = highlight(text, "source", [{"side": "source", "start": 2, "end": 6}],
                     [{"side": "source", "start": 0, "end": 1, "score": 0.0},
                      {"side": "source", "start": 2, "end": 6, "score": 2.0}],
                     [{"side": "source", "start": 2, "end": 6, "old": "<bb>", "new": ""}],
                     (0.0, 2.0))  # fmt: skip
    assert html == (
        '<span class="scored" style="--s:0.00" title="score 0">a</span> '
        '<span class="trigger scored changed" style="--s:1.00" title="trigger (poison manifest);'
        ' score 2; replaced by &#x27;&#x27;">&lt;bb&gt;</span> c'
    )
    assert highlight("xy", "pair", [{"side": "source", "start": 0, "end": 1}], [], []) == "xy"
    assert [format_value(v) for v in (0.5, 1 / 3, 2, None, 40.0)] == [
        "0.5",
        "0.3333",
        "2",
        "-",
        "40",
    ]


def test_bad_cap_is_rejected(runs):
    out, facts = runs
    with pytest.raises(ValueError, match="max_per_category"):
        load_explorer(_row(out, facts["onion"]), max_per_category=0)
