"""Reading JSON-lines files of objects (metrics.jsonl, predictions) with errors naming the line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_jsonl(path: str | Path, *, missing_ok: bool = False) -> list[dict[str, Any]]:
    """The JSON objects of ``path``, one per non-blank line; ``[]`` for a missing file when
    ``missing_ok``. Raises ``ValueError`` naming the file and line of a bad row."""
    path = Path(path)
    if missing_ok and not path.is_file():
        return []
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: line {lineno}: not valid JSON ({exc})") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}: line {lineno}: expected a JSON object")
        rows.append(row)
    return rows
