"""``moderate_fitting``: Moderate-fitting as a training recipe (Zhu et al., NeurIPS 2022,
"Moderate-fitting as a Natural Backdoor Defender for Pre-trained Language Models").

The paper observes that fine-tuning a pre-trained model on poisoned data goes through a
*moderate-fitting* stage, where the model learns the task's major features, before an
*overfitting* stage, where it also learns the trigger; keeping adaptation in the first stage
keeps the backdoor out. It proposes three ways to do so, usable together:

1. reduce the model's capacity: parameter-efficient tuning (LoRA, adapters, prefix-tuning) whose
   update is *low-rank reparameterized* (the trainable matrices are generated through a
   bottleneck network of small dimension);
2. train for fewer epochs;
3. train with a smaller learning rate.

Values: the authors' released configuration (github.com/thunlp/Moderate-fitting,
``configs/lora_roberta-base-sst2-badnet-5``) tunes RoBERTa-base with LoRA ``r = 8`` whose update
is reparameterized through a bottleneck of dimension ``mid_dim = 2`` (so the trainable update has
rank at most 2), learning rate 3e-4, batch 32, 10 epochs, no warm-up; the paper's epoch and
learning-rate reductions are relative to the normal fine-tuning recipe of the model.

As a ``dece`` recipe (:class:`~dece.defenses.base.TrainingRecipe`): the run is trained with LoRA
of rank ``r`` through ``peft`` (default 2: the same rank bound as the reparameterized update;
``peft`` has no bottleneck reparameterization, so this is the rank-matched equivalent; paper and
code agree on the rank reduction), ``lr_scale`` x the configuration's learning rate (or
``learning_rate`` when given) and ``epoch_scale`` x its epochs (or ``num_epochs``). ``r = None``
keeps full fine-tuning (only the learning-rate / epoch reductions).

The paper's values are for BERT-size pre-trained models. On the tiny presets (a few million
parameters, denoising-pretrained on the task's own texts) check first that the recipe still
learns the clean task; the scaled values used for Lyra, and the check, are in
``configs/lyra_defenses.yaml`` and ``benchmarks/results/lyra_defenses.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dece.defenses.base import DEFENSES, TrainingRecipe

if TYPE_CHECKING:
    from dece.training.config import ResolvedTrainConfig

__all__ = ["ModerateFitting"]


@DEFENSES.register("moderate_fitting", display="Moderate-fitting")
@dataclass
class ModerateFitting(TrainingRecipe):
    """Moderate-fitting recipe (see the module docstring).

    Args:
        r: LoRA rank (None: full fine-tuning).
        alpha: LoRA alpha (default ``2 * r``: OpenDelta's r=8 / alpha=16 scaling of the
            authors' code).
        dropout: LoRA dropout.
        target_modules: modules given LoRA adapters (None: ``peft``'s default for the
            architecture, e.g. the attention query/value projections).
        lr_scale, learning_rate: the learning rate becomes ``learning_rate`` when given, else
            ``lr_scale`` x the configuration's.
        epoch_scale, num_epochs: likewise for the number of epochs (rounded up, at least 1).
    """

    name = "moderate_fitting"
    r: int | None = 2
    alpha: int | None = None
    dropout: float = 0.0
    target_modules: list[str] | None = None
    lr_scale: float = 1.0
    learning_rate: float | None = 3e-4
    epoch_scale: float = 1.0
    num_epochs: int | None = None

    def __post_init__(self) -> None:
        if self.r is not None and int(self.r) < 1:
            raise ValueError(f"r must be >= 1 or None, got {self.r}")
        for key in ("lr_scale", "epoch_scale"):
            if not float(getattr(self, key)) > 0:
                raise ValueError(f"{key} must be > 0, got {getattr(self, key)}")
        if self.learning_rate is not None and not float(self.learning_rate) > 0:
            raise ValueError(f"learning_rate must be > 0 or None, got {self.learning_rate}")
        if self.num_epochs is not None and int(self.num_epochs) < 1:
            raise ValueError(f"num_epochs must be >= 1 or None, got {self.num_epochs}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def overrides(self, config: ResolvedTrainConfig) -> dict[str, Any]:
        """LoRA settings, learning rate and epochs for ``config``."""
        lr = self.learning_rate
        if lr is None:
            lr = float(config.learning_rate) * float(self.lr_scale)
        epochs = self.num_epochs
        if epochs is None:
            epochs = max(1, math.ceil(int(config.num_epochs) * float(self.epoch_scale) - 1e-9))
        out: dict[str, Any] = {"learning_rate": float(lr), "num_epochs": int(epochs)}
        if self.r is not None:
            lora: dict[str, Any] = {
                "r": int(self.r),
                "alpha": int(self.alpha if self.alpha is not None else 2 * int(self.r)),
                "dropout": float(self.dropout),
            }
            if self.target_modules is not None:
                lora["target_modules"] = list(self.target_modules)
            out["lora"] = lora
        return out
