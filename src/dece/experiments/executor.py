"""Submit a grid to a cluster (SLURM) or to this machine through submitit, one job per cell.

``dece run CONFIG --executor slurm|local`` calls :func:`submit_grid`. Each unfinished cell
becomes one job that runs it exactly as :func:`dece.experiments.run_grid` would (same hash, same
directory ``OUTPUT_DIR/<hash>/``, same ``result.json``). Ordering comes from the scheduler, not
from locks:

- cells that others depend on (the undefended model a filter or purifier reuses,
  :meth:`dece.experiments.grid.Cell.parent`) are submitted first, with the model kept and the
  per-example losses recorded where a dependent reads them;
- each dependent is submitted with a job dependency on its parent's job (SLURM
  ``--dependency=afterok:<id>``, ``--kill-on-invalid-dep=yes``: a failed parent cancels its
  dependents instead of leaving them pending forever); the local executor, which has no job
  dependencies, waits for the parents' jobs before it submits the dependents;
- a job killed at its time limit (or preempted) is requeued by submitit
  (:class:`CellJob` is ``Checkpointable``) and resumes its cell: a resumable cell runner
  (:func:`dece.experiments.cell_runner.train_cell`) continues from its newest per-epoch checkpoint,
  any other restarts the cell.

No ``flock`` is taken: it is unreliable across nodes on NFS / Lustre. One job per cell and the
dependencies are what keep two processes off one cell; the submitter records each job in
``OUTPUT_DIR/.jobs/<hash>.json`` and, submitting again, leaves a cell whose recorded SLURM job is
still pending or running to that job (and makes its dependents wait for it). What the shared
``OUTPUT_DIR`` needs: the same path on the submitting host and every node, atomic ``rename``
within a directory (``result.json`` is written to a temporary file, then renamed: the completion
marker), close-to-open consistency (NFS, Lustre, GPFS and BeeGFS give both), and room for the
kept models and one checkpoint per training cell. Do not run ``dece run`` without
``--executor`` on the same directory while submitted jobs run: that path relies on ``flock``.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dece.experiments.cell_runner import (
    RUNNER_ENV,
    check_cells,
    resolve_runner,
    resumes,
    train_cell,
)
from dece.experiments.config import GridConfig
from dece.experiments.grid import Cell, expand_grid
from dece.experiments.runner import execute_cell, make_plan
from dece.experiments.store import (
    GRID_FILE,
    RESULT_FILE,
    atomic_write_json,
    atomic_write_text,
    cell_state,
)

__all__ = [
    "EXECUTORS",
    "JOBS_DIR",
    "CellJob",
    "ClusterOptions",
    "SubmitSummary",
    "run_one_cell",
    "submit_grid",
]

logger = logging.getLogger(__name__)

EXECUTORS = ("slurm", "local")
JOBS_DIR = ".jobs"  # <output_dir>/.jobs/<hash>.json: the job that runs the cell
LOGS_DIR = ".submitit"  # submitit's pickles and each job's stdout / stderr
_LIVE_STATES = frozenset({"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING",
                          "RESIZING", "SUSPENDED"})  # fmt: skip


@dataclass(frozen=True)
class ClusterOptions:
    """Resources of every job (``partition`` and ``account`` only matter to SLURM)."""

    partition: str | None = None
    time_min: int = 240  # wall-clock limit per job; a job past it is requeued and resumes
    cpus_per_task: int = 4
    gpus_per_node: int = 0
    mem_gb: float | None = None
    account: str | None = None
    max_requeues: int = 3  # timeouts / preemptions a job may be requeued for

    def __post_init__(self) -> None:
        if self.time_min < 1:
            raise ValueError(f"time must be at least 1 minute, got {self.time_min}")
        if self.cpus_per_task < 1:
            raise ValueError(f"cpus must be >= 1, got {self.cpus_per_task}")
        if self.gpus_per_node < 0:
            raise ValueError(f"gpus must be >= 0, got {self.gpus_per_node}")


@dataclass
class SubmitSummary:
    """What :func:`submit_grid` did, by cell hash; ``jobs``: hash -> job id."""

    output_dir: Path
    executor: str
    skipped: list[str] = field(default_factory=list)  # already complete
    submitted: list[str] = field(default_factory=list)  # in submission order (parents first)
    live: list[str] = field(default_factory=list)  # left to a job submitted earlier
    jobs: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # hash -> error (local: waited for)
    dependencies: dict[str, str] = field(default_factory=dict)  # dependent -> parent hash

    @property
    def ok(self) -> bool:
        return not self.failed


# --------------------------------------------------------------------------- the job
def run_one_cell(
    config_data: Mapping[str, Any],
    source: str | None,
    output_dir: str,
    cell_hash: str,
    runner_spec: str | None,
) -> dict[str, Any]:
    """Run cell ``cell_hash`` of the grid ``config_data`` into ``output_dir/<hash>/`` as
    :func:`dece.experiments.run_grid` would, without a lock (module docstring); returns the
    cell's final metrics. A complete cell is not run again; a partial one is resumed (resumable
    runner) or restarted. Raises ``RuntimeError`` when the cell fails or its parent is missing."""
    config = GridConfig.from_dict(config_data, source=source)
    runner = resolve_runner(runner_spec)
    out = Path(output_dir)
    plan = make_plan(expand_grid(config), out, runner, fail_fast=False)
    cell = plan.by_hash.get(cell_hash)
    if cell is None:
        raise ValueError(f"cell {cell_hash} is not a cell of grid {config.name!r}")
    cell_dir = out / cell_hash
    state = cell_state(cell_dir)
    if state != "done":
        _check_parent(cell, out)
        if state == "partial" and resumes(runner):
            logger.warning("cell %s: unfinished run found; resuming it", cell_hash)
            (cell_dir / RESULT_FILE).unlink(missing_ok=True)
        elif state == "partial":
            logger.warning("cell %s: unfinished run found; restarting it", cell_hash)
            shutil.rmtree(cell_dir)
        outcome = execute_cell(cell, plan, cell_dir, restarted=state == "partial")
        if outcome.status == "failed":
            raise RuntimeError(f"cell {cell_hash} failed: {outcome.error}")
    return json.loads((cell_dir / RESULT_FILE).read_text(encoding="utf-8"))["final"]


def _check_parent(cell: Cell, out: Path) -> None:
    parent = cell.parent()
    if parent is not None and cell_state(out / parent.hash) != "done":
        raise RuntimeError(
            f"cell {cell.hash} needs its parent cell {parent.hash}, which has not finished under "
            f"{out}: its job failed or was cancelled (see {out / LOGS_DIR})"
        )


class CellJob:
    """The submitted callable: :func:`run_one_cell`, requeued with the same arguments when the
    job times out or is preempted (submitit's ``Checkpointable`` protocol), so it resumes."""

    def __call__(self, *args: Any) -> dict[str, Any]:
        return run_one_cell(*args)

    def checkpoint(self, *args: Any) -> Any:
        """What submitit resubmits on timeout / preemption: this job, same arguments."""
        import submitit

        logger.warning("cell job interrupted (time limit or preemption): requeued to resume")
        return submitit.helpers.DelayedSubmission(self, *args)


# --------------------------------------------------------------------------- submission
def submit_grid(
    config: GridConfig,
    output_dir: str | Path,
    *,
    executor: str = "slurm",
    options: ClusterOptions | None = None,
    cell_runner: str | None = None,
    wait: bool | None = None,
) -> SubmitSummary:
    """Submit every unfinished cell of ``config`` as one job each (module docstring).

    ``executor``: ``"slurm"`` or ``"local"`` (submitit's local executor: the same jobs as
    subprocesses of this machine). ``cell_runner``: "module:function", else
    ``$DECE_CELL_RUNNER``, else the config's ``runner``, else ``train_cell``. ``wait``: block
    until every job has finished (default: only for ``local``); failures are then in
    ``summary.failed``.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    options = options or ClusterOptions()
    wait = executor == "local" if wait is None else wait
    runner_spec = _runner_spec(config, cell_runner)
    cells = expand_grid(config)
    if resolve_runner(runner_spec) is train_cell:
        check_cells(config, cells)
    out = Path(output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / GRID_FILE, yaml.safe_dump(config.to_dict(), sort_keys=False))
    submitter = _Submitter(config, out, executor, options, runner_spec)
    summary = submitter.summary
    parents = _parents_first(cells)
    for cell in parents:
        submitter.submit(cell, after=None)
    if executor == "local":  # no job dependencies there: the parents finish first
        submitter.wait_all()
    for cell in cells:
        if cell.hash not in {p.hash for p in parents}:
            parent = cell.parent()
            submitter.submit(cell, after=parent.hash if parent is not None else None)
    if wait:
        submitter.wait_all()
    logger.info("grid %s (%s): %d submitted, %d already done, %d left to live jobs",
                config.name, executor, len(summary.submitted), len(summary.skipped),
                len(summary.live))  # fmt: skip
    return summary


def _runner_spec(config: GridConfig, cell_runner: str | None) -> str | None:
    import os

    spec = cell_runner or os.environ.get(RUNNER_ENV) or config.runner
    if spec is not None and not isinstance(spec, str):
        raise ValueError("a submitted grid's cell runner must be a 'module:function' string")
    return spec


def _parents_first(cells: list[Cell]) -> list[Cell]:
    """The cells others depend on (grid cells or not), each once, in grid order."""
    seen: dict[str, Cell] = {}
    for cell in cells:
        parent = cell.parent()
        if parent is not None:
            seen.setdefault(parent.hash, parent)
    return list(seen.values())


class _Submitter:
    """Submits cells one at a time, remembering each job (this call's and earlier ones')."""

    def __init__(
        self, config: GridConfig, out: Path, kind: str, options: ClusterOptions, runner: str | None
    ) -> None:
        self.args = (config.to_dict(), config.source, str(out))
        self.out, self.kind, self.options, self.runner = out, kind, options, runner
        self.summary = SubmitSummary(output_dir=out, executor=kind)
        self.executor = _make_executor(kind, out / LOGS_DIR, options)
        self.pending: dict[str, Any] = {}  # hash -> submitit job of this call

    def submit(self, cell: Cell, *, after: str | None) -> None:
        h = cell.hash
        if cell_state(self.out / h) == "done":
            self.summary.skipped.append(h)
            return
        if (live := self._live_job(h)) is not None:
            self.summary.live.append(h)
            self.summary.jobs[h] = live
            return
        params: dict[str, Any] = {"name": f"dece-{h[:8]}"}
        if after is not None:
            self.summary.dependencies[h] = after
            if after in self.summary.jobs and self.kind == "slurm":
                params["slurm_additional_parameters"] = {
                    "dependency": f"afterok:{self.summary.jobs[after]}", "kill_on_invalid_dep": "yes"
                }  # fmt: skip
        if self.kind == "slurm" and "slurm_additional_parameters" not in params:
            params["slurm_additional_parameters"] = {}
        self.executor.update_parameters(**params)
        job = self.executor.submit(CellJob(), *self.args, h, self.runner)
        self.pending[h] = job
        self.summary.jobs[h] = str(job.job_id)
        self.summary.submitted.append(h)
        _record_job(self.out, h, str(job.job_id), self.kind)
        logger.info("cell %s: job %s%s", h, job.job_id, f" (after {after})" if after else "")

    def _live_job(self, h: str) -> str | None:
        """The id of a SLURM job submitted earlier that is still pending or running on ``h``."""
        if self.kind != "slurm":
            return None
        record = _read_job(self.out, h)
        if record is None:
            return None
        import submitit

        try:
            state = submitit.SlurmJob(self.out / LOGS_DIR, record["job_id"]).state
        except Exception:  # sacct unavailable: treat the job as gone
            return None
        return record["job_id"] if str(state).upper() in _LIVE_STATES else None

    def wait_all(self) -> None:
        for h, job in list(self.pending.items()):
            try:
                job.result()
            except Exception as exc:  # submitit re-raises the job's error
                self.summary.failed[h] = _last_line(exc)
            del self.pending[h]


def _last_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def _make_executor(kind: str, folder: Path, options: ClusterOptions) -> Any:
    try:
        import submitit
    except ImportError:
        raise ImportError(
            "--executor needs submitit: pip install 'dece[cluster]' (or pip install submitit)"
        ) from None
    requeues = {"slurm_max_num_timeout": options.max_requeues} if kind == "slurm" else {}
    executor = submitit.AutoExecutor(folder=folder, cluster=kind, **requeues)
    params: dict[str, Any] = {
        "timeout_min": options.time_min, "cpus_per_task": options.cpus_per_task,
        "gpus_per_node": options.gpus_per_node, "tasks_per_node": 1, "nodes": 1,
    }  # fmt: skip
    if options.mem_gb is not None:
        params["mem_gb"] = options.mem_gb
    if kind == "slurm":
        if options.partition:
            params["slurm_partition"] = options.partition
        if options.account:
            params["slurm_account"] = options.account
    executor.update_parameters(**params)
    return executor


def _record_job(out: Path, h: str, job_id: str, kind: str) -> None:
    path = out / JOBS_DIR / f"{h}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    since = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    atomic_write_json(path, {"job_id": job_id, "executor": kind, "submitted_at": since,
                             "submitted_unix": time.time()})  # fmt: skip


def _read_job(out: Path, h: str) -> dict[str, Any] | None:
    try:
        data = json.loads((out / JOBS_DIR / f"{h}.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and "job_id" in data else None
