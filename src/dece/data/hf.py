"""Hugging Face ``datasets`` in and out: Hub ids, ``save_to_disk`` directories, parquet files, and
TRL's record formats.

In (through :func:`dece.data.load_dataset`, or :func:`examples_from_hf` for a dataset in memory):

- ``hf:<id>[:<config>]``: ``datasets.load_dataset(id, config)`` (the Hub, or its local cache with
  ``HF_HUB_OFFLINE=1``; offline and not cached is a :class:`DataError` saying so);
- a directory written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``;
- ``.parquet`` files (one file: the train split; a directory of ``train.parquet``, ... as for
  CSV / JSONL).

Split discovery: ``train``; ``valid``, ``validation`` or ``dev``; ``test`` (other splits are
left out, logged). A single ``Dataset`` is the train split.

Columns: ``source_col`` (default ``src``), ``target_col`` (``tgt``), ``label_col``, ``id_col``,
``pair_col`` as for CSV / JSONL. Without ``source_col`` and without a ``src`` column, TRL's
records (``prompt`` / ``completion``, ``messages``; causal-LM fine-tuning data) are read by
:mod:`dece.data.trl_records`, the conversion CSV / JSONL files use too (``chat_template`` as
documented there).

Out: :func:`save_parquet` and :func:`save_hf` (``dece poison --format parquet|hf``).
Needs the ``[hf]`` extra (``datasets``, ``pyarrow``, ``jinja2``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from dece.data._cells import cell_value, check_unique_ids
from dece.data.example import DataError, DataFileNotFoundError, Example
from dece.data.loaders import _SPLIT_ALIASES as SPLIT_ALIASES
from dece.data.trl_records import CHATML, ChatRenderer, is_trl, refuse_columns, trl_examples

logger = logging.getLogger(__name__)

__all__ = [
    "CHATML",
    "HF_PREFIX",
    "ChatRenderer",
    "examples_from_hf",
    "is_saved_dataset",
    "load_hub",
    "load_parquet",
    "load_saved",
    "rows_to_examples",
    "save_hf",
    "save_parquet",
]

HF_PREFIX = "hf:"
_INSTALL = "pip install 'dece[hf]'"


def _datasets() -> Any:
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - the extra is installed by `make venv`
        raise ImportError(
            f"Hugging Face datasets support needs the [hf] extra: {_INSTALL}"
        ) from exc
    return datasets


# --------------------------------------------------------------------------- sources
def load_hub(spec: str, **columns: Any) -> dict[str, list[Example]]:
    """``hf:<id>[:<config>]`` through ``datasets.load_dataset``; DataError naming the spec when
    the dataset cannot be had (offline and not cached, unknown id or config)."""
    name, _, config = spec[len(HF_PREFIX) :].partition(":")
    if not name:
        raise ValueError(f"data {spec!r}: expected 'hf:<id>' or 'hf:<id>:<config>'")
    datasets = _datasets()
    try:
        data = datasets.load_dataset(name, config or None)
    except Exception as exc:  # noqa: BLE001 - datasets raises many types; all mean "not loadable"
        raise DataError(f"data {spec!r}: {_hub_failure(exc)}") from exc
    return examples_from_hf(data, where=spec, **columns)


def _hub_failure(exc: Exception) -> str:
    from huggingface_hub import constants

    why = f"{type(exc).__name__}: {exc}"
    if constants.HF_HUB_OFFLINE:
        return (
            f"not in the local cache and HF_HUB_OFFLINE=1 forbids downloading it ({why}); load "
            "it once online, or pass a directory written by save_to_disk or parquet files"
        )
    return f"datasets.load_dataset failed ({why})"


def is_saved_dataset(path: str | Path) -> bool:
    """Whether ``path`` is a directory written by ``Dataset(Dict).save_to_disk``."""
    path = Path(path)
    return (path / "dataset_dict.json").is_file() or (
        (path / "state.json").is_file() and (path / "dataset_info.json").is_file()
    )


def load_saved(path: str | Path, **columns: Any) -> dict[str, list[Example]]:
    """The splits of a ``save_to_disk`` directory."""
    data = _datasets().load_from_disk(str(path))
    return examples_from_hf(data, where=str(path), **columns)


def load_parquet(path: str | Path, *, split: str | None = None, **columns: Any) -> list[Example]:
    """Every row of one parquet file as examples (ids ``f"{split}-{row}"`` without ``id_col``)."""
    path = Path(path)
    if not path.is_file():
        raise DataFileNotFoundError(f"{path}: no such file")
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover
        raise ImportError(f"parquet files need the [hf] extra: {_INSTALL}") from exc
    try:
        table = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow's errors for a bad file vary
        raise DataError(f"{path}: not a readable parquet file ({exc})") from None
    prefix = split if split is not None else path.stem
    return rows_to_examples(table.to_pylist(), table.column_names, where=str(path), split=prefix,
                            **columns)  # fmt: skip


def examples_from_hf(
    data: Any, *, where: str = "<dataset>", **columns: Any
) -> dict[str, list[Example]]:
    """A ``datasets.Dataset`` (the train split) or ``DatasetDict`` (split discovery, module
    docstring) as dece splits; ``columns`` as for :func:`rows_to_examples`."""
    datasets = _datasets()
    if isinstance(data, datasets.Dataset):
        data = {"train": data}
    elif not isinstance(data, (datasets.DatasetDict, Mapping)):
        raise ValueError(
            f"{where}: expected a datasets.Dataset or DatasetDict, got {type(data).__name__}"
        )
    found = _discover(dict(data), where)
    return {
        split: rows_to_examples(_rows(ds), ds.column_names, where=f"{where} [{name}]",
                                split=split, **_label_names(ds, columns), **columns)
        for split, (name, ds) in found.items()
    }  # fmt: skip


def _discover(data: dict[str, Any], where: str) -> dict[str, tuple[str, Any]]:
    found: dict[str, tuple[str, Any]] = {}
    for split, aliases in SPLIT_ALIASES.items():
        names = [n for n in aliases if n in data]
        if len(names) > 1:
            raise DataError(f"{where}: several splits for {split!r}: {', '.join(names)}")
        if names:
            found[split] = (names[0], data[names[0]])
    left = sorted(set(data) - {name for name, _ in found.values()})
    if left:
        logger.info("%s: splits %s are not train/valid/test; left out", where, left)
    if not found:
        raise DataError(f"{where}: no train/validation/test split (splits: {', '.join(data)})")
    return found


def _rows(dataset: Any) -> Iterable[dict[str, Any]]:
    return dataset.to_list() if hasattr(dataset, "to_list") else list(dataset)


def _label_names(dataset: Any, columns: Mapping[str, Any]) -> dict[str, Any]:
    """``label_names``: a ``ClassLabel`` label column's names (rows hold their indices)."""
    feature = getattr(dataset, "features", {}).get(columns.get("label_col") or "")
    names = getattr(feature, "names", None)
    return {"label_names": list(names)} if names else {}


