"""The rows of a CSV or JSONL data file, every refusal named by file, row, column and cause.

Written over the standard ``csv`` and ``json`` modules, which parse correctly but report badly
for data files; what is added by hand, and why:

- *Field size.* ``csv`` refuses a field longer than ``csv.field_size_limit()`` (128 KiB by
  default), while ``csv.writer`` writes any length: files we write (``save_examples``,
  ``dece poison``) could not be read back. The limit is a process-global setting, so it is
  raised only while this module parses a text it already holds in memory, to that text's length
  (a field can never be longer: no new memory risk), under a lock (two loaders never restore
  each other's value), and restored afterwards unless someone changed it meanwhile.
  (``pandas``' C parser has no such limit, but reads ``"NA"`` / ``"null"`` and types by itself
  and is not a dependency; re-implementing RFC 4180 quoting is not worth owning.)
- *Strict quoting.* ``csv.reader(strict=True)``: a quote left open at the end of the file is an
  error instead of one cell that swallows every later row; ``"a"b`` is an error instead of
  ``ab``.
- *Row structure.* A row with more cells than the header, or too few to hold a column in use, is
  named with its counts; a header that names a column in use twice is an error (``DictReader``
  silently keeps the last). JSONL: an object with a key twice is an error (``json`` keeps the
  last); so is one nested deeper than the recursion limit (``json`` raises ``RecursionError``).
- *Line splitting.* JSONL records end at ``"\\n"`` only: U+2028, U+2029 and U+0085 are legal
  inside JSON strings (``str.splitlines`` would cut a record there).
- *Undecodable bytes.* Located by row and column: the file is decoded again with
  ``surrogateescape`` and the first cell holding an escaped byte is named.
"""

from __future__ import annotations

import contextlib
import csv
import io
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from dece._jsonl import BadJsonLine, jsonl_objects
from dece.data.example import DataError, DataFileNotFoundError

SUFFIXES: tuple[str, ...] = (".csv", ".jsonl")
_CSV_LIMIT_LOCK = threading.RLock()  # re-entrant: a nested use in one thread is fine

__all__ = ["SUFFIXES", "csv_field_limit", "csv_header", "read_text", "records"]


# --------------------------------------------------------------------------- csv field size
@contextlib.contextmanager
def csv_field_limit(limit: int) -> Iterator[None]:
    """Inside the block, ``csv`` accepts fields of up to ``limit`` characters (never lowered)."""
    with _CSV_LIMIT_LOCK:
        old = csv.field_size_limit()
        if limit <= old:
            yield
            return
        csv.field_size_limit(limit)
        try:
            yield
        finally:
            if csv.field_size_limit() == limit:  # unless someone else set it meanwhile
                csv.field_size_limit(old)


# --------------------------------------------------------------------------- text
def read_text(path: Path) -> str:
    """``path`` as strict UTF-8 (a leading BOM dropped); undecodable bytes -> DataError naming
    the byte, line, row and column."""
    if not path.exists():
        raise DataFileNotFoundError(f"{path}: no such file")
    if not path.is_file():
        raise DataError(f"{path}: not a regular file")
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        bad = raw[exc.start : exc.end]
        line = raw.count(b"\n", 0, exc.start) + 1
        where = _locate_undecodable(path, raw.decode("utf-8-sig", errors="surrogateescape"))
        raise DataError(
            f"{path}: {where or f'line {line}'}: undecodable bytes {bad!r} at byte {exc.start} "
            f"(line {line}): {exc.reason}; the file must be UTF-8"
        ) from None


def _escaped(text: str) -> bool:
    """Whether ``text`` holds a byte that ``surrogateescape`` could not decode."""
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def _locate_undecodable(path: Path, text: str) -> str | None:
    """``"row R, column 'C'"`` (or ``"header"``) of the first undecodable byte, None when the
    rows before it cannot be parsed."""
    try:
        for index, record in records(path, text, ()):
            for column, value in record.items():
                if _escaped(str(column)):
                    return "header" if path.suffix.lower() == ".csv" else f"row {index}, a key"
                if isinstance(value, str) and _escaped(value):
                    return f"row {index}, column {column!r}"
    except DataError:
        pass
    return None


