"""``dece._jsonl.write_jsonl``: the one JSON-lines writer (metrics, predictions, filter and purifier
records). Golden bytes, append, and a round trip through ``read_jsonl`` with characters that
``str.splitlines`` would cut at. ``read_jsonl`` / ``jsonl_objects``, the one parser: planted bad
lines named by file and line."""

from __future__ import annotations

import io

import pytest

from dece._jsonl import BadJsonLine, jsonl_objects, read_jsonl, write_jsonl, write_rows


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


# --------------------------------------------------------------------------- reading
# Planted bad lines at known line numbers (blank lines count; they are skipped, not rows).
GOOD = '{"epoch": 1}\n\n{"epoch": 2}\n'


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ('{"epoch": 3', r"not valid JSON \(Expecting"),
        ("[1, 2]", "expected a JSON object"),
        ("[" * 100_000 + "]" * 100_000, "JSON nested too deeply to read"),
    ],
)
def test_read_jsonl_names_file_and_line_of_a_planted_bad_line(tmp_path, bad, reason):
    path = tmp_path / "metrics.jsonl"
    path.write_text(GOOD + bad + "\n" + GOOD, encoding="utf-8")
    with pytest.raises(ValueError, match=rf"metrics\.jsonl: line 4: {reason}"):
        read_jsonl(path)


def test_jsonl_objects_gives_line_numbers_and_refuses_a_repeated_key_only_when_asked():
    text = GOOD + '{"a": 1, "a": 2}\n'
    assert list(jsonl_objects(text)) == [(1, {"epoch": 1}), (3, {"epoch": 2}), (4, {"a": 2})]
    with pytest.raises(BadJsonLine) as info:
        list(jsonl_objects(text, unique_keys=True))
    assert (info.value.lineno, info.value.problem, info.value.detail) == (4, "key", "a")


def test_read_jsonl_of_a_missing_file(tmp_path):
    assert read_jsonl(tmp_path / "none.jsonl", missing_ok=True) == []
    with pytest.raises(FileNotFoundError):
        read_jsonl(tmp_path / "none.jsonl")
