"""dece.training: fine-tune code models with any dece loss through transformers' Trainer.

Public API: :class:`TrainConfig` (and :class:`ResolvedTrainConfig`, its defaults filled in),
:class:`AttackConfig` / :class:`PoisonConfig`, :class:`DefenseConfig`,
:func:`generate`, :class:`DeceTrainer`, the callbacks :class:`EpochTracker` /
:class:`EarlyLearningCallback`, and :class:`Collator`. ``train(config)`` and ``TrainResult``
(the stages composed) live in :mod:`dece.pipeline`, which builds on this package, never the
other way round (``tests/test_import_direction.py``).

The names are imported on first use (PEP 562), so the run schema (:mod:`dece.training.config`,
pydantic only) can be imported, e.g. by the experiment grid whose specs are built from it,
without importing transformers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dece.training.callbacks import EarlyLearningCallback, EpochTracker, StopAfterEpochs
    from dece.training.collate import IGNORE_INDEX, Collator
    from dece.training.config import (
        AttackConfig,
        DefenseConfig,
        PoisonConfig,
        ResolvedTrainConfig,
        TrainConfig,
    )
    from dece.training.generation import generate
    from dece.training.models import PRESETS, LoadedModel, load_model
    from dece.training.tokenizer import train_bpe_tokenizer
    from dece.training.trainer import DeceTrainer

#: ``{public name: the submodule defining it}``.
_HOMES: dict[str, str] = {
    "AttackConfig": "config",
    "IGNORE_INDEX": "collate",
    "Collator": "collate",
    "DeceTrainer": "trainer",
    "DefenseConfig": "config",
    "EarlyLearningCallback": "callbacks",
    "EpochTracker": "callbacks",
    "PoisonConfig": "config",
    "ResolvedTrainConfig": "config",
    "StopAfterEpochs": "callbacks",
    "TrainConfig": "config",
    "generate": "generation",
    # Model loading: presets, HF ids and local directories.
    "PRESETS": "models",
    "LoadedModel": "models",
    "load_model": "models",
    "train_bpe_tokenizer": "tokenizer",
}

__all__ = [
    "AttackConfig",
    "IGNORE_INDEX",
    "Collator",
    "DeceTrainer",
    "DefenseConfig",
    "EarlyLearningCallback",
    "EpochTracker",
    "PoisonConfig",
    "ResolvedTrainConfig",
    "StopAfterEpochs",
    "TrainConfig",
    "generate",
    "PRESETS",
    "LoadedModel",
    "load_model",
    "train_bpe_tokenizer",
]


def __getattr__(name: str) -> Any:
    """A public name, imported from its submodule on first use (then cached here)."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})
