"""CSV / JSONL loaders and writers, split discovery and the ``load_dataset`` entry point.

Every error is a :class:`~dece.data.example.DataError` whose message names the file and, where
it applies, the row (0-based data row, header excluded) and the column. Nothing is dropped: a row
that cannot be read stops the load with an error rather than being skipped.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from dece.data._readers import SUFFIXES, read_text, records
from dece.data.example import DataError, DataFileNotFoundError, Example
from dece.registry import Registry

logger = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "valid", "test")
# File stems accepted for each split by :func:`discover_splits`.
_SPLIT_ALIASES: dict[str, tuple[str, ...]] = {
    "train": ("train",),
    "valid": ("valid", "validation", "dev"),
    "test": ("test",),
}
# Cell values read as missing (pandas' default NaN markers that can appear in exported CSVs).
_NAN_STRINGS = frozenset({"nan", "null", "none", "n/a", "na", "<na>"})

__all__ = [
    "DATASETS",
    "SPLITS",
    "discover_splits",
    "load_dataset",
    "load_examples",
    "load_splits",
    "save_examples",
]


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and (not value.strip() or value.strip().lower() in _NAN_STRINGS)


def _cell(path: Path, index: int, column: str, value: Any, *, text: bool, optional: bool) -> str:
    """The cell as a string; refusals name the file, row, column and cause. ``text``: a text
    column (a string is required); ``optional``: a missing value reads as ``""``."""
    if _is_missing(value):
        if optional:
            return ""
        shown = "" if value is None or value == "" else f" ({value!r} reads as missing)"
        raise DataError(f"{path}: row {index}, column {column!r}: empty or NaN cell{shown}")
    if isinstance(value, str):
        return value
    if text or not isinstance(value, (int, float)):  # bool is an int: a label true/false
        expected = "a string" if text else "a string or a number"
        raise DataError(
            f"{path}: row {index}, column {column!r}: expected {expected}, "
            f"got {type(value).__name__} {_short_repr(value)}"
        )
    return str(value)


def _short_repr(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def load_examples(
    path: str | Path,
    *,
    source_col: str = "src",
    target_col: str | None = "tgt",
    label_col: str | None = None,
    id_col: str | None = None,
    pair_col: str | None = None,
    split: str | None = None,
    optional_target: bool = False,
) -> list[Example]:
    """Load every row of a ``.csv`` or ``.jsonl`` file as :class:`Example` records.

    Args:
        path: the file; the format is chosen by its suffix.
        source_col, target_col: columns (keys) holding the source and target text. With a
            ``label_col`` (classification) the target column is optional: a file without it
            (or ``target_col=None``) gives empty targets.
        label_col: optional column with a class label.
        id_col: optional column with a unique row id; else ids are ``f"{split}-{row}"``.
        pair_col: optional column with a second input text (``Example.source_pair``, text-pair
            tasks such as clone detection).
        split: prefix of generated ids; defaults to the file stem (``train``, ``valid``, ...).
        optional_target: the target column is optional as with a ``label_col`` (a file of
            inputs only, as test-time purification reads): without it, or in an empty cell,
            the target is ``""``.

    Raises:
        DataError: missing file, empty file, missing column, undecodable bytes, empty or NaN
            cell, duplicate id; the message names the file, row and column.
    """
    path = Path(path)
    text = read_text(path)
    prefix = split if split is not None else path.stem
    wanted = [c for c in (source_col, target_col, label_col, id_col, pair_col) if c is not None]
    texts = {c for c in (source_col, target_col, pair_col) if c is not None}
    examples: list[Example] = []
    seen: dict[str, int] = {}
    header_checked = False
    optional_target = optional_target or label_col is not None  # classification: no target
    for index, record in records(path, text, wanted):
        if optional_target and target_col is not None and target_col not in record:
            wanted.remove(target_col)  # a file without targets
            target_col = None
        if not header_checked or path.suffix.lower() == ".jsonl":
            missing = [c for c in wanted if c not in record]
            if missing:
                where = "header" if path.suffix.lower() == ".csv" else f"row {index}"
                raise DataError(
                    f"{path}: {where} has no column {missing[0]!r} "
                    f"(columns: {', '.join(map(str, record))})"
                )
            header_checked = True
        optional = target_col if optional_target else None
        values = {
            column: _cell(path, index, column, record[column], text=column in texts,
                          optional=column == optional)
            for column in wanted
        }  # fmt: skip
        example_id = values[id_col] if id_col is not None else f"{prefix}-{index}"
        if example_id in seen:
            raise DataError(
                f"{path}: row {index}, column {id_col!r}: duplicate id {example_id!r} "
                f"(first seen in row {seen[example_id]})"
            )
        seen[example_id] = index
        examples.append(
            Example(
                id=example_id,
                source=values[source_col],
                target=values[target_col] if target_col is not None else "",
                label=values[label_col] if label_col is not None else None,
                source_pair=values[pair_col] if pair_col is not None else None,
            )
        )
    if not examples:
        raise DataError(f"{path}: empty file (no data rows)")
    return examples


def save_examples(
    examples: Iterable[Example],
    path: str | Path,
    *,
    source_col: str = "src",
    target_col: str = "tgt",
    id_col: str | None = None,
    label_col: str = "label",
    pair_col: str = "src_pair",
) -> None:
    """Write examples to ``.csv`` (minimal quoting, ``\\n`` line ends, as Lyra's files) or ``.jsonl``.

    The id is written only when ``id_col`` is given; the label column only when some example has
    a label; the pair column only when some example has a second text. Reading the file back with
    the same column names gives the same texts.
    """
    path = Path(path)
    examples = list(examples)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(f"{path}: unsupported suffix {path.suffix!r}; expected one of {SUFFIXES}")
    columns = ([id_col] if id_col else []) + [source_col, target_col]
    with_label = any(ex.label is not None for ex in examples)
    with_pair = any(ex.source_pair is not None for ex in examples)
    columns += ([label_col] if with_label else []) + ([pair_col] if with_pair else [])

    def row(ex: Example) -> list[Any]:
        cells: list[Any] = ([ex.id] if id_col else []) + [ex.source, ex.target]
        return cells + ([ex.label] if with_label else []) + ([ex.source_pair] if with_pair else [])

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        if suffix == ".csv":
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(columns)
            writer.writerows(row(ex) for ex in examples)
        else:
            for ex in examples:
                handle.write(json.dumps(dict(zip(columns, row(ex), strict=True))) + "\n")


def discover_splits(directory: str | Path) -> dict[str, Path]:
    """Find ``train`` / ``valid`` / ``test`` files (``.csv`` or ``.jsonl``) in ``directory``.

    ``validation`` and ``dev`` count as ``valid``. Returns the splits found, in the order
    train, valid, test; at least one must exist, and each split must be unambiguous.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DataFileNotFoundError(f"{directory}: no such directory")
    found: dict[str, Path] = {}
    for split in SPLITS:
        candidates = [
            directory / f"{stem}{suffix}"
            for stem in _SPLIT_ALIASES[split]
            for suffix in SUFFIXES
            if (directory / f"{stem}{suffix}").is_file()
        ]
        if len(candidates) > 1:
            names = ", ".join(p.name for p in candidates)
            raise DataError(f"{directory}: several files for split {split!r}: {names}")
        if candidates:
            found[split] = candidates[0]
    if not found:
        raise DataError(
            f"{directory}: no split files found; expected train/valid/test with suffix .csv or .jsonl"
        )
    return found


def load_splits(path: str | Path, **columns: Any) -> dict[str, list[Example]]:
    """A directory -> each split it holds; a single file -> ``{"train": examples}``.

    ``columns`` go to :func:`load_examples` (``source_col``, ``target_col``, ``label_col``,
    ``id_col``).
    """
    path = Path(path)
    if path.is_dir():
        return {
            split: load_examples(file, split=split, **columns)
            for split, file in discover_splits(path).items()
        }
    if not path.exists():
        raise DataFileNotFoundError(f"{path}: no such file or directory")
    return {"train": load_examples(path, split="train", **columns)}


#: Named datasets: ``name -> builder(arg, seed, **columns) -> splits``. ``load_dataset("name")``
#: and ``load_dataset("name:ARG")`` call the builder with ``arg`` None or the text after the colon
#: (e.g. a size). Modules register theirs with ``@DATASETS.register("name")``.
DATASETS: Registry[Callable[..., dict[str, list[Example]]]] = Registry("dataset")


@DATASETS.register("synthetic")
def _synthetic(arg: str | None, seed: int, **columns: Any) -> dict[str, list[Example]]:
    """The built-in synthetic dataset: 1600/200/200 rows, or ``synthetic:N`` (N train rows,
    ``N // 8`` valid and test rows)."""
    from dece.data.synthetic import synthetic_dataset

    if arg is None:
        return synthetic_dataset(seed=seed)
    if not arg.isdigit() or int(arg) < 1:
        raise ValueError(
            f"spec 'synthetic:{arg}': expected 'synthetic:N' with N a positive integer"
        )
    n = int(arg)
    return synthetic_dataset(seed=seed, sizes=(n, n // 8, n // 8))


def load_dataset(spec: str | Path, *, seed: int = 0, **columns: Any) -> dict[str, list[Example]]:
    """Resolve a dataset spec to its splits.

    Args:
        spec: a registered name (:data:`DATASETS`: ``"synthetic"`` (1600/200/200),
            ``"synthetic:N"``, ...; ``"name:ARG"`` passes ``ARG`` to the builder), a directory
            (see :func:`discover_splits`) or a single file (loaded as the train split). An
            existing path wins over a name.
        seed: seed of the generated or sampled datasets (ignored for plain files).
        columns: column names for :func:`load_examples`.
    """
    text = str(spec)
    name, sep, arg = text.partition(":")
    if name in DATASETS and not Path(text).exists():
        return DATASETS.get(name)(arg if sep else None, seed, **columns)
    return load_splits(spec, **columns)
