"""The machinery under :mod:`dece.training.config`: typed field aliases, ``key=value`` overrides
merged by OmegaConf, and pydantic's validation errors turned into messages that name the dotted
key path (``config key 'poison.rate' expects float, got 'abc'``).

Kept apart from the schema itself so that ``config.py`` reads as the list of fields.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, Field, Strict, StringConstraints, ValidationError
from pydantic.fields import FieldInfo

__all__ = [
    "Bool",
    "ConfigValueError",
    "Float",
    "Int",
    "Name",
    "PositiveFloat",
    "PositiveInt",
    "Ratio",
    "Str",
    "merge_overrides",
    "operational_names",
    "raise_for",
    "setting",
    "trainer_names",
]

# Strict scalars: a value keeps the type it was written with (no ``"2"`` -> ``2``, no ``2.0`` ->
# ``2``, no ``1`` -> ``True``); the one conversion allowed is an int given for a float (``1`` ->
# ``1.0``), which every YAML writer expects.
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]
Bool = Annotated[bool, Strict()]
Str = Annotated[str, Strict()]
Name = Annotated[str, Strict(), StringConstraints(min_length=1)]
PositiveInt = Annotated[int, Strict(), Field(ge=1)]
PositiveFloat = Annotated[float, Strict(), Field(gt=0.0)]
Ratio = Annotated[float, Strict(), Field(ge=0.0, lt=1.0)]

#: The ``json_schema_extra`` key naming a field's ``TrainingArguments`` argument (:func:`setting`).
TRAINER_KEY = "trainer"
#: The ``json_schema_extra`` key marking a field operational (:func:`setting`).
OPERATIONAL_KEY = "operational"

_BOUNDS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
_VALUE_ERROR_PREFIXES = ("Value error, ", "Assertion failed, ")


def setting(
    default: Any = ...,
    help: str = "",
    *,
    trainer: str | None = None,
    operational: bool = False,
    **kw: Any,
) -> Any:
    """A pydantic ``Field`` with its help text (``description``) and, for a setting handed to
    ``transformers.TrainingArguments`` unchanged, that argument's name (``trainer=``).
    ``operational=True`` declares a setting that changes where results are reported or how a run
    survives a kill, never the results (:func:`operational_names`; a grid cell's hash leaves it
    out). ``default=dict`` gives each instance its own empty mapping."""
    extra: dict[str, Any] = {}
    if trainer:
        extra[TRAINER_KEY] = trainer
    if operational:
        extra[OPERATIONAL_KEY] = True
    if default is dict:
        return Field(default_factory=dict, description=help, json_schema_extra=extra or None, **kw)
    return Field(default, description=help, json_schema_extra=extra or None, **kw)


def trainer_names(model: type[BaseModel]) -> dict[str, str]:
    """``{field: TrainingArguments argument}`` for the fields of ``model`` declared with
    ``setting(..., trainer=NAME)``."""
    out = {}
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra
        if isinstance(extra, dict) and isinstance(extra.get(TRAINER_KEY), str):
            out[name] = str(extra[TRAINER_KEY])
    return out


def operational_names(model: type[BaseModel]) -> frozenset[str]:
    """The fields of ``model`` declared with ``setting(..., operational=True)``."""
    return frozenset(
        name
        for name, info in model.model_fields.items()
        if isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get(OPERATIONAL_KEY)
    )


class ConfigValueError(ValueError):
    """A config failed validation. ``errors``: ``(dotted key path, message)`` pairs, one per
    offending key; ``str()`` joins them as ``config key 'PATH' MESSAGE``."""

    def __init__(self, errors: Sequence[tuple[str, str]]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(_render(path, message) for path, message in self.errors))


def _render(path: str, message: str) -> str:
    where = f"config key {path!r}" if path else "config"
    return f"{where}{message}" if message.startswith(":") else f"{where} {message}"


# ------------------------------------------------------------------------------ overrides
def merge_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """``data`` with dotted ``key=value`` overrides merged in by OmegaConf: ``poison.rate=0.1``
    and ``lora.r=8`` reach nested mappings (creating them), values are YAML (``[a, b]`` is a
    list, ``null`` is None, an empty value is None), a list replaces a list."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    dotlist = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r} must look like key=value")
        if not key.strip():
            raise ValueError(f"override {item!r} has an empty key")
        dotlist.append(f"{key.strip()}={value}")
    plain = {k: v.model_dump() if isinstance(v, BaseModel) else v for k, v in data.items()}
    try:
        merged = OmegaConf.merge(OmegaConf.create(plain), OmegaConf.from_dotlist(dotlist))
        out = OmegaConf.to_container(merged, resolve=False)
    except (OmegaConfBaseException, yaml.YAMLError, TypeError, ValueError) as exc:
        raise ValueError(f"overrides {list(overrides)}: {exc}") from None
    assert isinstance(out, dict)  # a mapping merged with a mapping
    return typing.cast(dict[str, Any], out)


# ------------------------------------------------------------------------------ errors
def raise_for(exc: ValidationError, model: type[BaseModel]) -> typing.NoReturn:
    """Re-raise pydantic's ``exc`` (validating ``model``) as a :class:`ConfigValueError` whose
    messages name each key by its dotted path, one message per key."""
    found: dict[str, str] = {}
    for error in exc.errors():
        path, message = describe(error, model)
        found.setdefault(path, message)
    raise ConfigValueError(list(found.items())) from None


def describe(error: Mapping[str, Any], model: type[BaseModel]) -> tuple[str, str]:
    """``(dotted path, message)`` for one pydantic error raised while validating ``model``."""
    parts: list[str] = []
    owner: type[BaseModel] | None = model
    info: FieldInfo | None = None
    for item in error["loc"]:
        if owner is None:  # inside a field (a union member, a mapping's key): the field is named
            break
        if item not in owner.model_fields:
            if error["type"] != "extra_forbidden":
                break
            allowed = ", ".join(owner.model_fields)
            return ".".join([*parts, str(item)]), f"is an unknown key; allowed: {allowed}"
        parts.append(str(item))
        info = owner.model_fields[item]
        owner = _model_in(info.annotation)
    path = ".".join(parts)
    kind, value = error["type"], error.get("input")
    if kind == "missing":
        return path, "is required"
    if kind in ("value_error", "assertion_error"):
        message = str(error["msg"])
        for prefix in _VALUE_ERROR_PREFIXES:
            message = message.removeprefix(prefix)
        return path, f": {message}"
    bound = next((k for k in _BOUNDS if k in (error.get("ctx") or {})), None)
    if bound is not None:
        return path, f"must be {_BOUNDS[bound]} {error['ctx'][bound]}, got {value!r}"
    if kind == "string_too_short":
        return path, f"must be a non-empty string, got {value!r}"
    expected = _type_name(info.annotation) if info is not None else "another value"
    return path, f"expects {expected}, got {value!r}{_float_hint(expected, value)}"


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model an annotation holds (``PoisonConfig | None`` -> ``PoisonConfig``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if (found := _model_in(arg)) is not None:
                return found
    return None


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _type_name(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        names = [_type_name(a) for a in args if a is not type(None)]
        return " or ".join(names) + (" or null" if type(None) in args else "")
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"a mapping (keys: {', '.join(annotation.model_fields)})"
    if origin is not None:
        return getattr(origin, "__name__", str(origin))
    return getattr(annotation, "__name__", str(annotation))


def _float_hint(expected: str, value: Any) -> str:
    if not expected.startswith("float") or not isinstance(value, str):
        return ""
    try:
        float(value)
    except ValueError:
        return ""
    return " (YAML reads a number like 1e-4 as a string: write 1.0e-4)"
