"""Datasets: the :class:`Example` record, CSV/JSONL/parquet loaders, Hugging Face ``datasets``
(:mod:`dece.data.hf`: ``hf:<id>``, ``save_to_disk`` directories), TRL's SFT records in any of
them (:mod:`dece.data.trl_records`), split discovery, a synthetic set.

>>> from dece.data import load_dataset
>>> splits = load_dataset("synthetic:16")
>>> [len(splits[s]) for s in ("train", "valid", "test")]
[16, 2, 2]
"""

from dece.data import bugs2fix as _bugs2fix  # noqa: F401  (registers bugs2fix-repair)
from dece.data import tasks as _tasks  # noqa: F401  (registers techdebt, defect, clone)
from dece.data.example import DataError, DataFileNotFoundError, Example, check_examples
from dece.data.loaders import (
    DATASETS,
    SPLITS,
    discover_splits,
    example_rows,
    load_dataset,
    load_examples,
    load_splits,
    save_examples,
)
from dece.data.synthetic import synthetic_dataset

__all__ = [
    "DATASETS",
    "SPLITS",
    "DataError",
    "DataFileNotFoundError",
    "Example",
    "check_examples",
    "discover_splits",
    "example_rows",
    "load_dataset",
    "load_examples",
    "load_splits",
    "save_examples",
    "synthetic_dataset",
]
