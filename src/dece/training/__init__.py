"""dece.training: fine-tune code models with any dece loss through transformers' Trainer.

Public API: :class:`TrainConfig`, :class:`PoisonConfig`, :class:`DefenseConfig`, :func:`train`
(the composition of the :mod:`dece.pipeline` stages), :class:`TrainResult`, :func:`generate`,
:class:`DeceTrainer`, the callbacks :class:`EpochTracker` / :class:`EarlyLearningCallback`, and
:class:`Collator`.
"""

from dece.training.callbacks import EarlyLearningCallback, EpochTracker, StopAfterEpochs
from dece.training.collate import IGNORE_INDEX, Collator
from dece.training.config import DefenseConfig, PoisonConfig, TrainConfig
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
    "StopAfterEpochs",
    "TrainConfig",
    "TrainResult",
    "generate",
    "train",
]

# Model loading: presets, HF ids and local directories.
from dece.training.models import PRESETS, LoadedModel, load_model  # noqa: E402
from dece.training.tokenizer import train_bpe_tokenizer  # noqa: E402

__all__ += ["PRESETS", "LoadedModel", "load_model", "train_bpe_tokenizer"]


def __getattr__(name: str):  # train / TrainResult import the pipeline, which imports this package
    if name in ("train", "TrainResult"):
        from dece.pipeline import run

        return getattr(run, name)
    raise AttributeError(f"module 'dece.training' has no attribute {name!r}")
