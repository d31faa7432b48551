"""``dece demo``: CE vs DeCE under a BadPre 5% attack on the built-in synthetic data."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="CE vs DeCE on the built-in dataset (the main example)",
        description=(
            "Train a tiny model with CE and with DeCE on the built-in synthetic dataset with 5%% "
            "BadPre poisoning, print the table and write OUTPUT_DIR/report.md and "
            "OUTPUT_DIR/early_learning.png. Finished runs are reused on a rerun."
        ),
    )
    parser.add_argument(
        "-o", "--output-dir", type=Path, default=None,
        help="default runs/demo (runs/demo-quick with --quick)",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="seconds-long variant (for CI)")
    parser.add_argument(
        "--runner", default=None, help="cell runner 'module:function' (default: real training)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "--wait", action="store_true",
        help="wait for runs another live process is training in OUTPUT_DIR (default: name them "
        "and exit with an error)",
    )  # fmt: skip
    parser.add_argument(
        "-j", "--workers", type=int, default=2,
        help="runs trained at once, one process each (default 2: CE and DeCE side by side)",
    )  # fmt: skip
    parser.add_argument(
        "--seed", type=int, default=None,
        help="seed of poisoning, model init and training (default: the demo's, 0)",
    )  # fmt: skip
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from dece.experiments.demo import run_demo

    out = args.output_dir or Path("runs/demo-quick" if args.quick else "runs/demo")
    result = run_demo(
        out,
        quick=args.quick,
        cell_runner=args.runner,
        progress=not args.no_progress,
        workers=args.workers,
        seed=args.seed,
        wait=args.wait,
    )
    sys.stdout.write(result.table + "\n" + result.verdict + "\n")
    sys.stdout.write(f"\nwrote {result.report_path} and {result.plot_path}\n")
    return 0
