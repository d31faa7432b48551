"""The YAML schema of one entry of the ``attacks``, ``losses`` and ``defenses`` grid lists,
validated by pydantic v2.

These are the *raw* entries as a user writes them; :mod:`dece.experiments.axes` turns a
validated entry into the resolved spec a cell is hashed from (``AttackSpec``, ``LossSpec``,
``DefenseSpec``: defaults filled in, labels derived, sweeps expanded), a different type, so a
raw entry can never be hashed by mistake. The registry names (triggers, payloads, losses,
defenses) are checked there too, against the live registries.

Why pydantic rather than ``HfArgumentParser`` dataclasses: these entries are mappings nested
in lists, not flat command-line arguments, and pydantic reports every error with its location
inside the entry, which :func:`validate_entry` turns into the grid's dotted key path
(``attacks[1].trigger_args``); ``extra="forbid"`` rejects a misspelt key, and strict types keep
values as written (no ``1`` -> ``"1"``; ``args`` values are ``Any``, so ``2`` stays ``2`` and
the cell hashes do not move). pydantic is a declared dependency (``pyproject.toml``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

from dece.experiments.errors import ConfigError

__all__ = ["AttackEntry", "DefenseEntry", "LossEntry", "validate_entry"]

Name = Annotated[str, StringConstraints(min_length=1)]
Args = dict[str, Any] | None  # None (``args:`` left empty): no arguments


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class AttackEntry(_Entry):
    """``{trigger, trigger_args, payload, payload_args, label}``; a bare string is the trigger."""

    trigger: Name
    trigger_args: Args = None
    payload: Name = "sql_injection"
    payload_args: Args = None
    label: str | None = None


class LossEntry(_Entry):
    """``{name, args, label, sweep}``; a bare string is the name. ``sweep``: arg -> values."""

    name: Name
    args: Args = None
    label: str | None = None
    sweep: Args = None


class DefenseEntry(_Entry):
    """``{name, args, label}``; a bare string (or ``null``: undefended) is the name."""

    name: Name
    args: Args = None
    label: str | None = None


E = TypeVar("E", bound=_Entry)


def validate_entry(model: type[E], item: Any, required: str, src: Any, key: str) -> E:
    """``item`` (a mapping, or a string: shorthand for ``{required: string}``) as a ``model``;
    any error is a :class:`ConfigError` naming ``key`` and the offending field."""
    if isinstance(item, str):
        item = {required: item}
    fields = ", ".join(model.model_fields)
    if not isinstance(item, Mapping):
        raise ConfigError(src, key, f"must be a mapping with keys {fields}")
    try:
        return model.model_validate(dict(item))
    except ValidationError as exc:
        error = exc.errors()[0]
        path = ".".join([key, *(str(part) for part in error["loc"])])
        if error["type"] == "extra_forbidden":
            raise ConfigError(src, path, f"unknown key; allowed: {fields}") from None
        if error["type"] == "missing":
            raise ConfigError(src, path, "missing required key") from None
        raise ConfigError(src, path, f"{error['msg']}, got {error['input']!r}") from None
