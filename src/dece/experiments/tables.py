"""Paper-style result tables: one row per method, one column group per attack (+ average).

Every cell of a table is the mean over seeds of a finished run's final test metric; NaN values
are not averaged but counted: a mean that left some out is marked (``†``; LaTeX ``+``) and its
count is in a footnote under the table (CSV: a ``nan_left_out`` column), and a cell whose every
seed is NaN shows ``NaN``, not ``-`` (no result). BLEU is
shown on its 0-100 scale; CodeBLEU, accuracy, F1 and ASR (fractions in the results) are shown as
percentages; only the metrics some row reports get a column (generation: BLEU, BLEU (authors),
CodeBLEU, ASR; classification: Acc, F1, ASR, as in the DeCE paper's Tables 8 and 9). BLEU, the
headline, is sacrebleu corpus BLEU; "BLEU (authors)" is the DeCE authors' mean per-example BLEU
(:func:`dece.metrics.bleu_authors`), the column to set beside the paper's BLEU.
A row's ``Avg.`` group is the mean over the attacks and is left empty when an attack is missing
for that row. One table per (grid when several, dataset, model). Rows with rate 0 are the clean
baselines (``"CE (clean)"``); when a table has several non-zero rates each row carries its rate.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dece.experiments.axes import AXES
from dece.experiments.markdown import md_table
from dece.experiments.results import ResultRow
from dece.metrics.bleu import BLEU_AUTHORS_KEY

__all__ = [
    "AUTHORS_BLEU",
    "DEFAULT_METRICS",
    "FORMATS",
    "Table",
    "authors_bleu_note",
    "build_tables",
    "check_predict_revisions",
    "format_tables",
]

logger = logging.getLogger(__name__)

# (result key, column header, factor from the stored scale to the shown scale)
DEFAULT_METRICS: tuple[tuple[str, str, float], ...] = (
    ("bleu", "BLEU", 1.0),
    (BLEU_AUTHORS_KEY, "BLEU (authors)", 1.0),
    ("codebleu", "CodeBLEU", 100.0),
    ("accuracy", "Acc", 100.0),
    ("f1", "F1", 100.0),
    ("asr", "ASR", 100.0),
)
#: What a column marked "(authors)" holds, beside the headline (sacrebleu corpus) BLEU.
AUTHORS_BLEU = (
    "the DeCE authors' BLEU (codebleu's BLEU per example on whitespace tokens, averaged), "
    "beside the headline sacrebleu corpus BLEU"
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
    # (row, group, metric) -> (NaN values left out of that mean, seeds): counted in a footnote
    nan_left_out: dict[tuple[int, int, int], tuple[int, int]] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return ", ".join(f"{k}: {v}" for k, v in self.context.items())


def authors_bleu_note(finals: Iterable[Mapping[str, Any]]) -> str:
    """One sentence for a hand-laid results file: what its "(authors)" BLEU column holds, or,
    when no result in ``finals`` reports it, why the column is absent."""
    if any(f.get(BLEU_AUTHORS_KEY) is not None for f in finals):
        return f"(authors) = {AUTHORS_BLEU}."
    return (
        f"No (authors) column: {AUTHORS_BLEU}, was not reported when these results were "
        "measured, and only a run directory's predictions (not archived) can give it without "
        "retraining (`dece evaluate --predictions-dir RUN/predictions`)."
    )


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs)


def _fmt_rate(rate: float) -> str:
    return f"{rate * 100:g}%"


def row_order(r: ResultRow) -> tuple[int, ...]:
    """Position of a row's method among the row axes (rate aside), from the grid order."""
    return tuple(r.order.get(a.field, 0) for a in AXES if a.role == "row" and a.field != "rate")


