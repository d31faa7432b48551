"""``dece report`` and ``dece demo`` (plumbing, with the fake cell runner) from the CLI."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from dece.cli import main
from dece.experiments.demo import QUICK_VERDICT
from dece.experiments.markdown import md_unpadded

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
from exp_helpers import EXPECTED_CSV, EXPECTED_LATEX, EXPECTED_MD, make_hand_results  # noqa: E402

FAKE = "dece.experiments.fake:fake_run_cell"


@pytest.fixture
def hand_results(tmp_path: Path) -> Path:
    return make_hand_results(tmp_path / "runs")


@pytest.mark.parametrize(
    ("fmt", "expected", "suffix"),
    [("md", EXPECTED_MD, ".md"), ("latex", EXPECTED_LATEX, ".tex"), ("csv", EXPECTED_CSV, ".csv")],
)
def test_report_prints_and_writes_the_table(hand_results, tmp_path, capsys, fmt, expected, suffix):
    out = tmp_path / "rep"
    assert main(["report", str(hand_results), "--format", fmt, "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out == expected
    assert (out / f"report{suffix}").read_text() == expected
    assert (out / "early_learning.png").is_file() and (out / "asr_vs_bleu.png").is_file()


def test_report_defaults_to_runs_dir_report_and_no_plots(hand_results, capsys):
    assert main(["report", str(hand_results), "--no-plots"]) == 0
    assert (hand_results / "report" / "report.md").read_text() == EXPECTED_MD
    assert not list((hand_results / "report").glob("*.png"))


def test_report_on_missing_dir_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["report", str(tmp_path / "nothing")])
    assert info.value.code == 2
    assert "does not exist" in capsys.readouterr().err


def test_demo_plumbing_with_fake_runner(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "-o", str(out), "--runner", FAKE, "--no-progress"]) == 0
    printed = md_unpadded(capsys.readouterr().out)
    # fake runner closed forms (1 epoch, seed 0): CE ASR min(.95, .3 + .25) = 55%;
    # DeCE (alpha_base 0.9, eps 0.1) 0.01 + 0.1 * 0.1 * 0.9 = 1.9%; BLEU 50 + 0 and 48 + 0.
    assert "| CE | 50.00 | 25.00 | 55.00 |" in printed
    assert "| DeCE | 48.00 | 24.00 | 1.90 |" in printed
    # --quick is a plumbing check: no verdict, and it says so
    assert QUICK_VERDICT in printed and "expected effect" not in printed
    report = md_unpadded((out / "report.md").read_text())
    assert "| CE | 50.00 | 25.00 | 55.00 |" in report and "early_learning.png" in report
    assert (out / "early_learning.png").read_bytes()[:4] == b"\x89PNG"
    # a rerun reuses the finished cells
    cells = sorted((out / "cells").glob("*/result.json"))
    assert len(cells) == 2
    stamps = [p.stat().st_mtime_ns for p in cells]
    assert main(["demo", "--quick", "-o", str(out), "--runner", FAKE, "--no-progress"]) == 0
    assert [p.stat().st_mtime_ns for p in cells] == stamps


def test_demo_config_file_matches_builtin():
    from dece.experiments import load_grid_config
    from dece.experiments.demo import demo_config

    path = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"
    assert load_grid_config(path).to_dict() == demo_config().to_dict()
    assert yaml.safe_load(path.read_text())["name"] == "demo"
