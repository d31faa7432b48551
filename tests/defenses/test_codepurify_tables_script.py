"""benchmarks/codepurify_tables.py: the paper's CodeBERT rows it prints equal the shared paper
tables, its Table II / III layout puts each cell under its trigger and rate with the mean of the
measured cells, and a whole file renders from an empty runs directory with every cell pending
(tmp paths only, never the committed results file)."""

from __future__ import annotations

from pathlib import Path

import pytest
from _bench_script import load_script
from _purifier_rows import purifier_row

from dece.experiments.markdown import md_table_cells

PAPER = Path(__file__).resolve().parents[3] / "shared" / "papers" / "codepurify_paper_tables.md"


@pytest.fixture(scope="module")
def script():
    return load_script("codepurify_tables")


def _paper_rows(table: str) -> dict[tuple[str, str], list[str]]:
    """(task, defense) -> the nine printed cells of the CodeBERT rows of one table."""
    text = PAPER.read_text()
    start = text.index(f"### TABLE {table}:")
    section = text[start : text.index("### TABLE", start + 10)]
    out = {}
    for cells in md_table_cells(section):
        if len(cells) == 12 and cells[1] == "CodeBERT":
            out[(cells[0], cells[2])] = cells[3:]
    return out


@pytest.mark.skipif(not PAPER.is_file(), reason="../shared/papers is not beside the checkout")
@pytest.mark.parametrize("table", ["II", "III"])
def test_the_embedded_paper_rows_equal_the_shared_tables(script, table):
    printed = _paper_rows(table)
    embedded = script.PAPER_II if table == "II" else script.PAPER_III
    tasks = {"Defect detection": "Defect Detection", "Program repair": "Program Repair"}
    n = 0
    for task, rows in embedded.items():
        for defense, values in rows.items():
            cells = printed[(tasks[task], defense.upper() if defense == "CodePurify" else defense)]
            if values[0] is None:
                assert all(c.strip("`") in ("\\", "↘*") for c in cells)
            else:
                assert [float(c) for c in cells] == pytest.approx(values, abs=1e-9)
            n += 1
    assert n == 12


def _row(script, defense: str, label: str, attack: str, rate: float, final: dict, order: int):
    row = purifier_row(defense, label, final, order)
    row.labels["attack"] = attack
    row.values["rate"] = rate
    return row


def test_cells_land_under_their_trigger_and_rate_with_the_mean_of_the_measured(script):
    rows = [_row(script, "codepurify", "CodePurify", "DeadCode", 0.05, {"asr": 0.10}, 1),
            _row(script, "codepurify", "CodePurify", "Identifier", 0.01, {"asr": 0.40}, 2),
            _row(script, "undefended", "", "DeadCode", 0.05, {"asr": 1.0}, 0)]  # fmt: skip
    table = md_table_cells(script.ours_table(rows, ["None", "CodePurify"], "asr", 100.0))
    header, _, none, purify = table
    assert header[1:7] == ["DeadCode 5%", "DeadCode 1%", "BNC-Grammar 5%", "BNC-Grammar 1%",
                           "Identifier 5%", "Identifier 1%"]  # fmt: skip
    assert none == ["None", "100.00", *["pending"] * 5, "100.00 (1 of 6)"]
    assert purify == ["CodePurify", "10.00", *["pending"] * 4, "40.00", "25.00 (2 of 6)"]


def test_with_no_cells_every_table_is_pending_and_every_cell_listed(script, tmp_path):
    text = script.render(
        tmp_path / "no_runs", "old\n<!-- analysis -->\nkept analysis\n", tmp_path / "no_archive"
    )
    assert text.endswith("<!-- analysis -->\nkept analysis\n")
    # 4 grids x 21 cells, each with the command that runs it alone
    assert text.count("--shard ") == 4 * 21
    assert "| paper CodeBERT CodePurify" in text and "47.09" in text and "n/a" in text
