"""What a defense did to each input, read back from a finished defense cell's records.

A purifier cell (test-time) leaves ``purified/test_{poisoned,clean}.jsonl`` (per input: the
purified text, the input before purifying, score, decision, the edits and, when the purifier
reports them, every scored element), ``predictions/test_*.jsonl`` (the prediction after
purifying), ``predictions/test_poisoned_manifest.json`` (the poisoned inputs' trigger spans); its
parent cell's ``predictions/`` hold the prediction before. A filter cell (training-time) leaves
``filter.jsonl`` (per training row: score, decision, text) and ``poison_manifest.json`` (which
rows were poisoned, with the trigger spans). :func:`load_explorer` turns either into
:class:`InputRecord` rows, each in one category: ``detected`` (poisoned, caught), ``missed``
(poisoned, not caught), ``false-alarm`` (clean, flagged) or ``clean`` (clean, left alone).

Archived cells (:mod:`dece.experiments.archive`) keep only their numbers: their explorer says
so instead of listing inputs.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dece._jsonl import read_jsonl
from dece.experiments.results import ResultRow
from dece.rundir import RunDir

__all__ = ["CATEGORIES", "CellExplorer", "InputRecord", "load_explorer"]

logger = logging.getLogger(__name__)

#: (key, label) of each category, in display order.
CATEGORIES = (("detected", "Detected"), ("missed", "Missed"), ("false-alarm", "False alarm"),
              ("clean", "Clean, passed"))  # fmt: skip


@dataclass
class InputRecord:
    """One input as the defense saw it. Spans are ``{"side", "start", "end"}`` dicts in the
    offsets of ``text`` (side ``"source"``) or ``pair`` (side ``"pair"``)."""

    id: str
    set: str  # "train" (filters) | "poisoned" | "clean" (purifiers' test sets)
    category: str  # a CATEGORIES key
    score: float | None
    text: str | None  # the input before the defense
    pair: str | None = None
    after: str | None = None  # the purified input (purifiers)
    after_pair: str | None = None
    triggers: list[dict[str, Any]] = field(default_factory=list)
    elements: list[dict[str, Any]] = field(default_factory=list)  # + "score"
    changes: list[dict[str, Any]] = field(default_factory=list)  # + "old", "new"
    prediction_before: str | None = None
    prediction_after: str | None = None
    reference: str | None = None


@dataclass
class CellExplorer:
    """The per-input records of one defense cell (``records`` empty when none were kept:
    ``notes`` says why)."""

    hash: str
    kind: str  # "purifier" | "filter" | "none"
    records: list[InputRecord] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # category -> inputs (all, not capped)
    notes: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)  # filters: removed vs the manifest


def load_explorer(row: ResultRow, *, max_per_category: int = 200) -> CellExplorer:
    """The explorer of defense cell ``row`` (``row.path``: its directory); at most
    ``max_per_category`` inputs of each category are kept (``counts`` has the full numbers)."""
    if max_per_category < 1:
        raise ValueError(f"max_per_category must be >= 1, got {max_per_category}")
    cell_dir = row.path
    if cell_dir is None:
        raise ValueError(f"cell {row.hash} has no directory")
    run = RunDir(cell_dir)
    if run.purified_dir.is_dir():
        explorer = _purifier(row.hash, cell_dir)
    elif run.filter_rows.is_file():
        explorer = _filter(row.hash, cell_dir)
    else:
        note = (
            "archived cell: only its numbers were kept (result.json, metrics); the per-input "
            "records stay in the run directory it was archived from"
            if run.filter_summary.is_file() or _stage(row.defense) == "test"
            else "this defense changes the training and scores no input, or the cell kept no "
            "per-input records"
        )
        return CellExplorer(row.hash, "none", notes=[note])
    _cap(explorer, max_per_category)
    return explorer


def _stage(name: str) -> str:
    from dece.defenses import defense_stage

    try:
        return defense_stage(name)
    except (KeyError, ValueError):
        return "?"


def _cap(explorer: CellExplorer, limit: int) -> None:
    kept, seen = [], dict.fromkeys(explorer.counts, 0)
    for record in explorer.records:
        seen[record.category] = seen.get(record.category, 0) + 1
        if seen[record.category] <= limit:
            kept.append(record)
    if len(kept) < len(explorer.records):
        explorer.notes.append(f"showing at most {limit} inputs per category "
                              f"({len(kept)} of {len(explorer.records)})")  # fmt: skip
    explorer.records = kept


def _category(poisoned: bool, caught: bool) -> str:
    if poisoned:
        return "detected" if caught else "missed"
    return "false-alarm" if caught else "clean"


def _counts(records: list[InputRecord]) -> dict[str, int]:
    counts = {key: 0 for key, _ in CATEGORIES}
    for record in records:
        counts[record.category] += 1
    return counts


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _by_id(path: Path) -> dict[str, dict[str, Any]]:
    return {str(r["id"]): r for r in read_jsonl(path)} if path.is_file() else {}


# --------------------------------------------------------------------------- purifiers
def _parent_dir(cell_dir: Path) -> Path | None:
    try:
        config = yaml.safe_load((cell_dir / "cell.yaml").read_text(encoding="utf-8")) or {}
    except OSError:
        config = (_read_json(cell_dir / "result.json") or {}).get("config") or {}
    parent = config.get("parent")
    return cell_dir.parent / parent if parent and (cell_dir.parent / parent).is_dir() else None


def _purifier(h: str, cell_dir: Path) -> CellExplorer:
    explorer = CellExplorer(h, "purifier")
    parent = _parent_dir(cell_dir)
    if parent is None:
        explorer.notes.append("parent cell not found: no prediction before the defense")
    run = RunDir(cell_dir)
    manifest = _read_json(run.poisoned_manifest("test"))
    if manifest is None:
        explorer.notes.append("no test_poisoned_manifest.json: trigger spans not recorded")
    spans = (manifest or {}).get("spans") or {}
    poisoned_ids = set((manifest or {}).get("poisoned_ids") or [])
    for name in ("poisoned", "clean"):
        path = run.purified("test", name)
        if not path.is_file():
            continue
        after = _by_id(run.predictions("test", name))
        before = _by_id(RunDir(parent).predictions("test", name)) if parent else {}
        for row in read_jsonl(path):
            explorer.records.append(
                _purified_record(row, name, spans, poisoned_ids, after, before, manifest)
            )
    explorer.counts = _counts(explorer.records)
    return explorer


def _purified_record(
    row: dict[str, Any],
    name: str,
    spans: dict[str, Any],
    poisoned_ids: set[str],
    after: dict[str, dict[str, Any]],
    before: dict[str, dict[str, Any]],
    manifest: dict[str, Any] | None,
) -> InputRecord:
    i = str(row["id"])
    poisoned = name == "poisoned" and (i in poisoned_ids if manifest is not None else True)
    original = before.get(i, {})
    text = row.get("input", original.get("source"))
    pair = row.get("input_pair", original.get("source_pair"))
    changes = list(row.get("changes") or [])
    elements = list(row.get("elements") or [])
    if not elements and changes:  # no per-element scores: the edited spans carry the input's
        elements = [{**c, "score": row.get("score")} for c in changes]
    return InputRecord(
        id=i, set=name, category=_category(poisoned, bool(row.get("detected"))),
        score=row.get("score"), text=text if text is not None else row.get("source"),
        pair=pair, after=row.get("source"), after_pair=row.get("source_pair"),
        triggers=list(spans.get(i) or []) if name == "poisoned" else [],
        elements=elements, changes=changes,
        prediction_before=original.get("prediction"),
        prediction_after=after.get(i, {}).get("prediction"),
        reference=after.get(i, {}).get("reference", original.get("reference")),
    )  # fmt: skip


# --------------------------------------------------------------------------- filters
def _filter(h: str, cell_dir: Path) -> CellExplorer:
    explorer = CellExplorer(h, "filter")
    run = RunDir(cell_dir)
    manifest = _read_json(run.poison_manifest)
    if manifest is None:
        explorer.notes.append("no poison_manifest.json: which rows were poisoned is unknown")
    spans = (manifest or {}).get("spans") or {}
    poisoned_ids = set((manifest or {}).get("poisoned_ids") or [])
    rows = read_jsonl(run.filter_rows)
    if rows and "source" not in rows[0]:
        explorer.notes.append("filter.jsonl holds no texts (a cell run before texts were kept)")
    for row in rows:
        i = str(row["id"])
        explorer.records.append(InputRecord(
            id=i, set="train", category=_category(i in poisoned_ids, bool(row["flagged"])),
            score=row.get("score"), text=row.get("source"), pair=row.get("source_pair"),
            triggers=list(spans.get(i) or []),
        ))  # fmt: skip
    explorer.counts = _counts(explorer.records)
    removed = explorer.counts["detected"] + explorer.counts["false-alarm"]
    explorer.summary = {
        "training rows": len(rows), "removed": removed, "poisoned (manifest)": len(poisoned_ids),
        "poisoned and removed": explorer.counts["detected"],
        "poisoned and kept": explorer.counts["missed"],
        "clean and removed": explorer.counts["false-alarm"],
    }  # fmt: skip
    return explorer
