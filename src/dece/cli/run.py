"""``dece run CONFIG``: run (or resume) every cell of a grid config, or one shard of it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run a grid of experiments (resumable, shardable)",
        description=(
            "Run every cell of a grid config. Each cell lives in OUTPUT_DIR/<hash>/ and is "
            "complete when its result.json exists; a rerun skips complete cells and restarts "
            "interrupted ones. Use --shard i/n to run a deterministic slice (0 <= i < n) on each "
            "of n machines sharing OUTPUT_DIR."
        ),
    )
    parser.add_argument("config", type=Path, help="grid config YAML (see configs/)")
    parser.add_argument(
        "-o", "--output-dir", type=Path, default=None,
        help="where the cells go (default: the config's output_dir, else runs/<config name>)",
    )  # fmt: skip
    parser.add_argument("--shard", default="0/1", help="run slice i of n, 0-based (default 0/1)")
    parser.add_argument(
        "--runner", default=None,
        help="cell runner 'module:function' (default: $DECE_CELL_RUNNER, the config's runner, "
        "else dece.training.train)",
    )  # fmt: skip
    parser.add_argument("--fail-fast", action="store_true", help="stop at the first failing cell")
    parser.add_argument(
        "-j", "--workers", type=int, default=1,
        help="cells run at once in worker processes on this machine (default 1)",
    )  # fmt: skip
    parser.add_argument(
        "--list", action="store_true", help="list this shard's cells and their state; run nothing"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from dece.experiments import expand_grid, load_grid_config, parse_shard, run_grid, shard_cells
    from dece.experiments.runner import cell_state

    config = load_grid_config(args.config)
    shard = parse_shard(args.shard)
    output_dir = args.output_dir or Path(config.output_dir or Path("runs") / config.name)
    if args.list:
        for cell in shard_cells(expand_grid(config), *shard):
            labels = "  ".join(f"{k}={v}" for k, v in cell.labels().items() if v)
            state = cell_state(output_dir / cell.hash)
            sys.stdout.write(f"{cell.hash}  {state:7s}  {labels}\n")
        return 0
    summary = run_grid(
        config,
        output_dir,
        shard=shard,
        cell_runner=args.runner,
        fail_fast=args.fail_fast,
        progress=not args.no_progress,
        workers=args.workers,
    )
    sys.stdout.write(
        f"{output_dir}: {len(summary.completed)} run, {len(summary.skipped)} already done, "
        f"{len(summary.restarted)} restarted, {len(summary.busy)} busy, "
        f"{len(summary.failed)} failed (shard {shard[0]}/{shard[1]}, {len(summary.cells)} cells)\n"
    )
    for h in summary.busy:
        sys.stdout.write(f"  busy {h}: run by another live process; left to it\n")
    for h, error in summary.failed.items():
        sys.stdout.write(f"  failed {h}: {error}\n")
    return 0 if summary.ok else 1
