"""Resumable, crash-safe grid runner.

Each cell runs in ``<output_dir>/<cell hash>/``, stored as :mod:`dece.experiments.store`
describes (``cell.yaml``, the cell runner's files, then ``result.json`` written atomically: the
completion marker).

Crash safety:

- a cell that is not complete (:func:`~dece.experiments.store.cell_state`) is an unfinished run:
  a cell runner marked :func:`resumable` (:func:`train_cell` is) gets its directory back and
  resumes it; for any other runner the directory is deleted and the cell runs again;
- :func:`train_cell` trains with a checkpoint per epoch (:data:`RESUME_SETTINGS`, set by the
  runner whatever the grid's ``training`` says, and never hashed), resumes an interrupted cell
  from its newest complete checkpoint and deletes its checkpoints once the cell finishes;
- every cell runs under an exclusive lock (``<output_dir>/.locks/<hash>.lock``, ``flock``
  through ``filelock``: :func:`~dece.experiments.store.cell_lock`; the kernel releases it when
  its holder dies; a sidecar names the holder's pid, host and start time), so a resumed run never races a live one: a cell locked by another process is left to it
  (``busy``, with that holder, unless ``wait``: then waited for once the other cells are run) or,
  when this run needs it as a parent, waited for;
- worker processes (``workers > 1``) die with the runner (``PR_SET_PDEATHSIG`` and a watchdog
  on the parent pid), so no orphan keeps writing into a directory a resumed run restarted.

Dependencies (see :meth:`dece.experiments.grid.Cell.parent`): a cell whose defense needs a
trained model waits for its parent, never re-running a finished one; a parent that has not run
anywhere yet is run first (also when it is not a cell of this grid or shard), and always saves
its model; the parent of a defense that reads the training's per-example losses (``dynamics``)
also records them (``record_example_losses``), which leaves the parent's identity and hash as
they are.

A *cell runner* is any callable ``run_cell(cell_config: dict, cell_dir: Path) -> dict`` that
runs one cell into ``cell_dir`` and returns its final (test-split) metrics; ``cell_config`` holds
the identity, ``labels``, ``order``, and ``parent`` (the parent's hash), ``keep_model`` and
``record_example_losses`` where they apply. The default, :func:`train_cell`, runs the pipeline;
tests inject a fake one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dece import progress
from dece.experiments.cell_runner import (  # re-exported: the names' former home
    RESUME_SETTINGS,
    RUNNER_ENV,
    CellRunner,
    build_train_config,
    check_cells,
    resolve_runner,
    resumable,
    resumes,
    train_cell,
)
from dece.experiments.config import GridConfig
from dece.experiments.grid import Cell, expand_grid, shard_cells
from dece.experiments.store import (  # re-exported: the names' former home
    CELL_FILE,
    GRID_FILE,
    LOCK_DIR,
    RESULT_FILE,
    LockHolder,
    atomic_write_json,
    atomic_write_text,
    cell_lock,
    cell_state,
    lock_holder,
    write_result,
)
from dece.progress import bar as progress_bar  # run_grid's `progress` is its flag
from dece.rundir import RunDir

__all__ = [
    "CELL_FILE",
    "CellOutcome",
    "CellRunner",
    "GridPlan",
    "GridRunSummary",
    "LOCK_DIR",
    "RESULT_FILE",
    "RESUME_SETTINGS",
    "atomic_write_json",
    "atomic_write_text",
    "build_train_config",
    "cell_state",
    "check_cells",
    "ensure_parents",
    "execute_cell",
    "make_plan",
    "resolve_runner",
    "resumable",
    "run_grid",
    "train_cell",
]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- the grid
@dataclass
class GridRunSummary:
    """What one ``run_grid`` call did, by cell hash."""

    output_dir: Path
    cells: list[str] = field(default_factory=list)  # this shard's cells, in order
    completed: list[str] = field(default_factory=list)  # run to the end now
    skipped: list[str] = field(default_factory=list)  # already complete
    restarted: list[str] = field(default_factory=list)  # partial dir found: resumed or rerun
    busy: dict[str, LockHolder] = field(default_factory=dict)  # hash -> the live process on it
    failed: dict[str, str] = field(default_factory=dict)  # hash -> error message

    @property
    def ok(self) -> bool:
        """No cell failed (busy cells are not failures: another process runs them)."""
        return not self.failed

    def busy_message(self) -> str:
        """One line per busy cell: which process runs it, and what to do about it."""
        lines = [
            f"cell {h} ({self.output_dir / h}) is being run by another live process: "
            f"{holder.describe()}"
            for h, holder in self.busy.items()
        ]
        return "\n".join(lines + ["rerun with --wait (wait=True) to wait for it"])


@dataclass(frozen=True)
class CellOutcome:
    status: str  # "completed" | "skipped" | "busy" | "failed"
    restarted: bool = False
    error: str | None = None
    holder: LockHolder | None = None  # the live process on a busy cell


@dataclass
class GridPlan:
    """What every cell run needs to know about the rest of the grid."""

    out: Path
    runner: CellRunner
    by_hash: dict[str, Cell]  # the grid's cells and their parents
    keep_model: frozenset[str]  # cells another cell reuses
    fail_fast: bool = False
    record_losses: frozenset[str] = frozenset()  # parents whose per-example losses are read


def run_grid(
    config: GridConfig,
    output_dir: str | Path,
    *,
    shard: tuple[int, int] = (0, 1),
    cell_runner: str | CellRunner | None = None,
    fail_fast: bool = False,
    progress: bool = True,
    workers: int = 1,
    wait: bool = False,
) -> GridRunSummary:
    """Run (or resume) shard ``shard = (i, n)`` of the grid ``config`` under ``output_dir``.

    ``cell_runner``: a callable or "module:function"; default the ``DECE_CELL_RUNNER``
    environment variable, then ``config.runner``, then :func:`train_cell`.
    A failing cell is logged and left unfinished (rerun retries it) unless ``fail_fast``.
    ``workers > 1`` runs that many cells at once in worker processes (spawned), each with
    ``cpu_count // workers`` torch threads; with the default runner the tiny presets'
    pretrained models are built (cached) first, once, so workers never build the same one.
    ``progress``: one display with the grid bar and each running cell's current stage.
    A cell another live process holds is left to it and reported in ``summary.busy`` with that
    process (pid, host, since); ``wait``: once the other cells are run, wait for each such cell
    to be released, then skip it when it finished there or run it when it did not.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if cell_runner is None and not os.environ.get(RUNNER_ENV):
        cell_runner = config.runner
    runner = resolve_runner(cell_runner)
    all_cells = expand_grid(config)
    if runner is train_cell:
        check_cells(config, all_cells)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / GRID_FILE, yaml.safe_dump(config.to_dict(), sort_keys=False))
    plan = make_plan(all_cells, out, runner, fail_fast)
    cells = shard_cells(all_cells, *shard)
    summary = GridRunSummary(output_dir=out, cells=[c.hash for c in cells])
    bar = progress_bar(f"grid {config.name} [{shard[0]}/{shard[1]}]", len(cells), "cell",
                       leave=True, disable=not progress)  # fmt: skip
    if workers == 1:
        with progress_sink(progress, position=1):
            for cell in cells:
                bar.set_postfix_str(_cell_tag(cell))
                _record(summary, cell.hash, _run_cell(cell, plan))
                bar.update(1)
    else:
        _run_parallel(cells, plan, summary, bar, workers=workers, show=progress)
    if wait and summary.busy:
        with progress_sink(progress, position=1):
            _wait_for_busy(plan, summary)
    bar.close()
    logger.info(
        "grid %s shard %d/%d: %d run, %d skipped, %d restarted, %d busy, %d failed",
        config.name, shard[0], shard[1], len(summary.completed), len(summary.skipped),
        len(summary.restarted), len(summary.busy), len(summary.failed),
    )  # fmt: skip
    return summary


