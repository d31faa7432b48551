"""Poison every split of a dataset and write it out with its manifests (what ``dece poison``
does).

``train`` gets a random ``rate`` sample poisoned (:func:`~dece.attacks.poison_dataset`); every
other split is poisoned in full (:func:`~dece.attacks.poison_test_set`) and written twice: the
fully poisoned rows only (their count is the ASR denominator) and a clean copy.

Output layout under ``out`` (format ``.csv`` or ``.jsonl``)::

    train.csv                  the whole train split, poisoned rows replaced
    valid.csv, test.csv        only the poisoned rows (every eligible row), with their ids
    clean/valid.csv, clean/test.csv   unchanged copies of the eval splits
    manifest.json              {"data", "files", "splits": {split: PoisonManifest}}
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dece.attacks.base import Payload, Trigger
from dece.attacks.poisoner import PoisonResult, poison_dataset, poison_test_set
from dece.data import Example, save_examples

__all__ = ["check_out_dir", "poison_splits", "write_poisoned_splits"]

logger = logging.getLogger(__name__)


def poison_splits(
    splits: Mapping[str, Sequence[Example]],
    trigger: Trigger | str | Mapping[str, Any],
    payload: Payload | str | Mapping[str, Any],
    rate: float,
    seed: int,
) -> dict[str, PoisonResult]:
    """``train`` poisoned at ``rate``; every other split fully (module docstring)."""
    if "train" not in splits:
        logger.warning("no train split; only the eval splits are poisoned")
    return {
        split: poison_dataset(rows, trigger, payload, rate, seed) if split == "train"
        else poison_test_set(rows, trigger, payload, seed)
        for split, rows in splits.items()
    }  # fmt: skip


def check_out_dir(out: str | Path, fmt: str = "csv") -> Path:
    """``out`` if it can hold the layout (it is not created here); ValueError naming it
    otherwise: an existing file (or a file on its path), a directory that cannot be written,
    or one that holds split files of the other format (the result could not be loaded: two
    files per split)."""
    out = Path(out)
    if fmt not in ("csv", "jsonl"):
        raise ValueError(f"--format must be csv or jsonl, got {fmt!r}")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a directory")
    base = out
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise ValueError(f"--out {out}: {base} is a file, not a directory")
    if not os.access(base, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out}: {base} is not writable")
    other = ".jsonl" if fmt == "csv" else ".csv"
    clash = sorted(
        str(p.relative_to(out))
        for d in (out, out / "clean")
        for p in d.glob(f"*{other}")
        if p.stem in ("train", "valid", "test")
    )
    if clash:
        raise ValueError(
            f"--out {out} already holds {', '.join(clash)}: writing {fmt} beside them would give "
            "two files per split; choose another directory or remove them"
        )
    return out


def write_poisoned_splits(
    out: str | Path,
    splits: Mapping[str, Sequence[Example]],
    results: Mapping[str, PoisonResult],
    *,
    data: str,
    fmt: str = "csv",
    columns: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Write the layout of the module docstring; returns the ``manifest.json`` document.

    ``columns``: ``source_col``, ``target_col``, ``id_col``, ``label_col`` for the files.
    Raises ValueError (see :func:`check_out_dir`) before writing anything when ``out`` cannot
    hold the layout.
    """
    out = check_out_dir(out, fmt)
    write = {"source_col": "src", "target_col": "tgt", "id_col": "id", **(columns or {})}
    suffix = f".{fmt}"
    files: dict[str, str] = {}
    for split, result in results.items():
        rows = result.examples if split == "train" else result.poisoned()
        if split != "train":
            clean = out / "clean" / f"{split}{suffix}"
            save_examples(splits[split], clean, **write)
            files[f"{split}_clean"] = str(clean.relative_to(out))
        path = out / f"{split}{suffix}"
        save_examples(rows, path, **write)
        files[split] = str(path.relative_to(out))
        m = result.manifest
        logger.info("%s: poisoned %d of %d rows (%d eligible, %d ineligible)",
                    split, m.n_poisoned, m.n_total, m.n_eligible, m.n_ineligible)  # fmt: skip
    document = {
        "data": data, "files": files,
        "splits": {split: r.manifest.to_json() for split, r in results.items()},
    }  # fmt: skip
    (out / "manifest.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return document
