"""A subset of a data file's rows, written with every column and value as the input has them.

What a filter keeps must be the user's data, unchanged: :func:`save_examples` writes only the
columns dece reads (and generated ids where the file had none), so ``dece filter`` copies the
kept rows from the input file instead. CSV rows are re-quoted by ``csv.writer`` (the cell values
are the input's); JSONL records are copied line for line, byte for byte.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from dece.data._readers import _csv_rows, read_text
from dece.data.example import DataError

__all__ = ["ROW_COPY_SUFFIXES", "save_row_subset"]

ROW_COPY_SUFFIXES = (".csv", ".jsonl")


def save_row_subset(path: str | Path, keep: Sequence[bool], out: str | Path) -> int:
    """Write to ``out`` the data rows of ``path`` (a ``.csv`` or ``.jsonl`` file) whose flag in
    ``keep`` is true, in input order, the header (CSV) first; returns the rows written.

    ``keep`` holds one flag per data row, as the file's loader counts them (blank lines are no
    row). Raises DataError naming the file when the counts differ or the file cannot be read.
    """
    path, out = Path(path), Path(out)
    suffix = path.suffix.lower()
    if suffix not in ROW_COPY_SUFFIXES:
        raise DataError(f"{path}: rows can be copied from {ROW_COPY_SUFFIXES} files only")
    text = read_text(path)
    if suffix == ".csv":
        header, rows, error = _csv_rows(path, text)
        if error or header is None:
            raise DataError(error or f"{path}: empty file (no header row)")
        cells = [row for _, row in rows]
    else:
        header, cells = None, [line for line in text.split("\n") if line.strip()]
    if len(keep) != len(cells):
        raise DataError(
            f"{path}: {len(cells)} data rows but {len(keep)} keep flags; the file changed "
            "since it was read?"
        )
    kept = [row for row, flag in zip(cells, keep, strict=True) if flag]
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8", newline="") as handle:
        if header is not None:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(kept)
        else:
            handle.writelines(line + "\n" for line in kept)
    return len(kept)
