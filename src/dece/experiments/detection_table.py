"""Detection quality of the training-time filters: run them without retraining, and tabulate.

Scoring a poisoned training split costs only its victim (the grid's undefended CE cell, trained
once per attack) plus the filter's own work, while a filter *cell* also retrains on the kept
rows (about one training run). :func:`run_detection` therefore scores the training split of
every filter cell of a grid with its parent's model, **without** retraining, into
``<runs>/detection/<cell hash>/`` (``filter.jsonl``: every row's score and decision;
``filter.json``; ``detection.json``: the cell's identity, P/R/F1/AUROC against the poison
manifest, rows removed and the filter's cost). Parents are trained first, as the grid would
(once, model kept, per-example losses recorded for ``dynamics``), so the retrain cells of the
same grid reuse them. ``dece filter --grid CONFIG`` runs it.

:func:`load_detection_rows` reads both kinds of record under a runs directory (a finished
filter cell's ``filter.json`` + ``cell.yaml``, and ``detection/*/detection.json``; a cell's own
record wins when both exist) and :func:`format_detection_table` renders one table per (dataset,
model, rate, loss): a row per filter, per attack precision / recall / F1 / AUROC, rows removed
and the filter's scoring time; ``dece report`` appends it (:func:`detection_section`).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dece.experiments.axes import AXES
from dece.experiments.config import GridConfig
from dece.experiments.grid import Cell, expand_grid
from dece.experiments.markdown import md_table
from dece.experiments.runner import (
    CELL_FILE,
    RESULT_FILE,
    atomic_write_json,
    build_train_config,
    ensure_parents,
)
from dece.rundir import FILTER_FILE

__all__ = [
    "DETECTION_DIR",
    "DetectionRow",
    "detection_section",
    "format_detection_table",
    "load_detection_rows",
    "run_detection",
]

logger = logging.getLogger(__name__)

DETECTION_DIR = "detection"
DETECTION_FILE = "detection.json"


# --------------------------------------------------------------------------- running
def filter_cells(config: GridConfig) -> list[Cell]:
    """The grid's cells whose defense is a training-time filter (not a recipe), in grid order."""
    from dece.defenses import DEFENSES, DataFilter

    return [
        c for c in expand_grid(config)
        if not c.defense.undefended and issubclass(DEFENSES.get(c.defense.name), DataFilter)
    ]  # fmt: skip


def run_detection(
    config: GridConfig,
    output_dir: str | Path,
    *,
    shard: tuple[int, int] = (0, 1),
    progress: bool = False,
) -> list[Path]:
    """Score the training split of every filter cell with its parent's model, without
    retraining (see the module docstring); cells already scored are skipped. ``shard=(i, n)``
    takes every n-th distinct parent from i and the filter cells reading it. Returns the
    ``detection.json`` paths of the shard's cells."""
    out = Path(output_dir)
    cells = filter_cells(config)
    parents = list(dict.fromkeys(_parent_key(c) for c in cells))[shard[0] :: shard[1]]
    cells = [c for c in cells if _parent_key(c) in parents]
    errors = ensure_parents(config, out, cells, progress=progress)
    for h, error in errors.items():
        logger.error("cell %s: %s", h, error)
    written = []
    for cell in cells:
        if cell.hash in errors:
            continue
        path = out / DETECTION_DIR / cell.hash / DETECTION_FILE
        if not path.is_file():
            detect_cell(cell, out)
        written.append(path)
    if errors:
        raise RuntimeError(f"{len(errors)} filter cell(s) have no parent model: "
                           + "; ".join(f"{h}: {e}" for h, e in errors.items()))  # fmt: skip
    return written


def _parent_key(cell: Cell) -> str:
    parent = cell.parent()
    return parent.hash if parent is not None else cell.hash


