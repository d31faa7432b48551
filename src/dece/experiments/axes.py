"""The grid's axes, defined once.

Everything that depends on which axes a grid has is derived from :data:`AXES`: the YAML keys a
grid config accepts, a cell's identity (hashed) and labels, the ``TrainConfig`` keys the grid
sets per cell, the order of cells, the fields of a result row, how tables group rows and columns
and what ``dece run --list`` prints. Adding an axis means adding one :class:`Axis` here (and, if
it changes how a cell runs, teaching the cell runner about it).

Axis roles: ``context`` (one table per value), ``column`` (one column group per value), ``row``
(part of a table row's label), ``seed`` (averaged over). An axis may declare an ``omit`` value:
cells with that value leave the axis out of their identity, so grids written before the axis
existed keep their cell hashes (the ``defenses`` axis omits ``undefended``).

The attack, loss and defense values are the run schema's types (:mod:`dece.training.config`), not
a second schema: an :class:`AttackSpec` is an ``AttackConfig`` (a ``PoisonConfig`` less its rate
and seed), a :class:`DefenseSpec` a ``DefenseConfig``, and a :class:`LossSpec`'s fields are
``TrainConfig``'s ``loss`` / ``loss_args`` (:data:`LOSS_SETTINGS`). Each adds a display
``label``, which its identity (``resolved()``, what a cell hash is computed from) leaves out.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from dece.experiments.entries import AttackEntry, DefenseEntry, LossEntry, validate_entry
from dece.experiments.errors import ConfigError
from dece.training.config import AttackConfig, DefenseConfig, TrainConfig
from dece.training.schema import Str

__all__ = [
    "AXES",
    "AXIS_BY_FIELD",
    "AXIS_BY_KEY",
    "UNDEFENDED",
    "AttackSpec",
    "Axis",
    "ConfigError",
    "DefenseSpec",
    "LOSS_SETTINGS",
    "LossSpec",
    "display_name",
]

UNDEFENDED = "undefended"
_SHORT_ARG = {"alpha_base": "alpha", "label_smoothing": "eps"}


def display_name(name: str) -> str:
    """Paper-style display name of a registered loss, trigger or defense (``"dece"`` ->
    ``"DeCE"``), from the registries; the name itself when none has it."""
    from dece.attacks import TRIGGERS
    from dece.defenses import DEFENSES
    from dece.losses import LOSSES

    for registry in (LOSSES, TRIGGERS, DEFENSES):
        if name in registry:
            return registry.display(name)
    return name


# ------------------------------------------------------------------------------ value specs
#: ``{LossSpec field: TrainConfig field}``: where a cell's loss goes in its run config.
LOSS_SETTINGS: dict[str, str] = {"name": "loss", "args": "loss_args"}
_LABEL_HELP = "display label (tables, plots); never part of a cell's identity"
_SPEC = ConfigDict(frozen=True)  # a grid value never changes once parsed


class _Identity:
    """``resolved()`` for a spec: every field but ``label``, as plain data, in field order."""

    def resolved(self) -> dict[str, Any]:
        """The spec's part of a cell's identity (what is hashed): no label."""
        return self.model_dump(exclude={"label"})  # type: ignore[attr-defined]


class AttackSpec(_Identity, AttackConfig):
    """One attack: the run schema's ``AttackConfig`` (trigger, payload and their args; see
    :mod:`dece.attacks`) with a display label."""

    model_config = _SPEC
    label: Str = Field("", description=_LABEL_HELP)


def _like(name: str, **kw: Any) -> Any:
    """A field carrying the help text of ``TrainConfig``'s field ``name``."""
    return Field(description=TrainConfig.model_fields[name].description, **kw)


#: The types of ``TrainConfig``'s loss fields (``loss``: a name, ``loss_args``: a mapping).
LossName = TrainConfig.model_fields[LOSS_SETTINGS["name"]].rebuild_annotation()
LossArgs = TrainConfig.model_fields[LOSS_SETTINGS["args"]].rebuild_annotation()


