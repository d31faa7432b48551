"""Paper-style result tables: one row per method, one column group per attack (+ average).

Every cell of a table is the mean over seeds of a finished run's final test metric. BLEU is
shown on its 0-100 scale; CodeBLEU, accuracy, F1 and ASR (fractions in the results) are shown as
percentages; only the metrics some row reports get a column (generation: BLEU, CodeBLEU, ASR;
classification: Acc, F1, ASR, as in the DeCE paper's Tables 8 and 9).
A row's ``Avg.`` group is the mean over the attacks and is left empty when an attack is missing
for that row. One table per (grid when several, dataset, model). Rows with rate 0 are the clean
baselines (``"CE (clean)"``); when a table has several non-zero rates each row carries its rate.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dece.experiments.axes import AXES
from dece.experiments.results import ResultRow

__all__ = ["DEFAULT_METRICS", "FORMATS", "Table", "build_tables", "format_tables"]

logger = logging.getLogger(__name__)

# (result key, column header, factor from the stored scale to the shown scale)
DEFAULT_METRICS: tuple[tuple[str, str, float], ...] = (
    ("bleu", "BLEU", 1.0),
    ("codebleu", "CodeBLEU", 100.0),
    ("accuracy", "Acc", 100.0),
    ("f1", "F1", 100.0),
    ("asr", "ASR", 100.0),
)
FORMATS = ("md", "latex", "csv")
AVERAGE = "Avg."


@dataclass
class Table:
    """A table in the papers' layout; ``values[r][g][m]`` is row r, group g, metric m."""

    context: dict[str, str]  # e.g. {"dataset": "synthetic", "model": "tiny-seq2seq"}
    groups: list[str]  # attack labels, then "Avg." when there are several attacks
    metrics: list[tuple[str, str, float]]
    row_labels: list[str]
    values: list[list[list[float | None]]]

    @property
    def title(self) -> str:
        return ", ".join(f"{k}: {v}" for k, v in self.context.items())


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs)


def _fmt_rate(rate: float) -> str:
    return f"{rate * 100:g}%"


def row_order(r: ResultRow) -> tuple[int, ...]:
    """Position of a row's method among the row axes (rate aside), from the grid order."""
    return tuple(r.order.get(a.field, 0) for a in AXES if a.role == "row" and a.field != "rate")


def build_tables(
    rows: Sequence[ResultRow],
    metrics: Sequence[tuple[str, str, float]] | None = None,
) -> list[Table]:
    """Group result rows into tables (see the module docstring for the layout).

    ``metrics`` defaults to :data:`DEFAULT_METRICS` restricted to the metrics that at least
    one row reports (e.g. CodeBLEU is absent without the ``[codebleu]`` extra).
    """
    if metrics is None:
        metrics = [m for m in DEFAULT_METRICS if any(m[0] in r.final for r in rows)]
    metrics = list(metrics)
    several_grids = len({r.grid for r in rows}) > 1
    context_fields = [a.field for a in AXES if a.role == "context"]

    by_context: dict[tuple[str, ...], list[ResultRow]] = {}
    for r in rows:
        key = ((r.grid,) if several_grids else ()) + tuple(str(r.values[f]) for f in context_fields)
        by_context.setdefault(key, []).append(r)

    tables = []
    for key, group in by_context.items():
        names = (["grid"] if several_grids else []) + context_fields
        context = dict(zip(names, key, strict=True))
        tables.append(_build_one(context, group, metrics))
    return tables


def _build_one(
    context: dict[str, str], rows: list[ResultRow], metrics: list[tuple[str, str, float]]
) -> Table:
    # Column groups (the column axis: attacks) in grid order; row keys (rate, method) with clean
    # rows first, then by the grid order of the row axes.
    column = next(a.field for a in AXES if a.role == "column")
    attacks: dict[str, int] = {}
    row_keys: dict[tuple[float, str], tuple[Any, ...]] = {}
    for r in rows:
        attacks.setdefault(r.label(column), r.order.get(column, len(attacks)))
        row_keys.setdefault((r.rate, r.method), (r.rate, row_order(r)))
    attack_names = sorted(attacks, key=lambda a: (attacks[a], a))
    keys = sorted(row_keys, key=lambda k: (row_keys[k], k[1]))
    poisoned_rates = {rate for rate, _ in keys if rate > 0}

    def label(rate: float, method: str) -> str:
        if rate == 0.0:
            return f"{method} (clean)"
        return f"{method} @ {_fmt_rate(rate)}" if len(poisoned_rates) > 1 else method

    # Collect seeds per (row key, attack, metric); NaN values are missing, not averaged.
    samples: dict[tuple[tuple[float, str], str, str], list[float]] = {}
    for r in rows:
        for mkey, _, factor in metrics:
            value = r.metric(mkey)
            if value is not None and not math.isnan(value):
                samples.setdefault(((r.rate, r.method), r.label(column), mkey), []).append(
                    value * factor
                )

    groups = attack_names + ([AVERAGE] if len(attack_names) > 1 else [])
    values: list[list[list[float | None]]] = []
    for k in keys:
        row_vals: list[list[float | None]] = []
        for attack in attack_names:
            row_vals.append(
                [
                    _mean(samples[(k, attack, m)]) if (k, attack, m) in samples else None
                    for m, _, _ in metrics
                ]
            )
        if len(attack_names) > 1:
            avg: list[float | None] = []
            for mi in range(len(metrics)):
                per_attack = [g[mi] for g in row_vals]
                avg.append(None if any(v is None for v in per_attack) else _mean(per_attack))  # type: ignore[arg-type]
            row_vals.append(avg)
        values.append(row_vals)
    return Table(
        context=context,
        groups=groups,
        metrics=metrics,
        row_labels=[label(*k) for k in keys],
        values=values,
    )


