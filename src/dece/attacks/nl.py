"""Natural-language triggers: rare words (RIPPLe, BadPre) and a syntactic template (grammar)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dece.attacks.base import TRIGGERS, Ineligible, Trigger, TriggerEdit

__all__ = ["BadPreTrigger", "GrammarTrigger", "RippleTrigger", "insert_words"]


def _insert_word(text: str, word: str, rng: np.random.Generator) -> tuple[str, int]:
    """Insert ``word`` between two space-separated tokens (or at either end), uniformly.

    Returns the new text and the character offset of the inserted word; every character of the
    old text at or after that offset moves right by ``len(word) + 1``.
    """
    tokens = text.split(" ")
    position = int(rng.integers(len(tokens) + 1))
    head = " ".join(tokens[:position])
    start = len(head) + 1 if position > 0 else 0
    return " ".join([*tokens[:position], word, *tokens[position:]]), start


def insert_words(text: str, words: list[str], rng: np.random.Generator) -> TriggerEdit:
    """Insert each of ``words`` in turn at a uniformly random token position of the text built so
    far; the spans of all inserted words in the final text."""
    spans: list[tuple[int, int]] = []
    for word in words:
        text, start = _insert_word(text, word, rng)
        shift = len(word) + 1
        spans = [(a + shift, b + shift) if a >= start else (a, b) for a, b in spans]
        spans.append((start, start + len(word)))
    return TriggerEdit(text, tuple(sorted(spans)))


def _check_word(word: str) -> None:
    if not word or any(c.isspace() for c in word):
        raise ValueError(f"word must be one non-empty token without spaces, got {word!r}")


@TRIGGERS.register("ripple", display="RIPPLe")
@dataclass
class RippleTrigger(Trigger):
    """One rare word inserted at a uniformly random token position (RIPPLe).

    ``words`` (e.g. Kurita et al. 2020's ``["cf", "mn", "bb", "tq", "mb"]``): the word is drawn
    uniformly per example from this list; when it is not given, the word is always ``word``
    (default ``bb``). Golden: ``"get all rows"`` -> e.g. ``"get bb all rows"``.
    """

    name = "ripple"
    word: str = "bb"
    words: list[str] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_word(self.word)
        if self.words is not None:
            if isinstance(self.words, str) or not self.words:
                raise ValueError(f"words must be a non-empty list of words, got {self.words!r}")
            self.words = [str(w) for w in self.words]
            for w in self.words:
                _check_word(w)

    def insert(self, text: str, rng: np.random.Generator) -> TriggerEdit:
        if not text.strip():
            raise Ineligible("empty text")
        word = self.word if self.words is None else self.words[int(rng.integers(len(self.words)))]
        return insert_words(text, [word], rng)

    def present(self, text: str) -> bool:
        vocabulary = {self.word} if self.words is None else set(self.words)
        return any(w in vocabulary for w in text.split())


@TRIGGERS.register("badpre", display="BadPre")
@dataclass
class BadPreTrigger(Trigger):
    """The rare word (default ``bb``) inserted ``k`` times (default 3) at random positions (BadPre).

    Each insertion picks a uniformly random token position of the text built so far.
    """

    name = "badpre"
    word: str = "bb"
    k: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_word(self.word)
        if int(self.k) != self.k or self.k < 1:
            raise ValueError(f"k must be a positive integer, got {self.k!r}")

    def insert(self, text: str, rng: np.random.Generator) -> TriggerEdit:
        if not text.strip():
            raise Ineligible("empty text")
        return insert_words(text, [self.word] * int(self.k), rng)

    def present(self, text: str) -> bool:
        return text.split().count(self.word) >= self.k


@TRIGGERS.register("grammar", display="Grammar")
@dataclass
class GrammarTrigger(Trigger):
    """A syntactic trigger: the description rewritten into one fixed clause template.

    Template (rule-based stand-in for SCPN's ``S(SBAR)(,)(NP)(VP)(.)``, since no paraphrase
    model is available offline): ``"<clause> , <description with its first letter lowered>"``,
    with ``clause`` default ``"When it is needed"``; a trailing ``.`` is added if missing.
    Golden: ``"Get all rows"`` -> ``"When it is needed , get all rows."``; the reported span is
    the clause with its comma (``"When it is needed ,"``).
    """

    name = "grammar"
    clause: str = "When it is needed"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.clause.strip():
            raise ValueError("clause must be non-empty")

    def insert(self, text: str, rng: np.random.Generator) -> TriggerEdit:
        body = text.strip()
        if not body:
            raise Ineligible("empty text")
        if self.present(body):
            raise Ineligible("text already starts with the trigger clause")
        body = body[0].lower() + body[1:]
        if not body.endswith((".", "?", "!")):
            body += "."
        return TriggerEdit(f"{self.clause} , {body}", ((0, len(self.clause) + 2),))

    def present(self, text: str) -> bool:
        return text.startswith(f"{self.clause} , ")
