"""Typed grid configuration for experiment sweeps, loaded from YAML.

A grid is the product ``datasets x attacks x rates x models x losses x seeds``; every
combination is one training run (a *cell*, see :mod:`dece.experiments.grid`). Example::

    name: demo
    datasets: [synthetic]
    attacks:
      - {trigger: badpre, payload: sql_injection}
    rates: [0.0, 0.05]            # 0.0 = clean baseline (ASR still measured with the attack)
    models: [tiny-seq2seq]
    losses:
      - {name: ce}
      - {name: dece, args: {alpha_base: 0.99, label_smoothing: 0.1}}
      - {name: dece, label: DeCE, sweep: {alpha_base: [0.9, 0.99], label_smoothing: [0.05, 0.1]}}
    seeds: [42]
    training: {num_epochs: 4}    # dece.training.TrainConfig fields shared by every cell
    runner: dece.experiments.fake:fake_run_cell   # optional "module:function" cell runner

Every error raised while loading is a :class:`ConfigError` whose message names the file, the
key (dotted path) and, where the set is finite, the allowed values.
"""

from __future__ import annotations

import itertools
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "AttackSpec",
    "ConfigError",
    "GridConfig",
    "LossSpec",
    "load_grid_config",
    "KNOWN_TRIGGERS",
    "KNOWN_PAYLOADS",
    "KNOWN_LOSSES",
]

# Names from docs/architecture.md; the live registries are preferred when importable.
KNOWN_TRIGGERS = (
    "ripple",
    "badpre",
    "grammar",
    "funcname",
    "deadcode",
    "bnc_grammar",
    "identifier",
)
KNOWN_PAYLOADS = ("sql_injection", "infinite_loop", "label_flip", "fixed_output")
KNOWN_LOSSES = ("ce", "dece", "gce", "in_trust", "sce")

# Keys of ``training`` that the grid sets itself, per cell.
GRID_OWNED_TRAINING_KEYS = (
    "output_dir", "data", "poison", "eval_poison", "model", "loss", "loss_args", "seed",
)  # fmt: skip

_TOP_KEYS = (
    "name",
    "description",
    "datasets",
    "attacks",
    "rates",
    "models",
    "losses",
    "seeds",
    "training",
    "runner",
    "output_dir",
)
_ATTACK_KEYS = ("trigger", "trigger_args", "payload", "payload_args", "label")
_LOSS_KEYS = ("name", "args", "label", "sweep")

_DISPLAY = {
    "ce": "CE",
    "dece": "DeCE",
    "gce": "GCE",
    "in_trust": "In-trust",
    "sce": "SCE",
    "ripple": "RIPPLe",
    "badpre": "BadPre",
    "grammar": "Grammar",
    "funcname": "FuncName",
    "deadcode": "DeadCode",
    "bnc_grammar": "BNC-Grammar",
    "identifier": "Identifier",
}
_SHORT_ARG = {"alpha_base": "alpha", "label_smoothing": "eps"}


class ConfigError(ValueError):
    """A grid config is invalid; the message names the file, the key and the allowed values."""

    def __init__(self, source: str | Path | None, key: str, message: str) -> None:
        self.source = str(source) if source is not None else "<dict>"
        self.key = key
        super().__init__(f"{self.source}: key {key!r}: {message}")


def display_name(name: str) -> str:
    """Paper-style display name of a loss or trigger (``"dece"`` -> ``"DeCE"``)."""
    return _DISPLAY.get(name, name)


@dataclass(frozen=True)
class AttackSpec:
    """One attack: a trigger and a payload (see :mod:`dece.attacks`)."""

    trigger: str
    payload: str
    trigger_args: dict[str, Any] = field(default_factory=dict)
    payload_args: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    def resolved(self) -> dict[str, Any]:
        """The part of a cell's identity (no label)."""
        return {
            "trigger": self.trigger,
            "trigger_args": dict(self.trigger_args),
            "payload": self.payload,
            "payload_args": dict(self.payload_args),
        }