def check_predict_revisions(rows: Sequence[ResultRow]) -> int:
    """The one victim batching revision of ``rows`` (``predict_revision``; cells without it are
    1, see :data:`dece.victim.BATCHING_REVISION`); ``ValueError`` naming the revisions when
    they are mixed (greedy outputs of different batchings may differ). Classification cells
    (``accuracy`` recorded, no ``bleu``) are not counted: a batching changes a classifier's
    logits at float level only (its argmax moves at an exact tie), so an undefended classifier
    cell of revision 1 and its purifier cells of revision 2 can share a table."""
    found = {int(r.final.get("predict_revision", 1)) for r in rows if not _is_classifier(r)}
    if len(found) > 1:
        raise ValueError(f"cells of victim batching revisions {sorted(found)} in one table: "
                         "rerun the older cells or report them apart (issue 27)")  # fmt: skip
    return found.pop() if found else 1


def _is_classifier(row: ResultRow) -> bool:
    return "accuracy" in row.final and "bleu" not in row.final


def build_tables(
    rows: Sequence[ResultRow],
    metrics: Sequence[tuple[str, str, float]] | None = None,
) -> list[Table]:
    """Group result rows into tables (see the module docstring for the layout).

    ``metrics`` defaults to :data:`DEFAULT_METRICS` restricted to the metrics that at least
    one row reports (e.g. CodeBLEU is absent without the ``[codebleu]`` extra).
    """
    check_predict_revisions(rows)
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

    # Collect seeds per (row key, attack, metric); NaN values are not averaged but counted.
    samples: dict[tuple[tuple[float, str], str, str], list[float]] = {}
    nans: dict[tuple[tuple[float, str], str, str], int] = {}
    for r in rows:
        for mkey, _, factor in metrics:
            value = r.metric(mkey)
            at = ((r.rate, r.method), r.label(column), mkey)
            if value is not None and math.isnan(value):
                nans[at] = nans.get(at, 0) + 1
            elif value is not None:
                samples.setdefault(at, []).append(value * factor)

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
        nan_left_out=_nan_counts(keys, attack_names, metrics, samples, nans, values),
    )


_Key = tuple[tuple[float, str], str, str]  # ((rate, method), attack, metric)


def _nan_counts(
    keys: list[tuple[float, str]],
    attacks: list[str],
    metrics: list[tuple[str, str, float]],
    samples: dict[_Key, list[float]],
    nans: dict[_Key, int],
    values: list[list[list[float | None]]],
) -> dict[tuple[int, int, int], tuple[int, int]]:
    """(row, group, metric) -> (NaN seeds, seeds) of every mean that left NaN values out; an
    ``Avg.`` cell counts those of the attacks it averages."""
    out: dict[tuple[int, int, int], tuple[int, int]] = {}
    avg = len(attacks)
    for ri, k in enumerate(keys):
        for mi, (m, _, _) in enumerate(metrics):
            for gi, attack in enumerate(attacks):
                n = nans.get((k, attack, m), 0)
                if n:
                    out[(ri, gi, mi)] = (n, n + len(samples.get((k, attack, m), [])))
            counted = [out[(ri, gi, mi)] for gi in range(avg) if (ri, gi, mi) in out]
            if counted and len(values[ri]) > avg and values[ri][avg][mi] is not None:
                out[(ri, avg, mi)] = (sum(c[0] for c in counted), sum(c[1] for c in counted))
    return out


# --------------------------------------------------------------------------- rendering


def _cell(value: float | None, digits: int) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _shown(t: Table, at: tuple[int, int, int], digits: int, mark: str) -> str:
    """A cell as shown: ``NaN`` when every seed's value is NaN, the mean of the others with
    ``mark`` (the footnote's) when some are, else the mean (``-`` when there is none)."""
    value = t.values[at[0]][at[1]][at[2]]
    if at not in t.nan_left_out:
        return _cell(value, digits)
    n, total = t.nan_left_out[at]
    return "NaN" if n == total or value is None else _cell(value, digits) + mark


