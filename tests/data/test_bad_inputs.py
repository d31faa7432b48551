"""Bad inputs to the loaders (issue 14, item 6): what must load (long rows, line separators
inside JSON strings) loads, and every refused row is named by file, row, column and cause."""

from __future__ import annotations

import csv
import json
import re
import threading
from pathlib import Path

import pytest

from dece._jsonl import read_jsonl
from dece.data import DataError, Example, load_examples, save_examples
from dece.data._readers import csv_field_limit

MIB = 1 << 20
SEPARATORS = "a\u2028b\u2029c\x85d\x0be\x0cf\x1cg"  # str.splitlines() cuts at each of these


def _write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def _refused(path: Path, *parts: str, **columns) -> str:
    """Loads ``path`` expecting a DataError whose message names the file and each of ``parts``."""
    with pytest.raises(DataError) as info:
        load_examples(path, **columns)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    for part in parts:
        assert part in message, (part, message)
    return message


# --------------------------------------------------------------------------- long rows
@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_1_mib_row_round_trips(tmp_path, suffix):
    big = "x = '" + 'é",' * (MIB // 3) + "'\n"  # quotes, commas and a newline: quoted in CSV
    rows = [Example("train-0", "short", "y"), Example("train-1", big, big[::-1])]
    path = tmp_path / f"train{suffix}"
    save_examples(rows, path)
    assert path.stat().st_size > 2 * MIB
    limit = csv.field_size_limit()
    assert limit < len(big)  # the default limit (128 KiB) would refuse it
    assert load_examples(path) == rows
    assert csv.field_size_limit() == limit  # the process-global limit is restored


def test_the_csv_limit_is_raised_only_while_reading(tmp_path):
    limit = csv.field_size_limit()
    path = _write(tmp_path, "t.csv", "src,tgt\n" + "a" * (limit + 10) + ",b\nc,\n")
    _refused(path, "row 1, column 'tgt': empty or NaN cell")  # an error after the long row
    assert csv.field_size_limit() == limit
    with csv_field_limit(limit + 5):
        assert csv.field_size_limit() == limit + 5
        with csv_field_limit(10):  # never lowered
            assert csv.field_size_limit() == limit + 5
    assert csv.field_size_limit() == limit


def test_concurrent_loads_of_long_rows_all_succeed(tmp_path):
    """Two threads reading long rows never restore each other's limit mid-parse."""
    paths = []
    for i in range(4):
        path = tmp_path / f"p{i}.csv"
        save_examples([Example("p-0", "s" * (300_000 + i), "t")], path)
        paths.append(path)
    errors: list[BaseException] = []

    def load(path: Path) -> None:
        try:
            for _ in range(5):
                assert len(load_examples(path)[0].source) >= 300_000
        except BaseException as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=load, args=(p,)) for p in paths]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


# --------------------------------------------------------------------------- line separators
def test_jsonl_keeps_line_separators_inside_strings(tmp_path):
    """Raw U+2028/U+2029/U+0085 (legal inside JSON strings) do not end a record."""
    raw = json.dumps({"src": SEPARATORS, "tgt": "t\u2028u"}, ensure_ascii=False)
    assert "\u2028" in raw and "\x85" in raw
    path = _write(tmp_path, "s.jsonl", raw + "\n" + raw + "\n")
    assert len(SEPARATORS.splitlines()) > 1  # what a splitlines() reader would have cut
    assert load_examples(path) == [
        Example("s-0", SEPARATORS, "t\u2028u"),
        Example("s-1", SEPARATORS, "t\u2028u"),
    ]
    assert read_jsonl(path) == [{"src": SEPARATORS, "tgt": "t\u2028u"}] * 2


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_embedded_newlines_quotes_and_separators_round_trip(tmp_path, suffix):
    texts = ['a "quoted", word', "two\nlines\r\nand\rCR", "sep\u2028x\u2029y\x85z", "'\"\"'", ","]
    rows = [Example(f"train-{i}", t, t[::-1]) for i, t in enumerate(texts)]
    path = tmp_path / f"train{suffix}"
    save_examples(rows, path)
    assert load_examples(path) == rows


def test_read_jsonl_names_the_line_of_undecodable_bytes(tmp_path):
    path = _write(tmp_path, "m.jsonl", b'{"epoch": 1}\n{"epoch": "\xff"}\n')
    with pytest.raises(ValueError, match=r"m\.jsonl: line 2: undecodable bytes b'\\xff' at byte"):
        read_jsonl(path)


# --------------------------------------------------------------------------- refused rows
@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
@pytest.mark.parametrize(("cell", "shown"), [("", ""), ("NaN", " ('NaN' reads as missing)")])
def test_empty_or_nan_cell(tmp_path, suffix, cell, shown):
    if suffix == ".csv":
        path = _write(tmp_path, "c.csv", f"src,tgt\na,b\nc,{cell}\n")
    else:
        path = _write(
            tmp_path, "c.jsonl", f'{{"src": "a", "tgt": "b"}}\n{{"src": "c", "tgt": "{cell}"}}\n'
        )
    _refused(path, f"row 1, column 'tgt': empty or NaN cell{shown}")


