"""``train(config)`` and the helpers the grid uses before training (kept here for
``dece.training`` users; the stages live in :mod:`dece.pipeline`)."""

from __future__ import annotations

from typing import Any

from dece.pipeline.data import prepare_data
from dece.pipeline.evaluation import write_predictions
from dece.pipeline.fit import load_starting_model, training_arguments
from dece.pipeline.run import FINAL_FILE, TrainResult, train
from dece.training.config import TrainConfig

__all__ = ["FINAL_FILE", "TrainResult", "prepare_model", "train", "training_arguments",
           "write_predictions"]  # fmt: skip


def prepare_model(config: TrainConfig) -> Any:
    """Load the model ``train(config)`` starts from, building and caching a tiny preset's
    pretrained model if needed (from the clean training split, as ``train`` does).

    Call it once before starting several runs in parallel, so they load the cached model
    instead of each pretraining the same one. Returns a ``LoadedModel``.
    """
    cfg = config.resolved()
    return load_starting_model(cfg, prepare_data(cfg))
