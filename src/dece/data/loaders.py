"""CSV / JSONL / parquet loaders and writers, split discovery and the ``load_dataset`` entry
point.

Hugging Face datasets (``hf:<id>``, ``save_to_disk`` directories) and parquet files are read by
:mod:`dece.data.hf` (the ``[hf]`` extra), called from here. TRL's records (``prompt`` /
``completion``, ``messages``) in a CSV / JSONL file are converted by
:mod:`dece.data.trl_records`, as in a ``datasets`` dataset.

Every error is a :class:`~dece.data.example.DataError` whose message names the file and, where
it applies, the row (0-based data row, header excluded) and the column. Nothing is dropped: a row
that cannot be read stops the load with an error rather than being skipped.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from dece._jsonl import write_rows
from dece.data._cells import cell_value, check_unique_ids
from dece.data._readers import SUFFIXES, csv_header, read_text, records
from dece.data.example import DataError, DataFileNotFoundError, Example
from dece.data.trl_records import is_trl, refuse_columns, trl_examples
from dece.registry import Registry

logger = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "valid", "test")
# File stems accepted for each split by :func:`discover_splits`.
_SPLIT_ALIASES: dict[str, tuple[str, ...]] = {
    "train": ("train",),
    "valid": ("valid", "validation", "dev"),
    "test": ("test",),
}
# Split file suffixes: the text formats, and parquet (read through dece.data.hf).
_SPLIT_SUFFIXES: tuple[str, ...] = (*SUFFIXES, ".parquet")

__all__ = [
    "DATASETS",
    "SPLITS",
    "discover_splits",
    "example_rows",
    "load_dataset",
    "load_examples",
    "load_splits",
    "save_examples",
]


def load_examples(
    path: str | Path,
    *,
    source_col: str | None = None,
    target_col: str | None = "tgt",
    label_col: str | None = None,
    id_col: str | None = None,
    pair_col: str | None = None,
    split: str | None = None,
    optional_target: bool = False,
    chat_template: str | None = None,
) -> list[Example]:
    """Load every row of a ``.csv``, ``.jsonl`` or ``.parquet`` file as :class:`Example` records.

    Args:
        path: the file; the format is chosen by its suffix.
        source_col, target_col: columns (keys) holding the source and target text (default
            ``src``, ``tgt``). With a ``label_col`` (classification) the target column is
            optional: a file without it (or ``target_col=None``) gives empty targets. Without
            ``source_col`` and without a ``src`` column, TRL's records are read (``prompt`` /
            ``completion`` or ``messages``: :mod:`dece.data.trl_records`, the conversion a
            ``datasets`` dataset of the same records goes through).
        label_col: optional column with a class label.
        id_col: optional column with a unique row id; else ids are ``f"{split}-{row}"``.
        pair_col: optional column with a second input text (``Example.source_pair``, text-pair
            tasks such as clone detection).
        split: prefix of generated ids; defaults to the file stem (``train``, ``valid``, ...).
        optional_target: the target column is optional as with a ``label_col`` (a file of
            inputs only, as test-time purification reads): without it, or in an empty cell,
            the target is ``""``.
        chat_template: the template that renders TRL ``messages`` records (``"chatml"``, the
            default, a Jinja template or a tokenizer path); unused by other records.

    Raises:
        DataError: missing file, empty file, missing column, undecodable bytes, empty or NaN
            cell, duplicate id, a malformed TRL record; the message names the file, row and
            column.
    """
    path = Path(path)
    prefix = split if split is not None else path.stem
    if path.suffix.lower() == ".parquet":
        from dece.data.hf import load_parquet

        given = {"label_col": label_col, "id_col": id_col, "pair_col": pair_col,
                 "chat_template": chat_template,
                 "target_col": None if target_col == "tgt" else target_col}  # fmt: skip
        return load_parquet(path, split=split, source_col=source_col,
                            optional_target=optional_target,
                            **{k: v for k, v in given.items() if v is not None})  # fmt: skip
    text = read_text(path)
    hint = ""
    if source_col is None:
        hint = "; or TRL records: prompt/completion or messages"
        trl = _trl_records(path, text, id_col)
        if trl is not None:
            refuse_columns(str(path), target_col=None if target_col == "tgt" else target_col,
                           label_col=label_col, pair_col=pair_col)  # fmt: skip
            columns, rows = trl
            examples = trl_examples(rows, columns, where=str(path), split=prefix, id_col=id_col,
                                    chat_template=chat_template)  # fmt: skip
            return _checked(examples, path, id_col)
        source_col = "src"
    wanted = [c for c in (source_col, target_col, label_col, id_col, pair_col) if c is not None]
    texts = {c for c in (source_col, target_col, pair_col) if c is not None}
    examples: list[Example] = []
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
                    f"{hint if missing[0] == source_col else ''}"
                )
            header_checked = True
        optional = target_col if optional_target else None
        values = {
            column: cell_value(path, index, column, record[column], text=column in texts,
                               optional=column == optional)
            for column in wanted
        }  # fmt: skip
        examples.append(
            Example(
                id=values[id_col] if id_col is not None else f"{prefix}-{index}",
                source=values[source_col],
                target=values[target_col] if target_col is not None else "",
                label=values[label_col] if label_col is not None else None,
                source_pair=values[pair_col] if pair_col is not None else None,
            )
        )
    return _checked(examples, path, id_col)


def _checked(examples: list[Example], path: Path, id_col: str | None) -> list[Example]:
    if not examples:
        raise DataError(f"{path}: empty file (no data rows)")
    check_unique_ids(examples, path, id_col)
    return examples


def _trl_records(
    path: Path, text: str, id_col: str | None
) -> tuple[list[str], list[dict[str, Any]]] | None:
    """``(columns, records)`` of a file of TRL records: no ``src`` column, and ``messages`` or
    ``prompt`` + ``completion`` (:func:`~dece.data.trl_records.is_trl`); None for other files.

    A CSV file's columns are its header; a JSONL file's are the keys of all its records in the
    order first seen (as ``datasets`` reads JSON lines: a record without a key has it None).
    """
    if path.suffix.lower() == ".csv":
        columns = csv_header(text)
        if "src" in columns or not is_trl(columns):
            return None
        used = [c for c in ("messages", "prompt", "completion", id_col) if c in columns]
        return columns, [record for _, record in records(path, text, used)]
    rows = records(path, text, ())
    first = next(rows, None)  # a first record with a src key: column records, read once
    if first is None or "src" in first[1]:
        return None
    found = [first[1], *(record for _, record in rows)]
    columns = list(dict.fromkeys(key for record in found for key in record))
    if "src" in columns or not is_trl(columns):
        return None
    return columns, found


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
    """Write examples to ``.csv`` (minimal quoting, ``\\n`` line ends, as Lyra's files), ``.jsonl``
    or ``.parquet``.

    The id is written only when ``id_col`` is given; the label column only when some example has
    a label; the pair column only when some example has a second text. Reading the file back with
    the same column names gives the same texts.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _SPLIT_SUFFIXES:
        raise DataError(
            f"{path}: unsupported suffix {path.suffix!r}; expected one of {_SPLIT_SUFFIXES}"
        )
    rows = example_rows(examples, source_col=source_col, target_col=target_col, id_col=id_col,
                        label_col=label_col, pair_col=pair_col)  # fmt: skip
    if suffix == ".parquet":
        from dece.data.hf import save_parquet

        save_parquet(rows, path)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        if suffix == ".csv":
            writer = csv.writer(handle, lineterminator="\n")
            empty = ([id_col] if id_col else []) + [source_col, target_col]
            writer.writerow(list(rows[0]) if rows else empty)
            writer.writerows(row.values() for row in rows)
        else:
            write_rows(handle, rows)


def example_rows(
    examples: Iterable[Example],
    *,
    source_col: str = "src",
    target_col: str = "tgt",
    id_col: str | None = None,
    label_col: str = "label",
    pair_col: str = "src_pair",
) -> list[dict[str, Any]]:
    """The records :func:`save_examples` writes (one key set; the columns as documented there)."""
    examples = list(examples)
    with_label = any(ex.label is not None for ex in examples)
    with_pair = any(ex.source_pair is not None for ex in examples)

    def row(ex: Example) -> dict[str, Any]:
        out: dict[str, Any] = {id_col: ex.id} if id_col else {}
        out.update({source_col: ex.source, target_col: ex.target})
        if with_label:
            out[label_col] = ex.label
        if with_pair:
            out[pair_col] = ex.source_pair
        return out

    return [row(ex) for ex in examples]


def discover_splits(directory: str | Path) -> dict[str, Path]:
    """Find ``train`` / ``valid`` / ``test`` files (``.csv``, ``.jsonl`` or ``.parquet``) in
    ``directory``.

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
            for suffix in _SPLIT_SUFFIXES
            if (directory / f"{stem}{suffix}").is_file()
        ]
        if len(candidates) > 1:
            names = ", ".join(p.name for p in candidates)
            raise DataError(f"{directory}: several files for split {split!r}: {names}")
        if candidates:
            found[split] = candidates[0]
    if not found:
        raise DataError(
            f"{directory}: no split files found; expected train/valid/test with suffix .csv, "
            ".jsonl or .parquet, or a directory written by datasets' save_to_disk"
        )
    return found


def load_splits(path: str | Path, **columns: Any) -> dict[str, list[Example]]:
    """A directory -> each split it holds (a ``save_to_disk`` directory: its splits); a single
    file -> ``{"train": examples}``.

    ``columns`` go to :func:`load_examples` (``source_col``, ``target_col``, ``label_col``,
    ``id_col``, ``pair_col``, ``chat_template``); without ``source_col`` and a ``src`` column,
    every format reads TRL records (:mod:`dece.data.trl_records`).
    """
    path = Path(path)
    if path.is_dir():
        from dece.data import hf

        if hf.is_saved_dataset(path):
            return hf.load_saved(path, **columns)
        return {
            split: _load_split_file(file, split, columns)
            for split, file in discover_splits(path).items()
        }
    if not path.exists():
        raise DataFileNotFoundError(f"{path}: no such file or directory")
    return {"train": _load_split_file(path, "train", columns)}


def _load_split_file(path: Path, split: str, columns: dict[str, Any]) -> list[Example]:
    if path.suffix.lower() == ".parquet":
        from dece.data.hf import load_parquet

        return load_parquet(path, split=split, **columns)
    return load_examples(path, split=split, **columns)


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
            ``"synthetic:N"``, ...; ``"name:ARG"`` passes ``ARG`` to the builder),
            ``"hf:<id>[:<config>]"`` (``datasets.load_dataset``), a directory (split files, see
            :func:`discover_splits`, or one written by ``save_to_disk``) or a single file
            (loaded as the train split). An existing path wins over a name.
        seed: seed of the generated or sampled datasets (ignored for plain files).
        columns: column names for :func:`load_examples`.
    """
    text = str(spec)
    if text.startswith("hf:") and not Path(text).exists():
        from dece.data.hf import load_hub

        return load_hub(text, **columns)
    name, sep, arg = text.partition(":")
    if name in DATASETS and not Path(text).exists():
        return DATASETS.get(name)(arg if sep else None, seed, **columns)
    return load_splits(spec, **columns)
