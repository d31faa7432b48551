"""Drop-ins for trainers other than ``dece train``: :class:`TrainerLoss` is a
``compute_loss_func`` for ``transformers.Trainer`` and ``trl.SFTTrainer`` that brings its own
epoch callback (see :mod:`dece.integrations.hf`)."""

from __future__ import annotations

from dece.integrations.hf import TrainerLoss, shift_causal_labels

__all__ = ["TrainerLoss", "shift_causal_labels"]
