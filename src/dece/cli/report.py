"""``dece report RUNS_DIR``: paper-style tables (md / latex / csv) and PNG plots."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="tables and plots from a runs directory",
        description=(
            "Build tables in the papers' layout (BLEU, CodeBLEU, ASR per method and attack, "
            "with averages) from the finished cells under RUNS_DIR, print them, and write them "
            "with the PNG plots (early learning, ASR vs BLEU, alpha/eps sensitivity) to --out. "
            "Two finished results of one cell (e.g. a grid copied twice under RUNS_DIR) are an "
            "error naming both: keep one (a directory whose name starts with '.' is skipped). "
            "Cells another live process is still running are listed as running (pid, host, "
            "since when), not in the tables yet."
        ),
    )
    parser.add_argument(
        "runs_dir", type=Path, help="directory holding the cells (searched recursively)"
    )
    parser.add_argument("--format", choices=("md", "latex", "csv"), default="md")
    parser.add_argument(
        "-o", "--out", type=Path, default=None,
        help="directory for report.{md,tex,csv} and the plots (default: RUNS_DIR/report)",
    )  # fmt: skip
    parser.add_argument("--no-plots", action="store_true", help="tables only")
    parser.add_argument(
        "--html", action="store_true",
        help="also write OUT/html/: a self-contained site (index.html, works from file://) with "
        "the tables, plots and a per-input explorer of each defense cell",
    )  # fmt: skip
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from dece.experiments import write_report

    out = args.out if args.out is not None else args.runs_dir / "report"
    report = write_report(args.runs_dir, out, fmt=args.format, plots=not args.no_plots)
    sys.stdout.write(report.text)
    if args.html:
        from dece.experiments.html_report import write_html_report

        index = write_html_report(args.runs_dir, out / "html", report.rows, plots=report.plots)
        sys.stderr.write(f"wrote {index} (open it in a browser)\n")
    sys.stderr.write(
        f"wrote {report.table_path}"
        + "".join(f", {p}" for p in report.plots)
        + f" ({len(report.rows)} finished cells, {len(report.running)} still running)\n"
    )
    return 0
