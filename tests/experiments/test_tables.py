"""Tables from a hand-made results directory equal hand-written expected tables."""

from __future__ import annotations

import pytest
from exp_helpers import EXPECTED_CSV, EXPECTED_LATEX, EXPECTED_MD, write_result

from dece.experiments import (
    build_tables,
    find_unfinished,
    format_tables,
    load_results,
    write_report,
)
from dece.experiments.markdown import md_unpadded
from dece.experiments.tables import AUTHORS_BLEU, authors_bleu_note


@pytest.mark.parametrize(
    ("fmt", "expected"), [("md", EXPECTED_MD), ("latex", EXPECTED_LATEX), ("csv", EXPECTED_CSV)]
)
def test_tables_equal_hand_written(hand_results, fmt, expected):
    assert format_tables(build_tables(load_results(hand_results)), fmt) == expected


def test_tables_refuse_cells_of_mixed_batching_revisions(hand_results):
    from dataclasses import replace

    from dece.experiments.tables import check_predict_revisions

    rows = load_results(hand_results)
    assert check_predict_revisions(rows) == 1  # archived cells: no revision recorded
    new = [replace(r, final={**r.final, "predict_revision": 2}) for r in rows]
    assert check_predict_revisions(new) == 2
    assert format_tables(build_tables(new), "md") == EXPECTED_MD
    with pytest.raises(ValueError, match=r"revisions \[1, 2\]"):
        build_tables([*rows[:1], *new[1:]])
    # classifier cells (accuracy, no BLEU) are not counted, whatever their revision
    clf = [replace(r, final={"accuracy": 0.5, "asr": 0.1, **({"predict_revision": 2} if i else {})})
           for i, r in enumerate(rows)]  # fmt: skip
    assert check_predict_revisions(clf) == 1
    assert check_predict_revisions([*clf, *new[1:]]) == 2


def test_write_report_writes_table_and_plots(hand_results, tmp_path):
    report = write_report(hand_results, tmp_path / "out", fmt="csv")
    assert report.table_path == tmp_path / "out" / "report.csv"
    assert report.table_path.read_text() == EXPECTED_CSV
    assert [p.name for p in report.plots] == ["early_learning.png", "asr_vs_bleu.png"]


def test_rows_carry_axes_and_history(hand_results):
    rows = load_results(hand_results)
    assert len(rows) == 6
    ce = [r for r in rows if r.method == "CE" and r.attack == "BadPre" and r.rate > 0]
    assert sorted(r.seed for r in ce) == [1, 2]
    assert ce[0].history[-1]["asr"] in (0.9, 0.8) and len(ce[0].history) == 2
    assert (
        ce[0].flat()["loss"] == "ce"
        and ce[0].flat()["loss_label"] == "CE"
        and ce[0].flat()["asr"] in (0.9, 0.8)
    )


def test_unfinished_cells_are_listed_not_tabulated(hand_results):
    partial = hand_results / "partial"
    partial.mkdir()
    (partial / "cell.yaml").write_text("dataset: x\n")
    assert find_unfinished(hand_results) == [partial]
    assert len(load_results(hand_results)) == 6


def test_several_rates_label_rows_and_missing_codebleu_column(tmp_path):
    root = tmp_path / "runs"
    hist = [{"epoch": 1, "bleu": 1.0, "asr": 0.5}]
    write_result(root, "CE", "BadPre", 0.01, 1, {"bleu": 30.0, "asr": 0.5}, hist)
    write_result(root, "CE", "BadPre", 0.05, 1, {"bleu": 29.0, "asr": 0.9}, hist)
    text = md_unpadded(format_tables(build_tables(load_results(root)), "md"))
    assert "| Method | BadPre BLEU | BadPre ASR |" in text  # no CodeBLEU anywhere -> no column
    assert "| CE @ 1% | 30.00 | 50.00 |" in text
    assert "| CE @ 5% | 29.00 | 90.00 |" in text


def test_authors_bleu_is_a_column_beside_bleu_with_its_note(tmp_path):
    root = tmp_path / "runs"
    hist = [{"epoch": 1, "bleu": 1.0, "asr": 0.5}]
    # two seeds: each cell is their mean, BLEU (30 + 40) / 2 = 35, authors' (20 + 30) / 2 = 25,
    # ASR (50 + 70) / 2 = 60
    seed1 = {"bleu": 30.0, "bleu_authors": 20.0, "asr": 0.5}
    seed2 = {"bleu": 40.0, "bleu_authors": 30.0, "asr": 0.7}
    write_result(root, "CE", "BadPre", 0.05, 1, seed1, hist)
    write_result(root, "CE", "BadPre", 0.05, 2, seed2, hist)
    text = md_unpadded(format_tables(build_tables(load_results(root)), "md"))
    assert "| Method | BadPre BLEU | BadPre BLEU (authors) | BadPre ASR |" in text
    assert "| CE | 35.00 | 25.00 | 60.00 |" in text
    assert "BLEU (authors) 0-100; ASR in %; (authors) = the DeCE authors' BLEU (codebleu" in text


def test_authors_bleu_note_says_what_the_column_is_or_why_it_is_absent():
    assert (
        authors_bleu_note([{"bleu": 1.0}, {"bleu_authors": 2.0}]) == f"(authors) = {AUTHORS_BLEU}."
    )
    absent = authors_bleu_note([{"bleu": 1.0}, {"bleu_authors": None}])
    assert absent.startswith(f"No (authors) column: {AUTHORS_BLEU}, was not reported")
    assert "dece evaluate --predictions-dir" in absent


def test_bad_inputs(tmp_path, hand_results):
    with pytest.raises(ValueError, match="allowed: md, latex, csv"):
        format_tables(build_tables(load_results(hand_results)), "html")
    with pytest.raises(ValueError, match="no finished results"):
        format_tables([], "md")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_results(tmp_path / "nope")
    broken = tmp_path / "broken" / "x"
    broken.mkdir(parents=True)
    (broken / "result.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"result\.json: not valid JSON"):
        load_results(tmp_path / "broken")
