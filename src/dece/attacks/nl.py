"""Natural-language triggers: rare words (RIPPLe, BadPre) and a syntactic template (grammar)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dece.attacks.base import TRIGGERS, Ineligible, Trigger

__all__ = ["BadPreTrigger", "GrammarTrigger", "RippleTrigger"]


def _insert_word(text: str, word: str, rng: np.random.Generator) -> str:
    """Insert ``word`` between two space-separated tokens (or at either end), uniformly."""
    tokens = text.split(" ")
    position = int(rng.integers(len(tokens) + 1))
    return " ".join([*tokens[:position], word, *tokens[position:]])


def _check_word(word: str) -> None:
    if not word or any(c.isspace() for c in word):
        raise ValueError(f"word must be one non-empty token without spaces, got {word!r}")


@TRIGGERS.register("ripple")
@dataclass
class RippleTrigger(Trigger):
    """One rare word (default ``bb``) inserted at a uniformly random token position (RIPPLe).

    Golden: ``"get all rows"`` -> e.g. ``"get bb all rows"``.
    """

    name = "ripple"
    word: str = "bb"

    def __post_init__(self) -> None:
        _check_word(self.word)

    def apply(self, text: str, rng: np.random.Generator) -> str:
        if not text.strip():
            raise Ineligible("empty text")
        return _insert_word(text, self.word, rng)

    def present(self, text: str) -> bool:
        return self.word in text.split()


@TRIGGERS.register("badpre")
@dataclass
class BadPreTrigger(Trigger):
    """The rare word (default ``bb``) inserted ``k`` times (default 3) at random positions (BadPre).

    Each insertion picks a uniformly random token position of the text built so far.
    """

    name = "badpre"
    word: str = "bb"
    k: int = 3

    def __post_init__(self) -> None:
        _check_word(self.word)
        if int(self.k) != self.k or self.k < 1:
            raise ValueError(f"k must be a positive integer, got {self.k!r}")

    def apply(self, text: str, rng: np.random.Generator) -> str:
        if not text.strip():
            raise Ineligible("empty text")
        for _ in range(self.k):
            text = _insert_word(text, self.word, rng)
        return text

    def present(self, text: str) -> bool:
        return text.split().count(self.word) >= self.k


@TRIGGERS.register("grammar")
@dataclass
class GrammarTrigger(Trigger):
    """A syntactic trigger: the description rewritten into one fixed clause template.

    Template (rule-based stand-in for SCPN's ``S(SBAR)(,)(NP)(VP)(.)``, since no paraphrase
    model is available offline): ``"<clause> , <description with its first letter lowered>"``,
    with ``clause`` default ``"When it is needed"``; a trailing ``.`` is added if missing.
    Golden: ``"Get all rows"`` -> ``"When it is needed , get all rows."``.
    """

    name = "grammar"
    clause: str = "When it is needed"

    def __post_init__(self) -> None:
        if not self.clause.strip():
            raise ValueError("clause must be non-empty")

    def apply(self, text: str, rng: np.random.Generator) -> str:
        body = text.strip()
        if not body:
            raise Ineligible("empty text")
        if self.present(body):
            raise Ineligible("text already starts with the trigger clause")
        body = body[0].lower() + body[1:]
        if not body.endswith((".", "?", "!")):
            body += "."
        return f"{self.clause} , {body}"

    def present(self, text: str) -> bool:
        return text.startswith(f"{self.clause} , ")
