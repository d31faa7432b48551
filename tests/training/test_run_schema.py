"""The run schema (issue 23, deliverable 1): pydantic validation whose errors name the dotted key
path, ``key=value`` overrides merged by OmegaConf, numbers kept as written, a resolved config as
its own type, and the settings handed to ``TrainingArguments`` declared once on their fields.

Oracles: a bad value planted at a known path must be named by that path; the defaults tables
(``TINY_DEFAULTS`` / ``PRETRAINED_DEFAULTS``) give the resolved values in closed form; a
``config.yaml`` written before the redesign reads back to the values it holds."""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from transformers import TrainingArguments

from dece.pipeline.fit import training_arguments
from dece.training.config import (
    PRETRAINED_DEFAULTS,
    TINY_DEFAULTS,
    TRAINER_ARGUMENTS,
    ConfigValueError,
    PoisonConfig,
    ResolvedTrainConfig,
    TrainConfig,
    help_text,
)


def _error(data: dict[str, Any], overrides: list[str] | None = None) -> ConfigValueError:
    with pytest.raises(ConfigValueError) as info:
        TrainConfig.from_dict({"output_dir": "out", **data}, overrides)
    return info.value


# ------------------------------------------------------------------------------ key paths
@pytest.mark.parametrize(
    ("data", "path", "message"),
    [
        ({"poison": {"rate": "abc"}}, "poison.rate", "expects float, got 'abc'"),
        ({"poison": {"rate": 1.5}}, "poison.rate", "must be <= 1.0, got 1.5"),
        ({"poison": {"rte": 0.1}}, "poison.rte", "is an unknown key; allowed: trigger, "),
        ({"eval_poison": {"seed": 1.5}}, "eval_poison.seed", "expects int, got 1.5"),
        ({"defense": {"args": {}}}, "defense.name", "is required"),
        ({"defense": {"name": ""}}, "defense.name", "must be a non-empty string"),
        ({"num_epochz": 3}, "num_epochz", "is an unknown key; allowed: output_dir, "),
        ({"num_epochs": 2.0}, "num_epochs", "expects int or null, got 2.0"),
        ({"batch_size": 0}, "batch_size", "must be >= 1, got 0"),
        ({"seed": True}, "seed", "expects int, got True"),
        ({"use_cpu": 1}, "use_cpu", "expects bool, got 1"),
        ({"precision": "fp8"}, "precision", "expects one of 'fp32', 'bf16', 'fp16', got 'fp8'"),
        ({"lora": 3}, "lora", ": must be a mapping, true/false or null, got 3"),
    ],
)  # fmt: skip
def test_an_error_names_the_dotted_key_path(data, path, message):
    error = _error(data)
    assert error.errors[0][0] == path and error.errors[0][1].startswith(message)
    rendered = message if message.startswith(":") else f" {message}"
    assert f"config key {path!r}{rendered}" in str(error)


def test_every_bad_key_is_named_once():
    error = _error({"num_epochs": "ten", "poison": {"seed": "x", "rate": 2.0}})
    assert [path for path, _ in error.errors] == ["poison.rate", "poison.seed", "num_epochs"]


def test_a_file_error_names_the_file_and_the_key(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"output_dir": "out", "poison": {"rate": "lots"}}))
    with pytest.raises(ValueError, match=rf"config file {path}: config key 'poison\.rate'"):
        TrainConfig.from_yaml(path)


# ------------------------------------------------------------------------------ overrides
def test_dotted_overrides_reach_nested_mappings_and_keep_their_siblings():
    base = {"output_dir": "out", "loss_args": {"alpha_base": 0.99, "label_smoothing": 0.1},
            "poison": {"trigger": "grammar", "seed": 7}}  # fmt: skip
    cfg = TrainConfig.from_dict(base, [
        "poison.rate=0.1", "lora.r=8", "lora.target_modules=[q_proj, v_proj]",
        "loss_args.alpha_base=0.95", "report_to=[tensorboard, wandb]", "run_name=", "seed=3",
    ])  # fmt: skip
    assert cfg.poison == PoisonConfig(trigger="grammar", seed=7, rate=0.1)
    assert cfg.lora == {"r": 8, "target_modules": ["q_proj", "v_proj"]}
    assert cfg.loss_args == {"alpha_base": 0.95, "label_smoothing": 0.1}
    assert (cfg.report_to, cfg.run_name, cfg.seed) == (["tensorboard", "wandb"], None, 3)
    assert base["loss_args"]["alpha_base"] == 0.99  # the input mapping is left as it was


def test_an_override_is_read_as_yaml_with_exponents_as_numbers():
    """``learning_rate=1e-4`` on a command line is a number (PyYAML alone reads a string)."""
    cfg = TrainConfig.from_dict({"output_dir": "out"}, ["learning_rate=1e-4", "lora=true"])
    assert cfg.learning_rate == 1e-4 and cfg.lora == {}