# --------------------------------------------------------------------------- records
def records(path: Path, text: str, columns: Sequence[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(row, record)`` pairs, ``row`` the 0-based data row (header and blank lines excluded).

    ``columns``: the columns the caller uses; a CSV header naming one twice, or a row too short
    to hold one, is an error (a row short only of other columns is not).
    """
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _csv_records(path, text, columns)
    if suffix == ".jsonl":
        return _jsonl_records(path, text)
    raise DataError(f"{path}: unsupported suffix {path.suffix!r}; expected one of {SUFFIXES}")


def csv_header(text: str) -> list[str]:
    """The cells of a CSV text's first row (blank lines skipped); ``[]`` when it has none or the
    row is malformed (:func:`records` then names the fault)."""
    with csv_field_limit(len(text) + 1):
        try:
            for cells in csv.reader(io.StringIO(text, newline=""), strict=True):
                if cells:
                    return cells
        except csv.Error:
            pass
    return []


def _csv_rows(path: Path, text: str) -> tuple[list[str] | None, list[tuple[int, list[str]]], str]:
    """(header, [(first line, cells)] of the data rows, error text or "") — parsed at once,
    inside :func:`csv_field_limit`; rows up to a malformed one are kept."""
    rows: list[tuple[int, list[str]]] = []
    with csv_field_limit(len(text) + 1):
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        header, start = None, 1
        try:
            for cells in reader:
                if cells:  # a blank line is no row
                    if header is None:
                        header = cells
                    else:
                        rows.append((start, cells))
                start = reader.line_num + 1
        except csv.Error as exc:
            why = str(exc)
            if why == "unexpected end of data":
                why = "a quoted cell opened here is never closed (the file ends inside it)"
            where = "header" if header is None else f"row {len(rows)}"
            return header, rows, f"{path}: {where} (line {start}): malformed CSV: {why}"
    return header, rows, ""


def _csv_records(
    path: Path, text: str, columns: Sequence[str]
) -> Iterator[tuple[int, dict[str, Any]]]:
    header, rows, error = _csv_rows(path, text)
    if header is None:
        raise DataError(error or f"{path}: empty file (no header row)")
    for column in columns:
        if header.count(column) > 1:
            cells = [i + 1 for i, name in enumerate(header) if name == column]
            raise DataError(f"{path}: header names column {column!r} more than once (cells "
                            f"{', '.join(map(str, cells))}); which one to read is ambiguous")  # fmt: skip
    used = [(header.index(c), c) for c in columns if c in header]
    for index, (line, cells) in enumerate(rows):
        if len(cells) > len(header):
            extra = ", ".join(repr(_short(c)) for c in cells[len(header) :])
            raise DataError(
                f"{path}: row {index} has {len(cells)} cells but the header has {len(header)} "
                f"({', '.join(header)}): extra cell(s) {extra} after column {header[-1]!r} "
                f"(line {line}; an unquoted comma?)"
            )
        for position, column in used:
            if position >= len(cells):
                raise DataError(
                    f"{path}: row {index}, column {column!r}: no cell: the row has {len(cells)} "
                    f"cell(s) but the header has {len(header)} (line {line})"
                )
        yield index, dict(zip(header, cells, strict=False))
    if error:
        raise DataError(error)


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _jsonl_records(path: Path, text: str) -> Iterator[tuple[int, dict[str, Any]]]:
    index = 0
    try:
        for _, record in jsonl_objects(text, unique_keys=True):  # "\n" only: see the docstring
            yield index, record
            index += 1
    except BadJsonLine as exc:
        where = f"{path}: row {index} (line {exc.lineno})"
        raise DataError(where + _JSONL_REASONS[exc.problem].format(
            detail=exc.detail, limit=sys.getrecursionlimit())) from None  # fmt: skip


_JSONL_REASONS = {
    "json": " is not JSON: {detail}",
    "depth": ": JSON nested too deeply to read (more levels than Python's recursion limit, "
    "{limit})",
    "key": ", column {detail!r}: the key appears more than once in the object; which value to "
    "read is ambiguous",
    "type": " is not a JSON object (got {detail})",
}
