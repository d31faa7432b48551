"""One record's values as example fields, and the ids of a split: the checks every reader shares
(CSV / JSONL files, parquet files, ``datasets`` datasets, TRL records), so each refuses the same
values with the same message, naming where (file or dataset), row and column."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dece.data.example import DataError, Example

__all__ = ["cell_value", "check_unique_ids", "is_missing"]

# Cell values read as missing (pandas' default NaN markers that can appear in exported CSVs).
_NAN_STRINGS = frozenset({"nan", "null", "none", "n/a", "na", "<na>"})


def is_missing(value: Any) -> bool:
    """None, NaN, a blank string or one of pandas' NaN markers (``"nan"``, ``"null"``, ...)."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and (not value.strip() or value.strip().lower() in _NAN_STRINGS)


def cell_value(
    where: str | Path, index: int, column: str, value: Any, *, text: bool, optional: bool
) -> str:
    """The cell as a string; refusals name ``where``, the row, the column and the cause.
    ``text``: a text column (a string is required); ``optional``: a missing value reads as
    ``""``."""
    if is_missing(value):
        if optional:
            return ""
        shown = "" if value is None or value == "" else f" ({value!r} reads as missing)"
        raise DataError(f"{where}: row {index}, column {column!r}: empty or NaN cell{shown}")
    if isinstance(value, str):
        return value
    if text or not isinstance(value, (int, float)):  # bool is an int: a label true/false
        expected = "a string" if text else "a string or a number"
        raise DataError(
            f"{where}: row {index}, column {column!r}: expected {expected}, "
            f"got {type(value).__name__} {_short_repr(value)}"
        )
    return str(value)


def _short_repr(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def check_unique_ids(examples: Sequence[Example], where: str | Path, id_col: str | None) -> None:
    """DataError naming the row of the first id seen twice and the row that held it first."""
    seen: dict[str, int] = {}
    for index, ex in enumerate(examples):
        if ex.id in seen:
            raise DataError(f"{where}: row {index}, column {id_col!r}: duplicate id {ex.id!r} "
                            f"(first seen in row {seen[ex.id]})")  # fmt: skip
        seen[ex.id] = index
