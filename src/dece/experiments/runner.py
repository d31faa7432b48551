"""Resumable grid runner.

Each cell runs in ``<output_dir>/<cell hash>/`` and leaves ``cell.yaml`` (its grid identity and
labels), whatever the cell runner writes (``dece.training.train`` writes ``config.yaml``, the
resolved ``TrainConfig``, ``metrics.jsonl``, ``predictions/``, ...) and finally ``result.json``
(identity + final metrics), written
atomically (temp file + ``os.replace``): it is the completion marker. On a rerun a cell with
``result.json`` is skipped and a cell directory without one (a run killed mid-way) is deleted
and run again, so ``kill -9`` at any moment loses no finished result and duplicates none.

A *cell runner* is any callable ``run_cell(cell_config: dict, cell_dir: Path) -> dict`` that
trains one cell into ``cell_dir`` and returns its final (test-split) metrics. The default,
:func:`train_cell`, calls :func:`dece.training.train`; tests inject a fake one.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import importlib
import json
import logging
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from tqdm.auto import tqdm

from dece.experiments.config import ConfigError, GridConfig, check_training_keys
from dece.experiments.grid import Cell, expand_grid, shard_cells

__all__ = [
    "CellRunner",
    "GridRunSummary",
    "RESULT_FILE",
    "atomic_write_text",
    "atomic_write_json",
    "build_train_config",
    "check_cells",
    "resolve_runner",
    "run_grid",
    "train_cell",
]

logger = logging.getLogger(__name__)

CellRunner = Callable[[dict[str, Any], Path], Mapping[str, Any]]
RESULT_FILE = "result.json"
CELL_FILE = "cell.yaml"  # the cell's identity + labels, written before it runs
GRID_FILE = "grid.yaml"
RUNNER_ENV = "DECE_CELL_RUNNER"


# --------------------------------------------------------------------------- atomic writes


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` so readers see the old file or the whole new one, never half."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(dir_fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(dir_fd)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    raise TypeError(f"result value of type {type(obj).__name__} is not JSON-serialisable")


# --------------------------------------------------------------------------- cell runners


def resolve_runner(spec: str | CellRunner | None = None) -> CellRunner:
    """The cell runner to use: ``spec`` ("module:function" or a callable), else the
    ``DECE_CELL_RUNNER`` environment variable, else :func:`train_cell`."""
    if spec is None:
        spec = os.environ.get(RUNNER_ENV) or None
    if spec is None:
        return train_cell
    if callable(spec):
        return spec
    module_name, sep, attr = str(spec).partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"cell runner must be 'module:function', got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cell runner {spec!r}: cannot import {module_name!r}: {exc}") from None
    try:
        fn = getattr(module, attr)
    except AttributeError:
        raise ValueError(f"cell runner {spec!r}: {module_name} has no {attr!r}") from None
    if not callable(fn):
        raise ValueError(f"cell runner {spec!r} is not callable")
    return fn


def build_train_config(cell_config: Mapping[str, Any], cell_dir: str | Path) -> Any:
    """A ``dece.training.TrainConfig`` for one cell (imported lazily), type-checked by
    ``TrainConfig.from_dict``.

    Rate 0 is the clean baseline: ``poison=None`` and the attack goes to ``eval_poison`` so the
    test ASR is still measured with the same trigger and payload.
    """
    from dece.training import TrainConfig  # type: ignore[attr-defined]

    attack = cell_config["attack"]
    rate = float(cell_config["rate"])
    poison = {
        "trigger": attack["trigger"],
        "trigger_args": dict(attack.get("trigger_args") or {}),
        "payload": attack["payload"],
        "payload_args": dict(attack.get("payload_args") or {}),
        "rate": rate,
        "seed": int(cell_config["seed"]),
    }
    data: dict[str, Any] = dict(cell_config.get("training") or {})
    data.update(
        output_dir=str(cell_dir),
        data=cell_config["dataset"],
        model=cell_config["model"],
        loss=cell_config["loss"]["name"],
        loss_args=dict(cell_config["loss"].get("args") or {}),
        seed=int(cell_config["seed"]),
        poison=poison if rate > 0 else None,
        eval_poison=None if rate > 0 else poison,
    )
    return TrainConfig.from_dict(data)


def train_cell(cell_config: dict[str, Any], cell_dir: Path) -> dict[str, Any]:
    """Default cell runner: build a ``TrainConfig`` and call ``dece.training.train``."""
    from dece.training import train  # type: ignore[attr-defined]

    result = train(build_train_config(cell_config, cell_dir))
    return dict(result.final)


def check_cells(config: GridConfig, cells: list[Cell] | None = None) -> None:
    """Validate what only the training stack can check, before any cell runs: each loss's
    hyperparameters (``dece.losses.get_loss``) and the ``training`` overrides
    (keys and values, ``TrainConfig.from_dict``). Raises :class:`ConfigError` naming the file and the key."""
    from dece.losses import LOSSES, get_loss

    check_training_keys(config)
    cells = expand_grid(config) if cells is None else cells
    for i, spec in enumerate(config.losses):
        if spec.name not in LOSSES:
            raise ConfigError(
                config.source, f"losses[{i}].name",
                f"unknown value {spec.name!r}; allowed: {', '.join(LOSSES.names())}",
            )  # fmt: skip
        try:
            get_loss(spec.name, **spec.args)
        except (TypeError, ValueError) as exc:
            raise ConfigError(config.source, f"losses[{i}].args", f"({spec.label}) {exc}") from None
    if cells:
        try:
            build_train_config(cells[0].to_config(), "<check>")
        except (TypeError, ValueError) as exc:
            raise ConfigError(config.source, "training", str(exc)) from None


# --------------------------------------------------------------------------- the grid


@dataclass
class GridRunSummary:
    """What one ``run_grid`` call did, by cell hash."""

    output_dir: Path
    cells: list[str] = field(default_factory=list)  # this shard's cells, in order
    completed: list[str] = field(default_factory=list)  # run to the end now
    skipped: list[str] = field(default_factory=list)  # already had result.json
    restarted: list[str] = field(default_factory=list)  # partial dir found and cleaned
    failed: dict[str, str] = field(default_factory=dict)  # hash -> error message

    @property
    def ok(self) -> bool:
        return not self.failed


def run_grid(
    config: GridConfig,
    output_dir: str | Path,
    *,
    shard: tuple[int, int] = (0, 1),
    cell_runner: str | CellRunner | None = None,
    fail_fast: bool = False,
    progress: bool = True,
    workers: int = 1,
) -> GridRunSummary:
    """Run (or resume) shard ``shard = (i, n)`` of the grid ``config`` under ``output_dir``.

    ``cell_runner``: a callable or "module:function"; default the ``DECE_CELL_RUNNER``
    environment variable, then ``config.runner``, then :func:`train_cell`.
    A failing cell is logged and left unfinished (rerun retries it) unless ``fail_fast``.
    ``workers > 1`` runs that many cells at once in worker processes (spawned), each with
    ``cpu_count // workers`` torch threads; with the default runner the tiny presets'
    pretrained models are built (cached) first, once, so workers never build the same one.
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

    cells = shard_cells(all_cells, *shard)
    summary = GridRunSummary(output_dir=out, cells=[c.hash for c in cells])
    bar = tqdm(
        cells, desc=f"grid {config.name} [{shard[0]}/{shard[1]}]", unit="run", disable=not progress
    )
    if workers == 1:
        for cell in bar:
            bar.set_postfix_str(f"{cell.loss.label} {cell.attack.label} rate={cell.rate}")
            _record(summary, cell.hash, _run_cell(cell, out, runner, fail_fast=fail_fast))
    else:
        _run_parallel(cells, out, runner, summary, bar, workers=workers, fail_fast=fail_fast)
    bar.close()
    logger.info(
        "grid %s shard %d/%d: %d run, %d skipped, %d restarted, %d failed",
        config.name, shard[0], shard[1], len(summary.completed), len(summary.skipped),
        len(summary.restarted), len(summary.failed),
    )  # fmt: skip
    return summary


