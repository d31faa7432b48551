"""``dece run CONFIG``: run (or resume) every cell of a grid config, or one shard of it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dece.cli._cluster import add_executor_args, submit


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run a grid of experiments (resumable, shardable)",
        description=(
            "Run every cell of a grid config. Each cell lives in OUTPUT_DIR/<hash>/ and is "
            "complete when its result.json exists; a rerun skips complete cells and resumes "
            "interrupted ones from their newest per-epoch checkpoint (a runner that cannot "
            "resume restarts them). Use --shard i/n to run a deterministic slice (0 <= i < n) on each "
            "of n machines sharing OUTPUT_DIR. A cell another live process is running is left "
            "to it: the run names that process (pid, host, since when) and exits 1, or, with "
            "--wait, waits for it."
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
        "else dece.experiments.runner:train_cell)",
    )  # fmt: skip
    parser.add_argument("--fail-fast", action="store_true", help="stop at the first failing cell")
    parser.add_argument(
        "--wait", action="store_true",
        help="wait for cells another live process is running (default: name them and exit 1)",
    )  # fmt: skip
    parser.add_argument(
        "-j", "--workers", type=int, default=1,
        help="cells run at once in worker processes on this machine (default 1)",
    )  # fmt: skip
    parser.add_argument(
        "--list", action="store_true", help="list this shard's cells and their state; run nothing"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_executor_args(parser)
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from dece.experiments import expand_grid, load_grid_config, parse_shard, run_grid, shard_cells
    from dece.experiments.store import cell_state, lock_holder

    config = load_grid_config(args.config)
    shard = parse_shard(args.shard)
    output_dir = args.output_dir or Path(config.output_dir or Path("runs") / config.name)
    if args.list:
        for cell in shard_cells(expand_grid(config), *shard):
            labels = "  ".join(f"{k}={v}" for k, v in cell.labels().items() if v)
            state = cell_state(output_dir / cell.hash)
            if state != "done" and lock_holder(output_dir, cell.hash) is not None:
                state = "running"
            sys.stdout.write(f"{cell.hash}  {state:7s}  {labels}\n")
        return 0
    if args.executor is not None:
        return submit(args, config, output_dir)
    summary = run_grid(
        config,
        output_dir,
        shard=shard,
        cell_runner=args.runner,
        fail_fast=args.fail_fast,
        progress=not args.no_progress,
        workers=args.workers,
        wait=args.wait,
    )
    sys.stdout.write(
        f"{output_dir}: {len(summary.completed)} run, {len(summary.skipped)} already done, "
        f"{len(summary.restarted)} restarted, {len(summary.busy)} busy, "
        f"{len(summary.failed)} failed (shard {shard[0]}/{shard[1]}, {len(summary.cells)} cells)\n"
    )
    for h, holder in summary.busy.items():
        sys.stdout.write(f"  busy {h}: run by {holder.describe()}; left to it\n")
    for h, error in summary.failed.items():
        sys.stdout.write(f"  failed {h}: {error}\n")
    if summary.busy:
        sys.stderr.write(f"dece run: {summary.busy_message()}\n")
    return 0 if summary.ok and not summary.busy else 1
