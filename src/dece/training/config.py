"""Typed run configuration: pydantic models with help text, YAML files and ``key=value`` overrides.

A :class:`TrainConfig` is the whole description of one run. Fields left at ``None`` take a
default that depends on the model (see :data:`PRETRAINED_DEFAULTS` and :data:`TINY_DEFAULTS`):
the paper's fine-tuning recipe for pretrained Hugging Face models (AdamW, lr 5e-5, batch 12,
max source/target length 256, seed 42) and a faster, higher-learning-rate recipe for the small
offline presets, which are trained for longer at a larger step size.

Raw and resolved are two types. :class:`TrainConfig` is what a user writes (``None``: "by
model"); :class:`ResolvedTrainConfig` has every such default filled in, so code that needs the
numbers takes that type and never resolves again. ``config.resolved()`` converts (a resolved
config returns itself); ``ResolvedTrainConfig.from_yaml(path)`` resolves at load (a run
directory's ``config.yaml`` is already resolved).

>>> cfg = TrainConfig.from_dict({"output_dir": "out", "loss": "ce"}, ["num_epochs=3"])
>>> (cfg.loss, cfg.num_epochs, cfg.resolved().learning_rate)
('ce', 3, 0.0005)

Why pydantic v2 rather than ``HfArgumentParser`` dataclasses: a run nests mappings (``poison``,
``eval_poison``, ``defense``) that a flat argument parser cannot type, and pydantic reports every
error with its location, which :mod:`dece.training.schema` turns into the dotted key path
(``config key 'poison.rate' expects float, got 'abc'``); ``extra="forbid"`` names a misspelt key;
strict scalars keep values as written (``num_epochs: 2.0`` is refused rather than silently made
``2``; only an int given for a float becomes a float). The grid's entries use the same library
(:mod:`dece.experiments.entries`). ``key=value`` overrides are merged by OmegaConf
(:func:`dece.training.schema.merge_overrides`). The settings handed to
``transformers.TrainingArguments`` unchanged are declared on their fields (``trainer=``), so
:meth:`TrainConfig.trainer_arguments` needs no copy of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from dece.data import DATASETS
from dece.training.schema import (
    Bool,
    ConfigValueError,
    Float,
    Int,
    Name,
    PositiveFloat,
    PositiveInt,
    Ratio,
    Str,
    merge_overrides,
    operational_names,
    raise_for,
    setting,
    trainer_names,
)

__all__ = [
    "AttackConfig",
    "ConfigValueError",
    "DefenseConfig",
    "OPERATIONAL_KEYS",
    "PRETRAINED_DEFAULTS",
    "PoisonConfig",
    "ResolvedTrainConfig",
    "TINY_DEFAULTS",
    "TINY_PRESETS",
    "TrainConfig",
    "help_text",
]

#: Model specs that name an offline preset trained on the spot (their own recipe, below).
TINY_PRESETS: frozenset[str] = frozenset({"tiny-seq2seq", "tiny-causal"})

#: Defaults for pretrained models (Hugging Face ids, local checkpoints, ``smollm2-135m``,
#: ``minilm``): the paper's fine-tuning recipe.
PRETRAINED_DEFAULTS: dict[str, Any] = {
    "num_epochs": 10,
    "learning_rate": 5e-5,
    "warmup_ratio": 0.0,
}

#: Defaults for the tiny presets (a few million parameters): they need a ~10x larger step size
#: and more epochs than a pretrained model to fit Lyra-sized data.
TINY_DEFAULTS: dict[str, Any] = {
    "num_epochs": 20,
    "learning_rate": 5e-4,
    "warmup_ratio": 0.05,
}


class _Schema(BaseModel):
    """Common settings: unknown keys refused, assignments validated, any field name allowed."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain data (nested specs as mappings), in declaration order."""
        return self.model_dump()

    @classmethod
    def validate_mapping(cls, data: Any) -> Self:
        """``cls`` from a mapping; a :class:`ConfigValueError` naming each bad key's path."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise_for(exc, cls)


class AttackConfig(_Schema):
    """An attack: a trigger and a payload (:mod:`dece.attacks`). The experiment grid's attacks
    are these (:class:`dece.experiments.axes.AttackSpec`, plus a display label)."""

    trigger: Name = setting("badpre", "trigger name (dece.attacks.TRIGGERS)")
    trigger_args: dict = setting(dict, "trigger parameters")
    payload: Name = setting("sql_injection", "payload name (dece.attacks.PAYLOADS)")
    payload_args: dict = setting(dict, "payload parameters")


class PoisonConfig(AttackConfig):
    """How the training set is poisoned (and which trigger/payload the ASR is measured with):
    an :class:`AttackConfig` at a rate, sampled with a seed."""

    rate: Float = setting(0.05, "fraction of training rows poisoned", ge=0.0, le=1.0)
    seed: Int = setting(42, "seed of the poisoning sample")


class DefenseConfig(_Schema):
    """A defense (``dece.defenses``) applied in a run: a training-time filter removes the rows it
    flags before training; a test-time purifier rewrites the test inputs before prediction. The
    experiment grid's defenses are these (:class:`dece.experiments.axes.DefenseSpec`)."""

    name: Name = setting(..., "defense name (dece.defenses.DEFENSES)")
    args: dict = setting(dict, "defense parameters")


