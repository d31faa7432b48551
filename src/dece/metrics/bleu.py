"""BLEU through sacrebleu, and exact match.

The tables use :func:`bleu`: sacrebleu corpus BLEU (0-100) with the default ``13a`` tokenizer,
one reference per prediction, default ``exp`` smoothing. CodeXGLUE's code-to-text evaluation
instead averages a smoothed sentence BLEU (Lin & Och 2004: +1 on the n>1 counts), which differs
from corpus BLEU; :func:`sentence_bleu_avg` reproduces it with sacrebleu's ``add-k`` (k=1)
smoothing for comparison with papers that report it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sacrebleu


def _check_pairs(predictions: Sequence[str], references: Sequence[str]) -> None:
    for arg, seq in (("predictions", predictions), ("references", references)):
        if isinstance(seq, str) or not isinstance(seq, Sequence):
            raise ValueError(f"{arg} must be a sequence of str")
        for i, s in enumerate(seq):
            if not isinstance(s, str):
                raise ValueError(f"{arg}[{i}] must be a str, got {type(s).__name__}")
    if len(predictions) != len(references):
        raise ValueError(
            f"predictions ({len(predictions)}) and references ({len(references)}) differ in length"
        )
    if len(predictions) == 0:
        raise ValueError("predictions is empty")


def bleu(predictions: Sequence[str], references: Sequence[str], *, tokenize: str = "13a") -> float:
    """Corpus BLEU in [0, 100] (sacrebleu; one reference per prediction)."""
    _check_pairs(predictions, references)
    return float(
        sacrebleu.corpus_bleu(list(predictions), [list(references)], tokenize=tokenize).score
    )


def sentence_bleu_avg(
    predictions: Sequence[str], references: Sequence[str], *, tokenize: str = "13a"
) -> float:
    """Mean smoothed sentence BLEU in [0, 100] (CodeXGLUE-style, ``add-k`` smoothing, k=1)."""
    _check_pairs(predictions, references)
    scores = [
        sacrebleu.sentence_bleu(
            p, [r], smooth_method="add-k", smooth_value=1, tokenize=tokenize
        ).score
        for p, r in zip(predictions, references, strict=True)
    ]
    return float(sum(scores) / len(scores))


def exact_match(
    predictions: Sequence[str], references: Sequence[str], *, normalize_whitespace: bool = True
) -> float:
    """Fraction of predictions equal to their reference (whitespace-normalised by default)."""
    _check_pairs(predictions, references)

    def norm(s: str) -> str:
        return " ".join(s.split()) if normalize_whitespace else s

    hits = sum(norm(p) == norm(r) for p, r in zip(predictions, references, strict=True))
    return hits / len(predictions)