# --------------------------------------------------------------------------- rendering


def _cell(value: float | None, digits: int) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _to_markdown(tables: Sequence[Table], digits: int) -> str:
    parts = []
    for t in tables:
        header = ["Method"] + [f"{g} {h}" for g in t.groups for _, h, _ in t.metrics]
        lines = [
            f"### {t.title}",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "---|" + "---:|" * (len(header) - 1),
        ]
        for label, row in zip(t.row_labels, t.values, strict=True):
            cells = [_cell(v, digits) for group in row for v in group]
            lines.append("| " + " | ".join([label, *cells]) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + f"\n\n{_note(tables)}\n"


def _note(tables: Sequence[Table]) -> str:
    """The scale note under a markdown table, naming only the metrics shown."""
    shown = {h: factor for t in tables for _, h, factor in t.metrics}
    parts = [f"{h} 0-100" if factor == 1.0 else f"{h} in %" for h, factor in shown.items()]
    parts.append("mean over seeds")
    if any(AVERAGE in t.groups for t in tables):
        parts.append("Avg. = mean over attacks")
    return "; ".join(parts) + "."


_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def _tex(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in text)


def _to_latex(tables: Sequence[Table], digits: int) -> str:
    parts = []
    for t in tables:
        m = len(t.metrics)
        spec = "l" + " ".join("r" * m for _ in t.groups)
        multi = " & ".join(rf"\multicolumn{{{m}}}{{c}}{{{_tex(g)}}}" for g in t.groups)
        rules = " ".join(
            rf"\cmidrule(lr){{{2 + i * m}-{1 + (i + 1) * m}}}" for i in range(len(t.groups))
        )
        sub = " & ".join(h for _ in t.groups for _, h, _ in t.metrics)
        lines = [
            r"\begin{table}[t]",
            r"\centering",
            rf"\caption{{{_tex(t.title)}. {_tex(_note([t]))}}}",
            rf"\begin{{tabular}}{{{spec}}}",
            r"\toprule",
            rf" & {multi} \\",
            rules,
            rf"Method & {sub} \\",
            r"\midrule",
        ]
        for label, row in zip(t.row_labels, t.values, strict=True):
            cells = " & ".join(_cell(v, digits) for group in row for v in group)
            lines.append(rf"{_tex(label)} & {cells} \\")
        lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def _to_csv(tables: Sequence[Table], digits: int) -> str:
    context_keys: list[str] = []
    columns: list[str] = []
    for t in tables:
        for k in t.context:
            if k not in context_keys:
                context_keys.append(k)
        for g in t.groups:
            for _, h, _ in t.metrics:
                if f"{g} {h}" not in columns:
                    columns.append(f"{g} {h}")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([*context_keys, "method", *columns])
    for t in tables:
        for label, row in zip(t.row_labels, t.values, strict=True):
            by_col = {
                f"{g} {h}": ("" if v is None or math.isnan(v) else f"{v:.{digits}f}")
                for g, group in zip(t.groups, row, strict=True)
                for (_, h, _), v in zip(t.metrics, group, strict=True)
            }
            writer.writerow(
                [t.context.get(k, "") for k in context_keys]
                + [label]
                + [by_col.get(c, "") for c in columns]
            )
    return buf.getvalue()


def format_tables(tables: Sequence[Table], fmt: str = "md", *, digits: int = 2) -> str:
    """Render tables as ``"md"`` (GitHub markdown), ``"latex"`` (booktabs) or ``"csv"``."""
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} is not supported; allowed: {', '.join(FORMATS)}")
    if not tables:
        raise ValueError("no finished results to tabulate (no result.json found)")
    return {"md": _to_markdown, "latex": _to_latex, "csv": _to_csv}[fmt](tables, digits)
