"""Reading and writing JSON-lines files of objects (metrics.jsonl, predictions, filter and
purifier records, and the JSONL data files): reading with errors naming the line, writing one
object per ``"\n"``-ended line.

Every JSONL reader parses through :func:`jsonl_objects` (:func:`read_jsonl` for run files,
``dece.data``'s loader for data files, which words its errors by data row): one place that
splits lines, skips blank ones and refuses a bad one (:class:`BadJsonLine`: its line number and
what is wrong), never dropping it. Records end at ``"\\n"`` only: U+2028, U+2029 and U+0085 are
legal inside JSON strings, and ``str.splitlines`` would cut a record at them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, Literal


def read_jsonl(path: str | Path, *, missing_ok: bool = False) -> list[dict[str, Any]]:
    """The JSON objects of ``path``, one per non-blank line; ``[]`` for a missing file when
    ``missing_ok``. Raises ``ValueError`` naming the file and line of a bad row (undecodable
    bytes included)."""
    path = Path(path)
    if missing_ok and not path.is_file():
        return []
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ValueError(
            f"{path}: line {line}: undecodable bytes {raw[exc.start : exc.end]!r} at byte "
            f"{exc.start}: {exc.reason}; the file must be UTF-8"
        ) from None
    try:
        return [row for _, row in jsonl_objects(text)]
    except BadJsonLine as exc:
        reason = _READ_JSONL_REASONS[exc.problem].format(detail=exc.detail)
        raise ValueError(f"{path}: line {exc.lineno}: {reason}") from None


_READ_JSONL_REASONS = {
    "json": "not valid JSON ({detail})",
    "depth": "JSON nested too deeply to read",
    "type": "expected a JSON object",
    "key": "key {detail!r} appears more than once",
}

Problem = Literal["json", "depth", "type", "key"]


class BadJsonLine(ValueError):
    """A line of a JSON-lines text that is not a JSON object: ``lineno`` (1-based), ``problem``
    (``"json"``: not JSON, ``"depth"``: nested deeper than the recursion limit, ``"type"``: JSON
    but not an object, ``"key"``: an object naming a key twice) and ``detail`` (the decoder's
    message, the type's name, the key)."""

    def __init__(self, lineno: int, problem: Problem, detail: str) -> None:
        super().__init__(f"line {lineno}: {problem}: {detail}")
        self.lineno, self.problem, self.detail = lineno, problem, detail


def jsonl_objects(text: str, *, unique_keys: bool = False) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` per non-blank line of ``text``, lines split at ``"\\n"`` only;
    :class:`BadJsonLine` at the first line that is not a JSON object (``unique_keys``: or that
    names a key twice, which ``json`` would silently resolve to the last value)."""
    hook = _no_duplicate_keys if unique_keys else None
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line, object_pairs_hook=hook)
        except json.JSONDecodeError as exc:
            raise BadJsonLine(lineno, "json", str(exc)) from None
        except RecursionError:
            raise BadJsonLine(lineno, "depth", "") from None
        except _DuplicateKey as exc:
            raise BadJsonLine(lineno, "key", exc.args[0]) from None
        if not isinstance(row, dict):
            raise BadJsonLine(lineno, "type", type(row).__name__)
        yield lineno, row


class _DuplicateKey(ValueError):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def write_jsonl(
    path: str | Path,
    rows: Iterable[Mapping[str, Any]],
    *,
    append: bool = False,
    default: Callable[[Any], Any] | None = None,
) -> None:
    """Write ``rows`` to ``path`` (``append``: after what it holds), one JSON object per line;
    the file is flushed before returning, so a reader sees every row written."""
    with Path(path).open("a" if append else "w", encoding="utf-8") as fh:
        write_rows(fh, rows, default=default)


def write_rows(
    fh: IO[str], rows: Iterable[Mapping[str, Any]], *, default: Callable[[Any], Any] | None = None
) -> None:
    """Write ``rows`` to an open text file, one JSON object per line, and flush it."""
    for row in rows:
        fh.write(json.dumps(row, default=default) + "\n")
    fh.flush()
