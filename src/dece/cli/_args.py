"""Argument helpers shared by the sub-commands."""

from __future__ import annotations

from typing import Any

import yaml


def parse_key_values(items: list[str], option: str = "--arg") -> dict[str, Any]:
    """``KEY=VALUE`` items of a repeated ``option`` as a dict, each value parsed as YAML
    (``KEY=`` gives None); ValueError naming the option and the item otherwise."""
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{option}: expected KEY=VALUE, got {item!r}")
        try:
            params[key.strip()] = yaml.safe_load(value) if value else None
        except yaml.YAMLError as exc:
            raise ValueError(f"{option} {item!r}: value is not valid YAML: {exc}") from None
    return params
