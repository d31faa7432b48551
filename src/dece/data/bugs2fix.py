"""``bugs2fix-repair``: CodePurify's program-repair setting on Bugs2Fix (small, abstracted Java).

The shared copy of Bugs2Fix has no training split (``valid.csv`` and ``test.csv``, 5,835 rows
each), so the setting is built from them:

- ``train``: ``valid.csv`` less its last 10% (the first 5,251 rows);
- ``valid``: the last 10% of ``valid.csv`` (584 rows), the clean calibration split of the
  test-time defenses (never trained on);
- ``test``: ``N`` rows of ``test.csv`` (default 1,000) drawn without replacement with
  ``numpy.random.default_rng(seed)`` (``seed`` is the run's ``data_seed``), kept in file order.

Ids are those of the file rows (``valid-<row>``, ``test-<row>``, 0-based data rows), so every row
can be traced back to the shared file. The directory is, in order: ``$DECE_BUGS2FIX_DIR``,
``$DECE_SHARED_DATA/bugs2fix``, then ``../shared/data/bugs2fix`` relative to the working
directory and to the repository root.

>>> from dece.data import load_dataset
>>> splits = load_dataset("bugs2fix-repair:200")            # doctest: +SKIP
>>> [len(splits[s]) for s in ("train", "valid", "test")]    # doctest: +SKIP
[5251, 584, 200]
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from dece.data.example import DataFileNotFoundError, Example
from dece.data.loaders import DATASETS, load_examples

__all__ = ["CALIBRATION_FRACTION", "DEFAULT_TEST_ROWS", "bugs2fix_dir", "bugs2fix_repair"]

CALIBRATION_FRACTION = 0.1
DEFAULT_TEST_ROWS = 1000


def bugs2fix_dir() -> Path:
    """The directory holding ``valid.csv`` and ``test.csv`` (see the module docstring)."""
    candidates: list[Path] = []
    if os.environ.get("DECE_BUGS2FIX_DIR"):
        candidates.append(Path(os.environ["DECE_BUGS2FIX_DIR"]))
    if os.environ.get("DECE_SHARED_DATA"):
        candidates.append(Path(os.environ["DECE_SHARED_DATA"]) / "bugs2fix")
    candidates.append(Path.cwd().parent / "shared" / "data" / "bugs2fix")
    candidates.append(Path(__file__).resolve().parents[3].parent / "shared" / "data" / "bugs2fix")
    for path in candidates:
        if (path / "valid.csv").is_file() and (path / "test.csv").is_file():
            return path
    tried = ", ".join(str(p) for p in candidates)
    raise DataFileNotFoundError(
        f"bugs2fix-repair: no directory with valid.csv and test.csv among {tried}; "
        "set DECE_BUGS2FIX_DIR"
    )


def bugs2fix_repair(
    *, test_rows: int = DEFAULT_TEST_ROWS, seed: int = 0, directory: str | Path | None = None
) -> dict[str, list[Example]]:
    """The three splits of the module docstring."""
    if test_rows < 1:
        raise ValueError(f"bugs2fix-repair: test_rows must be >= 1, got {test_rows}")
    root = Path(directory) if directory is not None else bugs2fix_dir()
    valid = load_examples(root / "valid.csv", split="valid")
    test = load_examples(root / "test.csv", split="test")
    n_calib = int(round(CALIBRATION_FRACTION * len(valid)))
    if test_rows > len(test):
        raise ValueError(
            f"bugs2fix-repair: {test_rows} test rows requested but {root / 'test.csv'} has "
            f"{len(test)}"
        )
    picked = np.sort(np.random.default_rng(seed).choice(len(test), test_rows, replace=False))
    return {
        "train": valid[: len(valid) - n_calib],
        "valid": valid[len(valid) - n_calib :],
        "test": [test[int(i)] for i in picked],
    }


@DATASETS.register("bugs2fix-repair")
def _bugs2fix_repair(arg: str | None, seed: int, **columns: Any) -> dict[str, list[Example]]:
    """``bugs2fix-repair`` (1,000 test rows) or ``bugs2fix-repair:N`` (N test rows)."""
    if columns:
        raise ValueError(
            f"bugs2fix-repair: the columns are fixed (src, tgt); got {sorted(columns)}"
        )
    if arg is None:
        return bugs2fix_repair(seed=seed)
    if not arg.isdigit() or int(arg) < 1:
        raise ValueError(
            f"spec 'bugs2fix-repair:{arg}': expected 'bugs2fix-repair:N' with N a positive integer"
        )
    return bugs2fix_repair(test_rows=int(arg), seed=seed)
