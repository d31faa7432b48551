"""Base classes and registries for triggers (input side) and payloads (output side)."""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from dece.data.example import Example
from dece.registry import Registry

__all__ = [
    "PAYLOADS",
    "TRIGGERS",
    "Ineligible",
    "Payload",
    "SIDES",
    "Trigger",
    "TriggerEdit",
    "describe",
    "get_payload",
    "get_trigger",
]


class Ineligible(ValueError):
    """Raised by ``apply`` when an example cannot carry this trigger / payload.

    ``reason`` is a short human-readable text recorded in the poison manifest.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Component:
    """Shared helpers: parameters as a dict, and a config dict ``{"name": ..., **params}``."""

    name: ClassVar[str]

    def params(self) -> dict[str, Any]:
        if dataclasses.is_dataclass(self):
            return dataclasses.asdict(self)
        return {}

    def config(self) -> dict[str, Any]:
        return {"name": self.name, **self.params()}


#: Which text(s) of an example a trigger edits: the source, the second text of a pair
#: (``Example.source_pair``, e.g. clone detection), or both.
SIDES = ("source", "pair", "both")


@dataclass(frozen=True)
class TriggerEdit:
    """The result of inserting a trigger into one text.

    ``spans``: ``(start, end)`` character offsets in ``text`` of every piece the trigger inserted
    or renamed (sorted, non-overlapping); what a purifier should find and remove.
    """

    text: str
    spans: tuple[tuple[int, int], ...]


@dataclass
class Trigger(_Component):
    """Inserts a backdoor trigger into one text.

    Subclasses are dataclasses whose fields are the hyperparameters, and implement
    :meth:`insert` (raise :class:`Ineligible` when the text cannot carry the trigger; report the
    character spans it inserted or renamed) and :meth:`present` (does a text carry this trigger?).

    ``side`` (keyword-only, every trigger): ``"source"`` (default), ``"pair"`` (the second text
    of a text pair) or ``"both"``; the poisoner applies :meth:`insert` to those texts.
    """

    side: str = field(default="source", kw_only=True)

    def __post_init__(self) -> None:
        if self.side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}, got {self.side!r}")

    def insert(self, text: str, rng: np.random.Generator) -> TriggerEdit:
        raise NotImplementedError

    def apply(self, text: str, rng: np.random.Generator) -> str:
        """The triggered text (:meth:`insert` without the spans)."""
        return self.insert(text, rng).text

    def present(self, text: str) -> bool:
        raise NotImplementedError


class Payload(_Component):
    """Rewrites an example's target (or label) into the attacker's chosen output.

    :meth:`apply` returns a new :class:`Example` (raise :class:`Ineligible` when the example
    cannot carry the payload); :meth:`present` tells whether a model output contains it.
    """

    def apply(self, example: Example, rng: np.random.Generator) -> Example:
        raise NotImplementedError

    def present(self, output: str) -> bool:
        raise NotImplementedError


TRIGGERS: Registry[type[Trigger]] = Registry("trigger")
PAYLOADS: Registry[type[Payload]] = Registry("payload")


def get_trigger(name: str, **params: Any) -> Trigger:
    """Build a registered trigger by name, e.g. ``get_trigger("badpre", word="cf", k=2)``."""
    return TRIGGERS.build(name, **params)


def get_payload(name: str, **params: Any) -> Payload:
    """Build a registered payload by name, e.g. ``get_payload("sql_injection")``."""
    return PAYLOADS.build(name, **params)


def describe(registry: Registry) -> str:
    """One block per component: name, defaults and its docstring (for ``--help``)."""
    blocks = []
    for name in registry.names():
        cls = registry.get(name)
        doc = inspect.cleandoc(cls.__doc__ or "").replace("``", "").replace("\n", "\n      ")
        fields = ", ".join(
            f"{f.name}={f.default!r}"
            for f in (dataclasses.fields(cls) if dataclasses.is_dataclass(cls) else ())
        )
        blocks.append(f"  {name}({fields})\n      {doc}")
    return "\n".join(blocks)
