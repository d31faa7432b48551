"""One call from a runs directory to a table file and the plots."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from dece.experiments.detection_table import detection_section
from dece.experiments.pca import write_pca_plots
from dece.experiments.plots import write_plots
from dece.experiments.purifier_tables import purifier_report
from dece.experiments.results import ResultRow, find_running, load_results
from dece.experiments.store import LockHolder, atomic_write_text
from dece.experiments.tables import FORMATS, build_tables, format_tables

__all__ = ["Report", "REPORT_SUFFIX", "running_summary", "write_report"]

logger = logging.getLogger(__name__)

REPORT_SUFFIX = {"md": ".md", "latex": ".tex", "csv": ".csv"}


@dataclass
class Report:
    text: str  # the rendered tables
    rows: list[ResultRow]
    table_path: Path | None = None
    plots: list[Path] = field(default_factory=list)
    running: dict[Path, LockHolder] = field(default_factory=dict)  # cells a live process runs


def write_report(
    runs_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    fmt: str = "md",
    plots: bool = True,
    name: str = "report",
) -> Report:
    """Tables (``fmt`` in md / latex / csv) and PNG plots from the finished cells of ``runs_dir``;
    the training-time filters' detection tables follow the result tables when any filter ran
    (:mod:`dece.experiments.detection_table`), and the representation PCA plot (the DeCE paper's
    Figure 4, :mod:`dece.experiments.pca`) joins the plots when clean / CE / DeCE models exist.

    Writes ``<out_dir>/<name>.{md,tex,csv}`` and the plots when ``out_dir`` is given. Cells that
    a live process is still running are not rows: ``Report.running`` names them (with that
    process), and when no cell has finished yet the ``ValueError`` does.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} is not supported; allowed: {', '.join(FORMATS)}")
    rows = load_results(runs_dir)
    running = find_running(runs_dir)
    if not rows and running:
        raise ValueError(f"no finished results yet under {runs_dir}: {running_summary(running)}")
    text = format_tables(build_tables(rows), fmt) + detection_section(runs_dir, fmt)
    text += _section(purifier_report(rows, fmt))  # test-time defenses, CodePurify Tables II-IV
    report = Report(text=text, rows=rows, running=running)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        report.table_path = out / f"{name}{REPORT_SUFFIX[fmt]}"
        atomic_write_text(report.table_path, text)
        if plots:
            report.plots = write_plots(rows, out) + write_pca_plots(rows, out)
    return report


def running_summary(running: dict[Path, LockHolder]) -> str:
    """``"N cell(s) still running: <hash> (pid P on H since T), ..."``."""
    cells = ", ".join(f"{p.name} ({holder.describe()})" for p, holder in running.items())
    return f"{len(running)} cell(s) still running: {cells}"


def _section(text: str) -> str:
    return f"\n{text}" if text else ""
