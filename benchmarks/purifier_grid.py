"""Shared writer of the test-time-defense results files (issue 12): ``lyra_table7.py`` and
``bugs2fix_codepurify.py`` differ only in their grid, archive, output file and introduction.

It trains nothing. It refreshes the committed archive of the grid's finished cells from ``runs/``
(:mod:`dece.experiments.archive`), reads back the cells ``runs/`` lacks from it, and writes one
markdown file: a method table with one row per cell of the grid in grid order (``pending`` where
the cell has not run), the purifier tables (detection, localisation, cost, settings) and the cells
still pending with the command that runs each. Text below the line ``<!-- analysis -->`` of an
existing file is kept, so the written conclusion survives a regeneration.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dece.experiments import expand_grid, load_grid_config, pending_commands
from dece.experiments.archive import archive_cells, load_results_with_archive
from dece.experiments.markdown import md_table
from dece.experiments.purifier_tables import purifier_report
from dece.experiments.tables import authors_bleu_note
from dece.metrics.bleu import BLEU_AUTHORS_KEY

REPO = Path(__file__).resolve().parents[1]
MARKER = "<!-- analysis -->"
METRICS = (("bleu", "BLEU_D", 1.0), (BLEU_AUTHORS_KEY, "BLEU_D (authors)", 1.0),
           ("codebleu", "CodeBLEU_D", 100.0), ("asr", "ASR_D", 100.0),
           ("detect_tpr", "TPR", 100.0), ("detect_fpr", "FPR", 100.0))  # fmt: skip


@dataclass(frozen=True)
class PurifierGrid:
    """One results file, named after its grid: ``configs/<name>.yaml``, run under
    ``runs/<name>``, archived under ``benchmarks/results/cells/<name>``, written to
    ``benchmarks/results/<name>.md`` from ``template`` (fields ``table``, ``purifiers``,
    ``pending``)."""

    name: str
    template: str

    @property
    def config(self) -> str:
        return f"configs/{self.name}.yaml"

    @property
    def out(self) -> Path:
        return REPO / "benchmarks" / "results" / f"{self.name}.md"

    @property
    def archive(self) -> Path:
        return REPO / "benchmarks" / "results" / "cells" / self.name


def _cell(final: dict[str, Any] | None, key: str, scale: float) -> str:
    if final is None:
        return "pending"
    value = final.get(key)
    return "-" if value is None else f"{scale * float(value):.2f}"


def _metrics(done: dict[str, Any]) -> list[tuple[str, str, float]]:
    """:data:`METRICS`, less the authors' BLEU when no finished cell reports it (cells archived
    before it was reported; :func:`authors_bleu_note` says why under the table)."""
    have = any(r.final.get(BLEU_AUTHORS_KEY) is not None for r in done.values())
    return [m for m in METRICS if have or m[0] != BLEU_AUTHORS_KEY]


def method_table(cells: list[Any], done: dict[str, Any]) -> str:
    """One row per cell in grid order (undefended rows are the plain loss); an attack column
    when the grid has more than one attack; the note on the authors' BLEU below."""
    attacks = len({c.labels()["attack"] for c in cells}) > 1
    metrics = _metrics(done)
    header = ["method", *(["attack"] if attacks else []), *(m[1] for m in metrics)]
    header.append("undefended parent")
    body = []
    for cell in cells:
        labels = cell.labels()
        method = labels["loss"] + (f" w. {labels['defense']}" if labels.get("defense") else "")
        row = done.get(cell.hash)
        final = None if row is None else row.final
        parent = cell.parent()
        body.append([method, *([labels["attack"]] if attacks else []),
                     *(_cell(final, key, scale) for key, _, scale in metrics),
                     "-" if parent is None else parent.hash])  # fmt: skip
    align = "l" + ("l" if attacks else "") + "r" * len(metrics) + "l"
    note = authors_bleu_note(r.final for r in done.values())
    return md_table(header, body, align) + f"\n\n{note}"


def write_report(grid: PurifierGrid, argv: list[str] | None = None, doc: str = "") -> int:
    """The command line of one results script: ``--runs`` and ``--out`` override the defaults."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--runs", type=Path, default=REPO / "runs" / grid.name)
    p.add_argument("--out", type=Path, default=grid.out)
    args = p.parse_args(argv)
    if args.runs.is_dir():
        archive_cells(args.runs, grid.archive)
    done = {r.hash: r for r in load_results_with_archive(args.runs, grid.archive)}
    cells = expand_grid(load_grid_config(REPO / grid.config))
    report = purifier_report(list(done.values()))
    pending = pending_commands(cells, done, grid.config)
    old = args.out.read_text() if args.out.is_file() else ""
    analysis = old.split(MARKER, 1)[1] if MARKER in old else "\n\n(analysis pending)\n"
    text = grid.template.format(
        table=method_table(cells, done),
        purifiers=report.replace("\n## ", "\n### ").replace("## ", "### ", 1) or "pending",
        pending="\n".join(pending) or "none",
    )
    args.out.write_text(text + MARKER + analysis)
    print(f"wrote {args.out}")
    return 0
