"""``dece._jsonl.write_jsonl``: the one JSON-lines writer (metrics, predictions, filter and purifier
records). Golden bytes, append, and a round trip through ``read_jsonl`` with characters that
``str.splitlines`` would cut at."""

from __future__ import annotations

import io

from dece._jsonl import read_jsonl, write_jsonl, write_rows


def test_golden_bytes_append_and_round_trip(tmp_path):
    path = tmp_path / "rows.jsonl"
    rows = [{"id": "a", "text": "x\u2028y\u0085z"}, {"id": "b", "n": 1.5, "ok": None}]
    write_jsonl(path, rows)
    assert path.read_bytes() == (
        b'{"id": "a", "text": "x\\u2028y\\u0085z"}\n{"id": "b", "n": 1.5, "ok": null}\n'
    )
    write_jsonl(path, [{"id": "c"}], append=True)
    assert read_jsonl(path) == [*rows, {"id": "c"}]
    write_jsonl(path, [{"id": "d"}])  # without append: replaced
    assert read_jsonl(path) == [{"id": "d"}]


def test_default_serialises_what_json_cannot_and_rows_go_to_an_open_file():
    fh = io.StringIO()
    write_rows(fh, [{"path": _Unencodable()}], default=str)
    assert fh.getvalue() == '{"path": "p/q"}\n'


class _Unencodable:  # an object json cannot encode; ``default=str`` names it
    def __str__(self) -> str:
        return "p/q"