def detect_cell(cell: Cell, output_dir: Path) -> dict[str, Any]:
    """Score one filter cell's training split (its parent's model when the filter needs one)
    into ``<output_dir>/detection/<hash>/``; returns the ``detection.json`` record."""
    from dece.defenses import get_defense
    from dece.pipeline.data import prepare_data
    from dece.pipeline.run import _filter_summary, apply_filter, filter_victim

    det_dir = output_dir / DETECTION_DIR / cell.hash
    det_dir.mkdir(parents=True, exist_ok=True)
    cell_config = cell.to_config()
    cfg = build_train_config(cell_config, output_dir / cell.hash)
    started = time.perf_counter()
    bundle = prepare_data(cfg)
    defense = get_defense(cfg.defense.name, **cfg.defense.args)
    victim = filter_victim(defense, cfg)
    loaded = time.perf_counter()
    result = apply_filter(defense, bundle, victim, det_dir)
    record = {
        "hash": cell.hash, "config": cell_config, "defense": defense.config(),
        "threshold": result.threshold, **_filter_summary(result, bundle),
        "cost": result.info.get("cost", {}),
        "seconds_total": round(time.perf_counter() - started, 3),
        "seconds_load": round(loaded - started, 3),
    }  # fmt: skip
    atomic_write_json(det_dir / DETECTION_FILE, record)
    return record


# --------------------------------------------------------------------------- loading
@dataclass
class DetectionRow:
    """One filter's detection quality on one cell's training split."""

    hash: str
    labels: dict[str, str]
    values: dict[str, Any]
    scores: dict[str, Any]  # precision, recall, f1, auroc, removed, n_poisoned, n_rows
    cost: dict[str, Any] = field(default_factory=dict)
    source: str = "cell"  # "cell" (a filter-then-retrain cell) or "detection" (scoring only)
    path: Path | None = None
    order: dict[str, int] = field(default_factory=dict)  # axis field -> position in the grid

    def label(self, axis_field: str) -> str:
        return self.labels.get(axis_field, "")


def _row(config: dict[str, Any], summary: dict[str, Any], source: str, path: Path) -> DetectionRow:
    scores = {
        "precision": summary.get("filter_precision"), "recall": summary.get("filter_recall"),
        "f1": summary.get("filter_f1"), "auroc": summary.get("filter_auroc"),
        "removed": summary.get("filter_removed"), "n_poisoned": summary.get("filter_n_poisoned"),
        "n_rows": summary.get("filter_n_rows"),
    }  # fmt: skip
    cost = dict(summary.get("cost") or summary.get("info", {}).get("cost") or {})
    values = {a.field: config.get(a.field) for a in AXES if a.field in config}
    order = {str(k): int(v) for k, v in (config.get("order") or {}).items()}
    return DetectionRow(str(config.get("hash", path.name)), dict(config.get("labels") or {}),
                        values, scores, cost, source, path, order)  # fmt: skip


def load_detection_rows(runs_dir: str | Path) -> list[DetectionRow]:
    """Every filter's detection record under ``runs_dir`` (see the module docstring), in grid
    order; a filter cell's own record wins over a scoring-only one of the same hash."""
    root = Path(runs_dir)
    rows: dict[str, DetectionRow] = {}
    for path in sorted(root.rglob(f"{DETECTION_DIR}/*/{DETECTION_FILE}")):
        data = json.loads(path.read_text())
        rows[data["hash"]] = _row(data["config"], data, "detection", path.parent)
    for path in sorted(root.rglob(FILTER_FILE)):
        cell_file, result_file = path.parent / CELL_FILE, path.parent / RESULT_FILE
        if DETECTION_DIR in path.parts or not (cell_file.is_file() and result_file.is_file()):
            continue
        config = yaml.safe_load(cell_file.read_text()) or {}
        rows[str(config.get("hash", path.parent.name))] = _row(
            config, json.loads(path.read_text()), "cell", path.parent
        )
    return sorted(rows.values(), key=lambda r: tuple(r.order.get(a.field, 0) for a in AXES))


