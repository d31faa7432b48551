"""``keyword``: flag training rows whose input contains given tokens.

A filter for users who already know (or suspect) a trigger word, and the oracle of the filter
path: with the trigger word of a BadPre/RIPPLe attack it reaches recall 1.0 and precision 1.0
whenever the clean data never contains that word. The score of a row is the number of
occurrences of the tokens among the whitespace-separated words of its source (and its second
text, for pairs); a row is flagged when the score is positive.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from dece.data import Example
from dece.defenses.base import DEFENSES, DataFilter

if TYPE_CHECKING:
    from dece.victim import Victim

__all__ = ["KeywordFilter"]


@DEFENSES.register("keyword", display="Keyword")
@dataclass
class KeywordFilter(DataFilter):
    """Flags rows containing any of ``tokens`` as a whitespace-separated word."""

    name = "keyword"
    tokens: list[str] = field(default_factory=lambda: ["bb"])

    def __post_init__(self) -> None:
        if isinstance(self.tokens, str):
            self.tokens = [self.tokens]
        if not isinstance(self.tokens, list | tuple) or not all(
            isinstance(t, str | int | float) and not isinstance(t, bool) for t in self.tokens
        ):
            raise ValueError(
                f"keyword: tokens must be a word or a list of words (e.g. tokens=[bb]), got "
                f"{self.tokens!r}"
            )
        self.tokens = [str(t) for t in self.tokens]
        if not self.tokens or any(not t or any(c.isspace() for c in t) for t in self.tokens):
            raise ValueError(f"tokens must be non-empty words without spaces, got {self.tokens!r}")

    def _scores(
        self, examples: list[Example], victim: Victim | None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        wanted = set(self.tokens)

        def count(text: str | None) -> int:
            return 0 if text is None else sum(w in wanted for w in text.split())

        scores = [count(ex.source) + count(ex.source_pair) for ex in examples]
        return np.asarray(scores, dtype=float), {"tokens": list(self.tokens)}
