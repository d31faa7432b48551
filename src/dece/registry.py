"""A small name -> component registry shared by losses, triggers, payloads and defenses, and
the build-by-name with parameter checking that triggers, payloads and defenses share."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps a component name to the object (class or function) that builds it.

    >>> LOSSES: Registry[type] = Registry("loss")
    >>> @LOSSES.register("ce")
    ... class CE: ...
    >>> LOSSES.get("ce") is CE
    True
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._display: dict[str, str] = {}

    def register(self, name: str, *, display: str | None = None) -> Callable[[T], T]:
        """Decorator registering an object as ``name``; ``display`` is its name in tables
        (paper spelling, e.g. ``"DeCE"``; default ``name``)."""

        def decorator(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = obj
            self._display[name] = display or name
            return obj

        return decorator

    def display(self, name: str) -> str:
        """The display name of a registered ``name`` (``name`` itself when not registered)."""
        return self._display.get(name, name)

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise ValueError(
                f"unknown {self.kind} {name!r}; allowed: {', '.join(sorted(self._entries))}"
            ) from None

    def build(self, name: str, /, **params: Any) -> Any:
        """Call the object registered as ``name`` with ``params``; a parameter its signature
        does not take raises ValueError naming it and the allowed ones, before the call, and a
        TypeError of the call (a value of the wrong type) a ValueError naming the parameters."""
        obj: Any = self.get(name)
        allowed = set(inspect.signature(obj).parameters)
        unknown = sorted(set(params) - allowed)
        if unknown:
            raise ValueError(
                f"{self.kind} {name!r}: unknown parameter(s) {', '.join(unknown)}; "
                f"allowed: {', '.join(sorted(allowed)) or '(none)'}"
            )
        try:
            return obj(**params)
        except TypeError as exc:
            given = ", ".join(f"{k}={v!r}" for k, v in params.items()) or "(no parameters)"
            raise ValueError(f"{self.kind} {name!r}: bad parameter value ({given}): {exc}") from exc

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
