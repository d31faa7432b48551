"""Bad inputs from the command line (issue 14, item 6): each gets a message naming the file,
row, key or argument, exit code 2 and no traceback, and loses nothing; and what ``dece poison``
writes (long rows, newlines, quotes, line separators) reads back."""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from dece.cli import main
from dece.data import Example, load_examples, save_examples
from dece.experiments.markdown import md_unpadded

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
from exp_helpers import make_hand_results, write_result  # noqa: E402

MIB = 1 << 20
FAKE = "dece.experiments.fake:fake_run_cell"


def _exit_2(argv: list[str], capsys) -> str:
    """Runs the CLI expecting exit code 2; returns stderr (which must hold no traceback)."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    assert "Traceback" not in err
    return err


# --------------------------------------------------------------------------- dece poison
def _dataset(root: Path, texts: list[str], suffix: str = ".csv") -> Path:
    root.mkdir(parents=True)
    for split, n in (("train", 12), ("valid", 4), ("test", 4)):
        rows = [
            Example(f"{split}-{i}", f"write a query {i} {texts[i % len(texts)]}",
                    f'def f{i} ( conn ) :\n\t conn . execute ( " select * from t where a = : a " )'
                    f'  # {texts[(i + 1) % len(texts)]}')
            for i in range(n)
        ]  # fmt: skip
        save_examples(rows, root / f"{split}{suffix}")
    return root


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_poison_writes_what_it_reads_back(tmp_path, fmt, capsys):
    """A 1 MiB row, embedded newlines, quotes, commas and U+2028/U+2029/U+0085 survive
    `dece poison` (input CSV -> output in either format), clean copies byte for byte."""
    texts = ["x" * MIB, 'say "hi",\nthen\r\nleave', "sep\u2028a\u2029b\x85c", "plain"]
    data = _dataset(tmp_path / "data", texts)
    out = tmp_path / "out"
    argv = ["poison", "--data", str(data), "--rate", "0.25", "--seed", "3", "--format", fmt,
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    doc = json.loads((out / "manifest.json").read_text())
    for split in ("train", "valid", "test"):
        original = load_examples(data / f"{split}.csv", split=split)
        written = load_examples(out / f"{split}.{fmt}", id_col="id")
        poisoned = set(doc["splits"][split]["poisoned_ids"])
        if split == "train":
            assert [r.id for r in written] == [r.id for r in original]
            unchanged = [r for r in written if r.id not in poisoned]
            assert unchanged == [r for r in original if r.id not in poisoned]
            assert len(unchanged) < len(written)
        else:
            assert [r.id for r in written] == doc["splits"][split]["poisoned_ids"]
            assert load_examples(out / "clean" / f"{split}.{fmt}", id_col="id") == original
    assert any(len(r.source) > MIB for r in load_examples(out / f"train.{fmt}", id_col="id"))


def test_poison_reads_a_jsonl_input_with_raw_line_separators(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    rows = [{"src": f"q{i}\u2028more\u2029x\x85y", "tgt": f"select {i}"} for i in range(8)]
    (data / "train.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    assert "\u2028" in (data / "train.jsonl").read_text(encoding="utf-8")
    assert main(["poison", "--data", str(data), "--rate", "0", "--out", str(tmp_path / "o")]) == 0
    back = load_examples(tmp_path / "o" / "train.csv", id_col="id")
    assert [(r.source, r.target) for r in back] == [(r["src"], r["tgt"]) for r in rows]


def test_poison_out_naming_a_file_exits_2_and_keeps_the_file(tmp_path, capsys):
    target = tmp_path / "precious.csv"
    target.write_text("keep me\n")
    err = _exit_2(["poison", "--data", "synthetic:16", "--out", str(target)], capsys)
    assert f"--out {target} exists and is not a directory" in err
    err = _exit_2(["poison", "--data", "synthetic:16", "--out", str(target / "sub")], capsys)
    assert f"--out {target / 'sub'}: {target} is a file, not a directory" in err
    assert target.read_text() == "keep me\n"


def test_poison_out_holding_the_other_format_exits_2(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["poison", "--data", "synthetic:16", "--out", str(out)]) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    err = _exit_2(["poison", "--data", "synthetic:16", "--format", "jsonl", "--out", str(out)],
                  capsys)  # fmt: skip
    assert f"--out {out} already holds clean/test.csv, clean/valid.csv, test.csv, train.csv" in err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_poison_bad_data_row_names_file_row_and_column(tmp_path, capsys):
    data = tmp_path / "train.csv"
    data.write_text("src,tgt\na,b\nc,\n")
    err = _exit_2(["poison", "--data", str(data), "--out", str(tmp_path / "o")], capsys)
    assert f"{data}: row 1, column 'tgt': empty or NaN cell" in err
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------- dece train
@pytest.mark.parametrize(
    ("config", "overrides", "expected"),
    [
        ({"poison": "badpre"}, [], "config key 'poison' expects a mapping (keys: trigger, "),
        ({"poison": {"trigger": "badpre", "rate": "abc"}}, [],
         "config key 'poison.rate' expects float, got 'abc'"),
        ({"poison": {"trigger": "badpre"}}, ["poison.rate=abc"],
         "config key 'poison.rate' expects float, got 'abc'"),
        ({"eval_poison": ["badpre"]}, [], "config key 'eval_poison' expects a mapping"),
        ({"defense": "keyword"}, [], "config key 'defense' expects a mapping (keys: name, args)"),
        ({"poison": {"seed": 1.5}}, [], "config key 'poison.seed' expects int, got 1.5"),
        ({"learning_rate": "1e-4"}, [], "got '1e-4' (YAML reads a number like 1e-4 as a string"),
    ],
)  # fmt: skip
def test_train_config_errors_name_file_and_key(tmp_path, capsys, config, overrides, expected):
    out = tmp_path / "run"
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump({"output_dir": str(out), **config}))
    err = _exit_2(["train", "--config", str(path), *overrides], capsys)
    assert f"config file {path}: " in err and expected in err, err
    assert not out.exists()


# --------------------------------------------------------------------------- dece run
def test_run_validates_training_values_before_any_cell(tmp_path, capsys):
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump({
        "name": "g", "datasets": ["synthetic:64"], "attacks": [{"trigger": "badpre"}],
        "rates": [0.05], "losses": [{"name": "ce"}], "seeds": [1],
        "training": {"num_epochs": "ten"}, "runner": FAKE,
    }))  # fmt: skip
    out = tmp_path / "runs"
    err = _exit_2(["run", str(path), "-o", str(out), "--no-progress"], capsys)
    assert str(path) in err and "'training.num_epochs'" in err and "got 'ten'" in err
    assert not out.exists()  # no cell directory (nor the output directory) was created


# --------------------------------------------------------------------------- dece report
def _copy_cell_with_asr(runs: Path, dest: Path, asr: float) -> Path:
    """A second result of the first CE BadPre cell, under ``dest``, with another ASR."""
    src = next(p.parent for p in sorted(runs.glob("CE-BadPre-0.05-1-*/result.json")))
    copy = dest / src.name
    shutil.copytree(src, copy)
    result = json.loads((copy / "result.json").read_text())
    result["final"]["asr"] = asr
    result["finished_at"] = "2030-01-01T00:00:00+00:00"
    (copy / "result.json").write_text(json.dumps(result))
    return copy


def test_report_refuses_two_results_of_one_cell_naming_both(tmp_path, capsys):
    runs = make_hand_results(tmp_path / "runs")
    original = next(runs.glob("CE-BadPre-0.05-1-*"))
    copy = _copy_cell_with_asr(runs, runs / "again", 0.0)
    err = _exit_2(["report", str(runs), "--no-plots"], capsys)
    assert "1 cell(s) have more than one result" in err
    assert str(original / "result.json") in err and str(copy / "result.json") in err
    assert "move or delete the other directory" in err
    assert not (runs / "report").exists()  # nothing written from a wrong table
    # Resolved as the message says (a hidden directory is skipped): the table has 90.00, the
    # one result of that cell, averaged with seed 2 (80.00) to 85.00 as before.
    copy.parent.rename(runs / ".again")
    assert main(["report", str(runs), "--no-plots"]) == 0
    assert "| CE | 41.00 | 31.00 | 85.00 |" in md_unpadded(capsys.readouterr().out)


# --------------------------------------------------------------------------- NaN in tables
def test_nan_metrics_are_shown_and_counted_in_a_footnote(tmp_path, capsys):
    """Issue 25: a NaN seed is left out of its mean but never silently: the mean is marked and
    the footnote counts it; a cell whose every seed is NaN shows NaN (not "-", no result)."""
    runs = tmp_path / "runs"
    history = [{"epoch": 1, "bleu": 1.0, "asr": 0.5}]
    nan = float("nan")
    write_result(runs, "CE", "BadPre", 0.05, 1, {"bleu": 40.0, "asr": nan}, history)
    write_result(runs, "CE", "BadPre", 0.05, 2, {"bleu": 42.0, "asr": 0.8}, history)
    write_result(runs, "DeCE", "BadPre", 0.05, 1, {"bleu": nan, "asr": nan}, history)
    assert "NaN" in next(runs.glob("DeCE-*/result.json")).read_text()  # stored as JSON NaN
    counts = "3 NaN value(s) left out (CE, BadPre ASR: 1 of 2 seed(s); DeCE, BadPre BLEU: 1 of 1"
    for fmt, ce, dece, note in [
        ("md", "| CE | 41.00 | 80.00† |", "| DeCE | NaN | NaN |", f"† mean of the seeds whose "
         f"value is a number: {counts} seed(s) (all NaN); DeCE, BadPre ASR: 1 of 1 seed(s)"),
        ("latex", r"CE & 41.00 & 80.00$^+$ \\", r"DeCE & NaN & NaN \\", counts),
        ("csv", "lyra,tiny-seq2seq,CE,41.00,80.00,BadPre ASR: 1 of 2 seed(s) NaN",
         "lyra,tiny-seq2seq,DeCE,NaN,NaN,BadPre BLEU: 1 of 1 seed(s) NaN; BadPre ASR: 1 of 1",
         ",nan_left_out\n"),
    ]:  # fmt: skip
        assert main(["report", str(runs), "--format", fmt, "--no-plots"]) == 0
        text = md_unpadded(capsys.readouterr().out)
        assert ce in text and dece in text and note in text, text
    assert math.isnan(
        json.loads(next(runs.glob("CE-*-1-*/result.json")).read_text())["final"]["asr"]
    )


def test_report_on_a_non_numeric_metric_names_the_file_and_key(tmp_path, capsys):
    runs = tmp_path / "runs"
    history = [{"epoch": 1, "bleu": 1.0, "asr": 0.5}]
    write_result(runs, "CE", "BadPre", 0.05, 1, {"bleu": 40.0, "asr": "high"}, history)
    err = _exit_2(["report", str(runs), "--no-plots"], capsys)
    path = next(runs.glob("CE-*/result.json"))
    assert f"{path}: key 'final.asr': expected a number, got str 'high'" in err, err
    assert not (runs / "report").exists()


# --------------------------------------------------------------------------- dece evaluate
def _prediction_files(tmp_path: Path, empty: str) -> Path:
    pred = tmp_path / "predictions"
    pred.mkdir()
    row = {"id": "test-0", "source": "s", "prediction": "a b c d e f", "reference": "a b c d e f"}
    for name in ("test_clean.jsonl", "test_poisoned.jsonl"):
        (pred / name).write_text("" if name == empty else json.dumps(row) + "\n")
    return pred


def test_evaluate_on_an_empty_clean_predictions_file_exits_2_naming_it(tmp_path, capsys):
    pred = _prediction_files(tmp_path, "test_clean.jsonl")
    err = _exit_2(["evaluate", "--predictions-dir", str(pred), "--no-codebleu"], capsys)
    assert f"{pred / 'test_clean.jsonl'}: no predictions (empty file)" in err
    assert not (pred / "metrics.json").exists()


def test_evaluate_with_no_triggered_rows_scores_quality_and_no_asr(tmp_path, capsys):
    # a poisoned test set the trigger applied to nowhere is empty: quality is still scored
    # (identical prediction and reference: BLEU 100), the ASR is absent rather than 0 or an error
    pred = _prediction_files(tmp_path, "test_poisoned.jsonl")
    assert main(["evaluate", "--predictions-dir", str(pred), "--no-codebleu"]) == 0
    metrics = json.loads((pred / "metrics.json").read_text())
    assert metrics["bleu"] == pytest.approx(100.0) and metrics["exact_match"] == 1.0
    assert "asr" not in metrics