def test_a_list_override_replaces_the_list():
    cfg = TrainConfig.from_dict(
        {"output_dir": "o", "report_to": ["a", "b", "c"]}, ["report_to=[d]"]
    )
    assert cfg.report_to == ["d"]


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("num_epochz=3", "config key 'num_epochz' is an unknown key"),
        ("poison.rte=0.1", "config key 'poison.rte' is an unknown key"),
        ("poison.rate=abc", "config key 'poison.rate' expects float, got 'abc'"),
        ("num_epochs", "override 'num_epochs' must look like key=value"),
        ("=3", "override '=3' has an empty key"),
        ("report_to=[a, b", "overrides ['report_to=[a, b']"),
    ],
)
def test_a_bad_override_is_named(override, expected):
    with pytest.raises(ValueError) as info:
        TrainConfig.from_dict({"output_dir": "out"}, [override])
    assert expected in str(info.value)


# ------------------------------------------------------------------------------ numbers
def test_ints_stay_ints_and_an_int_for_a_float_becomes_a_float():
    cfg = TrainConfig.from_dict({"output_dir": "o", "num_epochs": 2, "learning_rate": 1,
                                 "poison": {"rate": 0, "seed": 3}})  # fmt: skip
    dumped = cfg.to_dict()
    assert type(dumped["num_epochs"]) is int and type(dumped["poison"]["seed"]) is int
    assert type(dumped["learning_rate"]) is float and type(dumped["poison"]["rate"]) is float
    assert TrainConfig.from_dict(dumped) == cfg  # a dump reads back to the same config


def test_untyped_mappings_are_kept_as_written():
    cfg = TrainConfig.from_dict({"output_dir": "o", "loss_args": {"alpha_base": 1, "q": 0.5}})
    assert cfg.to_dict()["loss_args"] == {"alpha_base": 1, "q": 0.5}
    assert type(cfg.to_dict()["loss_args"]["alpha_base"]) is int


# ------------------------------------------------------------------------------ resolution
@pytest.mark.parametrize(
    ("model", "defaults"),
    [
        ("tiny-seq2seq", TINY_DEFAULTS),
        ("tiny-causal", TINY_DEFAULTS),
        ("Salesforce/codet5-small", PRETRAINED_DEFAULTS),
    ],
)
def test_resolution_fills_the_model_defaults_into_another_type(model, defaults):
    raw = TrainConfig(output_dir="o", model=model, max_target_length=77)
    resolved = raw.resolved()
    assert type(raw) is TrainConfig and type(resolved) is ResolvedTrainConfig
    assert {k: getattr(resolved, k) for k in defaults} == defaults
    assert resolved.generation_max_new_tokens == 77  # the target length
    assert resolved.resolved() is resolved
    assert {k: getattr(raw, k) for k in defaults} == dict.fromkeys(defaults)  # raw unchanged


def test_resolution_keeps_the_values_given():
    given = {"num_epochs": 3, "learning_rate": 0.1, "warmup_ratio": 0.2,
             "generation_max_new_tokens": 9}  # fmt: skip
    resolved = TrainConfig(output_dir="o", **given).resolved()
    assert {k: getattr(resolved, k) for k in given} == given


def test_a_resolved_config_refuses_an_unresolved_value():
    resolved = TrainConfig(output_dir="o").resolved()
    with pytest.raises(ValidationError):
        resolved.num_epochs = None
    resolved.num_epochs = 4  # assignments are validated, not refused
    assert resolved.num_epochs == 4


def test_resolution_at_load_equals_resolving_the_loaded_config(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"output_dir": "o", "model": "tiny-causal", "seed": 5}))
    loaded = ResolvedTrainConfig.from_yaml(path)
    assert type(loaded) is ResolvedTrainConfig
    assert loaded == TrainConfig.from_yaml(path).resolved()


def test_replace_validates_and_keeps_the_type():
    resolved = TrainConfig(output_dir="o").resolved()
    changed = resolved.replace(num_epochs=2, lora={"r": 2})
    assert type(changed) is ResolvedTrainConfig and (changed.num_epochs, changed.lora) == (
        2, {"r": 2})  # fmt: skip
    with pytest.raises(ConfigValueError, match="'num_epochs' expects int"):
        resolved.replace(num_epochs="two")


#: A run directory's config.yaml written before the redesign (an older schema: it lacks
#: group_by_length, report_to, run_name and humaneval, added since).
PRE_REDESIGN = """\
output_dir: /tmp/tune/out_p1/df9dfb6d76d6
data: synthetic
data_columns: {}
data_seed: 0
train_max_examples: null
poison: {trigger: badpre, trigger_args: {}, payload: sql_injection, payload_args: {},
  rate: 0.05, seed: 0}
eval_poison: null
defense: null
defense_victim: null
model: tiny-seq2seq
task: null
model_args: {steps: 300, d_model: 128, ffn_dim: 512, encoder_layers: 2, decoder_layers: 2}
pretrain_steps: null
cache_dir: null
loss: dece
loss_args: {alpha_base: 0.985, label_smoothing: 0.1}
epoch_mode: integer
fused_linear: false
lora: null
num_epochs: 4
max_steps: -1
batch_size: 12
gradient_accumulation_steps: 1
learning_rate: 0.002
optimizer: adamw_torch
weight_decay: 0.0
warmup_ratio: 0.05
lr_scheduler: linear
max_grad_norm: 1.0
max_source_length: 256
max_target_length: 256
seed: 0
precision: fp32
use_cpu: false
ddp_backend: null
dataloader_num_workers: 0
logging_steps: 50
eval_each_epoch: true
eval_max_examples: 40
test_max_examples: 100
eval_batch_size: 64
generation_max_new_tokens: 160
codebleu: true
lang: python
record_example_losses: false
save_checkpoints: false
save_total_limit: 2
save_model: false
resume: false
"""


