"""``dece report --html``: one self-contained directory to browse a grid's results.

``<out>/index.html`` holds the paper-style tables, every finished cell's final metrics (the
values of its ``result.json``), the detection and purifier sections and the plots (embedded as
``data:`` images); ``<out>/cells/<hash>.html`` is the per-input explorer of each defense cell
(:mod:`dece.experiments.explorer`): the input with the manifest's trigger spans outlined, the
elements the defense scored shaded by score, what it replaced, the prediction before and after,
filterable by detected / missed / false alarm. Nothing is fetched: no CDN, styles and scripts are
inline, a Content-Security-Policy forbids every request, and the pages work from ``file://``.
"""

from __future__ import annotations

import base64
import html
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dece.experiments.explorer import CATEGORIES, CellExplorer, InputRecord, load_explorer
from dece.experiments.results import ResultRow
from dece.experiments.store import atomic_write_text
from dece.experiments.tables import Table, build_tables

__all__ = ["format_value", "highlight", "write_html_report"]

logger = logging.getLogger(__name__)

_CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        "script-src 'unsafe-inline'; base-uri 'none'; form-action 'none'")  # fmt: skip
_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:2px 6px}
td.num{text-align:right;font-variant-numeric:tabular-nums}th{background:#f3f3f3}
pre{background:#f7f7f7;padding:.6em;overflow:auto}.note{color:#8a5a00}
img{max-width:48%;margin:4px;border:1px solid #ddd}
.explorer{display:flex;gap:1em}.list{flex:0 0 42%;max-height:80vh;overflow:auto}
.detail{flex:1;min-width:0}tr.input{cursor:pointer}tr.input:hover{background:#eef}
tr.input.sel{background:#dde6ff}button{margin-right:4px}button.on{font-weight:bold}
.text{white-space:pre-wrap;font-family:ui-monospace,monospace;background:#fafafa;
border:1px solid #ddd;padding:.5em}
.scored{background:rgba(255,140,0,calc(.12 + .6*var(--s)))}
.trigger{outline:2px solid #d00;outline-offset:-1px}.legend span{padding:0 4px;margin-right:6px}
.changed{text-decoration:line-through}ins{background:#c8f7c5;text-decoration:none}
.cat-detected{color:#070}.cat-missed{color:#b00}.cat-false-alarm{color:#a60}
"""
_JS = """
const rows=[...document.querySelectorAll('tr.input')];
const buttons=[...document.querySelectorAll('button[data-filter]')];
buttons.forEach(b=>b.addEventListener('click',()=>{
  rows.forEach(r=>{r.hidden=b.dataset.filter!=='all'&&r.dataset.category!==b.dataset.filter;});
  buttons.forEach(x=>x.classList.toggle('on',x===b));
}));
rows.forEach(r=>r.addEventListener('click',()=>{
  const t=document.getElementById('d-'+r.dataset.index);
  document.getElementById('detail').replaceChildren(t.content.cloneNode(true));
  rows.forEach(x=>x.classList.toggle('sel',x===r));
}));
"""
_CELL_METRICS = ("bleu", "codebleu", "exact_match", "accuracy", "f1", "asr",
                 "false_trigger_rate", "detect_tpr", "detect_fpr", "filter_precision",
                 "filter_recall", "filter_f1", "filter_removed")  # fmt: skip
e = html.escape


def format_value(value: Any) -> str:
    """A result value as shown: numbers with at most 4 decimals, None as "-"."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return f"{value:.4f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
            f'<link rel="icon" href="data:,"><title>{e(title)}</title><style>{_CSS}</style>'
            f"</head><body>{body}<script>{_JS}</script></body></html>\n")  # fmt: skip


# --------------------------------------------------------------------------- the index
def write_html_report(
    runs_dir: str | Path,
    out_dir: str | Path,
    rows: Sequence[ResultRow],
    *,
    plots: Sequence[Path] = (),
    max_per_category: int = 200,
) -> Path:
    """Write ``<out_dir>/index.html`` and one explorer page per defense cell of ``rows``
    (finished cells of ``runs_dir``); the filters' detection and the purifiers' tables follow
    as markdown; ``plots``: PNG files to embed. Returns the index's path."""
    from dece.experiments.detection_table import detection_section
    from dece.experiments.purifier_tables import purifier_report

    sections = detection_section(runs_dir, "md") + "\n" + purifier_report(list(rows), "md")
    out = Path(out_dir)
    (out / "cells").mkdir(parents=True, exist_ok=True)
    links = []
    for row in rows:
        if row.defense != "undefended":
            explorer = load_explorer(row, max_per_category=max_per_category)
            atomic_write_text(out / "cells" / f"{row.hash}.html", _cell_page(row, explorer))
            links.append((row, explorer))
    body = [f"<h1>Results: {e(str(runs_dir))}</h1>", _tables_html(build_tables(rows)),
            "<h2>Cells</h2>", _cells_html(rows), _explorer_index(links)]  # fmt: skip
    if sections.strip():
        body.append(f"<h2>Defense tables</h2><pre>{e(sections.strip())}</pre>")
    if plots:
        body.append("<h2>Plots</h2>" + "".join(_img(p) for p in plots))
    index = out / "index.html"
    atomic_write_text(index, _page("dece report", "".join(body)))
    logger.info("wrote %s (%d cells, %d explorers)", index, len(rows), len(links))
    return index


def _img(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{e(Path(path).stem)}" src="data:image/png;base64,{data}">'


def _tables_html(tables: Sequence[Table]) -> str:
    parts = []
    for t in tables:
        head = "".join(f"<th>{e(g)} {e(h)}</th>" for g in t.groups for _, h, _ in t.metrics)
        body = "".join(
            f"<tr><th>{e(label)}</th>"
            + "".join(f'<td class="num">{_cell_value(v)}</td>' for group in row for v in group)
            + "</tr>"
            for label, row in zip(t.row_labels, t.values, strict=True)
        )
        parts.append(f"<h2>{e(t.title)}</h2><table><tr><th>Method</th>{head}</tr>{body}</table>")
    return "".join(parts)


def _cell_value(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.2f}"


def _cells_html(rows: Sequence[ResultRow]) -> str:
    metrics = [m for m in _CELL_METRICS if any(m in r.final for r in rows)]
    head = "".join(f"<th>{e(m)}</th>" for m in ["hash", "method", "attack", "rate", "seed",
                                                 *metrics])  # fmt: skip
    body = []
    for r in rows:
        cells = [f'<td class="hash">{e(r.hash)}</td>', f"<td>{e(r.method)}</td>",
                 f"<td>{e(r.attack)}</td>", f"<td>{e(format_value(r.rate))}</td>",
                 f"<td>{e(format_value(r.seed))}</td>"]  # fmt: skip
        cells += [f'<td class="num" data-metric="{m}">{e(format_value(r.final.get(m)))}</td>'
                  for m in metrics]  # fmt: skip
        body.append(f'<tr class="cell" data-hash="{e(r.hash)}">{"".join(cells)}</tr>')
    return f'<table id="cells"><tr>{head}</tr>{"".join(body)}</table>'


def _explorer_index(links: list[tuple[ResultRow, CellExplorer]]) -> str:
    if not links:
        return "<h2>Defense explorer</h2><p>No defense cell has finished.</p>"
    items = []
    for row, ex in links:
        counts = ", ".join(f"{label.lower()} {ex.counts.get(k, 0)}" for k, label in CATEGORIES)
        note = "".join(f' <span class="note">{e(n)}</span>' for n in ex.notes)
        items.append(f'<li><a href="cells/{e(row.hash)}.html">{e(_title(row))}</a> '
                     f"({e(ex.kind)}: {e(counts)}){note}</li>")  # fmt: skip
    return "<h2>Defense explorer</h2><ul>" + "".join(items) + "</ul>"


def _title(row: ResultRow) -> str:
    return f"{row.method} / {row.attack} / rate {format_value(row.rate)} / seed {row.seed}"


# --------------------------------------------------------------------------- a cell's explorer
def _cell_page(row: ResultRow, ex: CellExplorer) -> str:
    body = [f'<p><a href="../index.html">all results</a></p><h1>{e(_title(row))}</h1>',
            f"<p>cell {e(row.hash)}, {e(ex.kind)}</p>"]  # fmt: skip
    body += [f'<p class="note">{e(n)}</p>' for n in ex.notes]
    if ex.summary:
        body.append("<table id='summary'>" + "".join(
            f"<tr><th>{e(k)}</th><td class='num'>{v}</td></tr>" for k, v in ex.summary.items()
        ) + "</table>")  # fmt: skip
    if ex.records:
        body.append(_explorer_html(ex))
    return _page(f"explorer {row.hash}", "".join(body))


def _explorer_html(ex: CellExplorer) -> str:
    total = sum(ex.counts.values())
    buttons = [f'<button data-filter="all" class="on">All ({total})</button>']
    buttons += [f'<button data-filter="{k}">{e(label)} ({ex.counts.get(k, 0)})</button>'
                for k, label in CATEGORIES]  # fmt: skip
    scale = _score_scale(ex.records)
    rows, templates = [], []
    for i, rec in enumerate(ex.records):
        label = dict(CATEGORIES)[rec.category]
        rows.append(f'<tr class="input" data-index="{i}" data-category="{rec.category}" '
                    f'data-id="{e(rec.id)}"><td>{e(rec.id)}</td><td>{e(rec.set)}</td>'
                    f'<td class="cat-{rec.category}">{e(label)}</td>'
                    f'<td class="num">{e(format_value(rec.score))}</td></tr>')  # fmt: skip
        templates.append(f'<template id="d-{i}">{_detail(rec, scale)}</template>')
    table = ("<table><tr><th>id</th><th>set</th><th>category</th><th>score</th></tr>"
             + "".join(rows) + "</table>")  # fmt: skip
    legend = (
        '<p class="legend"><span class="trigger">trigger (manifest)</span>'
        '<span class="scored" style="--s:1">scored high</span>'
        '<span class="scored" style="--s:0">scored low</span>'
        '<span class="changed">replaced</span> (hover a span for its score)</p>'
    )
    return (f'<div id="filters">{"".join(buttons)}</div>{legend}<div class="explorer">'
            f'<div class="list">{table}</div><div class="detail" id="detail">'
            "<p>Click an input to see it.</p></div></div>" + "".join(templates))  # fmt: skip


def _score_scale(records: Sequence[InputRecord]) -> tuple[float, float]:
    scores = [float(el["score"]) for r in records for el in r.elements
              if el.get("score") is not None and math.isfinite(float(el["score"]))]  # fmt: skip
    return (min(scores), max(scores)) if scores else (0.0, 1.0)


def _detail(rec: InputRecord, scale: tuple[float, float]) -> str:
    parts = [f"<h3>{e(rec.id)} <span class='cat-{rec.category}'>"
             f"{e(dict(CATEGORIES)[rec.category])}</span></h3>"]  # fmt: skip
    for side, text in (("source", rec.text), ("pair", rec.pair)):
        if text is None:
            continue
        marked = highlight(text, side, rec.triggers, rec.elements, rec.changes, scale)
        parts.append(f"<h4>input ({side})</h4><div class='text input-{side}'>{marked}</div>")
    if rec.text is None:
        parts.append("<p class='note'>the input's text was not recorded</p>")
    if rec.after is not None and rec.after != rec.text:
        parts.append(f"<h4>after the defense</h4><div class='text after'>{e(rec.after)}</div>")
    if rec.changes:
        parts.append("<h4>replaced</h4><ul class='changes'>" + "".join(
            f"<li><del>{e(str(c.get('old', '')))}</del> &rarr; "
            f"<ins>{e(str(c.get('new', '')) or '(removed)')}</ins></li>" for c in rec.changes
        ) + "</ul>")  # fmt: skip
    for label, value in (("prediction before the defense", rec.prediction_before),
                         ("prediction after the defense", rec.prediction_after),
                         ("reference", rec.reference)):  # fmt: skip
        if value is not None:
            parts.append(f"<h4>{label}</h4><div class='text'>{e(value)}</div>")
    return "".join(parts)


def highlight(
    text: str,
    side: str,
    triggers: Sequence[dict[str, Any]],
    elements: Sequence[dict[str, Any]],
    changes: Sequence[dict[str, Any]],
    scale: tuple[float, float] = (0.0, 1.0),
) -> str:
    """``text`` as escaped HTML: trigger spans (class ``trigger``), scored elements (class
    ``scored``, ``--s`` = score within ``scale``) and replaced spans (class ``changed``, with the
    replacement in the title), for the spans of ``side``; overlapping spans split the text."""

    def mine(spans: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        return [s for s in spans if s.get("side", "source") == side
                and 0 <= int(s["start"]) <= int(s["end"]) <= len(text)]  # fmt: skip

    trig, elems, chg = mine(triggers), mine(elements), mine(changes)
    cuts = sorted(
        {0, len(text)} | {int(s[k]) for s in trig + elems + chg for k in ("start", "end")}
    )
    lo, hi = scale
    out = []
    for a, b in zip(cuts, cuts[1:], strict=False):
        if a == b:
            continue

        def over(spans: list[dict[str, Any]], a: int = a, b: int = b) -> list[dict[str, Any]]:
            return [s for s in spans if int(s["start"]) <= a and b <= int(s["end"])]

        out.append(_segment(text[a:b], over(trig), over(elems), over(chg), lo, hi))
    return "".join(out)


def _segment(seg: str, trig: list, elems: list, chg: list, lo: float, hi: float) -> str:
    classes, titles, style = [], [], ""
    if trig:
        classes.append("trigger")
        titles.append("trigger (poison manifest)")
    scores = [float(s["score"]) for s in elems if s.get("score") is not None]
    if scores:
        score = max(scores)
        level = (score - lo) / (hi - lo) if hi > lo else 1.0
        classes.append("scored")
        style = f' style="--s:{min(max(level, 0.0), 1.0):.2f}"'
        titles.append(f"score {score:.4g}")
    if chg:
        classes.append("changed")
        titles.append("replaced by " + repr(str(chg[0].get("new", ""))))
    if not classes:
        return e(seg)
    return (
        f'<span class="{" ".join(classes)}"{style} title="{e("; ".join(titles))}">{e(seg)}</span>'
    )
