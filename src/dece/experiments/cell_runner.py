"""What runs one grid cell: the cell runner (:func:`train_cell` by default, or one named by
``module:function``), the ``TrainConfig`` a cell trains with (:func:`build_train_config`, with
the runner's operational :data:`RESUME_SETTINGS`) and the checks that only the training stack
can make before any cell runs (:func:`check_cells`).

A *cell runner* is any callable ``run_cell(cell_config: dict, cell_dir: Path) -> dict`` that
runs one cell into ``cell_dir`` and returns its final (test-split) metrics; the grid runner
(:mod:`dece.experiments.runner`) and the cluster executor (:mod:`dece.experiments.executor`)
call it. One marked :func:`resumable` gets an interrupted cell's directory back instead of a
fresh one.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from dece.experiments.axes import UNDEFENDED, LossSpec
from dece.experiments.config import ConfigError, GridConfig
from dece.experiments.grid import Cell, expand_grid
from dece.rundir import RunDir

__all__ = [
    "RESUME_SETTINGS",
    "RUNNER_ENV",
    "CellRunner",
    "build_train_config",
    "check_cells",
    "resolve_runner",
    "resumable",
    "resumes",
    "train_cell",
]

CellRunner = Callable[[dict[str, Any], Path], Mapping[str, Any]]

RUNNER_ENV = "DECE_CELL_RUNNER"

#: ``TrainConfig`` settings of every trained cell, over the grid's ``training`` block: operational
#: (they change no result; declared in :data:`dece.experiments.grid.OPERATIONAL_TRAINING_KEYS`,
#: which also says which of them a cell hash leaves out). A checkpoint per epoch, only the newest
#: kept (a SmolLM2 checkpoint is ~1.6 GB), and resume from it after a kill.
RESUME_SETTINGS: dict[str, Any] = {"save_checkpoints": True, "save_total_limit": 1, "resume": True}


def resumable(run_cell: CellRunner) -> CellRunner:
    """Marks ``run_cell`` as a cell runner that resumes an interrupted run from what it left in
    ``cell_dir``: the grid runner then hands it the partial directory instead of deleting it."""
    run_cell.resumes = True  # type: ignore[attr-defined]
    return run_cell


def resumes(runner: CellRunner) -> bool:
    return bool(getattr(runner, "resumes", False))


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
    fn = getattr(module, attr, None)
    if fn is None:
        raise ValueError(f"cell runner {spec!r}: {module_name} has no {attr!r}")
    if not callable(fn):
        raise ValueError(f"cell runner {spec!r} is not callable")
    return fn


def build_train_config(cell_config: Mapping[str, Any], cell_dir: str | Path) -> Any:
    """A ``dece.training.TrainConfig`` for one cell, validated by its schema.

    The cell's attack identity is an ``AttackConfig`` (a ``PoisonConfig`` less its ``rate`` and
    ``seed``), its defense identity a ``DefenseConfig`` and its loss identity ``TrainConfig``'s
    ``loss`` / ``loss_args`` (:data:`dece.experiments.axes.LOSS_SETTINGS`): each is validated as
    the grid's spec of that schema type, not copied field by field.
    Rate 0 is the clean baseline: ``poison=None`` and the attack goes to ``eval_poison`` so the
    test ASR is still measured with the same trigger and payload. A training-time defense goes
    to ``defense`` (with ``defense_victim``: the parent cell's directory, when it has one).
    :data:`RESUME_SETTINGS` override the grid's ``training`` block.
    """
    from dece.training.config import DefenseConfig, PoisonConfig, TrainConfig

    rate, seed = float(cell_config["rate"]), int(cell_config["seed"])
    poison = PoisonConfig.validate_mapping({**cell_config["attack"], "rate": rate, "seed": seed})
    loss = LossSpec.model_validate(cell_config["loss"])
    data: dict[str, Any] = dict(cell_config.get("training") or {})
    data.update(
        output_dir=str(cell_dir), data=cell_config["dataset"], model=cell_config["model"],
        **loss.train_settings(), seed=seed, poison=poison if rate > 0 else None,
        eval_poison=None if rate > 0 else poison, **RESUME_SETTINGS,
    )  # fmt: skip
    if cell_config.get("record_example_losses"):
        data["record_example_losses"] = True  # a dynamics cell reads this parent's recording
    defense = cell_config.get("defense")
    if defense and defense.get("name", UNDEFENDED) != UNDEFENDED:
        data["defense"] = DefenseConfig.validate_mapping(defense)
        if cell_config.get("parent"):
            data["defense_victim"] = str(Path(cell_dir).parent / cell_config["parent"])
    return TrainConfig.from_dict(data)


@resumable
def train_cell(
    cell_config: dict[str, Any], cell_dir: Path, *, callbacks: Sequence[Any] = ()
) -> dict[str, Any]:
    """Default cell runner: train (a training-time defense filters first), or, for a test-time
    defense, evaluate the parent cell's model through the purifier without retraining.

    Training resumes from the newest complete checkpoint an interrupted run left in ``cell_dir``
    (:data:`RESUME_SETTINGS`); the checkpoints are deleted once the cell's metrics are in.
    ``callbacks``: extra ``TrainerCallback`` objects for the training.
    """
    from dece.defenses import Purifier, get_defense
    from dece.pipeline import evaluate_run, train
    from dece.pipeline.fit import delete_checkpoints

    config = build_train_config(cell_config, cell_dir)
    defense = get_defense(config.defense.name, **config.defense.args) if config.defense else None
    if isinstance(defense, Purifier):
        parent = Path(cell_dir).parent / cell_config["parent"]
        config.to_yaml(RunDir(cell_dir).config)
        return evaluate_run(parent, cell_dir, purifier=defense)
    result = train(
        config, callbacks=callbacks, save_model=True if cell_config.get("keep_model") else None
    )
    delete_checkpoints(cell_dir)
    return dict(result.final)


def check_cells(config: GridConfig, cells: list[Cell] | None = None) -> None:
    """Validate what only the training stack can check, before any cell runs: each loss's and
    each defense's hyperparameters, and one cell's full ``TrainConfig``. Raises
    :class:`ConfigError` naming the file and the key."""
    from dece.defenses import get_defense
    from dece.losses import get_loss

    cells = expand_grid(config) if cells is None else cells
    for i, spec in enumerate(config.datasets):
        problem = _dataset_problem(str(spec))
        if problem:
            raise ConfigError(config.source, f"datasets[{i}]", problem)
    for i, spec in enumerate(config.losses):
        try:
            get_loss(spec.name, **spec.args)
        except (TypeError, ValueError) as exc:
            raise ConfigError(config.source, f"losses[{i}].args", f"({spec.label}) {exc}") from None
    for i, spec in enumerate(config.defenses):
        if not spec.undefended:
            try:
                get_defense(spec.name, **spec.args)
            except (TypeError, ValueError) as exc:
                raise ConfigError(config.source, f"defenses[{i}].args", str(exc)) from None
    if cells:
        try:
            build_train_config(cells[0].to_config(), "<check>")
        except (TypeError, ValueError) as exc:
            raise ConfigError(config.source, "training", str(exc)) from None


def _dataset_problem(spec: str) -> str | None:
    """Why :func:`dece.data.load_dataset` cannot resolve ``spec`` (None: it can, or it is a
    Hugging Face id, which only the download can check)."""
    from dece.data import DATASETS

    if spec.startswith("hf:") or spec.partition(":")[0] in DATASETS or Path(spec).exists():
        return None
    return (
        f"{spec!r} is neither an existing file or directory (from {Path.cwd()}) nor a registered "
        f"dataset ({', '.join(DATASETS.names())}) nor hf:<id>"
    )