def test_a_pre_redesign_run_config_reads_back_to_its_values(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(PRE_REDESIGN)
    written = yaml.safe_load(PRE_REDESIGN)
    for cls in (TrainConfig, ResolvedTrainConfig):
        dumped = cls.from_yaml(path).to_dict()
        assert {k: dumped[k] for k in written} == written
        assert all(type(dumped[k]) is type(v) for k, v in written.items())
        assert {k: dumped[k] for k in ("group_by_length", "report_to", "run_name",
                                       "humaneval")} == {"group_by_length": False,
                                                         "report_to": "none", "run_name": None,
                                                         "humaneval": None}  # fmt: skip


# ------------------------------------------------------------------------------ TrainingArguments
#: Every field handed to TrainingArguments unchanged (a dropped declaration fails here).
EXPECTED_TRAINER_ARGUMENTS = {
    "num_epochs": "num_train_epochs", "max_steps": "max_steps",
    "batch_size": "per_device_train_batch_size",
    "gradient_accumulation_steps": "gradient_accumulation_steps",
    "learning_rate": "learning_rate", "optimizer": "optim", "weight_decay": "weight_decay",
    "warmup_ratio": "warmup_steps", "lr_scheduler": "lr_scheduler_type",
    "max_grad_norm": "max_grad_norm", "seed": "seed", "use_cpu": "use_cpu",
    "dataloader_num_workers": "dataloader_num_workers", "logging_steps": "logging_steps",
    "report_to": "report_to", "run_name": "run_name", "save_total_limit": "save_total_limit",
}  # fmt: skip
#: A non-default value for each (the oracle: TrainingArguments must hold exactly these).
NON_DEFAULT = {
    "num_epochs": 7, "max_steps": 123, "batch_size": 5, "gradient_accumulation_steps": 3,
    "learning_rate": 0.0123, "optimizer": "sgd", "weight_decay": 0.25, "warmup_ratio": 0.3,
    "lr_scheduler": "cosine", "max_grad_norm": 0.5, "seed": 1234, "use_cpu": True,
    "dataloader_num_workers": 2, "logging_steps": 7, "report_to": ["tensorboard"],
    "run_name": "cell-x", "save_total_limit": 4,
}  # fmt: skip


def test_the_trainer_arguments_are_declared_once_and_name_real_arguments():
    assert TRAINER_ARGUMENTS == EXPECTED_TRAINER_ARGUMENTS
    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    assert set(TRAINER_ARGUMENTS.values()) <= names
    defaults = TrainConfig(output_dir="o").resolved()
    assert all(getattr(defaults, k) != v for k, v in NON_DEFAULT.items())  # really non-default


def test_every_declared_setting_reaches_training_arguments(tmp_path):
    assert set(NON_DEFAULT) == set(TRAINER_ARGUMENTS)
    cfg = TrainConfig(output_dir=str(tmp_path), **NON_DEFAULT).resolved()
    args = training_arguments(cfg, tmp_path / "checkpoints")
    got = {ours: getattr(args, hf) for ours, hf in TRAINER_ARGUMENTS.items()}
    assert got == NON_DEFAULT
    assert args.output_dir == str(tmp_path / "checkpoints")


@pytest.mark.parametrize(
    ("precision", "bf16", "fp16"),
    [("fp32", False, False), ("bf16", True, False), ("fp16", False, True)],
)
def test_the_derived_settings(tmp_path, monkeypatch, precision, bf16, fp16):
    """What ``training_arguments`` derives rather than copies (captured before
    ``TrainingArguments`` checks the device, which refuses fp16 on a CPU)."""
    fit = importlib.import_module("dece.pipeline.fit")  # the module (the package exports fit())
    captured: dict[str, Any] = {}
    monkeypatch.setattr(fit, "TrainingArguments", lambda **kw: captured.update(kw))
    cfg = TrainConfig(output_dir=str(tmp_path), precision=precision, group_by_length=True,
                      save_checkpoints=False)  # fmt: skip
    fit.training_arguments(cfg.resolved(), tmp_path)
    assert (captured["bf16"], captured["fp16"]) == (bf16, fp16)
    assert captured["train_sampling_strategy"] == "group_by_length"
    assert captured["save_strategy"] == "no" and captured["eval_strategy"] == "no"
    assert captured["ddp_backend"] is None  # one process


def test_help_text_covers_every_field():
    helps = help_text()
    assert list(helps) == list(TrainConfig.model_fields) and all(helps.values())
