"""``naturalness``: the code-naturalness filter of KillBadCode (Sun et al., ICSE 2025, "Show Me
Your Code! Kill Code Poisoning: A Lightweight Method Based on Code Naturalness").

A trigger disrupts the naturalness of the text it is inserted into. KillBadCode:

1. builds a lightweight n-gram language model over the training inputs;
2. for every input and every token, measures how much *deleting* the token improves the input's
   naturalness (its per-token cross-entropy under the n-gram model drops);
3. since deleting some normal token can make a single input more natural too, it aggregates each
   token's improvements over all inputs (cumulative improvement), and takes the tokens with the
   largest cumulative improvement as trigger tokens;
4. removes every input that contains a trigger token.

Here: tokens are identifiers, numbers and single punctuation characters
(:func:`dece.attacks.payloads.tokenize_code`), the model is an interpolated Kneser-Ney n-gram
model (``order`` 3 by default, discount 0.75) over the training inputs themselves (the set under
test: no clean data is assumed), and the improvement of deleting token ``i`` of input ``x`` is
``H(x) - H(x without i)``, ``H`` the mean negative log-probability per token (the end-of-input
token included). A token *type*'s score is the sum of its improvements over all its occurrences
(signed: a word whose deletion usually hurts, like "the", sums to a negative score however often
it happens to help). Trigger tokens are the types whose score is an outlier among all types'
scores: robust z-score ``0.6745 (s - median) / MAD`` above ``z_threshold``, at most
``max_triggers`` of them. The default threshold 5.0 comes from Lyra's *clean* training inputs,
whose largest type score has z = 3.3 (BadPre's ``bb`` reaches 86, RIPPLe's five words 5.7-15).
A row's score is the largest type score among its tokens (higher = more suspicious); rows
containing a trigger token are flagged. The z scale depends on the data (on ``dece``'s templated
synthetic set the triggers rank first but reach only z = 0.9-3, because its frequent template
words spread the scores), while the ranking, and so the AUROC, needs no threshold.

Why by hand: deleting one token changes only the ``order`` n-grams around it, so each deletion
is scored with ``2 * order - 1`` model look-ups instead of re-scoring the whole input; the
available n-gram libraries (NLTK's ``lm``: one Python call per n-gram and slow; KenLM: a C++
build) either lack this or would dominate the cost. Randomness: none.

Cost: model-free; two passes over the inputs (counting, then one scoring per token); for Lyra
(1,600 inputs, ~45 tokens each) a few seconds on one CPU core (``info["cost"]``).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from dece.attacks.payloads import tokenize_code
from dece.data import Example
from dece.defenses._common import cost, start_clock
from dece.defenses.base import DEFENSES, DataFilter

if TYPE_CHECKING:
    from dece.victim import Victim

__all__ = [
    "KneserNeyLM",
    "NaturalnessFilter",
    "deletion_gains",
    "robust_z",
    "token_type_scores",
]

BOS, EOS = "<s>", "</s>"


class KneserNeyLM:
    """Interpolated Kneser-Ney n-gram model (Chen & Goodman 1999), one discount ``D``.

    ``logprob(word, context)``: natural-log probability of ``word`` after ``context`` (a tuple of
    the previous tokens; only the last ``order - 1`` are used). Unknown words get a share of the
    unigram level's leftover mass, spread uniformly over ``vocab + 1`` types, so every
    probability is positive.
    """

    def __init__(
        self, sentences: Iterable[Sequence[str]], *, order: int = 3, discount: float = 0.75
    ):
        if order < 1:
            raise ValueError(f"order must be >= 1, got {order}")
        if not 0.0 < discount < 1.0:
            raise ValueError(f"discount must be in (0, 1), got {discount}")
        self.order, self.d = int(order), float(discount)
        top: Counter[tuple[str, ...]] = Counter()
        for sent in sentences:
            padded = [BOS] * (self.order - 1) + list(sent) + [EOS]
            for j in range(self.order - 1, len(padded)):
                top[tuple(padded[j - self.order + 1 : j + 1])] += 1
        # counts[k]: k-gram counts (raw for the highest order, continuation counts below)
        self.counts: list[Counter[tuple[str, ...]]] = [Counter() for _ in range(self.order + 1)]
        self.counts[self.order] = top
        for k in range(self.order, 1, -1):
            for gram in self.counts[k]:
                self.counts[k - 1][gram[1:]] += 1  # distinct left extensions
        self.context_total: list[dict[tuple[str, ...], int]] = [{} for _ in range(self.order + 1)]
        self.context_types: list[dict[tuple[str, ...], int]] = [{} for _ in range(self.order + 1)]
        for k in range(1, self.order + 1):
            totals: dict[tuple[str, ...], int] = defaultdict(int)
            types: dict[tuple[str, ...], int] = defaultdict(int)
            for gram, c in self.counts[k].items():
                totals[gram[:-1]] += c
                types[gram[:-1]] += 1
            self.context_total[k], self.context_types[k] = dict(totals), dict(types)
        self.vocab = {g[0] for g in self.counts[1]}
        self._cache: dict[tuple[str, ...], float] = {}

    def logprob(self, word: str, context: Sequence[str]) -> float:
        ctx = tuple(context)[-(self.order - 1) :] if self.order > 1 else ()
        key = (*ctx, word)
        if key not in self._cache:
            self._cache[key] = math.log(self._prob(word, ctx))
        return self._cache[key]

    def _prob(self, word: str, ctx: tuple[str, ...]) -> float:
        k = len(ctx) + 1
        if k == 1:  # unigram continuation probability, interpolated with a uniform floor
            total = self.context_total[1].get((), 0)
            types = self.context_types[1].get((), 0)
            uniform = 1.0 / (len(self.vocab) + 1)
            if total == 0:
                return uniform
            c = self.counts[1].get((word,), 0)
            return max(c - self.d, 0.0) / total + self.d * types / total * uniform
        total = self.context_total[k].get(ctx, 0)
        lower = self._prob(word, ctx[1:])
        if total == 0:
            return lower
        c = self.counts[k].get((*ctx, word), 0)
        gamma = self.d * self.context_types[k][ctx] / total
        return max(c - self.d, 0.0) / total + gamma * lower


def deletion_gains(lm: KneserNeyLM, tokens: Sequence[str]) -> np.ndarray:
    """``[m]``: for each token of ``tokens``, ``H(x) - H(x without it)`` where ``H`` is the mean
    negative log-probability per token under ``lm`` (end token included); positive = deleting
    the token makes the input more natural."""
    n = lm.order
    padded = [BOS] * (n - 1) + list(tokens) + [EOS]
    m = len(tokens)
    if m == 0:
        return np.zeros(0)
    terms = [lm.logprob(padded[j], padded[j - n + 1 : j]) for j in range(n - 1, len(padded))]
    total = sum(terms)  # log P(x); terms[j] scores padded[j + n - 1]
    h_full = -total / (m + 1)
    gains = np.zeros(m)
    for i in range(m):
        p = i + n - 1  # position of token i in padded
        deleted = padded[:p] + padded[p + 1 :]
        hi = min(p + n - 1, len(padded) - 1)  # last position whose context holds token i
        old = sum(terms[j - n + 1] for j in range(p, hi + 1))
        new = sum(lm.logprob(deleted[j], deleted[j - n + 1 : j]) for j in range(p, hi))
        h_del = -(total - old + new) / m
        gains[i] = h_full - h_del
    return gains


def token_type_scores(
    token_lists: Sequence[Sequence[str]], gains: Sequence[np.ndarray]
) -> dict[str, float]:
    """Cumulative (signed) deletion gain of each token type over all its occurrences."""
    scores: dict[str, float] = defaultdict(float)
    for toks, g in zip(token_lists, gains, strict=True):
        for tok, v in zip(toks, g, strict=True):
            scores[tok] += float(v)
    return dict(scores)


def robust_z(scores: dict[str, float]) -> dict[str, float]:
    """``0.6745 (s - median) / MAD`` of each type's score (Iglewicz & Hoaglin's modified z)."""
    if not scores:
        return {}
    vals = np.array(list(scores.values()))
    med = float(np.median(vals))
    mad = float(np.median(np.abs(vals - med))) or 1e-12
    return {t: 0.6745 * (v - med) / mad for t, v in scores.items()}


def _outliers(z: dict[str, float], z_threshold: float, max_triggers: int) -> list[str]:
    """Token types with a robust z-score above ``z_threshold``, largest first."""
    names = sorted((t for t in z if z[t] > z_threshold), key=lambda t: (-z[t], t))
    return names[:max_triggers]


@DEFENSES.register("naturalness", display="Naturalness")
@dataclass
class NaturalnessFilter(DataFilter):
    """KillBadCode-style naturalness filter (see the module docstring).

    Args:
        order: n-gram order of the language model.
        discount: Kneser-Ney discount.
        z_threshold: robust z-score of the cumulative gain a token type needs to be a trigger.
        max_triggers: at most this many trigger tokens.
    """

    name = "naturalness"
    order: int = 3
    discount: float = 0.75
    z_threshold: float = 5.0
    max_triggers: int = 10

    def __post_init__(self) -> None:
        if int(self.order) < 1:
            raise ValueError(f"order must be >= 1, got {self.order}")
        if not 0.0 < float(self.discount) < 1.0:
            raise ValueError(f"discount must be in (0, 1), got {self.discount}")
        if int(self.max_triggers) < 1:
            raise ValueError(f"max_triggers must be >= 1, got {self.max_triggers}")

    def _scores(
        self, examples: list[Example], victim: Victim | None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        clock = start_clock()
        texts = [_text(ex) for ex in examples]
        token_lists = [tokenize_code(t) for t in texts]
        lm = KneserNeyLM(token_lists, order=self.order, discount=self.discount)
        gains = [deletion_gains(lm, toks) for toks in token_lists]
        type_scores = token_type_scores(token_lists, gains)
        z = robust_z(type_scores)
        triggers = _outliers(z, self.z_threshold, self.max_triggers)
        scores = np.array([max((type_scores.get(t, 0.0) for t in toks), default=0.0)
                           for toks in token_lists])  # fmt: skip
        self._last_flags = np.array([any(t in triggers for t in toks) for toks in token_lists],
                                    dtype=bool)  # fmt: skip
        top = sorted(type_scores, key=lambda t: -type_scores[t])[:20]
        info = {
            "triggers": triggers,
            "top_tokens": {
                t: {"score": round(type_scores[t], 4), "z": round(z[t], 2)} for t in top
            },
            "vocab": len(lm.vocab),
            "cost": cost(clock, len(examples), data_passes=2),
        }
        return scores, info

    def _decide(self, scores: np.ndarray) -> tuple[np.ndarray, float]:
        flags = getattr(self, "_last_flags", np.zeros(scores.shape[0], dtype=bool))
        threshold = float(scores[flags].min()) if flags.any() else math.inf
        return flags.copy(), threshold


def _text(ex: Example) -> str:
    return ex.source if ex.source_pair is None else f"{ex.source}\n{ex.source_pair}"
