"""Named classification tasks built from the shared data: ``techdebt``, ``defect`` and ``clone``.

Registered in :data:`dece.data.DATASETS`, so ``load_dataset("techdebt:4000", seed=0)`` (or
``data: techdebt:4000`` in a config) gives their splits. Every split is deterministic by ``seed``
(one ``numpy`` generator per split, ``default_rng([seed, stream])``).

- ``techdebt``: self-admitted technical debt in Java code comments (Maldonado et al.; the DeCE
  paper's Table 8): ``source`` = the comment, ``label`` ``"1"`` (debt) / ``"0"`` (none), ids from
  the file's ``id`` column. ``techdebt:N`` keeps ``N`` training rows drawn by seed (the first
  ``N`` of the seeded permutation, so ``techdebt:N`` equals ``techdebt`` with
  ``train_max_examples=N``); ``valid`` and ``test`` are whole, in a seeded order (the files are
  sorted by project and label, so a cap such as ``eval_max_examples`` takes a random sample).
- ``defect`` (defect detection from Bugs2Fix): each method gives two examples, the buggy version
  (label ``"1"``, id ``<row>:buggy``) and the fixed one (``"0"``, ``<row>:fixed``). Training rows
  come from Bugs2Fix ``valid``; validation and test from two halves of Bugs2Fix ``test``. A method
  is assigned to one split as a whole, and rows of the ``test`` file that share a text (a fixed
  version common to two bugs, or one method's fixed text being another's buggy text) are
  assigned together, so no text is in both ``valid`` and ``test``. ``defect:N`` keeps ``N``
  training examples (``N`` even: ``N / 2`` methods drawn by seed, both versions of each).
- ``clone`` (clone detection from Bugs2Fix, text pairs): per method one clone pair
  (its buggy and fixed versions, in an order drawn by seed; label ``"1"``, id ``<row>:clone``)
  and one non-clone pair (one of its versions and one version of a different method of the same
  split, drawn by seed; ``"0"``, ``<row>:other``); the second text is ``Example.source_pair``.
  Splits as for ``defect``; ``clone:N`` keeps ``N`` training pairs (``N`` even).

Both Bugs2Fix tasks are plumbing for code classification and the test-time defenses, not
evidence about DeCE: the buggy and fixed versions differ by a few tokens, so a defect classifier
sits near chance, and a lexical-overlap rule (token Jaccard similarity) separates the clone pairs.
As CodeXGLUE ships them, 44 texts of Bugs2Fix ``valid`` (53 of ``test``) are the buggy version of
one row and the fixed version of another (identical inputs with labels 1 and 0 in ``defect``),
and 212 texts occur in both files (so in ``train`` and in ``valid``/``test``); they are kept.

The data directory is ``$DECE_SHARED_DATA`` when set, else ``../shared/data`` from the working
directory (the repository root), else ``../shared/data`` beside the source checkout.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dece.data.example import DataError, DataFileNotFoundError, Example
from dece.data.loaders import DATASETS, SPLITS, load_examples

__all__ = ["SHARED_DATA_ENV", "bugs2fix_methods", "shared_data_dir"]

SHARED_DATA_ENV = "DECE_SHARED_DATA"
_REPO_ROOT = Path(__file__).resolve().parents[3]  # src/dece/data/tasks.py -> repository root
# Stream numbers of the per-split generators (fixed: changing one reshuffles that split only).
_TRAIN, _VALID, _TEST, _HALVES = 0, 1, 2, 3


def shared_data_dir(name: str) -> Path:
    """The directory ``<shared data>/<name>`` (see the module docstring for where it is looked
    for); :class:`~dece.data.DataFileNotFoundError` naming every place tried when absent."""
    env = os.environ.get(SHARED_DATA_ENV)
    roots = (
        [Path(env)]
        if env
        else [Path.cwd() / ".." / "shared" / "data", _REPO_ROOT.parent / "shared" / "data"]
    )
    for root in roots:
        if (root / name).is_dir():
            return (root / name).resolve()
    tried = ", ".join(str(r / name) for r in roots)
    raise DataFileNotFoundError(
        f"dataset {name!r} not found (tried {tried}); set ${SHARED_DATA_ENV} to the directory "
        f"holding {name}/"
    )


def _check_no_columns(task: str, columns: dict[str, Any]) -> None:
    if columns:
        raise ValueError(
            f"dataset {task!r} sets its own columns; got data_columns {sorted(columns)} "
            "(load the files by path to choose columns)"
        )


def _size(task: str, arg: str | None, available: int, *, even: bool = False) -> int:
    """The ``N`` of ``task:N`` (``available`` when no ``N``); ValueError naming the spec."""
    if arg is None:
        return available
    if not arg.isdigit() or int(arg) < 1:
        raise ValueError(f"spec '{task}:{arg}': expected '{task}:N' with N a positive integer")
    n = int(arg)
    if even and n % 2:
        raise ValueError(f"spec '{task}:{arg}': N must be even (two examples per method)")
    if n > available:
        raise ValueError(f"spec '{task}:{arg}': the training split has only {available} rows")
    return n


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), stream])


def _permuted(rows: Sequence[Any], rng: np.random.Generator) -> list[Any]:
    return [rows[int(i)] for i in rng.permutation(len(rows))]


# ------------------------------------------------------------------------------ techdebt
@DATASETS.register("techdebt")
def techdebt(arg: str | None, seed: int, **columns: Any) -> dict[str, list[Example]]:
    """Technical-debt comment classification (module docstring); ``techdebt:N`` subsamples."""
    _check_no_columns("techdebt", columns)
    root = shared_data_dir("techdebt")
    splits = {
        split: load_examples(
            root / f"{split}.csv", source_col="src", target_col=None, label_col="label",
            id_col="id", split=split,
        )
        for split in SPLITS
    }  # fmt: skip
    for split, rows in splits.items():
        bad = next((ex for ex in rows if ex.label not in ("0", "1")), None)
        if bad is not None:
            raise DataError(
                f"{root / f'{split}.csv'}: id {bad.id!r}, column 'label': expected 0 or 1, "
                f"got {bad.label!r}"
            )
    n = _size("techdebt", arg, len(splits["train"]))
    return {
        "train": _permuted(splits["train"], _rng(seed, _TRAIN))[:n],
        "valid": _permuted(splits["valid"], _rng(seed, _VALID)),
        "test": _permuted(splits["test"], _rng(seed, _TEST)),
    }


# ------------------------------------------------------------------------------ Bugs2Fix
def bugs2fix_methods(seed: int) -> dict[str, list[Example]]:
    """Bugs2Fix methods (``source`` buggy, ``target`` fixed, ids ``valid-<row>`` /
    ``test-<row>``) split into ``train`` (the ``valid`` file) and ``valid`` / ``test`` (two
    halves of the ``test`` file; rows sharing a text stay together), each in a seeded order."""
    root = shared_data_dir("bugs2fix")
    train = load_examples(root / "valid.csv", source_col="src", target_col="tgt", split="valid")
    rest = load_examples(root / "test.csv", source_col="src", target_col="tgt", split="test")
    groups = _text_groups(rest)
    order = _rng(seed, _HALVES).permutation(len(groups))
    valid: list[Example] = []
    test: list[Example] = []
    for g in order:  # whole groups to valid until it holds half of the rows
        (valid if len(valid) < len(rest) // 2 else test).extend(rest[i] for i in groups[int(g)])
    return {
        "train": _permuted(train, _rng(seed, _TRAIN)),
        "valid": _permuted(valid, _rng(seed, _VALID)),
        "test": _permuted(test, _rng(seed, _TEST)),
    }


def _text_groups(rows: Sequence[Example]) -> list[list[int]]:
    """Row indices grouped so that rows sharing a text (source or target) are in one group
    (union-find); groups in order of their first row."""
    parent = list(range(len(rows)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[str, int] = {}
    for i, ex in enumerate(rows):
        for text in (ex.source, ex.target):
            j = first.setdefault(text, i)
            parent[find(i)] = find(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(rows)):
        groups.setdefault(find(i), []).append(i)
    return list(groups.values())


def _defect_rows(methods: Sequence[Example]) -> list[Example]:
    out = []
    for m in methods:
        out.append(Example(f"{m.id}:buggy", m.source, "", label="1"))
        out.append(Example(f"{m.id}:fixed", m.target, "", label="0"))
    return out


@DATASETS.register("defect")
def defect(arg: str | None, seed: int, **columns: Any) -> dict[str, list[Example]]:
    """Defect detection from Bugs2Fix (module docstring); ``defect:N`` keeps N train rows."""
    _check_no_columns("defect", columns)
    methods = bugs2fix_methods(seed)
    n = _size("defect", arg, 2 * len(methods["train"]), even=True)
    methods["train"] = methods["train"][: n // 2]
    return {
        split: _permuted(_defect_rows(rows), _rng(seed, 10 + stream))
        for stream, (split, rows) in enumerate(methods.items())
    }


def _clone_rows(methods: Sequence[Example], rng: np.random.Generator) -> list[Example]:
    """One clone and one non-clone pair per method (module docstring)."""
    if len(methods) < 2:
        raise ValueError("clone pairs need at least 2 methods per split")
    cycle = rng.permutation(len(methods))
    partner = {int(cycle[k]): int(cycle[(k + 1) % len(cycle)]) for k in range(len(cycle))}
    flips = rng.random((len(methods), 3)) < 0.5
    out = []
    for i, m in enumerate(methods):
        a, b = (m.source, m.target) if flips[i, 0] else (m.target, m.source)
        out.append(Example(f"{m.id}:clone", a, "", label="1", source_pair=b))
        other = methods[partner[i]]
        mine = m.source if flips[i, 1] else m.target
        theirs = [other.source, other.target] if flips[i, 2] else [other.target, other.source]
        pair = next(t for t in theirs if t != mine)  # the two versions of a method differ
        out.append(Example(f"{m.id}:other", mine, "", label="0", source_pair=pair))
    return out


@DATASETS.register("clone")
def clone(arg: str | None, seed: int, **columns: Any) -> dict[str, list[Example]]:
    """Clone detection (text pairs) from Bugs2Fix (module docstring); ``clone:N`` keeps N."""
    _check_no_columns("clone", columns)
    methods = bugs2fix_methods(seed)
    n = _size("clone", arg, 2 * len(methods["train"]), even=True)
    methods["train"] = methods["train"][: n // 2]
    return {
        split: _permuted(_clone_rows(rows, _rng(seed, 20 + stream)), _rng(seed, 30 + stream))
        for stream, (split, rows) in enumerate(methods.items())
    }