def progress_sink(show: bool, position: int = 1) -> Any:
    """The progress sink a grid run's stages report to (``show`` False: silent)."""
    return progress.use(progress.TqdmSink(position=position) if show else None)


def _cell_tag(cell: Cell) -> str:
    labels = cell.labels()
    defense = f" w. {labels['defense']}" if labels["defense"] else ""
    return f"{labels['loss']}{defense} {labels['attack']} rate={labels['rate']}"


def make_plan(cells: list[Cell], out: Path, runner: CellRunner, fail_fast: bool) -> GridPlan:
    by_hash = {c.hash: c for c in cells}
    keep, record = set(), set()
    for cell in cells:
        parent = cell.parent()
        if parent is not None:
            by_hash.setdefault(parent.hash, parent)
            keep.add(parent.hash)
            if _needs_example_losses(cell):
                record.add(parent.hash)
    return GridPlan(out, runner, by_hash, frozenset(keep), fail_fast, frozenset(record))


def _needs_example_losses(cell: Cell) -> bool:
    if cell.defense.undefended:
        return False
    from dece.defenses import DEFENSES

    return bool(getattr(DEFENSES.get(cell.defense.name), "needs_example_losses", False))


def _record(summary: GridRunSummary, h: str, outcome: CellOutcome) -> None:
    if outcome.restarted:
        summary.restarted.append(h)
    if outcome.status == "failed":
        summary.failed[h] = outcome.error or ""
    elif outcome.status == "busy":
        summary.busy[h] = outcome.holder or LockHolder(pid=None)
    else:
        getattr(summary, outcome.status).append(h)


