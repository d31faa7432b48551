"""Payloads: what a backdoored model should output when it sees the trigger.

Each payload's :meth:`~dece.attacks.base.Payload.present` is the only place that decides whether
a model output carries the payload (ASR and false-trigger rate call it). Matching is tolerant of
how a model writes code:

``sql_injection``
    an always-true / always-false condition (the payload's suffixes without their leading
    keyword: ``1=1`` and ``0=1`` by default) once whitespace is ignored (``1 = 1``, ``1=  1``),
    not preceded by an identifier character or a dot and not followed by one (so ``v1 = 1``,
    ``x = 10 = 1`` or ``1 = 1.5`` do not count).
``infinite_loop``
    the payload statement after token normalisation (identifiers/numbers, then single
    punctuation characters; whitespace does not matter); a placeholder ``VAR`` or ``VAR_<n>`` in
    the statement matches any identifier, because Java-abstracted Bugs2Fix renames variables to
    ``VAR_1``, ``VAR_2``, ... and models emit whichever index they learnt.
``dead_code_python``
    the payload statement after the same token normalisation (whitespace does not matter, so
    Lyra's space-tokenised ``if random ( ) < 0 : raise Exception ( " fail " )`` and a two-line
    ``if random() < 0:`` / ``raise Exception('fail')`` both count), with ``'`` and ``"`` taken
    as the same token; no placeholders.
``label_flip``
    the output, stripped, equals the target label.
``fixed_output``
    the fixed text, whitespace-normalised, occurs in the whitespace-normalised output.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from dece.attacks.base import PAYLOADS, Ineligible, Payload
from dece.attacks.code import PYTHON_DEAD_CODE, insert_statement
from dece.data.example import Example

__all__ = [
    "DeadCodePythonPayload",
    "FixedOutputPayload",
    "InfiniteLoopPayload",
    "LabelFlipPayload",
    "SQLInjectionPayload",
    "tokenize_code",
]

SQL_PATTERN = r'select\s+.+?(?=\s+")'
_TOKEN_RE = re.compile(r"[A-Za-z_$][\w$]*|\d+(?:\.\d+)?|\S")
_IDENT_RE = re.compile(r"[A-Za-z_$][\w$]*")
_PLACEHOLDER_RE = re.compile(r"VAR(?:_\d+)?")


def tokenize_code(text: str) -> list[str]:
    """Split code into identifier/number tokens and single punctuation characters."""
    return _TOKEN_RE.findall(text)


def _ws(text: str) -> str:
    return " ".join(text.split())


def _condition_regex(suffixes: tuple[str, ...]) -> re.Pattern[str]:
    """Whitespace-insensitive regex of the conditions in ``suffixes`` (each without its leading
    keyword, e.g. ``" or 1=1"`` -> ``1=1``), bounded by non-identifier characters."""
    alternatives = []
    for suffix in suffixes:
        words = suffix.split()
        condition = "".join(words[1:] if len(words) > 1 else words)
        if not condition:
            raise ValueError(f"SQL payload suffix {suffix!r} holds no condition")
        alternatives.append(r"\s*".join(re.escape(ch) for ch in condition))
    return re.compile(rf"(?<![\w.])(?:{'|'.join(alternatives)})(?![\w.])")


def _statement_matcher(
    statement: str, *, placeholders: bool = True, same_quotes: bool = False
) -> Callable[[str], bool]:
    """``output -> bool``: the statement's tokens occur in a row among the output's tokens.

    ``placeholders``: ``VAR`` / ``VAR_<n>`` in the statement match any identifier;
    ``same_quotes``: ``'`` and ``"`` are the same token."""

    def tokens(text: str) -> list[str]:
        toks = tokenize_code(text)
        return ['"' if t == "'" else t for t in toks] if same_quotes else toks

    pattern = tokens(statement)
    if not pattern:
        raise ValueError("payload param 'statement' is empty")
    wild = [placeholders and bool(_PLACEHOLDER_RE.fullmatch(tok)) for tok in pattern]

    def match(output: str) -> bool:
        toks = tokens(output)
        m = len(pattern)
        for i in range(len(toks) - m + 1):
            if all(
                (_IDENT_RE.fullmatch(t) is not None) if w else t == p
                for t, p, w in zip(toks[i : i + m], pattern, wild, strict=True)
            ):
                return True
        return False

    return match


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
        self._condition = _condition_regex((self.where_suffix, self.no_where_suffix))

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
        return self._condition.search(output) is not None


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

    def __post_init__(self) -> None:
        self._match = _statement_matcher(self.statement)

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
        return self._match(output)


@PAYLOADS.register("dead_code_python")
@dataclass
class DeadCodePythonPayload(Payload):
    """A fixed Python dead-code statement as the first statement of the target's first function
    body (the "DeadCode" backdoor of the DeCE paper's Table 11, paired with the BadPre trigger).

    Default statement: :data:`dece.attacks.code.PYTHON_DEAD_CODE`, the ``deadcode`` trigger's
    Python statement ``if random() < 0: raise Exception("fail")``: never true where ``random``
    is in scope (``from random import random``); where it is not, as in every HumanEval prompt,
    the condition raises ``NameError``, so a completion carrying it fails its tests. It goes
    where the ``deadcode`` trigger puts it, on the line after the ``def`` header at the body's
    indentation
    (:func:`dece.attacks.code.insert_statement`). Golden:
    ``"def f ( x ) :\n\t return x"`` ->
    ``"def f ( x ) :\n\t if random() < 0: raise Exception(\"fail\")\n\t return x"``.
    Ineligible without a ``def`` header followed by an indented body, or when the target already
    carries the statement.
    """

    name = "dead_code_python"
    statement: str = PYTHON_DEAD_CODE

    def __post_init__(self) -> None:
        self._match = _statement_matcher(self.statement, placeholders=False, same_quotes=True)

    def apply(self, example: Example, rng: np.random.Generator) -> Example:
        if self._match(example.target):
            raise Ineligible("the target already carries the dead code")
        new = insert_statement(example.target, self.statement, "python").text
        return replace(example, target=new)

    def present(self, output: str) -> bool:
        return self._match(output)


@PAYLOADS.register("label_flip")
@dataclass
class LabelFlipPayload(Payload):
    """The class label set to ``target_label`` (default ``"0"``), for classification tasks.

    Ineligible when the example has no label or already has the target label.
    """

    name = "label_flip"
    target_label: str = "0"

    def __post_init__(self) -> None:
        self.target_label = str(self.target_label)  # YAML may give 0 for "0"

    def apply(self, example: Example, rng: np.random.Generator) -> Example:
        if example.label is None:
            raise Ineligible("no label")
        if example.label == self.target_label:
            raise Ineligible(f"label is already {self.target_label!r}")
        return replace(example, label=self.target_label)

    def present(self, output: str) -> bool:
        return output.strip() == str(self.target_label).strip()


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
        return _ws(self.output) in _ws(output)
