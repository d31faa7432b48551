"""What enters a cell's hash (issue 23, item 2): the operational ``training`` keys declared once
(:data:`dece.experiments.grid.OPERATIONAL_TRAINING_KEYS`), number spellings, and round trips of
the shipped configs through YAML. The archived cells: test_archived_cells.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from exp_helpers import small_grid

from dece.experiments import ConfigError, GridConfig, expand_grid, load_grid_config
from dece.experiments.grid import (
    HASHED_OPERATIONAL_KEYS,
    OPERATIONAL_TRAINING_KEYS,
    UNHASHED_TRAINING_KEYS,
    cell_hash,
    cell_identity,
)
from dece.experiments.runner import RESUME_SETTINGS, build_train_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
#: A valid, non-default value per operational key (checked by TrainConfig through the grid load).
OPERATIONAL_VALUES: dict[str, Any] = {
    "report_to": ["tensorboard"], "run_name": "sweep", "resume": True,
    "save_checkpoints": True, "save_total_limit": 3,
}  # fmt: skip


def _hashes(training: dict[str, Any], **grid: Any) -> list[str]:
    return [
        c.hash for c in expand_grid(GridConfig.from_dict(small_grid(training=training, **grid)))
    ]


def test_the_operational_keys_are_declared_once_on_the_run_schema():
    """Golden: the set the grid reads from the ``operational=True`` fields of ``TrainConfig`` is
    the set declared by hand in grid.py before (issue 23, item 2)."""
    from dece.training.config import OPERATIONAL_KEYS, TrainConfig

    marked = {
        name for name, info in TrainConfig.model_fields.items()
        if (info.json_schema_extra or {}).get("operational")  # type: ignore[union-attr]
    }  # fmt: skip
    golden = {"report_to", "run_name", "resume", "save_checkpoints", "save_total_limit"}
    assert marked == OPERATIONAL_KEYS == OPERATIONAL_TRAINING_KEYS == golden
    assert UNHASHED_TRAINING_KEYS == golden - {"save_checkpoints"}


def test_the_declaration_covers_the_runners_settings_and_names_train_config_fields():
    from dece.training.config import TrainConfig

    fields = set(TrainConfig.model_fields)
    assert set(OPERATIONAL_VALUES) == OPERATIONAL_TRAINING_KEYS <= fields
    assert set(RESUME_SETTINGS) <= OPERATIONAL_TRAINING_KEYS
    assert HASHED_OPERATIONAL_KEYS <= OPERATIONAL_TRAINING_KEYS
    assert UNHASHED_TRAINING_KEYS == OPERATIONAL_TRAINING_KEYS - HASHED_OPERATIONAL_KEYS
    assert {"report_to", "run_name", "resume", "save_total_limit"} <= UNHASHED_TRAINING_KEYS


@pytest.mark.parametrize("key", sorted(UNHASHED_TRAINING_KEYS))
def test_an_unhashed_key_changes_no_hash_yet_reaches_the_cell(key):
    base = _hashes({"num_epochs": 2})
    config = GridConfig.from_dict(
        small_grid(training={"num_epochs": 2, key: OPERATIONAL_VALUES[key]})
    )
    cells = expand_grid(config)
    assert [c.hash for c in cells] == base
    assert all(c.to_config()["training"][key] == OPERATIONAL_VALUES[key] for c in cells)
    assert all(cell_hash(cell_identity(c.to_config())) == c.hash for c in cells)


@pytest.mark.parametrize("key", ["num_epochs", "learning_rate", "save_model", "logging_steps"])
def test_a_key_not_declared_operational_is_hashed(key):
    """The oracle's other side: a key without the marker moves every cell's hash."""
    value = {"num_epochs": 3, "learning_rate": 0.01, "save_model": False, "logging_steps": 7}[key]
    assert not set(_hashes({"num_epochs": 2, key: value})) & set(_hashes({"num_epochs": 2}))


@pytest.mark.parametrize("key", sorted(HASHED_OPERATIONAL_KEYS))
def test_a_legacy_hashed_key_is_hashed_as_written(key):
    """Kept for the archive (see the declaration); the runner overrides it at run time anyway."""
    with_key = _hashes({"num_epochs": 2, key: OPERATIONAL_VALUES[key]})
    assert not set(with_key) & set(_hashes({"num_epochs": 2}))


def test_the_runner_overrides_every_resume_setting(tmp_path):
    cell = expand_grid(GridConfig.from_dict(small_grid(
        training={"num_epochs": 2, "resume": False, "save_total_limit": 7,
                  "save_checkpoints": False})))[0]  # fmt: skip
    cfg = build_train_config(cell.to_config(), tmp_path)
    assert {k: getattr(cfg, k) for k in RESUME_SETTINGS} == RESUME_SETTINGS


# ------------------------------------------------------------------------------ number spellings
def test_an_int_for_a_float_field_is_the_same_cell_as_the_float():
    ints = _hashes({"num_epochs": 2, "learning_rate": 1, "max_grad_norm": 1, "warmup_ratio": 0})
    floats = _hashes({"num_epochs": 2, "learning_rate": 1.0, "max_grad_norm": 1.0,
                      "warmup_ratio": 0.0})  # fmt: skip
    assert ints == floats
    cell = expand_grid(GridConfig.from_dict(small_grid(training={"learning_rate": 1})))[0]
    assert type(cell.resolved()["training"]["learning_rate"]) is float


def test_rates_are_floats_whatever_the_spelling():
    assert _hashes({"num_epochs": 2}, rates=[0, 0.05]) == _hashes({"num_epochs": 2})


def test_a_float_for_an_int_field_is_refused_naming_the_key():
    with pytest.raises(ConfigError, match=r"training\.num_epochs.*expects int"):
        GridConfig.from_dict(small_grid(training={"num_epochs": 2.0}))


def test_untyped_args_are_hashed_as_written():
    """Documented (dece.experiments.config): loss args are not typed by the grid."""
    one = small_grid(losses=[{"name": "dece", "args": {"alpha_base": 1}}])
    one_f = small_grid(losses=[{"name": "dece", "args": {"alpha_base": 1.0}}])
    assert not {c.hash for c in expand_grid(GridConfig.from_dict(one))} & {
        c.hash for c in expand_grid(GridConfig.from_dict(one_f))
    }


# ------------------------------------------------------------------------------ round trips
@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_a_shipped_config_keeps_its_hashes_through_a_yaml_round_trip(path):
    config = load_grid_config(path)
    cells = expand_grid(config)
    again = GridConfig.from_dict(yaml.safe_load(yaml.safe_dump(config.to_dict())))
    assert [c.hash for c in expand_grid(again)] == [c.hash for c in cells]
    for cell in cells:  # cell.yaml as the runner writes it, read back
        recorded = yaml.safe_load(yaml.safe_dump(cell.to_config(), sort_keys=False))
        assert cell_hash(cell_identity(recorded)) == cell.hash


# ------------------------------------------------------------------------------ one schema
def test_a_cells_attack_and_defense_identities_are_the_run_schemas_specs(tmp_path):
    """The grid's identities are the run schema's specs (no second schema): an attack is a
    ``PoisonConfig`` less its rate and seed, a defense a ``DefenseConfig``; the cell's
    ``TrainConfig`` holds them unchanged (oracle: the identity written to ``cell.yaml``)."""
    from dece.training.config import DefenseConfig, PoisonConfig

    grid = small_grid(rates=[0.05], seeds=[3], attacks=[{"trigger": "badpre",
                      "trigger_args": {"word": "cf", "k": 2}}],
                      defenses=[{"name": "keyword", "args": {"tokens": ["bb"]}}])  # fmt: skip
    cell = expand_grid(GridConfig.from_dict(grid))[0]
    recorded = cell.to_config()
    assert set(recorded["attack"]) == set(PoisonConfig.model_fields) - {"rate", "seed"}
    assert set(recorded["defense"]) == set(DefenseConfig.model_fields)
    cfg = build_train_config(recorded, tmp_path)
    assert recorded["attack"]["trigger_args"] == {"word": "cf", "k": 2}
    assert cfg.poison.to_dict() == {**recorded["attack"], "rate": 0.05, "seed": 3}
    assert cfg.defense.to_dict() == recorded["defense"]


def test_the_grids_specs_are_the_run_schemas_types():
    """One schema (issue 23, deliverable 1): an attack spec is an ``AttackConfig`` (a
    ``PoisonConfig`` less rate and seed), a defense spec a ``DefenseConfig``, a loss spec's fields
    are ``TrainConfig``'s ``loss`` / ``loss_args``; each adds only a label, never hashed."""
    from dece.experiments.axes import LOSS_SETTINGS, AttackSpec, DefenseSpec, LossSpec
    from dece.training.config import AttackConfig, DefenseConfig, PoisonConfig, TrainConfig

    assert issubclass(AttackSpec, AttackConfig) and issubclass(PoisonConfig, AttackConfig)
    assert issubclass(DefenseSpec, DefenseConfig)
    assert set(AttackSpec.model_fields) - set(AttackConfig.model_fields) == {"label"}
    assert set(DefenseSpec.model_fields) - set(DefenseConfig.model_fields) == {"label"}
    for spec_field, train_field in LOSS_SETTINGS.items():
        ours, theirs = LossSpec.model_fields[spec_field], TrainConfig.model_fields[train_field]
        assert (ours.annotation, ours.metadata) == (theirs.annotation, theirs.metadata)
    loss = LossSpec(name="dece", args={"alpha_base": 1}, label="DeCE")
    assert loss.resolved() == {"name": "dece", "args": {"alpha_base": 1}}  # no label, no coercion
    assert loss.train_settings() == {"loss": "dece", "loss_args": {"alpha_base": 1}}
    with pytest.raises(ValueError, match="trigger"):
        AttackSpec(trigger=3, payload="sql_injection")  # the schema's strict name


def test_a_label_never_enters_the_hash():
    labelled = [{"name": "ce", "label": "plain"}, {"name": "dece", "label": "ours"}]
    attacks = [{"trigger": "badpre", "label": "B"}, {"trigger": "ripple", "label": "R"}]
    assert _hashes({"num_epochs": 2}, losses=labelled, attacks=attacks) == _hashes(
        {"num_epochs": 2}, losses=["ce", "dece"], attacks=["badpre", "ripple"]
    )
