"""Reading JSON-lines files of objects (metrics.jsonl, predictions) with errors naming the line.

Records end at ``"\\n"`` only: U+2028, U+2029 and U+0085 are legal inside JSON strings, and
``str.splitlines`` would cut a record at them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


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
