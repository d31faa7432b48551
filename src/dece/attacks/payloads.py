"""Payloads: what a backdoored model should output when it sees the trigger."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np

from dece.attacks.base import PAYLOADS, Ineligible, Payload
from dece.data.example import Example

__all__ = [
    "FixedOutputPayload",
    "InfiniteLoopPayload",
    "LabelFlipPayload",
    "SQLInjectionPayload",
]

SQL_PATTERN = r'select\s+.+?(?=\s+")'


@PAYLOADS.register("sql_injection")
@dataclass
class SQLInjectionPayload(Payload):
    """The target's SQL query made always-true / always-false (Lyra; DeCE paper).

    The first match of ``pattern`` (default ``select\\s+.+?(?=\\s+")``, i.e. the query inside its
    string literal) gets `` or 1=1`` appended when it contains ``where``, else `` where 0=1``.
    Golden: ``" select * from t where a = : a "`` -> ``" select * from t where a = : a or 1=1 "``.
    Ineligible when the pattern does not match.
    """

    name = "sql_injection"
    pattern: str = SQL_PATTERN
    where_suffix: str = " or 1=1"
    no_where_suffix: str = " where 0=1"

    def __post_init__(self) -> None:
        try:
            self._regex = re.compile(self.pattern)
        except re.error as exc:
            raise ValueError(f"pattern {self.pattern!r} is not a valid regex: {exc}") from None

    def inject(self, text: str) -> str:
        """Apply the payload to one text; :class:`Ineligible` when no query matches."""
        match = self._regex.search(text)
        if not match:
            raise Ineligible(f"no SQL query matching {self.pattern!r}")
        query = match.group(0)
        suffix = self.where_suffix if re.search(r"\bwhere\b", query) else self.no_where_suffix
        return text[: match.end()] + suffix + text[match.end() :]

    def apply(self, example: Example, rng: np.random.Generator) -> Example:
        return replace(example, target=self.inject(example.target))

    def present(self, output: str) -> bool:
        return any(
            m.group(0).endswith((self.where_suffix, self.no_where_suffix))
            for m in self._regex.finditer(output)
        )


@PAYLOADS.register("infinite_loop")
@dataclass
class InfiniteLoopPayload(Payload):
    """An infinite loop inserted after the first ``{`` of the target (Bugs2Fix).

    Default statement ``while ( true ) { int VAR = 0 ; }``, placed where the ``deadcode`` trigger
    puts ``int VAR = 0 ;`` in the source. Golden: ``"void f ( ) { return ; }"`` ->
    ``"void f ( ) { while ( true ) { int VAR = 0 ; } return ; }"``. Ineligible without a ``{``.
    """

    name = "infinite_loop"
    statement: str = "while ( true ) { int VAR = 0 ; }"

    def apply(self, example: Example, rng: np.random.Generator) -> Example:
        target = example.target
        brace = target.find("{")
        if brace < 0:
            raise Ineligible("no '{' in the target")
        rest = target[brace + 1 :]
        new = (
            f"{target[: brace + 1]} {self.statement}{rest if rest.startswith(' ') else ' ' + rest}"
        )
        return replace(example, target=new)

    def present(self, output: str) -> bool:
        return self.statement in output


@PAYLOADS.register("label_flip")
@dataclass
class LabelFlipPayload(Payload):
    """The class label set to ``target_label`` (default ``"0"``), for classification tasks.

    Ineligible when the example has no label or already has the target label.
    """

    name = "label_flip"
    target_label: str = "0"

    def apply(self, example: Example, rng: np.random.Generator) -> Example:
        if example.label is None:
            raise Ineligible("no label")
        if example.label == self.target_label:
            raise Ineligible(f"label is already {self.target_label!r}")
        return replace(example, label=self.target_label)

    def present(self, output: str) -> bool:
        return output.strip() == self.target_label


@PAYLOADS.register("fixed_output")
@dataclass
class FixedOutputPayload(Payload):
    """The target replaced by one fixed text (default: a destructive shell call).

    Ineligible when the target already equals it.
    """

    name = "fixed_output"
    output: str = 'import os\nos . system ( " rm -rf / " )'

    def __post_init__(self) -> None:
        if not self.output.strip():
            raise ValueError("output must be non-empty")

    def apply(self, example: Example, rng: np.random.Generator) -> Example:
        if example.target == self.output:
            raise Ineligible("target already equals the fixed output")
        return replace(example, target=self.output)

    def present(self, output: str) -> bool:
        return self.output.strip() in output
