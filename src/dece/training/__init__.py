"""dece.training: fine-tune code models with any dece loss through transformers' Trainer.

Public API (issue 5): :class:`TrainConfig`, :class:`PoisonConfig`, :func:`train`,
:class:`TrainResult`, :func:`generate`, :class:`DeceTrainer`, the callbacks
:class:`EpochTracker` / :class:`EarlyLearningCallback`, and :class:`Collator`.
"""

from dece.training.callbacks import EarlyLearningCallback, EpochTracker, StopAfterEpochs
from dece.training.collate import IGNORE_INDEX, Collator
from dece.training.config import PoisonConfig, TrainConfig
from dece.training.generation import Evaluator, generate
from dece.training.train import TrainResult, train
from dece.training.trainer import DeceTrainer

__all__ = [
    "IGNORE_INDEX",
    "Collator",
    "DeceTrainer",
    "EarlyLearningCallback",
    "EpochTracker",
    "Evaluator",
    "PoisonConfig",
    "StopAfterEpochs",
    "TrainConfig",
    "TrainResult",
    "generate",
    "train",
]

# Model loading (issue 5, item 1): presets, HF ids and local directories.
from dece.training.models import PRESETS, LoadedModel, load_model  # noqa: E402
from dece.training.tokenizer import train_bpe_tokenizer  # noqa: E402

__all__ += ["PRESETS", "LoadedModel", "load_model", "train_bpe_tokenizer"]
