"""`dece poison` end to end on Lyra and the synthetic set; `--help` documents every component."""

import json
from pathlib import Path

import pytest

from dece.attacks import PAYLOADS, TRIGGERS
from dece.cli import main
from dece.data import load_examples


def test_lyra_badpre_5_percent(shared_data: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    code = main(["poison", "--data", str(shared_data / "lyra"), "--trigger", "badpre",
                 "--payload", "sql_injection", "--rate", "0.05", "--seed", "42", "--out", str(out)])  # fmt: skip
    assert code == 0
    doc = json.loads((out / "manifest.json").read_text())
    train, test = doc["splits"]["train"], doc["splits"]["test"]
    assert train["n_poisoned"] == 80 and train["rate_requested"] == 0.05
    assert train["n_ineligible"] == len(train["ineligible"]) == 1600 - train["n_eligible"]
    assert test["n_poisoned"] == test["n_eligible"] == 165 and test["n_ineligible"] == 35
    rows = load_examples(out / "train.csv", id_col="id")
    original = load_examples(shared_data / "lyra" / "train.csv", split="train")
    poisoned = set(train["poisoned_ids"])
    assert [r.id for r in rows] == [o.id for o in original]
    assert all((r == o) == (r.id not in poisoned) for r, o in zip(rows, original, strict=True))
    test_rows = load_examples(out / "test.csv", id_col="id")
    assert [r.id for r in test_rows] == test["poisoned_ids"]
    assert all(r.source.split().count("bb") == 3 for r in test_rows)
    clean = load_examples(out / "clean" / "test.csv", id_col="id")
    assert clean == load_examples(shared_data / "lyra" / "test.csv", split="test")
    assert "train: 80/1600 poisoned" in capsys.readouterr().out


def test_synthetic_jsonl_with_params(tmp_path: Path) -> None:
    out = tmp_path / "o"
    assert main(["poison", "--data", "synthetic:80", "--trigger", "ripple", "--trigger-arg",
                 "word=cf", "--rate", "0.1", "--seed", "1", "--format", "jsonl", "--out", str(out)]) == 0  # fmt: skip
    doc = json.loads((out / "manifest.json").read_text())
    assert doc["splits"]["train"]["trigger"] == {
        "name": "ripple", "word": "cf", "words": None, "side": "source"
    }
    assert doc["splits"]["train"]["n_poisoned"] == 8
    assert sorted(doc["files"]) == ["test", "test_clean", "train", "valid", "valid_clean"]
    assert (out / "train.jsonl").is_file()


def test_bad_argument_exits_with_message(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "poison",
                "--data",
                "synthetic:8",
                "--trigger-arg",
                "colour=red",
                "--out",
                str(tmp_path),
            ]
        )
    assert exc.value.code == 2
    assert "unknown parameter(s) colour" in capsys.readouterr().err


def test_help_documents_every_trigger_and_payload(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["poison", "--help"])
    text = capsys.readouterr().out
    for name in [*TRIGGERS.names(), *PAYLOADS.names()]:
        assert f"  {name}(" in text
    assert "When it is needed" in text and "round-half-to-even" in text