def _nan_note(t: Table, mark: str) -> str:
    """The footnote of a table with NaN values: each cell's count, nothing silently dropped."""
    cells = [(at, n, total) for at, (n, total) in sorted(t.nan_left_out.items())
             if t.groups[at[1]] != AVERAGE]  # fmt: skip
    parts = [
        f"{t.row_labels[ri]}, {t.groups[gi]} {t.metrics[mi][1]}: {n} of {total} seed(s)"
        + (" (all NaN)" if n == total else "")
        for (ri, gi, mi), n, total in cells
    ]
    return (f"{mark} mean of the seeds whose value is a number: "
            f"{sum(n for _, n, _ in cells)} NaN value(s) left out ({'; '.join(parts)}).")  # fmt: skip


def _to_markdown(tables: Sequence[Table], digits: int) -> str:
    parts = []
    for t in tables:
        header = ["Method"] + [f"{g} {h}" for g in t.groups for _, h, _ in t.metrics]
        body = []
        for ri, (label, row) in enumerate(zip(t.row_labels, t.values, strict=True)):
            cells = [_shown(t, (ri, gi, mi), digits, "†") for gi, group in enumerate(row)
                     for mi in range(len(group))]  # fmt: skip
            body.append([label, *cells])
        lines = [f"### {t.title}", "", md_table(header, body, "l" + "r" * (len(header) - 1))]
        if t.nan_left_out:
            lines += ["", _nan_note(t, "†")]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + f"\n\n{_note(tables)}\n"


def _note(tables: Sequence[Table]) -> str:
    """The scale note under a markdown table, naming only the metrics shown."""
    shown = {h: factor for t in tables for _, h, factor in t.metrics}
    parts = [f"{h} 0-100" if factor == 1.0 else f"{h} in %" for h, factor in shown.items()]
    if any(key == BLEU_AUTHORS_KEY for t in tables for key, _, _ in t.metrics):
        parts.append(f"(authors) = {AUTHORS_BLEU}")
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
            rf"\caption{{{_tex(t.title)}. {_tex(_note([t]))}"
            + (rf" {_tex(_nan_note(t, '+'))}" if t.nan_left_out else "")
            + "}",
            rf"\begin{{tabular}}{{{spec}}}",
            r"\toprule",
            rf" & {multi} \\",
            rules,
            rf"Method & {sub} \\",
            r"\midrule",
        ]
        for ri, (label, row) in enumerate(zip(t.row_labels, t.values, strict=True)):
            cells = " & ".join(_shown(t, (ri, gi, mi), digits, "$^+$") for gi, group
                               in enumerate(row) for mi in range(len(group)))  # fmt: skip
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
    any_nan = any(t.nan_left_out for t in tables)
    writer.writerow([*context_keys, "method", *columns] + (["nan_left_out"] if any_nan else []))
    for t in tables:
        for ri, label in enumerate(t.row_labels):
            by_col = {
                f"{g} {h}": _shown(t, (ri, gi, mi), digits, "")
                for gi, g in enumerate(t.groups)
                for mi, (_, h, _) in enumerate(t.metrics)
            }
            by_col = {c: "" if v == "-" else v for c, v in by_col.items()}
            nan = "; ".join(f"{t.groups[g]} {t.metrics[m][1]}: {n} of {total} seed(s) NaN"
                            for (r, g, m), (n, total) in sorted(t.nan_left_out.items()) if r == ri)  # fmt: skip
            writer.writerow(
                [t.context.get(k, "") for k in context_keys]
                + [label]
                + [by_col.get(c, "") for c in columns]
                + ([nan] if any_nan else [])
            )
    return buf.getvalue()


def format_tables(tables: Sequence[Table], fmt: str = "md", *, digits: int = 2) -> str:
    """Render tables as ``"md"`` (GitHub markdown), ``"latex"`` (booktabs) or ``"csv"``."""
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} is not supported; allowed: {', '.join(FORMATS)}")
    if not tables:
        raise ValueError("no finished results to tabulate (no result.json found)")
    return {"md": _to_markdown, "latex": _to_latex, "csv": _to_csv}[fmt](tables, digits)