class LossSpec(_Identity, BaseModel):
    """One training method: ``TrainConfig``'s loss name (``dece.losses``) and hyperparameters
    (:data:`LOSS_SETTINGS`) with a display label."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: LossName = _like(LOSS_SETTINGS["name"])
    args: LossArgs = _like(LOSS_SETTINGS["args"], default_factory=dict)
    label: Str = Field("", description=_LABEL_HELP)

    def train_settings(self) -> dict[str, Any]:
        """This loss as ``TrainConfig`` settings: ``{"loss": name, "loss_args": args}``."""
        return {LOSS_SETTINGS[k]: v for k, v in self.resolved().items()}


class DefenseSpec(_Identity, DefenseConfig):
    """One defense: the run schema's ``DefenseConfig`` (``dece.defenses``) with a display label,
    or ``undefended`` (none at all)."""

    model_config = _SPEC
    label: Str = Field("", description=_LABEL_HELP)

    @property
    def undefended(self) -> bool:
        return self.name == UNDEFENDED

    @property
    def stage(self) -> str | None:
        """``"train"`` (filter), ``"test"`` (purifier) or None (undefended)."""
        if self.undefended:
            return None
        from dece.defenses import DEFENSES

        return DEFENSES.get(self.name).stage

    @property
    def needs_victim(self) -> bool:
        if self.undefended:
            return False
        from dece.defenses import DEFENSES

        return bool(DEFENSES.get(self.name).needs_victim)


# ------------------------------------------------------------------------------ parsing helpers
def check_keys(d: Mapping[str, Any], allowed: Sequence[str], src: Any, where: str) -> None:
    for key in d:
        if key not in allowed:
            path = f"{where}.{key}" if where else str(key)
            raise ConfigError(src, path, f"unknown key; allowed: {', '.join(allowed)}")


def as_list(value: Any, src: Any, key: str) -> list[Any]:
    if isinstance(value, list | tuple):
        if not value:
            raise ConfigError(src, key, "must be a non-empty list")
        return list(value)
    if isinstance(value, Mapping) or value is None:
        raise ConfigError(src, key, f"must be a list (or a single value), got {value!r}")
    return [value]


def as_name(value: Any, allowed: Sequence[str] | None, src: Any, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(src, key, f"must be a non-empty string, got {value!r}")
    if allowed is not None and value not in allowed:
        raise ConfigError(src, key, f"unknown value {value!r}; allowed: {', '.join(allowed)}")
    return value


def as_args(value: Any, src: Any, key: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ConfigError(src, key, f"must be a mapping of name -> value, got {value!r}")
    return dict(value)


def as_float(value: Any, src: Any, key: str) -> float:
    if isinstance(value, bool):
        raise ConfigError(src, key, f"must be a number, got {value!r}")
    try:
        out = float(value)  # PyYAML reads "5e-2" as a string; accept it
    except (TypeError, ValueError):
        raise ConfigError(src, key, f"must be a number, got {value!r}") from None
    if not math.isfinite(out):
        raise ConfigError(src, key, f"must be finite, got {value!r}")
    return out


def _label(label: str | None, default: str) -> str:
    return label or default


# ------------------------------------------------------------------------------ axis parsers
def _parse_names(items: list[Any], src: Any, where: str) -> list[str]:
    return [as_name(v, None, src, f"{where}[{i}]") for i, v in enumerate(items)]


def _parse_rates(items: list[Any], src: Any, where: str) -> list[float]:
    rates = []
    for i, v in enumerate(items):
        rate = as_float(v, src, f"{where}[{i}]")
        if not 0.0 <= rate < 1.0:
            raise ConfigError(src, f"{where}[{i}]", f"must be in [0, 1) (0 = clean), got {v!r}")
        rates.append(rate)
    return rates


def _parse_seeds(items: list[Any], src: Any, where: str) -> list[int]:
    for i, v in enumerate(items):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ConfigError(src, f"{where}[{i}]", f"must be a non-negative integer, got {v!r}")
    return list(items)


def _parse_attacks(items: list[Any], src: Any, where: str) -> list[AttackSpec]:
    from dece.attacks import PAYLOADS, TRIGGERS

    parsed = []
    for i, item in enumerate(items):
        key = f"{where}[{i}]"
        entry = validate_entry(AttackEntry, item, "trigger", src, key)
        trigger = as_name(entry.trigger, TRIGGERS.names(), src, f"{key}.trigger")
        payload = as_name(entry.payload, PAYLOADS.names(), src, f"{key}.payload")
        parsed.append((trigger, payload, dict(entry.trigger_args or {}),
                       dict(entry.payload_args or {}), _label(entry.label, "")))  # fmt: skip
    # Default labels: the trigger's display name, plus the payload when a trigger repeats.
    counts: dict[str, int] = {}
    for t, *_ in parsed:
        counts[t] = counts.get(t, 0) + 1
    return [
        AttackSpec(trigger=t, payload=p, trigger_args=ta, payload_args=pa,
                   label=label or (display_name(t) if counts[t] == 1
                                   else f"{display_name(t)}+{p}"))
        for t, p, ta, pa, label in parsed
    ]  # fmt: skip


def _parse_losses(items: list[Any], src: Any, where: str) -> list[LossSpec]:
    from dece.losses import LOSSES

    losses: list[LossSpec] = []
    for i, item in enumerate(items):
        key = f"{where}[{i}]"
        entry = validate_entry(LossEntry, item, "name", src, key)
        loss = as_name(entry.name, LOSSES.names(), src, f"{key}.name")
        args = dict(entry.args or {})
        label = _label(entry.label, display_name(loss))
        sweep = dict(entry.sweep or {})
        if not sweep:
            losses.append(LossSpec(name=loss, args=args, label=label))
            continue
        for arg, values in sweep.items():
            if arg in args:
                raise ConfigError(src, f"{key}.sweep.{arg}", "is also set in args; set it once")
            as_list(values, src, f"{key}.sweep.{arg}")
        names = list(sweep)
        for combo in itertools.product(*(as_list(sweep[a], src, key) for a in names)):
            swept = dict(zip(names, combo, strict=True))
            tag = ",".join(f"{_SHORT_ARG.get(a, a)}={v}" for a, v in swept.items())
            losses.append(LossSpec(name=loss, args={**args, **swept}, label=f"{label}({tag})"))
    return losses


def _parse_defenses(items: list[Any], src: Any, where: str) -> list[DefenseSpec]:
    from dece.defenses import DEFENSES

    allowed = [UNDEFENDED, *DEFENSES.names()]
    items = [UNDEFENDED if item is None else item for item in items]  # `- null`: undefended
    out = []
    for i, item in enumerate(items):
        key = f"{where}[{i}]"
        entry = validate_entry(DefenseEntry, item, "name", src, key)
        name = as_name(entry.name, allowed, src, f"{key}.name")
        args = dict(entry.args or {})
        if name == UNDEFENDED and args:
            raise ConfigError(src, f"{key}.args", "'undefended' takes no args")
        default = "" if name == UNDEFENDED else display_name(name)
        out.append(DefenseSpec(name=name, args=args, label=_label(entry.label, default)))
    return out


# ------------------------------------------------------------------------------ the axes
def _fmt_rate(rate: float) -> str:
    return f"{rate * 100:g}%"


def _spec_dump(spec: Any) -> dict[str, Any]:
    return {**spec.resolved(), "label": spec.label}


@dataclass(frozen=True)
class Axis:
    """One grid axis.

    Attributes:
        key: the grid config key (a list), e.g. ``"losses"``.
        field: the cell field and result column, e.g. ``"loss"``.
        role: ``context`` | ``column`` | ``row`` | ``seed`` (see the module docstring).
        parse: ``(items, source, key) -> values`` validating the YAML list.
        default: the list used when the key is absent (None: the key is required).
        identity: a value's part of the cell identity (JSON); ``label``: its display label.
        dump: a value as YAML (what :meth:`GridConfig.to_dict` writes).
        owns: the ``TrainConfig`` keys the grid sets from this axis (not settable in
            ``training``).
        omit: identity omitted from the cell identity (see the module docstring).
    """

    key: str
    field: str
    role: str
    parse: Callable[[list[Any], Any, str], list[Any]]
    default: tuple[Any, ...] | None
    identity: Callable[[Any], Any]
    label: Callable[[Any], str]
    dump: Callable[[Any], Any]
    owns: tuple[str, ...]
    omit: Any = None


def _plain(value: Any) -> Any:
    return value


AXES: tuple[Axis, ...] = (
    Axis("datasets", "dataset", "context", _parse_names, None, _plain, str, _plain, ("data",)),
    Axis("attacks", "attack", "column", _parse_attacks, None, lambda a: a.resolved(),
         lambda a: a.label, _spec_dump, ("poison", "eval_poison")),
    Axis("rates", "rate", "row", _parse_rates, (0.05,), _plain, _fmt_rate, _plain, ()),
    Axis("models", "model", "context", _parse_names, ("tiny-seq2seq",), _plain, str, _plain,
         ("model",)),
    Axis("losses", "loss", "row", _parse_losses, None, lambda s: s.resolved(), lambda s: s.label,
         _spec_dump, ("loss", "loss_args")),
    Axis("defenses", "defense", "row", _parse_defenses, (UNDEFENDED,), lambda s: s.resolved(),
         lambda s: s.label, _spec_dump, ("defense", "defense_victim"),
         omit={"name": UNDEFENDED, "args": {}}),
    Axis("seeds", "seed", "seed", _parse_seeds, (42,), _plain, str, _plain, ("seed",)),
)  # fmt: skip
AXIS_BY_KEY = {a.key: a for a in AXES}
AXIS_BY_FIELD = {a.field: a for a in AXES}
