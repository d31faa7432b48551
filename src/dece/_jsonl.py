"""Reading and writing JSON-lines files of objects (metrics.jsonl, predictions, filter and
purifier records): reading with errors naming the line, writing one object per ``"\n"``-ended
line.

Records end at ``"\\n"`` only: U+2028, U+2029 and U+0085 are legal inside JSON strings, and
``str.splitlines`` would cut a record at them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, Any


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
    rows = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: line {lineno}: not valid JSON ({exc})") from None
        except RecursionError:
            raise ValueError(f"{path}: line {lineno}: JSON nested too deeply to read") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}: line {lineno}: expected a JSON object")
        rows.append(row)
    return rows


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
