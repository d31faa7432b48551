"""dece.experiments: grid configs, the resumable grid runner, result tables and plots.

Typical use::

    from dece.experiments import load_grid_config, run_grid, write_report
    config = load_grid_config("configs/lyra_table5.yaml")
    run_grid(config, "runs/lyra", shard=(0, 1))
    print(write_report("runs/lyra", "runs/lyra/report", fmt="md").text)

Plots live in :mod:`dece.experiments.plots`, the demo in :mod:`dece.experiments.demo`.
"""

from dece.experiments.axes import AXES, Axis, DefenseSpec
from dece.experiments.config import AttackSpec, ConfigError, GridConfig, LossSpec, load_grid_config
from dece.experiments.grid import (
    Cell,
    cell_hash,
    current_labels,
    expand_grid,
    parse_shard,
    pending_commands,
    shard_cells,
)
from dece.experiments.report import Report, write_report
from dece.experiments.results import ResultRow, find_unfinished, load_results
from dece.experiments.runner import GridRunSummary, build_train_config, run_grid, train_cell
from dece.experiments.tables import Table, build_tables, format_tables

__all__ = [
    "AXES",
    "AttackSpec",
    "Axis",
    "Cell",
    "ConfigError",
    "DefenseSpec",
    "GridConfig",
    "GridRunSummary",
    "LossSpec",
    "Report",
    "ResultRow",
    "Table",
    "build_tables",
    "build_train_config",
    "cell_hash",
    "current_labels",
    "expand_grid",
    "find_unfinished",
    "format_tables",
    "load_grid_config",
    "load_results",
    "parse_shard",
    "pending_commands",
    "run_grid",
    "shard_cells",
    "train_cell",
    "write_report",
]
