"""One call from a runs directory to a table file and the plots."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from dece.experiments.detection_table import detection_section
from dece.experiments.pca import write_pca_plots
from dece.experiments.plots import write_plots
from dece.experiments.purifier_tables import purifier_report
from dece.experiments.results import ResultRow, load_results
from dece.experiments.runner import atomic_write_text
from dece.experiments.tables import FORMATS, build_tables, format_tables

__all__ = ["Report", "REPORT_SUFFIX", "write_report"]

logger = logging.getLogger(__name__)

REPORT_SUFFIX = {"md": ".md", "latex": ".tex", "csv": ".csv"}


@dataclass
class Report:
    text: str  # the rendered tables
    rows: list[ResultRow]
    table_path: Path | None = None
    plots: list[Path] = field(default_factory=list)


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

    Writes ``<out_dir>/<name>.{md,tex,csv}`` and the plots when ``out_dir`` is given.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} is not supported; allowed: {', '.join(FORMATS)}")
    rows = load_results(runs_dir)
    text = format_tables(build_tables(rows), fmt) + detection_section(runs_dir, fmt)
    text += _section(purifier_report(rows, fmt))  # test-time defenses, CodePurify Tables II-IV
    report = Report(text=text, rows=rows)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        report.table_path = out / f"{name}{REPORT_SUFFIX[fmt]}"
        atomic_write_text(report.table_path, text)
        if plots:
            report.plots = write_plots(rows, out) + write_pca_plots(rows, out)
    return report


def _section(text: str) -> str:
    return f"\n{text}" if text else ""