def test_missing_column(tmp_path):
    path = _write(tmp_path, "m.csv", "src,target\nx,y\n")
    _refused(path, "header has no column 'tgt'", "(columns: src, target)")
    path = _write(tmp_path, "m.jsonl", '{"src": "x", "tgt": "y"}\n{"src": "x", "tgts": "y"}\n')
    _refused(path, "row 1 has no column 'tgt'", "(columns: src, tgts)")


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_duplicate_id(tmp_path, suffix):
    rows = [Example(i, "s", "t") for i in ("a", "b", "c", "b")]
    path = tmp_path / f"d{suffix}"
    save_examples(rows, path, id_col="key")
    _refused(path, "row 3, column 'key': duplicate id 'b' (first seen in row 1)", id_col="key")


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"src": ["a"], "tgt": "t"}, "row 1, column 'src': expected a string, got list ['a']"),
        ({"src": "a", "tgt": 3}, "row 1, column 'tgt': expected a string, got int 3"),
        ({"src": "a", "tgt": "t", "y": {"c": 1}},
         "row 1, column 'y': expected a string or a number, got dict {'c': 1}"),
        ({"src": "a", "tgt": "t", "p": 7}, "row 1, column 'p': expected a string, got int 7"),
    ],
)  # fmt: skip
def test_wrong_type(tmp_path, record, expected):
    good = {"src": "a", "tgt": "t", "y": 1, "p": "q"}
    path = _write(
        tmp_path, "w.jsonl", json.dumps(good) + "\n" + json.dumps({**good, **record}) + "\n"
    )
    _refused(path, expected, label_col="y", pair_col="p")


def test_numbers_and_booleans_are_fine_as_ids_and_labels(tmp_path):
    path = _write(tmp_path, "n.jsonl", '{"k": 7, "src": "a", "tgt": "t", "y": true}\n')
    assert load_examples(path, id_col="k", label_col="y") == [Example("7", "a", "t", "True")]


@pytest.mark.parametrize(
    ("name", "data", "where"),
    [
        ("u.csv", b"src,tgt\na,b\n\"multi\nline\",c\nd,x\xff\xfey\n", "row 2, column 'tgt'"),
        ("u.csv", b"src,tgt\na,b\n\"multi\xc3\nline\",c\n", "row 1, column 'src'"),
        ("u.csv", b"src,t\xe9gt\na,b\n", "header"),
        ("u.jsonl", b'{"src": "a", "tgt": "b"}\n\n{"src": "a", "tgt": "\xff"}\n', "row 1, column 'tgt'"),
    ],
)  # fmt: skip
def test_undecodable_bytes_name_row_and_column(tmp_path, name, data, where):
    path = _write(tmp_path, name, data)
    start = re.search(rb"[\x80-\xff]", data).start()
    line = data.count(b"\n", 0, start) + 1
    _refused(path, f"{where}: undecodable bytes", f"at byte {start} (line {line})", "UTF-8")


def test_too_many_cells(tmp_path):
    path = _write(tmp_path, "x.csv", "src,tgt\na,b\nf(a, b),c\n")
    _refused(path, "row 1 has 3 cells but the header has 2 (src, tgt)",
             "extra cell(s) 'c' after column 'tgt' (line 3; an unquoted comma?)")  # fmt: skip


def test_too_few_cells_names_the_column_without_a_cell(tmp_path):
    path = _write(tmp_path, "f.csv", "id,src,tgt,notes\nk,a,b,n\nj,c\n")
    _refused(path, "row 1, column 'tgt': no cell: the row has 2 cell(s) but the header has 4 "
             "(line 3)", id_col="id")  # fmt: skip
    # a row short only of a column not in use is read
    path = _write(tmp_path, "g.csv", "id,src,tgt,notes\nk,a,b,n\nj,c,d\n")
    assert load_examples(path, id_col="id")[1] == Example("j", "c", "d")


def test_header_naming_a_column_twice(tmp_path):
    path = _write(tmp_path, "h.csv", "src,tgt,tgt\na,b,c\n")
    _refused(path, "header names column 'tgt' more than once (cells 2, 3)")
    path = _write(
        tmp_path, "h.jsonl", '{"src": "a", "tgt": "b"}\n{"src": "a", "tgt": "b", "tgt": "c"}\n'
    )
    _refused(path, "row 1 (line 2), column 'tgt': the key appears more than once")


def test_malformed_quoting_names_the_row_and_line(tmp_path):
    # An unclosed quote would otherwise swallow every later row into one cell.
    path = _write(tmp_path, "q.csv", 'src,tgt\na,b\nc,"d\ne,f\ng,h\n')
    _refused(path, "row 1 (line 3): malformed CSV: a quoted cell opened here is never closed")
    path = _write(tmp_path, "q.csv", 'src,tgt\na,b\nc,"d"e\n')
    _refused(path, "row 1 (line 3): malformed CSV: ',' expected after '\"'")


def test_jsonl_not_json_or_not_an_object(tmp_path):
    path = _write(tmp_path, "j.jsonl", '{"src": "a", "tgt": "b"}\n\n{oops\n')
    _refused(path, "row 1 (line 3) is not JSON")
    path = _write(tmp_path, "j.jsonl", '["a", "b"]\n')
    _refused(path, "row 0 (line 1) is not a JSON object (got list)")