@dataclass(frozen=True)
class _Outcome:
    status: str  # "completed" | "skipped" | "failed"
    restarted: bool = False  # a partial directory of an earlier run was cleaned first
    error: str | None = None


def _record(summary: GridRunSummary, h: str, outcome: _Outcome) -> None:
    if outcome.restarted:
        summary.restarted.append(h)
    if outcome.status == "failed":
        summary.failed[h] = outcome.error or ""
    elif outcome.status == "skipped":
        summary.skipped.append(h)
    else:
        summary.completed.append(h)


def _run_cell(cell: Cell, out: Path, runner: CellRunner, *, fail_fast: bool) -> _Outcome:
    """Run one cell unless it has its ``result.json``; cleans a partial directory first."""
    h = cell.hash
    cell_dir = out / h
    if (cell_dir / RESULT_FILE).is_file():
        return _Outcome("skipped")
    restarted = cell_dir.exists()
    if restarted:
        logger.warning("cell %s: unfinished run found (no %s); restarting it", h, RESULT_FILE)
        shutil.rmtree(cell_dir)
    cell_dir.mkdir(parents=True)
    cell_config = cell.to_config()
    atomic_write_text(cell_dir / CELL_FILE, yaml.safe_dump(cell_config, sort_keys=False))

    started = time.time()
    try:
        final = runner(cell_config, cell_dir)
        if not isinstance(final, Mapping):
            raise TypeError(f"cell runner returned {type(final).__name__}, expected a dict")
    except Exception as exc:
        if fail_fast:
            raise
        logger.exception("cell %s failed; it stays unfinished and reruns next time", h)
        return _Outcome("failed", restarted, f"{type(exc).__name__}: {exc}")
    result = {
        "hash": h,
        "config": cell_config,
        "final": dict(final),
        "elapsed_s": round(time.time() - started, 3),
        "finished_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
    }
    atomic_write_json(cell_dir / RESULT_FILE, result)
    return _Outcome("completed", restarted)


# --------------------------------------------------------------------------- parallel cells


def _init_worker(threads: int) -> None:
    try:
        import torch
    except ImportError:  # pragma: no cover - fake runners need no torch
        return
    torch.set_num_threads(threads)


def _warm_model_cache(cells: list[Cell], out: Path) -> None:
    """Build each distinct starting model of the (unfinished) ``cells`` once (tiny presets pretrain and cache),
    so parallel workers load it instead of building it side by side."""
    from dece.training.train import prepare_model  # type: ignore[import-not-found]

    seen: set[str] = set()
    for cell in cells:
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
    out: Path,
    runner: CellRunner,
    summary: GridRunSummary,
    bar: Any,
    *,
    workers: int,
    fail_fast: bool,
) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    pending = []
    for cell in cells:  # finished cells are skipped here: no worker is started for them
        if (out / cell.hash / RESULT_FILE).is_file():
            _record(summary, cell.hash, _Outcome("skipped"))
            bar.update(1)
        else:
            pending.append(cell)
    if not pending:
        return
    if runner is train_cell:
        _warm_model_cache(pending, out)
    workers = min(workers, len(pending))
    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_init_worker, initargs=(threads,)
    ) as pool:
        futures = {
            pool.submit(_run_cell, cell, out, runner, fail_fast=fail_fast): cell for cell in pending
        }
        for future in as_completed(futures):
            cell = futures[future]
            _record(summary, cell.hash, future.result())
            bar.update(1)
