"""Loaders: round trips, ids, discovery, and one clear error per bad-input case."""

import json
from pathlib import Path

import pytest

from dece.data import (
    DataError,
    DataFileNotFoundError,
    Example,
    discover_splits,
    load_dataset,
    load_examples,
    load_splits,
    save_examples,
)

ROWS = [
    Example("train-0", 'say "hi", twice', "def f ( ) :\n\t print ( 'hi' )"),
    Example("train-1", "plain", "x = 1"),
]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_round_trip_keeps_text_and_ids(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"train{suffix}"
    save_examples(ROWS, path)
    assert load_examples(path) == ROWS  # ids default to f"{stem}-{row}"
    assert [e.id for e in load_examples(path, split="x")] == ["x-0", "x-1"]


def test_csv_format_written_by_hand(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    save_examples(ROWS, path)
    expected = 'src,tgt\n"say ""hi"", twice","def f ( ) :\n\t print ( \'hi\' )"\nplain,x = 1\n'
    assert path.read_text(encoding="utf-8") == expected


def test_id_and_label_columns(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(
        '{"key": "a", "code": "x", "doc": "y", "y": 1}\n{"key": "b", "code": "z", "doc": "w", "y": 0}\n'
    )
    got = load_examples(path, source_col="code", target_col="doc", id_col="key", label_col="y")
    assert got == [Example("a", "x", "y", "1"), Example("b", "z", "w", "0")]
    out = tmp_path / "o.csv"
    save_examples(got, out, id_col="id")
    assert out.read_text().splitlines()[0] == "id,src,tgt,label"
    assert load_examples(out, id_col="id", label_col="label") == got


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataFileNotFoundError, match="nope.csv: no such file"):
        load_examples(tmp_path / "nope.csv")
    with pytest.raises(FileNotFoundError):
        load_splits(tmp_path / "nothing")


def test_missing_column(tmp_path: Path) -> None:
    path = _write(tmp_path, "a.csv", b"src,target\nx,y\n")
    with pytest.raises(DataError, match=r"a\.csv: header has no column 'tgt'"):
        load_examples(path)
    path = _write(tmp_path, "a.jsonl", b'{"src": "x", "tgt": "y"}\n{"src": "x"}\n')
    with pytest.raises(DataError, match=r"a\.jsonl: row 1 has no column 'tgt'"):
        load_examples(path)


@pytest.mark.parametrize(
    ("name", "data"), [("e.csv", b""), ("e.csv", b"src,tgt\n"), ("e.jsonl", b"\n")]
)
def test_empty_file(tmp_path: Path, name: str, data: bytes) -> None:
    with pytest.raises(DataError, match=r"e\.(csv|jsonl): empty file"):
        load_examples(_write(tmp_path, name, data))


def test_undecodable_bytes_name_the_row(tmp_path: Path) -> None:
    path = _write(tmp_path, "bad.csv", b'src,tgt\na,b\n"multi\nline",c\nd,\xff\xfe\n')
    with pytest.raises(
        DataError, match=r"bad\.csv: row 2, column 'tgt': undecodable bytes .* \(line 5\)"
    ):
        load_examples(path)


@pytest.mark.parametrize("cell", ["", "  ", "NaN", "nan", "null"])
def test_empty_or_nan_cell_names_row_and_column(tmp_path: Path, cell: str) -> None:
    path = _write(tmp_path, "c.csv", f"src,tgt\na,b\nc,{cell}\n".encode())
    with pytest.raises(DataError, match=r"c\.csv: row 1, column 'tgt': empty or NaN cell"):
        load_examples(path)


def test_jsonl_null_nan_and_bad_lines(tmp_path: Path) -> None:
    path = _write(tmp_path, "j.jsonl", b'{"src": "a", "tgt": null}\n')
    with pytest.raises(DataError, match="row 0, column 'tgt': empty or NaN"):
        load_examples(path)
    path = _write(tmp_path, "j.jsonl", b'{"src": "a", "tgt": NaN}\n')
    with pytest.raises(DataError, match="row 0, column 'tgt': empty or NaN"):
        load_examples(path)
    path = _write(tmp_path, "j.jsonl", b'{"src": "a", "tgt": "b"}\n{oops\n')
    with pytest.raises(DataError, match=r"row 1 \(line 2\) is not JSON"):
        load_examples(path)


def test_duplicate_ids_and_extra_cells(tmp_path: Path) -> None:
    path = _write(tmp_path, "d.csv", b"id,src,tgt\nk,a,b\nk,c,d\n")
    with pytest.raises(DataError, match="row 1, column 'id': duplicate id 'k'"):
        load_examples(path, id_col="id")
    path = _write(tmp_path, "x.csv", b"src,tgt\na,b,c\n")
    with pytest.raises(DataError, match="row 0 has 3 cells"):
        load_examples(path)


def test_unsupported_suffix(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unsupported suffix '.txt'"):
        load_examples(_write(tmp_path, "a.txt", b"x"))


def test_discover_splits(tmp_path: Path) -> None:
    for name in ("train.csv", "dev.jsonl", "test.csv", "notes.csv"):
        save_examples(ROWS, tmp_path / name)
    assert discover_splits(tmp_path) == {
        "train": tmp_path / "train.csv",
        "valid": tmp_path / "dev.jsonl",
        "test": tmp_path / "test.csv",
    }
    splits = load_splits(tmp_path)
    assert [e.id for e in splits["valid"]] == ["valid-0", "valid-1"]
    save_examples(ROWS, tmp_path / "valid.csv")
    with pytest.raises(DataError, match="several files for split 'valid'"):
        discover_splits(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no split files found"):
        discover_splits(empty)


def test_load_dataset_single_file_and_bad_spec(tmp_path: Path) -> None:
    save_examples(ROWS, tmp_path / "all.jsonl")
    splits = load_dataset(tmp_path / "all.jsonl")
    assert list(splits) == ["train"] and [e.id for e in splits["train"]] == ["train-0", "train-1"]
    with pytest.raises(ValueError, match="synthetic:N"):
        load_dataset("synthetic:abc")
    json.dumps([e.__dict__ for e in splits["train"]])  # plain data


def test_shared_lyra_and_bugs2fix_load_every_row(shared_data: Path, tmp_path: Path) -> None:
    lyra = load_dataset(shared_data / "lyra")
    assert {k: len(v) for k, v in lyra.items()} == {"train": 1600, "valid": 200, "test": 200}
    bugs = load_dataset(shared_data / "bugs2fix")
    assert {k: len(v) for k, v in bugs.items()} == {"valid": 5835, "test": 5835}
    assert lyra["test"][7].id == "test-7" and bugs["valid"][-1].id == "valid-5834"
    # Writing Lyra back reproduces the original file byte for byte.
    save_examples(lyra["train"], tmp_path / "train.csv")
    assert (tmp_path / "train.csv").read_bytes() == (
        shared_data / "lyra" / "train.csv"
    ).read_bytes()