@dataclass(frozen=True)
class LossSpec:
    """One training method: a loss name (``dece.losses``), its hyperparameters and a label."""

    name: str
    args: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    def resolved(self) -> dict[str, Any]:
        return {"name": self.name, "args": dict(self.args)}


@dataclass
class GridConfig:
    """A parsed grid config. Build it with :func:`load_grid_config` or :meth:`from_dict`."""

    name: str
    datasets: list[str]
    attacks: list[AttackSpec]
    rates: list[float]
    models: list[str]
    losses: list[LossSpec]
    seeds: list[int]
    training: dict[str, Any] = field(default_factory=dict)
    runner: str | None = None
    output_dir: str | None = None
    description: str = ""
    source: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str | Path | None = None) -> GridConfig:
        """Validate a mapping (e.g. parsed YAML) into a :class:`GridConfig`."""
        return _parse(data, source)

    def to_dict(self) -> dict[str, Any]:
        """A mapping that :meth:`from_dict` turns back into an equal config."""
        out: dict[str, Any] = {
            "name": self.name,
            "datasets": list(self.datasets),
            "attacks": [{**a.resolved(), "label": a.label} for a in self.attacks],
            "rates": list(self.rates),
            "models": list(self.models),
            "losses": [{**s.resolved(), "label": s.label} for s in self.losses],
            "seeds": list(self.seeds),
            "training": dict(self.training),
        }
        if self.description:
            out["description"] = self.description
        if self.runner:
            out["runner"] = self.runner
        if self.output_dir:
            out["output_dir"] = self.output_dir
        return out