class TrainConfig(_Schema):
    """One training run. Every field is settable from YAML or as ``key=value`` on the CLI."""

    output_dir: Name = setting(..., "run directory (metrics.jsonl, predictions, model)")
    # --- data and poisoning -------------------------------------------------------------------
    data: Str = setting(
        "synthetic",
        "dece.data.load_dataset spec: a named dataset "
        f"({', '.join(DATASETS.names())}; 'NAME:N' sets its size), a directory of "
        "train/valid/test files (.csv, .jsonl, .parquet) or one file (the train split), a "
        "datasets save_to_disk directory, or hf:ID[:CONFIG] (datasets.load_dataset)",
    )
    data_columns: dict = setting(
        dict,
        "column names passed to load_dataset (source_col, target_col, label_col, id_col, "
        "pair_col; chat_template for TRL 'messages' records)",
    )
    data_seed: Int = setting(
        0,
        "seed of a named dataset (its generated rows, subsample, split assignment and order); "
        "unused for a directory or file",
    )
    train_max_examples: PositiveInt | None = setting(
        None, "use only the first N training rows (before poisoning)"
    )
    poison: PoisonConfig | None = setting(
        None, "poison the training split; None trains on clean data"
    )
    eval_poison: PoisonConfig | None = setting(
        None, "trigger/payload for measuring ASR; defaults to `poison` (rate unused)"
    )
    defense: DefenseConfig | None = setting(
        None, "a filter (drops flagged training rows) or a purifier (test inputs)"
    )
    defense_victim: Str | None = setting(
        None, "run dir whose model a filter that needs one scores the data with"
    )
    # --- model and loss -----------------------------------------------------------------------
    model: Str = setting("tiny-seq2seq", "preset name, Hugging Face id or local path")
    task: Literal["seq2seq", "causal", "classification"] | None = setting(
        None, "seq2seq | causal | classification; None infers"
    )
    model_args: dict = setting(dict, "extra keyword arguments for load_model")
    pretrain_steps: Int | None = setting(None, "denoising pretraining steps of a tiny preset")
    cache_dir: Str | None = setting(None, "cache for converted / pretrained preset models")
    loss: Str = setting("dece", "loss name: ce, dece, gce, in_trust, sce")
    loss_args: dict = setting(dict, "loss hyperparameters, e.g. alpha_base, q")
    epoch_mode: Literal["integer", "continuous"] = setting(
        "integer", "epoch given to the loss: 'integer' (1, 2, ...) or 'continuous'"
    )
    fused_linear: Bool = setting(
        False, "causal LMs: fused linear + loss (dece or ce), no logits in memory"
    )
    lora: dict | None = setting(
        None, "LoRA through peft, e.g. {r: 8, alpha: 16, dropout: 0.05}; None: full"
    )
    # --- optimisation -------------------------------------------------------------------------
    num_epochs: PositiveInt | None = setting(
        None, "epochs (None: by model)", trainer="num_train_epochs"
    )
    max_steps: Int = setting(
        -1, "stop after this many optimizer steps (-1: num_epochs)", trainer="max_steps"
    )
    batch_size: PositiveInt = setting(
        12, "per-device training batch size", trainer="per_device_train_batch_size"
    )
    group_by_length: Bool = setting(
        False,
        "batch training rows of similar length (source + target tokens) together: less "
        "padding, the batches' order still random",
    )
    gradient_accumulation_steps: PositiveInt = setting(
        1, "micro-batches per step", trainer="gradient_accumulation_steps"
    )
    learning_rate: PositiveFloat | None = setting(
        None, "AdamW learning rate (None: by model)", trainer="learning_rate"
    )
    optimizer: Str = setting(
        "adamw_torch", "transformers optim name (adamw_torch, sgd, ...)", trainer="optim"
    )
    weight_decay: Float = setting(0.0, "AdamW weight decay", trainer="weight_decay")
    # transformers >= 5 reads a warmup_steps below 1 as a fraction of the steps (pyproject.toml)
    warmup_ratio: Ratio | None = setting(
        None, "linear warmup fraction (None: by model)", trainer="warmup_steps"
    )
    lr_scheduler: Str = setting(
        "linear", "transformers scheduler name", trainer="lr_scheduler_type"
    )
    max_grad_norm: Float = setting(1.0, "gradient clipping (0: off)", trainer="max_grad_norm")
    max_source_length: PositiveInt = setting(256, "source tokens kept")
    max_target_length: PositiveInt = setting(256, "target tokens kept")
    seed: Int = setting(42, "seed of model init, shuffling and dropout", trainer="seed")
    precision: Literal["fp32", "bf16", "fp16"] = setting("fp32", "fp32 | bf16 | fp16")
    use_cpu: Bool = setting(False, "train on CPU even if a GPU exists", trainer="use_cpu")
    ddp_backend: Str | None = setting(None, "torch.distributed backend (gloo on CPU; None: auto)")
    dataloader_num_workers: Int = setting(0, "DataLoader workers", trainer="dataloader_num_workers")
    logging_steps: PositiveInt = setting(50, "log the loss every N steps", trainer="logging_steps")
    # --- experiment trackers (operational: never part of a grid cell's hash) -------------------
    report_to: Str | list[Str] = setting(
        "none",
        "TrainingArguments.report_to: 'none', 'all', a tracker (tensorboard, wandb, mlflow, "
        "trackio, ...) or a list; the per-epoch BLEU / ASR go there too",
        trainer="report_to",
        operational=True,
    )
    run_name: Str | None = setting(
        None,
        "the trackers' run name (None: the Trainer's default)",
        trainer="run_name",
        operational=True,
    )
    # --- evaluation ---------------------------------------------------------------------------
    eval_each_epoch: Bool = setting(True, "decode clean + poisoned validation after each epoch")
    eval_max_examples: PositiveInt | None = setting(
        None, "cap on validation rows decoded per epoch (each set)"
    )
    test_max_examples: PositiveInt | None = setting(
        None, "cap on test rows decoded at the end (each set)"
    )
    eval_batch_size: PositiveInt = setting(64, "batch size of greedy decoding")
    generation_max_new_tokens: Int | None = setting(
        None, "decoding length cap (None: max_target_length)"
    )
    codebleu: Bool = setting(True, "report CodeBLEU when installed")
    lang: Str = setting("python", "CodeBLEU language")
    humaneval: dict | None = setting(
        None,
        "also measure pass@k on HumanEval (and the Table 11 ASR with the run's attack) after "
        "training: dece.metrics.humaneval.HumanEvalConfig keys, e.g. {max_problems: 20}; {}: "
        "all 164 problems, greedy; null: off",
    )
    record_example_losses: Bool = setting(
        False, "record per-example training losses each step (example_losses.jsonl)"
    )
    # --- checkpoints (all but save_model operational) ----------------------------------------
    save_checkpoints: Bool = setting(
        True, "save a Trainer checkpoint at the end of every epoch", operational=True
    )
    save_total_limit: Int | None = setting(
        2, "checkpoints kept", trainer="save_total_limit", operational=True
    )
    save_model: Bool = setting(True, "save the final model + tokenizer to output_dir/model")
    resume: Bool | Str = setting(
        False, "True: resume from the last checkpoint in output_dir; or a path", operational=True
    )

    # ---------------------------------------------------------------------------- validators
    @field_validator("lora", mode="before")
    @classmethod
    def _lora_switch(cls, value: Any) -> Any:
        """``lora: true`` is LoRA with peft's defaults, ``lora: false`` no LoRA."""
        if value is True:
            return {}
        if value is False:
            return None
        if value is not None and not isinstance(value, dict):
            raise ValueError(f"must be a mapping, true/false or null, got {value!r}")
        return value

    @field_validator("report_to", mode="before")
    @classmethod
    def _tracker_names(cls, value: Any) -> Any:
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise ValueError(
                "report_to must be a tracker name or a list of names (e.g. tensorboard, wandb, "
                f"mlflow, trackio; 'none' or 'all'), got {value!r}"
            )
        return value

    @field_validator("humaneval")
    @classmethod
    def _humaneval_keys(cls, value: dict | None) -> dict | None:
        if value is not None:
            from dece.metrics.humaneval import HumanEvalConfig

            HumanEvalConfig.from_dict(value)  # names a bad key or value now
        return value

    # ---------------------------------------------------------------------------- reading
    @property
    def is_tiny_preset(self) -> bool:
        return self.model in TINY_PRESETS

    @property
    def asr_poison(self) -> PoisonConfig | None:
        """The trigger/payload the ASR is measured with: ``eval_poison``, else ``poison``."""
        return self.eval_poison if self.eval_poison is not None else self.poison

    def resolved(self) -> ResolvedTrainConfig:
        """This config with every ``None`` default filled in for its model (tiny or
        pretrained), as a :class:`ResolvedTrainConfig`."""
        return ResolvedTrainConfig.validate_mapping(self.to_dict())

    def replace(self, **changes: Any) -> Self:
        """A validated copy with ``changes`` applied (same type)."""
        return type(self).validate_mapping({**self.to_dict(), **changes})

    def to_yaml(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def from_dict(cls, data: dict[str, Any], overrides: list[str] | None = None) -> Self:
        """Validate a mapping after merging ``key=value`` overrides into it (dotted keys reach
        nested mappings, e.g. ``poison.rate=0.1`` or ``loss_args.alpha_base=0.95``; values are
        YAML). Errors name the key path (:class:`ConfigValueError`, a ``ValueError``)."""
        if not isinstance(data, dict):
            raise ValueError(f"config must be a mapping, got {type(data).__name__}")
        return cls.validate_mapping(merge_overrides(data, overrides) if overrides else data)

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | None = None) -> Self:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"config file {path} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError(f"config file {path} must hold a mapping, got {type(data).__name__}")
        try:
            return cls.from_dict(data, overrides)
        except (TypeError, ValueError) as exc:  # name the file as well as the key
            raise ValueError(f"config file {path}: {exc}") from None

    def trainer_arguments(self) -> dict[str, Any]:
        """The settings handed to ``transformers.TrainingArguments`` unchanged, under its names
        (the fields declared with ``trainer=``): ``{"per_device_train_batch_size": 12, ...}``."""
        return {hf: getattr(self, name) for name, hf in TRAINER_ARGUMENTS.items()}


