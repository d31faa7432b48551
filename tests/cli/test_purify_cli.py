"""``dece purify``: a user's file through a purifier, with and without a victim; one output row per
input row, in order, with score, decision, changed spans and (with a victim) the prediction."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

from dece.cli import main
from dece.data import Example, save_examples

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
from test_train_support import save_tiny_seq2seq  # noqa: E402

JAVA = [
    "public int METHOD_1 ( int VAR_1 ) { int VAR = 0 ; return VAR_1 + 1 ; }",
    "public void METHOD_1 ( ) { VAR_1 . add ( VAR_2 ) ; }",
]


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_purify_replayed_paraphrases_without_a_model(tmp_path):
    inputs, para = tmp_path / "in.csv", tmp_path / "para.csv"
    save_examples([Example("t0", "get bb rows", "x"), Example("t1", "count", "y")], inputs,
                  source_col="src", target_col="tgt", id_col="id")  # fmt: skip
    save_examples([Example("t1", "count them", "y"), Example("t0", "fetch rows", "x")], para,
                  id_col="id")  # fmt: skip
    out = tmp_path / "out.jsonl"
    code = main(["purify", "--data", str(inputs), "--id-col", "id", "--defense", "paraphrase",
                 "--arg", f"file={para}", "--arg", "id_col=id", "--out", str(out)])  # fmt: skip
    assert code == 0
    rows = _read(out)
    assert [(r["id"], r["source"], r["original_source"]) for r in rows] == [
        ("t0", "fetch rows", "get bb rows"),
        ("t1", "count them", "count"),
    ]
    assert rows[0]["detected"] is True and rows[0]["changes"][0]["old"] == "get bb rows"
    assert "prediction" not in rows[0]


@pytest.mark.codebleu
def test_purify_codepurify_with_a_checkpoint_victim(tmp_path, monkeypatch):
    pytest.importorskip("tree_sitter_java")
    monkeypatch.setenv("DECE_CACHE_DIR", str(tmp_path / "cache"))
    model = save_tiny_seq2seq(tmp_path / "model")
    inputs = tmp_path / "in.csv"
    save_examples([Example(f"r{i}", s, s) for i, s in enumerate(JAVA)], inputs, id_col="id")
    out = tmp_path / "out.jsonl"
    code = main(["purify", "--model", str(model), "--data", str(inputs), "--id-col", "id",
                 "--defense", "codepurify", "--arg", f"infiller={model}", "--arg",
                 "threshold=100", "--arg", "statistic=entropy", "--max-new-tokens", "8",
                 "--out", str(out)])  # fmt: skip
    assert code == 0
    rows = _read(out)
    assert [r["id"] for r in rows] == ["r0", "r1"]
    for row, src in zip(rows, JAVA, strict=True):
        assert row["original_source"] == src and row["detected"] is True  # entropy < 100
        assert row["changes"] and all(
            src[c["start"] : c["end"]] == c["old"] for c in row["changes"]
        )  # input offsets
        assert isinstance(row["prediction"], str) and isinstance(row["score"], float)
    again = tmp_path / "again.jsonl"  # predictions and scores now come from the disk cache
    assert main(["purify", "--model", str(model), "--data", str(inputs), "--id-col", "id",
                 "--defense", "codepurify", "--arg", f"infiller={model}", "--arg",
                 "threshold=100", "--arg", "statistic=entropy", "--max-new-tokens", "8",
                 "--out", str(again)]) == 0  # fmt: skip
    assert _read(again) == rows
    assert len(list((tmp_path / "cache" / "codepurify").glob("*.sqlite"))) == 1


def test_purify_rejects_bad_args(tmp_path, capsys):
    inputs = tmp_path / "in.csv"
    save_examples([Example("a", "x", "y")], inputs)
    for extra, message in ((["--defense", "none", "--arg", "oops"], "expected KEY=VALUE"),
                           (["--defense", "keyword"], "not a purifier")):  # fmt: skip
        with pytest.raises(SystemExit) as exc:
            main(["purify", "--data", str(inputs), *extra, "--out", str(tmp_path / "o.jsonl")])
        assert exc.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_purify_reads_inputs_without_a_target_column(tmp_path, capsys, suffix):
    """--data needs only a source column: a file of inputs without `tgt` is read in full, in
    order (the identity purifier `none` gives each input back); a missing source column is
    still an error naming the file and the column."""
    texts = ["get bb rows", "count, them", 'say "hi"']
    inputs = tmp_path / f"in{suffix}"
    if suffix == ".csv":
        with inputs.open("w", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerows([["src"], *([t] for t in texts)])
    else:
        inputs.write_text("".join(json.dumps({"src": t}) + "\n" for t in texts))
    out = tmp_path / "out.jsonl"
    assert main(["purify", "--data", str(inputs), "--defense", "none", "--out", str(out)]) == 0
    rows = _read(out)
    assert [(r["id"], r["source"], r["original_source"]) for r in rows] == [
        (f"test-{i}", t, t) for i, t in enumerate(texts)
    ]
    with pytest.raises(SystemExit) as exc:
        main(["purify", "--data", str(inputs), "--source-col", "code", "--defense", "none",
              "--out", str(out)])  # fmt: skip
    assert exc.value.code == 2 and f"{inputs}: " in (err := capsys.readouterr().err)
    assert "no column 'code'" in err


def test_purify_filter_error_ends_with_a_newline(tmp_path, capsys):
    inputs = tmp_path / "in.csv"
    save_examples([Example("a", "x", "y")], inputs)
    with pytest.raises(SystemExit) as exc:
        main(["purify", "--data", str(inputs), "--defense", "bki", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert err == "dece purify: error: --defense 'bki' is a training-time filter, not a purifier\n"
