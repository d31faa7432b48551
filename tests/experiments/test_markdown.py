"""md_table (tabulate's pipe tables) against the hand-joined renderer it replaced: the oracle is
that both give the same cells (split on ``|``, stripped) and the same alignment row, so the
rendering changed in padding only."""

from __future__ import annotations

import pytest
from exp_helpers import EXPECTED_MD, EXPECTED_MD_UNPADDED, make_hand_results
from hypothesis import given, settings
from hypothesis import strategies as st

from dece.experiments import build_tables, format_tables, load_results
from dece.experiments.markdown import md_table, md_table_cells, md_unpadded

_SEPARATOR = {"l": "---|", "r": "---:|", "c": ":---:|"}


def hand_joined(headers: list[str], rows: list[list[str]], align: str) -> str:
    """The renderer every table used before md_table (tables.py, detection_table.py, ...)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "".join(_SEPARATOR[a] for a in align)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def test_report_table_has_the_hand_written_cells(tmp_path):
    text = format_tables(build_tables(load_results(make_hand_results(tmp_path / "runs"))), "md")
    assert text == EXPECTED_MD
    assert md_unpadded(text) == EXPECTED_MD_UNPADDED  # padding is the only difference
    assert md_table_cells(text) == md_table_cells(EXPECTED_MD_UNPADDED)
    assert md_table_cells(text)[1] == ["---"] + ["---:"] * 9  # numbers right-aligned as before


def test_md_table_pads_aligns_and_keeps_cells_as_written():
    text = md_table(["Method", "BLEU", "ASR"], [["CE", "30.00", "80.00†"], ["DeCE", "-", "1e3"]],
                    align="lrc")  # fmt: skip
    assert text.split("\n") == [
        "| Method   |   BLEU |  ASR   |",
        "|:---------|-------:|:------:|",
        "| CE       |  30.00 | 80.00† |",
        "| DeCE     |      - |  1e3   |",
    ]
    assert md_table(["a", "b"], [["x", "y"]]) == "| a   | b   |\n|:----|:----|\n| x   | y   |"


def test_a_table_without_rows_keeps_its_alignment():
    expected = "| Method   |   ASR |\n|:---------|------:|"
    assert md_table(["Method", "ASR"], [], align="lr") == expected


@pytest.mark.parametrize(
    ("headers", "rows", "align", "message"),
    [
        (["a", "b"], [["x"]], "", r"row 0 has 1 cells, the header 2"),
        (["a", "b"], [["x", "y"]], "l", r"align='l': expected one of l/r/c per column \(2\)"),
        (["a"], [["x"]], "x", r"align='x'"),
        (["a", "b"], [["x", "y\nz"]], "", r"row 0, column 'b': a newline"),
    ],
)
def test_bad_tables_are_refused_with_the_row(headers, rows, align, message):
    with pytest.raises(ValueError, match=message):
        md_table(headers, rows, align)


_CELL = st.text(st.characters(codec="ascii", categories=["L", "N", "P", "S", "Zs"],
                              exclude_characters="|") | st.just("†"), max_size=8)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(data=st.data(), columns=st.integers(1, 5), n_rows=st.integers(0, 4))
def test_md_table_has_the_cells_of_the_hand_joined_table(data, columns, n_rows):
    headers = data.draw(st.lists(_CELL, min_size=columns, max_size=columns))
    rows = data.draw(st.lists(st.lists(_CELL, min_size=columns, max_size=columns),
                              min_size=n_rows, max_size=n_rows))  # fmt: skip
    align = data.draw(st.text(st.sampled_from("lrc"), min_size=columns, max_size=columns))
    new, old = md_table(headers, rows, align), hand_joined(headers, rows, align)
    assert md_table_cells(new) == md_table_cells(old)
    assert md_unpadded(new) == md_unpadded(old)
    assert len({len(line) for line in new.split("\n")}) == 1  # padded: every line one width


def test_unpadded_keeps_other_lines_and_reads_only_the_second_line_as_alignment():
    text = "### t\n\n| a | b |\n|:--|--:|\n| - | --- |\n\nnote | not a table"
    assert md_unpadded(text) == "### t\n\n| a | b |\n|---|---:|\n| - | --- |\n\nnote | not a table"
    assert md_table_cells(text) == [["a", "b"], ["---", "---:"], ["-", "---"]]
