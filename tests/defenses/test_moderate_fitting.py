"""Moderate-fitting as a training recipe: its TrainConfig overrides in closed form and through
``apply_recipe`` (the LoRA training itself runs in test_filter_grid.py)."""

from __future__ import annotations

import pytest

from dece.defenses import TrainingRecipe, get_defense
from dece.pipeline.run import apply_recipe
from dece.training.config import TrainConfig


def _config(**kw) -> TrainConfig:
    return TrainConfig(output_dir="out", model="tiny-seq2seq", **kw).resolved()


def test_default_overrides_are_the_authors_values():
    recipe = get_defense("moderate_fitting")
    assert isinstance(recipe, TrainingRecipe) and recipe.stage == "train"
    assert not recipe.needs_victim
    out = recipe.overrides(_config(num_epochs=6))
    assert out == {"learning_rate": 3e-4, "num_epochs": 6,
                   "lora": {"r": 2, "alpha": 4, "dropout": 0.0}}  # fmt: skip


def test_scales_and_full_fine_tuning():
    recipe = get_defense("moderate_fitting", r=None, learning_rate=None, lr_scale=0.1,
                         epoch_scale=0.5)  # fmt: skip
    out = recipe.overrides(_config(num_epochs=5, learning_rate=1e-3))
    assert out == {"learning_rate": pytest.approx(1e-4), "num_epochs": 3}  # ceil(2.5), no LoRA
    modules = get_defense("moderate_fitting", r=8, alpha=32, target_modules=["q_proj"])
    assert modules.overrides(_config())["lora"] == {"r": 8, "alpha": 32, "dropout": 0.0,
                                                    "target_modules": ["q_proj"]}  # fmt: skip


def test_apply_recipe_replaces_the_fields():
    cfg, changes = apply_recipe(get_defense("moderate_fitting", num_epochs=2), _config())
    assert (cfg.num_epochs, cfg.learning_rate, cfg.lora) == (2, 3e-4, changes["lora"])
    assert cfg.loss == _config().loss  # everything else kept


@pytest.mark.parametrize("bad", [{"r": 0}, {"lr_scale": 0}, {"num_epochs": 0}, {"dropout": 1.0},
                                 {"learning_rate": -1.0}])  # fmt: skip
def test_bad_parameters(bad):
    with pytest.raises(ValueError):
        get_defense("moderate_fitting", **bad)