# --------------------------------------------------------------------------- rendering
_METRICS = (("precision", "P", 100.0), ("recall", "R", 100.0), ("f1", "F1", 100.0),
            ("auroc", "AUROC", 100.0), ("removed", "removed", 1.0))  # fmt: skip


def _fmt(value: Any, factor: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value * factor:.1f}" if factor != 1.0 else f"{int(value)}"


def format_detection_table(rows: Sequence[DetectionRow], fmt: str = "md") -> str:
    """Markdown (``"md"``) or CSV (``"csv"``) detection tables; see the module docstring.
    P / R / F1 / AUROC in %; ``removed``: rows flagged; ``s``: the filter's scoring seconds;
    ``passes``: model forward passes over the training split (0 for model-free filters)."""
    if fmt not in ("md", "csv", "latex"):
        raise ValueError(f"format {fmt!r} is not supported; allowed: md, latex, csv")
    groups: dict[tuple[str, ...], list[DetectionRow]] = {}
    for r in rows:
        ctx = (r.label("dataset"), r.label("model"), r.label("rate"), r.label("loss"))
        groups.setdefault(ctx, []).append(r)
    parts = []
    for (dataset, model, rate, loss), group in groups.items():
        attacks = list(dict.fromkeys(r.label("attack") for r in group))
        filters = list(dict.fromkeys(r.label("defense") for r in group))
        by = {(r.label("defense"), r.label("attack")): r for r in group}
        header = ["Filter"] + [f"{a} {h}" for a in attacks for _, h, _ in _METRICS]
        header += [f"{a} s" for a in attacks] + ["passes"]
        body = []
        for f in filters:
            cells = [f]
            for a in attacks:
                r = by.get((f, a))
                cells += [_fmt(r.scores.get(k) if r else None, fac) for k, _, fac in _METRICS]
            for a in attacks:
                r = by.get((f, a))
                sec = r.cost.get("seconds") if r else None
                cells.append("-" if sec is None else f"{float(sec):.1f}")
            passes = [by[(f, a)].cost.get("model_passes") for a in attacks if (f, a) in by]
            passes = [p for p in passes if p is not None]
            cells.append("-" if not passes else f"{max(passes):.1f}")
            body.append(cells)
        title = f"Detection ({dataset}, {model}, poisoning {rate}, victim {loss or 'CE'})"
        parts.append(_render(title, header, body, fmt))
    return "\n\n".join(parts) + "\n"


def _render(title: str, header: list[str], body: list[list[str]], fmt: str) -> str:
    if fmt == "csv":
        lines = [",".join(header)] + [",".join(row) for row in body]
        return "\n".join(lines)
    if fmt == "latex":
        esc = lambda t: t.replace("%", r"\%").replace("_", r"\_")  # noqa: E731
        lines = [r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}", r"\toprule",
                 " & ".join(esc(h) for h in header) + r" \\", r"\midrule"]  # fmt: skip
        lines += [" & ".join(esc(c) for c in row) + r" \\" for row in body]
        lines += [r"\bottomrule", r"\end{tabular}"]
        return f"% {title}\n" + "\n".join(lines)
    lines = [f"### {title}", "", md_table(header, body, "l" + "r" * (len(header) - 1))]
    lines += ["", "P / R / F1 / AUROC in % against the poison manifest; removed = rows flagged; "
              "s = the filter's scoring seconds (victim calls included, training excluded); "
              "passes = victim forward passes over the training split."]  # fmt: skip
    return "\n".join(lines)


def detection_section(runs_dir: str | Path, fmt: str = "md") -> str:
    """The detection tables of ``runs_dir`` preceded by a blank line, or "" when no filter has
    run there (what ``dece report`` appends to its md / latex tables; a CSV file keeps one table:
    "" for ``"csv"``, use :func:`format_detection_table` directly)."""
    if fmt == "csv":
        return ""
    rows = load_detection_rows(runs_dir)
    return "\n" + format_detection_table(rows, fmt) if rows else ""
