"""``dece run --executor slurm|local``: the options and the call to
:func:`dece.experiments.executor.submit_grid` (one submitit job per cell)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_executor_args", "submit"]


def add_executor_args(parser: argparse.ArgumentParser) -> None:
    """The ``--executor`` option and the resources of its jobs."""
    group = parser.add_argument_group(
        "cluster (--executor)",
        "submit one job per cell through submitit instead of running here: cells others reuse "
        "first, their dependents after them (a job dependency); a job past its time limit is "
        "requeued and resumes its cell. OUTPUT_DIR must be on a filesystem every node mounts at "
        "the same path (no flock is used). --wait: stay until every job has finished "
        "(always so with --executor local).",
    )
    group.add_argument(
        "--executor", choices=("slurm", "local"), default=None,
        help="slurm: sbatch one job per cell; local: the same jobs as processes on this machine",
    )  # fmt: skip
    group.add_argument("--partition", default=None, help="SLURM partition")
    group.add_argument("--account", default=None, help="SLURM account")
    group.add_argument(
        "--time", type=int, default=240, metavar="MIN",
        help="time limit per job in minutes (default 240; past it: requeued, resumes)",
    )  # fmt: skip
    group.add_argument("--cpus", type=int, default=4, help="CPUs per job (default 4)")
    group.add_argument("--gpus", type=int, default=0, help="GPUs per job (default 0)")
    group.add_argument("--mem-gb", type=float, default=None, help="memory per job in GB")
    group.add_argument(
        "--max-requeues", type=int, default=3, help="requeues after timeouts (default 3)"
    )


def submit(args: argparse.Namespace, config: Any, output_dir: Path) -> int:
    """Submit the grid; prints the jobs. Exit status 1 when a job failed (local executor)."""
    from dece.experiments.executor import ClusterOptions, submit_grid

    if args.shard != "0/1" or args.workers != 1:
        sys.stderr.write("dece run: --executor submits the whole grid; drop --shard / --workers\n")
        return 2
    options = ClusterOptions(
        partition=args.partition, time_min=args.time, cpus_per_task=args.cpus,
        gpus_per_node=args.gpus, mem_gb=args.mem_gb, account=args.account,
        max_requeues=args.max_requeues,
    )  # fmt: skip
    summary = submit_grid(config, output_dir, executor=args.executor, options=options,
                          cell_runner=args.runner, wait=True if args.wait else None)  # fmt: skip
    for h in summary.submitted:
        after = summary.dependencies.get(h)
        dep = f" after {summary.jobs.get(after, after)}" if after else ""
        sys.stdout.write(f"  job {summary.jobs[h]}  cell {h}{dep}\n")
    sys.stdout.write(
        f"{output_dir}: {len(summary.submitted)} job(s) submitted ({args.executor}), "
        f"{len(summary.skipped)} already done, {len(summary.live)} left to earlier jobs, "
        f"{len(summary.failed)} failed; job logs in {output_dir / '.submitit'}\n"
    )
    for h, error in summary.failed.items():
        sys.stdout.write(f"  failed {h}: {error}\n")
    return 0 if summary.ok else 1