def load_grid_config(path: str | Path) -> GridConfig:
    """Read and validate a YAML grid config; errors name the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"grid config {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(path, "<yaml>", f"not valid YAML: {exc}") from None
    if data is None:
        data = {}
    config = _parse(data, path)
    if config.name == "":
        config.name = path.stem
    return config


# --------------------------------------------------------------------------- parsing helpers


def _registry_names(
    module: str, attr: str, fallback: Sequence[str], *, only_if_imported: bool = False
) -> tuple[str, ...]:
    """Names in a live registry; ``fallback`` when the module is not importable (or, with
    ``only_if_imported``, not imported yet: importing torch just to read a config is slow)."""
    if only_if_imported and module not in sys.modules:
        return tuple(fallback)
    try:
        mod = __import__(module, fromlist=[attr])
        registry = getattr(mod, attr)
        names = tuple(registry.names() if hasattr(registry, "names") else registry)
    except (ImportError, AttributeError):
        return tuple(fallback)
    return names or tuple(fallback)


def train_config_fields() -> tuple[str, ...] | None:
    """Field names of ``dece.training.TrainConfig``, or ``None`` when it is not importable."""
    import dataclasses

    try:
        from dece.training import TrainConfig  # type: ignore[attr-defined]
    except ImportError:
        return None
    try:
        return tuple(f.name for f in dataclasses.fields(TrainConfig))
    except TypeError:
        return None


def check_training_keys(config: GridConfig) -> None:
    """Unknown ``training`` keys -> :class:`ConfigError` listing the ``TrainConfig`` fields.

    Imports ``dece.training`` (transformers; seconds), so :func:`load_grid_config` runs it only
    when that is already imported; ``dece run`` runs it before training.
    """
    fields = train_config_fields()
    if fields is not None:
        allowed = [f for f in fields if f not in GRID_OWNED_TRAINING_KEYS]
        _check_keys(config.training, allowed, config.source, "training")


def _check_keys(d: Mapping[str, Any], allowed: Sequence[str], src: Any, where: str) -> None:
    for key in d:
        if key not in allowed:
            path = f"{where}.{key}" if where else str(key)
            raise ConfigError(src, path, f"unknown key; allowed: {', '.join(allowed)}")


def _as_list(value: Any, src: Any, key: str) -> list[Any]:
    if isinstance(value, list | tuple):
        if not value:
            raise ConfigError(src, key, "must be a non-empty list")
        return list(value)
    if isinstance(value, Mapping) or value is None:
        raise ConfigError(src, key, f"must be a list (or a single value), got {value!r}")
    return [value]


def _as_name(value: Any, allowed: Sequence[str] | None, src: Any, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(src, key, f"must be a non-empty string, got {value!r}")
    if allowed is not None and value not in allowed:
        raise ConfigError(src, key, f"unknown value {value!r}; allowed: {', '.join(allowed)}")
    return value


def _as_args(value: Any, src: Any, key: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ConfigError(src, key, f"must be a mapping of name -> value, got {value!r}")
    return dict(value)


def _as_float(value: Any, src: Any, key: str) -> float:
    if isinstance(value, bool):
        raise ConfigError(src, key, f"must be a number, got {value!r}")
    try:
        out = float(value)  # PyYAML reads "5e-2" as a string; accept it
    except (TypeError, ValueError):
        raise ConfigError(src, key, f"must be a number, got {value!r}") from None
    if not math.isfinite(out):
        raise ConfigError(src, key, f"must be finite, got {value!r}")
    return out


def _parse(data: Any, src: Any) -> GridConfig:
    if not isinstance(data, Mapping):
        raise ConfigError(src, "<root>", f"must be a mapping with keys {', '.join(_TOP_KEYS)}")
    _check_keys(data, _TOP_KEYS, src, "")
    for required in ("datasets", "attacks", "losses"):
        if required not in data:
            raise ConfigError(src, required, "missing required key")

    name = data.get("name", "")
    if not isinstance(name, str):
        raise ConfigError(src, "name", f"must be a string, got {name!r}")

    datasets = [
        _as_name(v, None, src, f"datasets[{i}]")
        for i, v in enumerate(_as_list(data["datasets"], src, "datasets"))
    ]
    attacks = _parse_attacks(_as_list(data["attacks"], src, "attacks"), src)

    rates = []
    for i, v in enumerate(_as_list(data.get("rates", [0.05]), src, "rates")):
        rate = _as_float(v, src, f"rates[{i}]")
        if not 0.0 <= rate < 1.0:
            raise ConfigError(src, f"rates[{i}]", f"must be in [0, 1) (0 = clean), got {v!r}")
        rates.append(rate)

    models = [
        _as_name(v, None, src, f"models[{i}]")
        for i, v in enumerate(_as_list(data.get("models", ["tiny-seq2seq"]), src, "models"))
    ]
    losses = _parse_losses(_as_list(data["losses"], src, "losses"), src)

    seeds = []
    for i, v in enumerate(_as_list(data.get("seeds", [42]), src, "seeds")):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ConfigError(src, f"seeds[{i}]", f"must be a non-negative integer, got {v!r}")
        seeds.append(v)

    training = _as_args(data.get("training"), src, "training")
    for key in training:
        if key in GRID_OWNED_TRAINING_KEYS:
            raise ConfigError(
                src,
                f"training.{key}",
                "is set per cell by the grid; use the grid keys (datasets, attacks, rates, "
                "models, losses, seeds) instead",
            )

    runner = data.get("runner")
    if runner is not None and (not isinstance(runner, str) or ":" not in runner):
        raise ConfigError(src, "runner", f"must be 'module:function', got {runner!r}")
    output_dir = data.get("output_dir")
    if output_dir is not None and not isinstance(output_dir, str):
        raise ConfigError(src, "output_dir", f"must be a path string, got {output_dir!r}")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise ConfigError(src, "description", f"must be a string, got {description!r}")

    config = GridConfig(
        name=name,
        datasets=datasets,
        attacks=attacks,
        rates=rates,
        models=models,
        losses=losses,
        seeds=seeds,
        training=training,
        runner=runner,
        output_dir=output_dir,
        description=description,
        source=str(src) if src is not None else None,
    )
    if "dece.training" in sys.modules:
        check_training_keys(config)
    return config


def _parse_attacks(items: list[Any], src: Any) -> list[AttackSpec]:
    triggers = _registry_names("dece.attacks", "TRIGGERS", KNOWN_TRIGGERS)
    payloads = _registry_names("dece.attacks", "PAYLOADS", KNOWN_PAYLOADS)
    parsed: list[tuple[str, str, dict[str, Any], dict[str, Any], str]] = []
    for i, item in enumerate(items):
        key = f"attacks[{i}]"
        if isinstance(item, str):  # shorthand: just a trigger name
            item = {"trigger": item}
        if not isinstance(item, Mapping):
            raise ConfigError(src, key, f"must be a mapping with keys {', '.join(_ATTACK_KEYS)}")
        _check_keys(item, _ATTACK_KEYS, src, key)
        if "trigger" not in item:
            raise ConfigError(src, f"{key}.trigger", "missing required key")
        trigger = _as_name(item["trigger"], triggers, src, f"{key}.trigger")
        payload = _as_name(item.get("payload", "sql_injection"), payloads, src, f"{key}.payload")
        label = item.get("label", "")
        if not isinstance(label, str):
            raise ConfigError(src, f"{key}.label", f"must be a string, got {label!r}")
        parsed.append(
            (
                trigger,
                payload,
                _as_args(item.get("trigger_args"), src, f"{key}.trigger_args"),
                _as_args(item.get("payload_args"), src, f"{key}.payload_args"),
                label,
            )
        )
    # Default labels: the trigger's display name, plus the payload when a trigger repeats.
    trigger_counts: dict[str, int] = {}
    for t, *_ in parsed:
        trigger_counts[t] = trigger_counts.get(t, 0) + 1
    attacks = []
    for t, p, ta, pa, label in parsed:
        if not label:
            label = display_name(t) if trigger_counts[t] == 1 else f"{display_name(t)}+{p}"
        attacks.append(AttackSpec(t, p, ta, pa, label))
    return attacks


def _parse_losses(items: list[Any], src: Any) -> list[LossSpec]:
    names = _registry_names("dece.losses", "LOSSES", KNOWN_LOSSES, only_if_imported=True)
    losses: list[LossSpec] = []
    for i, item in enumerate(items):
        key = f"losses[{i}]"
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, Mapping):
            raise ConfigError(src, key, f"must be a mapping with keys {', '.join(_LOSS_KEYS)}")
        _check_keys(item, _LOSS_KEYS, src, key)
        if "name" not in item:
            raise ConfigError(src, f"{key}.name", "missing required key")
        loss = _as_name(item["name"], names, src, f"{key}.name")
        args = _as_args(item.get("args"), src, f"{key}.args")
        label = item.get("label") or display_name(loss)
        if not isinstance(label, str):
            raise ConfigError(src, f"{key}.label", f"must be a string, got {label!r}")
        sweep = _as_args(item.get("sweep"), src, f"{key}.sweep")
        if not sweep:
            losses.append(LossSpec(loss, args, label))
            continue
        for arg, values in sweep.items():
            if arg in args:
                raise ConfigError(src, f"{key}.sweep.{arg}", "is also set in args; set it once")
            _as_list(values, src, f"{key}.sweep.{arg}")
        arg_names = list(sweep)
        for combo in itertools.product(*(_as_list(sweep[a], src, key) for a in arg_names)):
            swept = dict(zip(arg_names, combo, strict=True))
            tag = ",".join(f"{_SHORT_ARG.get(a, a)}={v}" for a, v in swept.items())
            losses.append(LossSpec(loss, {**args, **swept}, f"{label}({tag})"))
    return losses
