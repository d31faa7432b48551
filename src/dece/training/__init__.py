"""dece.training: fine-tune code models with any dece loss through transformers' Trainer.

Public API: :class:`TrainConfig` (and :class:`ResolvedTrainConfig`, its defaults filled in),
:class:`PoisonConfig`, :class:`DefenseConfig`,
:func:`generate`, :class:`DeceTrainer`, the callbacks :class:`EpochTracker` /
:class:`EarlyLearningCallback`, and :class:`Collator`. ``train(config)`` and ``TrainResult``
(the stages composed) live in :mod:`dece.pipeline`, which builds on this package, never the
other way round (``tests/test_import_direction.py``).
"""

from dece.training.callbacks import EarlyLearningCallback, EpochTracker, StopAfterEpochs
from dece.training.collate import IGNORE_INDEX, Collator
from dece.training.config import DefenseConfig, PoisonConfig, ResolvedTrainConfig, TrainConfig
from dece.training.generation import generate
from dece.training.trainer import DeceTrainer

__all__ = [
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
]

# Model loading: presets, HF ids and local directories.
from dece.training.models import PRESETS, LoadedModel, load_model  # noqa: E402
from dece.training.tokenizer import train_bpe_tokenizer  # noqa: E402

__all__ += ["PRESETS", "LoadedModel", "load_model", "train_bpe_tokenizer"]
