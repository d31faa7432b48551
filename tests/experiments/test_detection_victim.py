"""A filter that reads a model, scored without one: ``detect_cell`` (and ``train``'s filter step,
through the same :func:`dece.pipeline.run.filter_victim`) stop with a message naming
``defense_victim``, not a ``TypeError`` from loading ``None``."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from dece.defenses import get_defense
from dece.experiments import GridConfig, expand_grid
from dece.experiments.detection_table import detect_cell
from dece.pipeline.run import filter_victim
from dece.training import TrainConfig


def _orphan_filter_cell():
    """A spectral-signature cell (needs a victim) whose config names no parent model."""
    grid = GridConfig.from_dict({
        "name": "f", "datasets": ["synthetic:20"], "attacks": ["badpre"], "rates": [0.1],
        "models": ["tiny-seq2seq"], "losses": ["ce"], "seeds": [3], "defenses": ["spectral"],
        "training": {"num_epochs": 1},
    })  # fmt: skip
    (cell,) = expand_grid(grid)
    config = {k: v for k, v in cell.to_config().items() if k != "parent"}
    return SimpleNamespace(hash=cell.hash, to_config=lambda: config)


def test_detect_cell_without_a_victim_names_the_setting(tmp_path):
    with pytest.raises(ValueError, match="'spectral' needs defense_victim"):
        detect_cell(_orphan_filter_cell(), tmp_path)


def test_filter_victim_loads_nothing_for_a_filter_without_a_model(tmp_path):
    cfg = TrainConfig(output_dir=str(tmp_path), defense_victim=None)
    assert filter_victim(get_defense("keyword", tokens=["bb"]), cfg) is None
    with pytest.raises(ValueError, match="'spectral' needs defense_victim"):
        filter_victim(get_defense("spectral"), cfg)