# --------------------------------------------------------------------------- rows
def rows_to_examples(
    rows: Iterable[Mapping[str, Any]],
    column_names: Sequence[str],
    *,
    where: str,
    split: str,
    source_col: str | None = None,
    target_col: str | None = None,
    label_col: str | None = None,
    id_col: str | None = None,
    pair_col: str | None = None,
    optional_target: bool = False,
    chat_template: str | None = None,
    label_names: Sequence[str] | None = None,
) -> list[Example]:
    """Records (dicts) as :class:`Example`; errors name ``where``, the row and the column.

    Column records when ``source_col`` is given or a ``src`` column exists; else TRL records
    (:mod:`dece.data.trl_records`; a ``target_col``, ``label_col`` or ``pair_col`` is refused).
    ``label_names``: the names of integer labels (a ``ClassLabel``).
    """
    columns = list(column_names)
    if source_col is None and "src" not in columns and is_trl(columns):
        refuse_columns(where, target_col=target_col, label_col=label_col, pair_col=pair_col)
        examples = trl_examples(rows, columns, where=where, split=split, id_col=id_col,
                                chat_template=chat_template)  # fmt: skip
    else:
        spec = _ColumnSpec(columns, where, source_col or "src", target_col, label_col, id_col,
                           pair_col, optional_target)  # fmt: skip
        examples = [spec.example(row, i, split, label_names) for i, row in enumerate(rows)]
    if not examples:
        raise DataError(f"{where}: empty (no rows)")
    check_unique_ids(examples, where, id_col)
    return examples


class _ColumnSpec:
    """The columns in use, checked once against the dataset's columns."""

    def __init__(self, columns: list[str], where: str, source: str, target: str | None,
                 label: str | None, id_: str | None, pair: str | None, optional: bool) -> None:  # fmt: skip
        self.optional = optional or label is not None
        if target is None:
            target = "tgt"
        if self.optional and target not in columns:
            target = None  # inputs only (classification, purification)
        self.where, self.source, self.target, self.label, self.id, self.pair = (
            where, source, target, label, id_, pair)  # fmt: skip
        wanted = [c for c in (source, target, label, id_, pair) if c is not None]
        missing = [c for c in wanted if c not in columns]
        if missing:
            hint = "" if source != "src" else "; or TRL records: prompt/completion or messages"
            raise DataError(f"{where}: no column {missing[0]!r} (columns: {', '.join(columns)})"
                            f"{hint}")  # fmt: skip
        self.texts = {c for c in (source, target, pair) if c is not None}
        self.wanted = wanted

    def example(self, row: Mapping[str, Any], index: int, split: str,
                label_names: Sequence[str] | None) -> Example:  # fmt: skip
        values = {
            c: cell_value(self.where, index, c, row.get(c), text=c in self.texts,
                          optional=self.optional and c == self.target)
            for c in self.wanted
        }  # fmt: skip
        label = values[self.label] if self.label is not None else None
        if label is not None and label_names is not None and label.lstrip("-").isdigit():
            label = label_names[int(label)]
        return Example(
            id=values[self.id] if self.id is not None else f"{split}-{index}",
            source=values[self.source],
            target=values[self.target] if self.target is not None else "",
            label=label,
            source_pair=values[self.pair] if self.pair is not None else None,
        )


# --------------------------------------------------------------------------- out
def save_parquet(rows: Sequence[Mapping[str, Any]], path: str | Path) -> None:
    """Write dict rows (one key set) to a parquet file."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover
        raise ImportError(f"parquet files need the [hf] extra: {_INSTALL}") from exc
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(list(rows)), path)


def save_hf(splits: Mapping[str, Sequence[Mapping[str, Any]]], path: str | Path) -> None:
    """Write ``{split: dict rows}`` as one ``DatasetDict`` with ``save_to_disk``."""
    datasets = _datasets()
    data = datasets.DatasetDict(
        {split: datasets.Dataset.from_list(list(rows)) for split, rows in splits.items()}
    )
    data.save_to_disk(str(path))
