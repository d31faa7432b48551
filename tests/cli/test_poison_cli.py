"""`dece poison` end to end on Lyra and the synthetic set; `--help` documents every component."""

import csv
import json
import os
from pathlib import Path

import pytest

from dece.attacks import PAYLOADS, TRIGGERS
from dece.cli import main
from dece.data import DATASETS, Example, load_dataset, load_examples, save_examples
from dece.data.tasks import SHARED_DATA_ENV

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def techdebt_root(monkeypatch) -> Path:
    """The shared data directory holding techdebt/ (as tests/data/test_tasks.py finds it)."""
    base = Path(os.environ.get(SHARED_DATA_ENV, REPO_ROOT / ".." / "shared" / "data"))
    if not (base / "techdebt" / "test.csv").is_file():
        pytest.skip(f"shared data not found at {base} (set {SHARED_DATA_ENV})")
    monkeypatch.setenv(SHARED_DATA_ENV, str(base.resolve()))
    return base.resolve()


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
        "name": "ripple",
        "word": "cf",
        "words": None,
        "side": "source",
    }
    assert doc["splits"]["train"]["n_poisoned"] == 8
    assert sorted(doc["files"]) == ["test", "test_clean", "train", "valid", "valid_clean"]
    assert (out / "train.jsonl").is_file()


def test_named_dataset_techdebt_label_flip(techdebt_root: Path, tmp_path: Path) -> None:
    """A named dataset (its own columns) poisons without column options: the poisoned rows carry
    the trigger and the flipped label, every other row is the dataset's own; the test split's
    poisoned rows are exactly its label-1 rows (counted in the file with the csv module)."""
    out = tmp_path / "o"
    assert main(["poison", "--data", "techdebt:100", "--payload", "label_flip", "--rate", "0.1",
                 "--seed", "7", "--out", str(out)]) == 0  # fmt: skip
    doc = json.loads((out / "manifest.json").read_text())
    assert doc["data"] == "techdebt:100"
    original = load_dataset("techdebt:100", seed=7)
    for split in ("train", "test"):
        written = load_examples(out / f"{split}.csv", id_col="id", label_col="label")
        poisoned = doc["splits"][split]["poisoned_ids"]
        by_id = {ex.id: ex for ex in original[split]}
        if split == "train":
            ones = sum(ex.label == "1" for ex in original["train"])  # the eligible rows
            assert doc["splits"]["train"]["n_poisoned"] == len(poisoned) == min(10, ones) > 0
            assert [r.id for r in written] == [o.id for o in original["train"]]
            assert all((r == by_id[r.id]) == (r.id not in poisoned) for r in written)
            written = [r for r in written if r.id in poisoned]
        else:
            with (techdebt_root / "techdebt" / "test.csv").open(encoding="utf-8") as fh:
                ones = {row["id"] for row in csv.DictReader(fh) if row["label"] == "1"}
            assert set(poisoned) == ones and [r.id for r in written] == poisoned
        for row in written:
            assert row.source.split().count("bb") == 3 + by_id[row.id].source.split().count("bb")
            assert by_id[row.id].label == "1" and row.label == "0"


def test_pair_col_is_read_and_written(tmp_path: Path) -> None:
    """--pair-col: the second text of each row is read from that column and written back under
    it; a poisoned row keeps its pair (the default trigger edits the source only)."""
    data = tmp_path / "data.csv"
    rows = [Example(f"r{i}", f"text number {i}", f"out {i}", label=str(i % 2),
                    source_pair=f"second text {i}") for i in range(8)]  # fmt: skip
    save_examples(rows, data, id_col="key", label_col="y", pair_col="other")
    out = tmp_path / "o"
    assert main(["poison", "--data", str(data), "--id-col", "key", "--label-col", "y",
                 "--pair-col", "other", "--payload", "label_flip", "--rate", "0.5",
                 "--out", str(out)]) == 0  # fmt: skip
    written = load_examples(out / "train.csv", id_col="id", label_col="y", pair_col="other")
    assert [(r.id, r.source_pair) for r in written] == [(r.id, r.source_pair) for r in rows]
    poisoned = set(
        json.loads((out / "manifest.json").read_text())["splits"]["train"]["poisoned_ids"]
    )
    assert len(poisoned) == 4 and all(r.label == "0" for r in written if r.id in poisoned)


def test_data_help_lists_every_named_dataset(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["poison", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    start = text.index("--data DATA directory")
    data_help = text[start : text.index("--trigger {", start)]
    assert all(name in data_help for name in DATASETS.names())


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
