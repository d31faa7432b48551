"""Typed grid configuration for experiment sweeps, loaded from YAML.

A grid is the product of its axes (:data:`dece.experiments.axes.AXES`: datasets x attacks x
rates x models x losses x defenses x seeds); every combination is one run (a *cell*, see
:mod:`dece.experiments.grid`). Example::

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
    defenses:                     # optional; default [undefended]
      - undefended
      - {name: keyword, args: {tokens: [bb]}}   # a training-time filter: retrains on kept rows
      - {name: none}              # a test-time purifier: evaluates the undefended cell's model
    seeds: [42]
    training: {num_epochs: 4}    # dece.training.TrainConfig fields shared by every cell
    runner: dece.experiments.fake:fake_run_cell   # optional "module:function" cell runner

Every error raised while loading is a :class:`ConfigError` whose message names the file, the
key (dotted path) and, where the set is finite, the allowed values. Names are checked against
the live registries (losses, triggers, payloads, defenses), and ``training`` against
``TrainConfig`` (keys and value types), whatever was imported before.

Numbers are hashed as loaded (a cell's hash is over JSON, where ``2`` and ``2.0`` differ), so the
load fixes the spellings a user expects to be equal: a rate is always a float (``0`` is
``0.0``), an int given for a float ``TrainConfig`` field becomes a float (``learning_rate: 1``
is ``1.0``), and a float given for an int field (``num_epochs: 2.0``) is refused, naming the key.
Mappings handed on untyped (loss, attack and defense ``args``, nested ``training`` mappings such
as ``lora``) are hashed as written: ``alpha_base: 1`` and ``alpha_base: 1.0`` are two cells.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dece.experiments.axes import (
    AXES,
    AXIS_BY_KEY,
    AttackSpec,
    ConfigError,
    DefenseSpec,
    LossSpec,
    as_args,
    as_list,
    check_keys,
    display_name,
)

__all__ = [
    "AttackSpec",
    "ConfigError",
    "DefenseSpec",
    "GRID_OWNED_TRAINING_KEYS",
    "GridConfig",
    "LossSpec",
    "check_training_keys",
    "display_name",
    "load_grid_config",
]

#: Keys of ``training`` that the grid sets itself, per cell (derived from the axes).
GRID_OWNED_TRAINING_KEYS: tuple[str, ...] = ("output_dir",) + tuple(
    key for axis in AXES for key in axis.owns
)
_TOP_KEYS = ("name", "description", *(a.key for a in AXES), "training", "runner", "output_dir")


@dataclass
class GridConfig:
    """A parsed grid config. Build it with :func:`load_grid_config` or :meth:`from_dict`.

    ``axes[key]`` holds each axis's values (``config.losses`` etc. read them).
    """

    name: str
    axes: dict[str, list[Any]]
    training: dict[str, Any] = field(default_factory=dict)
    runner: str | None = None
    output_dir: str | None = None
    description: str = ""
    source: str | None = None

    def __getattr__(self, name: str) -> Any:
        axes = self.__dict__.get("axes", {})
        if name in axes:
            return axes[name]
        raise AttributeError(f"GridConfig has no attribute {name!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str | Path | None = None) -> GridConfig:
        """Validate a mapping (e.g. parsed YAML) into a :class:`GridConfig`."""
        return _parse(data, source)

    def to_dict(self) -> dict[str, Any]:
        """A mapping that :meth:`from_dict` turns back into an equal config."""
        out: dict[str, Any] = {"name": self.name}
        for axis in AXES:
            out[axis.key] = [axis.dump(v) for v in self.axes[axis.key]]
        out["training"] = dict(self.training)
        for key in ("description", "runner", "output_dir"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        return out


def load_grid_config(path: str | Path) -> GridConfig:
    """Read and validate a YAML grid config; errors name the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"grid config {str(path)!r} does not exist")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            path, "<file>", f"not UTF-8: bytes {raw[exc.start : exc.end]!r} at byte {exc.start} "
            f"(line {line}); save the file as UTF-8",
        ) from None  # fmt: skip
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as exc:
        raise ConfigError(path, exc.key, str(exc)) from None
    except yaml.YAMLError as exc:
        raise ConfigError(path, "<yaml>", f"not valid YAML: {exc}") from None
    config = _parse({} if data is None else data, path)
    if config.name == "":
        config.name = path.stem
    return config


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: str, line: int, first: int) -> None:
        self.key = key
        super().__init__(
            f"appears twice in one mapping (line {line}; first on line {first}): YAML would "
            "silently keep the last; remove one"
        )


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (at any depth)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # "<<: *base" may be overridden
                continue
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            line = key_node.start_mark.line + 1
            if isinstance(key, str | int | float | bool) and key in seen:
                raise _DuplicateKey(str(key), line, seen[key])
            if isinstance(key, str | int | float | bool):
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def check_training_keys(config: GridConfig) -> None:
    """Unknown ``training`` keys -> :class:`ConfigError` listing the ``TrainConfig`` fields."""
    from dece.training.config import TrainConfig

    allowed = [f for f in TrainConfig.model_fields if f not in GRID_OWNED_TRAINING_KEYS]
    check_keys(config.training, allowed, config.source, "training")


