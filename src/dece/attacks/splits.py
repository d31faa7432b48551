"""Poison every split of a dataset and write it out with its manifests (what ``dece poison``
does).

``train`` gets a random ``rate`` sample poisoned (:func:`~dece.attacks.poison_dataset`); every
other split is poisoned in full (:func:`~dece.attacks.poison_test_set`) and written twice: the
fully poisoned rows only (their count is the ASR denominator) and a clean copy.

Output layout under ``out`` (format ``csv``, ``jsonl`` or ``parquet``: one file per split)::

    train.csv                  the whole train split, poisoned rows replaced
    valid.csv, test.csv        only the poisoned rows (every eligible row), with their ids
    clean/valid.csv, clean/test.csv   unchanged copies of the eval splits
    manifest.json              {"data", "files", "splits": {split: PoisonManifest}}

Format ``hf``: ``out`` is a ``datasets.DatasetDict`` written by ``save_to_disk`` (splits
``train``, ``valid``, ``test`` as above) and ``out/clean`` another (``valid``, ``test``), with
``manifest.json`` beside the splits; ``datasets.load_from_disk(out)`` or ``data=out`` reads it.
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
from dece.data import Example, example_rows, save_examples

__all__ = ["FORMATS", "check_out_dir", "poison_splits", "write_poisoned_splits"]

#: Output formats: one file per split, or a ``datasets`` directory (``hf``).
FORMATS: tuple[str, ...] = ("csv", "jsonl", "parquet", "hf")
_SAVED_MARK = "dataset_dict.json"  # what save_to_disk leaves in a DatasetDict directory

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
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a directory")
    base = out
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise ValueError(f"--out {out}: {base} is a file, not a directory")
    if not os.access(base, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out}: {base} is not writable")
    others = [f".{f}" for f in FORMATS if f not in (fmt, "hf")]
    clash = sorted(
        str(p.relative_to(out))
        for d in (out, out / "clean")
        for p in d.glob("*.*")
        if p.stem in ("train", "valid", "test") and p.suffix in others
    )
    if fmt != "hf" and (out / _SAVED_MARK).is_file():
        clash.append(_SAVED_MARK)
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
    poisoned = {
        split: result.examples if split == "train" else result.poisoned()
        for split, result in results.items()
    }  # fmt: skip
    clean = {split: list(splits[split]) for split in results if split != "train"}
    if fmt == "hf":
        files = _write_hf(out, poisoned, clean, write)
    else:
        files = _write_files(out, poisoned, clean, write, f".{fmt}")
    for split, result in results.items():
        m = result.manifest
        logger.info("%s: poisoned %d of %d rows (%d eligible, %d ineligible)",
                    split, m.n_poisoned, m.n_total, m.n_eligible, m.n_ineligible)  # fmt: skip
    document = {
        "data": data, "files": files,
        "splits": {split: r.manifest.to_json() for split, r in results.items()},
    }  # fmt: skip
    (out / "manifest.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return document


def _write_files(
    out: Path, poisoned: Mapping[str, list[Example]], clean: Mapping[str, list[Example]],
    write: Mapping[str, Any], suffix: str,
) -> dict[str, str]:  # fmt: skip
    files: dict[str, str] = {}
    for split, rows in poisoned.items():
        if split in clean:
            path = out / "clean" / f"{split}{suffix}"
            save_examples(clean[split], path, **write)
            files[f"{split}_clean"] = str(path.relative_to(out))
        path = out / f"{split}{suffix}"
        save_examples(rows, path, **write)
        files[split] = str(path.relative_to(out))
    return files


def _write_hf(
    out: Path, poisoned: Mapping[str, list[Example]], clean: Mapping[str, list[Example]],
    write: Mapping[str, Any],
) -> dict[str, str]:  # fmt: skip
    from dece.data.hf import save_hf

    save_hf({split: example_rows(rows, **write) for split, rows in poisoned.items()}, out)
    files = {split: split for split in poisoned}
    if clean:
        save_hf({split: example_rows(rows, **write) for split, rows in clean.items()},
                out / "clean")  # fmt: skip
        files.update({f"{split}_clean": f"clean/{split}" for split in clean})
    return files