def _wait_for_busy(plan: GridPlan, summary: GridRunSummary) -> None:
    """Waits for each busy cell's holder to release it, then runs it here unless it finished."""
    for h, holder in list(summary.busy.items()):
        logger.warning("cell %s is being run by %s; waiting for it (--wait)", h, holder.describe())
        del summary.busy[h]
        _record(summary, h, _run_cell(plan.by_hash[h], plan, wait=True))


def _run_cell(cell: Cell, plan: GridPlan, *, wait: bool = False) -> CellOutcome:
    """Run one cell unless it is complete or another process holds it (``wait``: block on the
    lock instead, as for a parent); cleans a partial directory first."""
    h = cell.hash
    with cell_lock(plan.out, h, wait=wait) as holder:
        if holder is not None:
            if cell_state(plan.out / h) == "done":  # result.json is atomic: safe to read
                return CellOutcome("skipped")
            logger.info("cell %s is being run by %s; leaving it to that one", h, holder.describe())
            return CellOutcome("busy", holder=holder)
        cell_dir = plan.out / h
        state = cell_state(cell_dir)
        if state == "done":
            return CellOutcome("skipped")
        parent_error = _ensure_parent(cell, plan)
        if parent_error is not None:
            return CellOutcome("failed", False, parent_error)
        if state == "partial" and resumes(plan.runner):
            logger.warning("cell %s: unfinished run found; resuming it", h)
            (cell_dir / RESULT_FILE).unlink(missing_ok=True)  # stale: never beside a new history
        elif state == "partial":
            logger.warning("cell %s: unfinished run found; restarting it", h)
            shutil.rmtree(cell_dir)
        return execute_cell(cell, plan, cell_dir, restarted=state == "partial")


def _ensure_parent(cell: Cell, plan: GridPlan) -> str | None:
    """Run (or wait for) the parent of ``cell``; an error message when it is unavailable."""
    parent = cell.parent()
    if parent is None:
        return None
    parent = plan.by_hash.get(parent.hash, parent)
    outcome = _run_cell(parent, plan, wait=True)
    if outcome.status == "failed":
        return f"parent cell {parent.hash} failed: {outcome.error}"
    parent_run = RunDir(plan.out / parent.hash)
    if cell.defense.stage == "test" and not parent_run.model.is_dir():
        if plan.runner is train_cell:
            return (f"parent cell {parent.hash} finished without saving its model; delete "
                    f"{plan.out / parent.hash} to retrain it with the model kept")  # fmt: skip
    if _needs_example_losses(cell) and plan.runner is train_cell:
        if not parent_run.example_losses().is_file():
            return (f"parent cell {parent.hash} finished without recording per-example losses; "
                    f"delete {plan.out / parent.hash} to retrain it with them recorded")  # fmt: skip
    return None