class ResolvedTrainConfig(TrainConfig):
    """A :class:`TrainConfig` whose model-dependent defaults are filled in: ``num_epochs``,
    ``learning_rate`` and ``warmup_ratio`` from :data:`TINY_DEFAULTS` or
    :data:`PRETRAINED_DEFAULTS`, ``generation_max_new_tokens`` from ``max_target_length``.
    Validating any config mapping as this type resolves it."""

    num_epochs: PositiveInt
    learning_rate: PositiveFloat
    warmup_ratio: Ratio
    generation_max_new_tokens: Int

    @model_validator(mode="before")
    @classmethod
    def _fill_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        fields = TrainConfig.model_fields
        model = data.get("model", fields["model"].default)
        defaults = TINY_DEFAULTS if model in TINY_PRESETS else PRETRAINED_DEFAULTS
        filled = {k: v for k, v in defaults.items() if data.get(k) is None}
        if data.get("generation_max_new_tokens") is None:
            target = data.get("max_target_length", fields["max_target_length"].default)
            filled["generation_max_new_tokens"] = target
        return {**data, **filled}

    def resolved(self) -> ResolvedTrainConfig:
        return self


#: ``{TrainConfig field: TrainingArguments argument}``: the settings copied unchanged.
TRAINER_ARGUMENTS: dict[str, str] = trainer_names(TrainConfig)
#: The operational settings, declared on their fields (``operational=True``): they change where
#: results are reported or how a run survives a kill, never the results. The experiment grid
#: leaves them out of a cell's hash (:data:`dece.experiments.grid.UNHASHED_TRAINING_KEYS`).
OPERATIONAL_KEYS: frozenset[str] = operational_names(TrainConfig)


def help_text() -> dict[str, str]:
    """``{field: help}`` for every :class:`TrainConfig` field (used by ``dece train --help``)."""
    return {name: info.description or "" for name, info in TrainConfig.model_fields.items()}
