"""Typed training configuration: dataclasses with help text, YAML files and ``key=value`` overrides.

A :class:`TrainConfig` is the whole description of one run. Fields left at ``None`` take a
default that depends on the model (see :data:`PRETRAINED_DEFAULTS` and :data:`TINY_DEFAULTS`):
the paper's fine-tuning recipe for pretrained Hugging Face models (AdamW, lr 5e-5, batch 12,
max source/target length 256, seed 42) and a faster, higher-learning-rate recipe for the small
offline presets, which are trained for longer at a larger step size.

>>> cfg = TrainConfig.from_dict({"output_dir": "out", "loss": "ce"}, ["num_epochs=3"])
>>> (cfg.loss, cfg.num_epochs, cfg.resolved().learning_rate)
('ce', 3, 0.0005)
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dece.data import DATASETS

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

_EPOCH_MODES = ("integer", "continuous")
_PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass
class PoisonConfig:
    """How the training set is poisoned (and which trigger/payload the ASR is measured with)."""

    trigger: str = field(
        default="badpre", metadata={"help": "trigger name (dece.attacks.TRIGGERS)"}
    )
    trigger_args: dict = field(default_factory=dict, metadata={"help": "trigger parameters"})
    payload: str = field(
        default="sql_injection", metadata={"help": "payload name (dece.attacks.PAYLOADS)"}
    )
    payload_args: dict = field(default_factory=dict, metadata={"help": "payload parameters"})
    rate: float = field(default=0.05, metadata={"help": "fraction of training rows poisoned"})
    seed: int = field(default=42, metadata={"help": "seed of the poisoning sample"})

    def __post_init__(self) -> None:
        for name in ("trigger", "payload"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"poison.{name} must be a name (a string), "
                                 f"got {getattr(self, name)!r}")  # fmt: skip
        if isinstance(self.rate, bool) or not isinstance(self.rate, (int, float, str)):
            raise ValueError(f"poison.rate must be a number in [0, 1], got {self.rate!r}")
        try:
            rate = float(self.rate)
        except ValueError:
            raise ValueError(f"poison.rate must be a number in [0, 1], got {self.rate!r}") from None
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"poison.rate must be in [0, 1], got {self.rate}")
        self.rate = rate
        for name in ("trigger_args", "payload_args"):
            if not isinstance(getattr(self, name), dict):
                raise ValueError(f"poison.{name} must be a mapping, got {getattr(self, name)!r}")


@dataclass
class DefenseConfig:
    """A defense (``dece.defenses``) applied in a run: a training-time filter removes the rows it
    flags before training; a test-time purifier rewrites the test inputs before prediction."""

    name: str = field(metadata={"help": "defense name (dece.defenses.DEFENSES)"})
    args: dict = field(default_factory=dict, metadata={"help": "defense parameters"})

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"defense.name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.args, dict):
            raise ValueError(f"defense.args must be a mapping, got {self.args!r}")


@dataclass
class TrainConfig:
    """One training run. Every field is settable from YAML or as ``key=value`` on the CLI."""

    output_dir: str = field(metadata={"help": "run directory (metrics.jsonl, predictions, model)"})
    # --- data and poisoning -------------------------------------------------------------------
    data: str = field(
        default="synthetic",
        metadata={
            "help": "dece.data.load_dataset spec: a named dataset "
            f"({', '.join(DATASETS.names())}; 'NAME:N' sets its size), a directory of "
            "train/valid/test files (.csv, .jsonl, .parquet) or one file (the train split), a "
            "datasets save_to_disk directory, or hf:ID[:CONFIG] (datasets.load_dataset)"
        },
    )
    data_columns: dict = field(
        default_factory=dict,
        metadata={
            "help": "column names passed to load_dataset (source_col, target_col, label_col, "
            "id_col, pair_col; chat_template for TRL 'messages' records)"
        },
    )
    data_seed: int = field(
        default=0,
        metadata={
            "help": "seed of a named dataset (its generated rows, subsample, split assignment "
            "and order); unused for a directory or file"
        },
    )
    train_max_examples: int | None = field(
        default=None, metadata={"help": "use only the first N training rows (before poisoning)"}
    )
    poison: PoisonConfig | None = field(
        default=None, metadata={"help": "poison the training split; None trains on clean data"}
    )
    eval_poison: PoisonConfig | None = field(
        default=None,
        metadata={"help": "trigger/payload for measuring ASR; defaults to `poison` (rate unused)"},
    )
    defense: DefenseConfig | None = field(
        default=None,
        metadata={"help": "a filter (drops flagged training rows) or a purifier (test inputs)"},
    )
    defense_victim: str | None = field(
        default=None,
        metadata={"help": "run dir whose model a filter that needs one scores the data with"},
    )
    # --- model and loss -----------------------------------------------------------------------
    model: str = field(
        default="tiny-seq2seq", metadata={"help": "preset name, Hugging Face id or local path"}
    )
    task: str | None = field(
        default=None, metadata={"help": "seq2seq | causal | classification; None infers"}
    )
    model_args: dict = field(
        default_factory=dict, metadata={"help": "extra keyword arguments for load_model"}
    )
    pretrain_steps: int | None = field(
        default=None, metadata={"help": "denoising pretraining steps of a tiny preset"}
    )
    cache_dir: str | None = field(
        default=None, metadata={"help": "cache for converted / pretrained preset models"}
    )
    loss: str = field(default="dece", metadata={"help": "loss name: ce, dece, gce, in_trust, sce"})
    loss_args: dict = field(
        default_factory=dict, metadata={"help": "loss hyperparameters, e.g. alpha_base, q"}
    )
    epoch_mode: str = field(
        default="integer",
        metadata={"help": "epoch given to the loss: 'integer' (1, 2, ...) or 'continuous'"},
    )
    fused_linear: bool = field(
        default=False,
        metadata={"help": "causal LMs: fused linear + loss (dece or ce), no logits in memory"},
    )
    lora: dict | None = field(
        default=None,
        metadata={"help": "LoRA through peft, e.g. {r: 8, alpha: 16, dropout: 0.05}; None: full"},
    )
    # --- optimisation -------------------------------------------------------------------------
    num_epochs: int | None = field(default=None, metadata={"help": "epochs (None: by model)"})
    max_steps: int = field(
        default=-1, metadata={"help": "stop after this many optimizer steps (-1: num_epochs)"}
    )
    batch_size: int = field(default=12, metadata={"help": "per-device training batch size"})
    group_by_length: bool = field(
        default=False,
        metadata={
            "help": "batch training rows of similar length (source + target tokens) together: "
            "less padding, the batches' order still random"
        },
    )
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "micro-batches per step"})
    learning_rate: float | None = field(
        default=None, metadata={"help": "AdamW learning rate (None: by model)"}
    )
    optimizer: str = field(
        default="adamw_torch", metadata={"help": "transformers optim name (adamw_torch, sgd, ...)"}
    )
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    warmup_ratio: float | None = field(
        default=None, metadata={"help": "linear warmup fraction (None: by model)"}
    )
    lr_scheduler: str = field(default="linear", metadata={"help": "transformers scheduler name"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping (0: off)"})
    max_source_length: int = field(default=256, metadata={"help": "source tokens kept"})
    max_target_length: int = field(default=256, metadata={"help": "target tokens kept"})
    seed: int = field(default=42, metadata={"help": "seed of model init, shuffling and dropout"})
    precision: str = field(default="fp32", metadata={"help": "fp32 | bf16 | fp16"})
    use_cpu: bool = field(default=False, metadata={"help": "train on CPU even if a GPU exists"})
    ddp_backend: str | None = field(
        default=None, metadata={"help": "torch.distributed backend (gloo on CPU; None: auto)"}
    )
    dataloader_num_workers: int = field(default=0, metadata={"help": "DataLoader workers"})
    logging_steps: int = field(default=50, metadata={"help": "log the loss every N steps"})
    # --- experiment trackers (operational: never part of a grid cell's hash) -------------------
    report_to: str | list = field(
        default="none",
        metadata={
            "help": "TrainingArguments.report_to: 'none', 'all', a tracker (tensorboard, wandb, "
            "mlflow, trackio, ...) or a list; the per-epoch BLEU / ASR go there too"
        },
    )
    run_name: str | None = field(
        default=None, metadata={"help": "the trackers' run name (None: the Trainer's default)"}
    )
    # --- evaluation ---------------------------------------------------------------------------
    eval_each_epoch: bool = field(
        default=True, metadata={"help": "decode clean + poisoned validation after each epoch"}
    )
    eval_max_examples: int | None = field(
        default=None, metadata={"help": "cap on validation rows decoded per epoch (each set)"}
    )
    test_max_examples: int | None = field(
        default=None, metadata={"help": "cap on test rows decoded at the end (each set)"}
    )
    eval_batch_size: int = field(default=64, metadata={"help": "batch size of greedy decoding"})
    generation_max_new_tokens: int | None = field(
        default=None, metadata={"help": "decoding length cap (None: max_target_length)"}
    )
    codebleu: bool = field(default=True, metadata={"help": "report CodeBLEU when installed"})
    lang: str = field(default="python", metadata={"help": "CodeBLEU language"})
    humaneval: dict | None = field(
        default=None,
        metadata={
            "help": "also measure pass@k on HumanEval (and the Table 11 ASR with the run's "
            "attack) after training: dece.metrics.humaneval.HumanEvalConfig keys, e.g. "
            "{max_problems: 20}; {}: all 164 problems, greedy; null: off"
        },
    )
    record_example_losses: bool = field(
        default=False,
        metadata={"help": "record per-example training losses each step (example_losses.jsonl)"},
    )
    # --- checkpoints --------------------------------------------------------------------------
    save_checkpoints: bool = field(
        default=True, metadata={"help": "save a Trainer checkpoint at the end of every epoch"}
    )
    save_total_limit: int | None = field(default=2, metadata={"help": "checkpoints kept"})
    save_model: bool = field(
        default=True, metadata={"help": "save the final model + tokenizer to output_dir/model"}
    )
    resume: bool | str = field(
        default=False,
        metadata={"help": "True: resume from the last checkpoint in output_dir; or a path"},
    )

    def __post_init__(self) -> None:
        if isinstance(self.poison, dict):
            self.poison = PoisonConfig(**self.poison)
        if isinstance(self.eval_poison, dict):
            self.eval_poison = PoisonConfig(**self.eval_poison)
        if isinstance(self.defense, dict):
            self.defense = DefenseConfig(**self.defense)
        for name, sub in (("poison", PoisonConfig), ("eval_poison", PoisonConfig),
                          ("defense", DefenseConfig)):  # fmt: skip
            value = getattr(self, name)
            if value is not None and not isinstance(value, sub):
                raise ValueError(_not_a_mapping(name, sub, value))
        if not self.output_dir:
            raise ValueError("output_dir must be set")
        if self.epoch_mode not in _EPOCH_MODES:
            raise ValueError(f"epoch_mode must be one of {_EPOCH_MODES}, got {self.epoch_mode!r}")
        if self.precision not in _PRECISIONS:
            raise ValueError(f"precision must be one of {_PRECISIONS}, got {self.precision!r}")
        if self.task not in (None, "seq2seq", "causal", "classification"):
            raise ValueError(f"task must be seq2seq, causal or classification, got {self.task!r}")
        for name in ("batch_size", "eval_batch_size", "gradient_accumulation_steps"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_source_length", "max_target_length", "logging_steps"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("num_epochs", "eval_max_examples", "test_max_examples", "train_max_examples"):
            value = getattr(self, name)
            if value is not None and int(value) < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {value}")
        if self.learning_rate is not None and not float(self.learning_rate) > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.warmup_ratio is not None and not 0.0 <= float(self.warmup_ratio) < 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        for name in ("loss_args", "model_args", "data_columns"):
            if not isinstance(getattr(self, name), dict):
                raise ValueError(f"{name} must be a mapping, got {getattr(self, name)!r}")
        _check_report_to(self.report_to)
        if self.humaneval is not None:
            if not isinstance(self.humaneval, dict):
                raise ValueError(f"humaneval must be a mapping or null, got {self.humaneval!r}")
            from dece.metrics.humaneval import HumanEvalConfig

            HumanEvalConfig.from_dict(self.humaneval)  # names a bad key or value now
        if self.lora is not None and not isinstance(self.lora, dict):
            if self.lora is True:
                self.lora = {}
            elif self.lora is False:
                self.lora = None
            else:
                raise ValueError(f"lora must be a mapping, true/false or null, got {self.lora!r}")

    # ---------------------------------------------------------------------------------------
    @property
    def is_tiny_preset(self) -> bool:
        return self.model in TINY_PRESETS

    @property
    def asr_poison(self) -> PoisonConfig | None:
        """The trigger/payload the ASR is measured with: ``eval_poison``, else ``poison``."""
        return self.eval_poison if self.eval_poison is not None else self.poison

    def resolved(self) -> TrainConfig:
        """A copy with every ``None`` default filled in for this model (tiny or pretrained)."""
        defaults = TINY_DEFAULTS if self.is_tiny_preset else PRETRAINED_DEFAULTS
        changes = {k: v for k, v in defaults.items() if getattr(self, k) is None}
        if self.generation_max_new_tokens is None:
            changes["generation_max_new_tokens"] = self.max_target_length
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def from_dict(cls, data: dict[str, Any], overrides: list[str] | None = None) -> TrainConfig:
        """Build from a mapping, then apply ``key=value`` overrides (dotted keys reach nested
        mappings, e.g. ``poison.rate=0.1`` or ``loss_args.alpha_base=0.95``; values are YAML)."""
        if not isinstance(data, dict):
            raise ValueError(f"config must be a mapping, got {type(data).__name__}")
        data = _deepcopy(data)
        for item in overrides or []:
            _apply_override(data, item)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown config key(s) {unknown}; allowed: {sorted(known)}")
        for key, sub in (("poison", PoisonConfig), ("eval_poison", PoisonConfig),
                         ("defense", DefenseConfig)):  # fmt: skip
            value = data.get(key)
            if value is None or isinstance(value, sub):
                continue
            if not isinstance(value, dict):
                raise ValueError(_not_a_mapping(key, sub, value))
            sub_known = {f.name for f in dataclasses.fields(sub)}
            bad = sorted(set(value) - sub_known)
            if bad:
                raise ValueError(f"unknown {key} key(s) {bad}; allowed: {sorted(sub_known)}")
            _check_types(sub, value, prefix=f"{key}.")
        _check_types(cls, data)
        return cls(**data)

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
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


def help_text() -> dict[str, str]:
    """``{field: help}`` for every :class:`TrainConfig` field (used by ``dece train --help``)."""
    return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(TrainConfig)}


def _check_report_to(value: Any) -> None:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise ValueError(
            f"report_to must be a tracker name or a list of names (e.g. tensorboard, wandb, "
            f"mlflow, trackio; 'none' or 'all'), got {value!r}"
        )


def _deepcopy(data: dict) -> dict:
    return {k: _deepcopy(v) if isinstance(v, dict) else v for k, v in data.items()}


def _apply_override(data: dict, item: str) -> None:
    if "=" not in item:
        raise ValueError(f"override {item!r} must look like key=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ValueError(f"override {item!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ValueError(f"override {item!r}: value is not valid YAML: {exc}") from exc
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        if node.get(part) is None:
            node[part] = {}
        if not isinstance(node[part], dict):
            raise ValueError(f"override {item!r}: {part!r} is not a mapping")
        node = node[part]
    node[parts[-1]] = value


def _not_a_mapping(key: str, sub: type, value: Any) -> str:
    keys = ", ".join(f.name for f in dataclasses.fields(sub))
    return f"config key {key!r} expects a mapping (keys: {keys}) or null, got {value!r}"


def _check_types(cls: type, data: dict, prefix: str = "") -> None:
    """Reject values of the wrong type early, naming the key (``prefix`` + key; ints are
    accepted for floats)."""
    hints = typing.get_type_hints(cls)
    for key, value in data.items():
        if value is None or (not prefix and key in ("poison", "eval_poison", "defense")):
            continue
        allowed = _allowed_types(hints[key])
        if float in allowed:
            allowed = (*allowed, int)
        wrong = isinstance(value, bool) and bool not in allowed
        if wrong or not isinstance(value, allowed):
            hint = ""
            if float in allowed and isinstance(value, str) and _is_float(value):
                hint = " (YAML reads a number like 1e-4 as a string: write 1.0e-4)"
            raise ValueError(f"config key {prefix + key!r} expects {_type_name(hints[key])}, "
                             f"got {value!r}{hint}")  # fmt: skip


def _type_name(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint)


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _allowed_types(hint: Any) -> tuple[type, ...]:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        out: tuple[type, ...] = ()
        for arg in typing.get_args(hint):
            if arg is not type(None):
                out += _allowed_types(arg)
        return out
    if origin is not None:
        return (origin,)
    return (hint,)