def ensure_parents(
    config: GridConfig, output_dir: str | Path, cells: list[Cell], *, progress: bool = False
) -> dict[str, str]:
    """Run (or wait for) the parent of each of ``cells`` as :func:`run_grid` would (once, model
    kept, per-example losses recorded where a cell reads them), without running the cells
    themselves. Returns ``{cell hash: error}`` for the cells whose parent is unavailable."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    plan = make_plan(expand_grid(config), out, train_cell, False)
    errors = {}
    with progress_sink(progress, position=1):
        for cell in cells:
            error = _ensure_parent(cell, plan)
            if error is not None:
                errors[cell.hash] = error
    return errors


def execute_cell(cell: Cell, plan: GridPlan, cell_dir: Path, *, restarted: bool) -> CellOutcome:
    cell_dir.mkdir(parents=True, exist_ok=True)  # exists: a partial run a resumable runner resumes
    cell_config = cell.to_config()
    if cell.hash in plan.keep_model:
        cell_config["keep_model"] = True
    if cell.hash in plan.record_losses:
        cell_config["record_example_losses"] = True
    atomic_write_text(cell_dir / CELL_FILE, yaml.safe_dump(cell_config, sort_keys=False))
    started = time.time()
    try:
        final = plan.runner(cell_config, cell_dir)
        if not isinstance(final, Mapping):
            raise TypeError(f"cell runner returned {type(final).__name__}, expected a dict")
    except Exception as exc:
        if plan.fail_fast:
            raise
        logger.exception("cell %s failed; it stays unfinished and reruns next time", cell.hash)
        return CellOutcome("failed", restarted, f"{type(exc).__name__}: {exc}")
    write_result(cell_dir, cell.hash, cell_config, final, started)
    return CellOutcome("completed", restarted)


# --------------------------------------------------------------------------- parallel cells
def _run_in_worker(cell: Cell, plan: GridPlan) -> CellOutcome:
    with progress.task(_cell_tag(cell), total=None, unit="cell"):
        return _run_cell(cell, plan)


def _warm_model_cache(cells: list[Cell], out: Path) -> None:
    """Build each distinct starting model of the (unfinished) ``cells`` once (tiny presets
    pretrain and cache), so parallel workers load it instead of building it side by side."""
    from dece.pipeline.fit import prepare_model

    seen: set[str] = set()
    for cell in cells:
        if cell.defense.stage == "test":
            continue  # evaluates its parent's model
        cfg = build_train_config(cell.to_config(), out / cell.hash)
        key = json.dumps(
            [cfg.data, cfg.data_seed, cfg.train_max_examples, cfg.model, cfg.task,
             cfg.model_args, cfg.pretrain_steps, cfg.cache_dir, cfg.seed],
            sort_keys=True, default=str,
        )  # fmt: skip
        if key not in seen:
            seen.add(key)
            prepare_model(cfg)


def _run_parallel(
    cells: list[Cell],
    plan: GridPlan,
    summary: GridRunSummary,
    bar: Any,
    *,
    workers: int,
    show: bool,
) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from dece.experiments._workers import init_worker

    pending = []
    for cell in cells:  # complete and busy cells are settled here: no worker starts for them
        if cell_state(plan.out / cell.hash) == "done":
            outcome = CellOutcome("skipped")
        elif (holder := lock_holder(plan.out, cell.hash)) is not None:
            outcome = CellOutcome("busy", holder=holder)
        else:
            pending.append(cell)
            continue
        _record(summary, cell.hash, outcome)
        bar.update(1)
    if not pending:
        return
    if plan.runner is train_cell:
        with progress_sink(show, position=1):
            _warm_model_cache(pending, plan.out)
    workers = min(workers, len(pending))
    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")
    queue = context.Queue() if show else None
    level = logging.getLogger().getEffectiveLevel()
    renderer = progress.QueueRenderer(queue) if show else contextlib.nullcontext()
    with renderer, ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=init_worker,
        initargs=(threads, queue, level, os.getpid()),
    ) as pool:  # fmt: skip
        futures = {pool.submit(_run_in_worker, cell, plan): cell for cell in pending}
        for future in as_completed(futures):
            _record(summary, futures[future].hash, future.result())
            bar.update(1)
