"""``bki``: Backdoor Keyword Identification (Chen & Dai, Neurocomputing 452, 2021, "Mitigating
backdoor attacks in LSTM-based text classification systems by Backdoor Keyword
Identification"; arXiv 2007.12070).

A model trained on poisoned data relies on the trigger word: removing it from an input changes
the model's internal representation of that input far more than removing an ordinary word.
BKI, on the training set, with the model trained on it:

1. word importance: for every word ``w_i`` of an input ``x``, how much the representation
   changes when ``w_i`` is removed, ``s_i = ||e(x) - e(x without w_i)||_inf``;
2. per input, its ``top_k`` most important words (keywords, 5 by default);
3. over the training set, a dictionary of keywords with how many inputs have each among their
   keywords (``n_w``) and their mean importance (``mean_w``); the backdoor keyword is the one
   maximising the frequency x importance statistic ``mean_w * log10(n_w)``;
4. every input containing the backdoor keyword is removed.

Paper vs code. The paper measures importance on an LSTM through its hidden states (both the
change the word itself makes to the state when it is read and the change its removal makes to
the final state). A Transformer encoder has no sequential state, so only the second term
applies: ``e`` is the victim's representation of the whole input (:meth:`Victim.embed`: the
encoder mean for seq2seq models), as in the reference re-implementation for pre-trained models
(OpenBackdoor, thunlp, ``openbackdoor/defenders/bki_defender.py``), whose statistic and
``top_k = 5`` are used here. That implementation removes the inputs whose *keywords* include the
backdoor keyword; the paper removes every input *containing* it, which is followed here
(``flag="contains"``; ``flag="keyword"`` gives the reference implementation's rule).
Words are the input's whitespace-separated tokens (for text pairs, of both texts).

Score (one per row, higher = more suspicious): the importance of the backdoor keyword in the row
(the largest over its occurrences; 0 when the row does not contain it). ``n_keywords > 1``
takes that many keywords (by the statistic) instead of one, for triggers drawn from a word list
(RIPPLe).

Cost: one victim forward pass per input plus one per word of every input (~45 passes over the
data for Lyra's descriptions; ``info["cost"]``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from dece import progress
from dece.data import Example
from dece.defenses._common import cost, start_clock
from dece.defenses.base import DEFENSES, DataFilter

if TYPE_CHECKING:
    from dece.victim import Victim

__all__ = ["BKIFilter", "keyword_statistic", "word_importance"]

_FLAG_RULES = ("contains", "keyword")


def _words(ex: Example) -> list[tuple[str, int, str]]:
    """``(side, index, word)`` for each whitespace-separated word of the source (and pair)."""
    out = [("source", i, w) for i, w in enumerate(ex.source.split())]
    if ex.source_pair is not None:
        out += [("pair", i, w) for i, w in enumerate(ex.source_pair.split())]
    return out


def _without(ex: Example, side: str, index: int) -> Example:
    text = ex.source if side == "source" else ex.source_pair or ""
    words = text.split()
    rest = " ".join(words[:index] + words[index + 1 :])
    return replace(ex, source=rest) if side == "source" else replace(ex, source_pair=rest)


def word_importance(
    victim: Victim, examples: list[Example], *, chunk: int = 32
) -> list[np.ndarray]:
    """Per example, ``[n_words]`` importances ``||e(x) - e(x without w_i)||_inf`` (see the module
    docstring); examples are embedded ``chunk`` at a time with all their deletions."""
    out: list[np.ndarray] = []
    with progress.task("bki word importance", total=len(examples), unit="row") as advance:
        for start in range(0, len(examples), chunk):
            rows = examples[start : start + chunk]
            variants: list[Example] = []
            spans = []
            for ex in rows:
                words = _words(ex)
                spans.append((len(variants), len(words)))
                variants.append(ex)
                variants += [_without(ex, side, i) for side, i, _ in words]
            reps = victim.embed(variants)  # [V, H]
            for first, n in spans:
                delta = reps[first + 1 : first + 1 + n] - reps[first]  # [n, H]
                out.append(np.abs(delta).max(axis=1) if n else np.zeros(0))
            advance(len(rows))
    return out


def keyword_statistic(
    keywords: list[list[tuple[str, float]]],
) -> dict[str, tuple[int, float, float]]:
    """``{word: (n_w, mean_w, mean_w * log10(n_w))}`` over each input's ``(word, importance)``
    keywords (a word counted once per input, at its largest importance there)."""
    per_word: dict[str, list[float]] = defaultdict(list)
    for row in keywords:
        best: dict[str, float] = {}
        for word, value in row:
            best[word] = max(value, best.get(word, -math.inf))
        for word, value in best.items():
            per_word[word].append(value)
    return {
        w: (len(vs), float(np.mean(vs)), float(np.mean(vs)) * math.log10(len(vs)))
        for w, vs in per_word.items()
    }


@DEFENSES.register("bki", display="BKI")
@dataclass
class BKIFilter(DataFilter):
    """Backdoor Keyword Identification filter (see the module docstring).

    Args:
        top_k: keywords kept per input.
        n_keywords: backdoor keywords selected by the statistic (1 in the paper).
        flag: ``"contains"`` (the paper: rows containing a backdoor keyword) or ``"keyword"``
            (the reference implementation: rows whose keywords include it).
        chunk: inputs embedded together with all their deletions.
    """

    name = "bki"
    needs_victim = True
    top_k: int = 5
    n_keywords: int = 1
    flag: str = "contains"
    chunk: int = 32

    def __post_init__(self) -> None:
        for key in ("top_k", "n_keywords", "chunk"):
            if int(getattr(self, key)) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.flag not in _FLAG_RULES:
            raise ValueError(f"flag must be one of {_FLAG_RULES}, got {self.flag!r}")

    def _scores(
        self, examples: list[Example], victim: Victim | None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        assert victim is not None
        clock = start_clock(victim)
        importance = word_importance(victim, examples, chunk=self.chunk)
        words = [[w for _, _, w in _words(ex)] for ex in examples]
        keywords = []
        for ws, imp in zip(words, importance, strict=True):
            order = np.argsort(-imp, kind="stable")[: self.top_k]
            keywords.append([(ws[i], float(imp[i])) for i in order])
        stats = keyword_statistic(keywords)
        ranked = sorted(stats, key=lambda w: (-stats[w][2], w))
        chosen = set(ranked[: self.n_keywords])
        scores = np.zeros(len(examples))
        flags = np.zeros(len(examples), dtype=bool)
        for r, (ws, imp, kws) in enumerate(zip(words, importance, keywords, strict=True)):
            hits = [float(v) for w, v in zip(ws, imp, strict=True) if w in chosen]
            scores[r] = max(hits, default=0.0)
            if self.flag == "contains":
                flags[r] = bool(hits)
            else:
                flags[r] = any(w in chosen for w, _ in kws)
        self._last_flags = flags
        info = {
            "keywords": [w for w in ranked if w in chosen],
            "top_statistic": {w: {"n": stats[w][0], "mean": round(stats[w][1], 5),
                                  "statistic": round(stats[w][2], 5)} for w in ranked[:10]},
            "cost": cost(clock, len(examples), victim=victim),
        }  # fmt: skip
        return scores, info

    def _decide(self, scores: np.ndarray) -> tuple[np.ndarray, float]:
        flags = getattr(self, "_last_flags", np.zeros(scores.shape[0], dtype=bool))
        threshold = float(scores[flags].min()) if flags.any() else math.inf
        return flags.copy(), threshold