def _check_training_values(config: GridConfig) -> dict[str, Any]:
    """Validate the ``training`` block against the ``TrainConfig`` schema, once and before any
    cell runs; the first error is a :class:`ConfigError` naming ``training.<key path>``. Returns
    the block with the number spellings fixed (see :func:`_floats_as_float`)."""
    from dece.training.config import ConfigValueError, TrainConfig

    try:
        checked = TrainConfig.from_dict({**config.training, "output_dir": "<check>"})
    except ConfigValueError as exc:
        path, message = exc.errors[0]
        key = f"training.{path}" if path else "training"
        raise ConfigError(config.source, key, message.removeprefix(": ")) from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(config.source, "training", str(exc)) from None
    return _floats_as_float(config.training, checked)


def _parse(data: Any, src: Any) -> GridConfig:
    if not isinstance(data, Mapping):
        raise ConfigError(src, "<root>", f"must be a mapping with keys {', '.join(_TOP_KEYS)}")
    check_keys(data, _TOP_KEYS, src, "")
    for axis in AXES:
        if axis.default is None and axis.key not in data:
            raise ConfigError(src, axis.key, "missing required key")
    name = data.get("name", "")
    if not isinstance(name, str):
        raise ConfigError(src, "name", f"must be a string, got {name!r}")
    axes = {}
    for axis in AXES:
        raw = data.get(axis.key, list(axis.default or ()))
        axes[axis.key] = axis.parse(as_list(raw, src, axis.key), src, axis.key)
    training = as_args(data.get("training"), src, "training")
    for key in training:
        if key in GRID_OWNED_TRAINING_KEYS:
            raise ConfigError(
                src, f"training.{key}",
                f"is set per cell by the grid; use the grid keys ({', '.join(AXIS_BY_KEY)}) "
                "instead",
            )  # fmt: skip
    runner = data.get("runner")
    if runner is not None and (not isinstance(runner, str) or ":" not in runner):
        raise ConfigError(src, "runner", f"must be 'module:function', got {runner!r}")
    for key in ("output_dir", "description"):
        if data.get(key) is not None and not isinstance(data.get(key), str):
            raise ConfigError(src, key, f"must be a string, got {data.get(key)!r}")
    config = GridConfig(
        name=name, axes=axes, training=training, runner=runner,
        output_dir=data.get("output_dir"), description=data.get("description") or "",
        source=str(src) if src is not None else None,
    )  # fmt: skip
    check_training_keys(config)
    config.training = _check_training_values(config)
    return config


def _floats_as_float(training: Mapping[str, Any], checked: Any) -> dict[str, Any]:
    """``training`` as written, except that an int the schema made a float (an int given for a
    float field: ``checked``, the validated ``TrainConfig``, holds the float) is that float, so
    both spellings are one cell (module docstring). Every other value is hashed as written (the
    schema's other conversions, e.g. ``lora: true`` -> ``{}``, would rename archived cells)."""
    out = dict(training)
    for key, value in training.items():
        if type(value) is int and type(getattr(checked, key)) is float:
            out[key] = float(value)
    return out
