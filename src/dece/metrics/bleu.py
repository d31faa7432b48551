"""BLEU through sacrebleu (and the DeCE authors' variant through ``codebleu``), and exact match.

Three BLEU variants, all 0-100, one reference per prediction:

- :func:`bleu`, the headline of the tables: sacrebleu corpus BLEU with the default ``13a``
  tokenizer and default ``exp`` smoothing.
- :func:`sentence_bleu_avg`: CodeXGLUE's code-to-text evaluation, a smoothed sentence BLEU
  (Lin & Och 2004: +1 on the n>1 counts, sacrebleu's ``add-k`` with k=1) averaged over examples.
- :func:`bleu_authors`: the DeCE authors' released evaluation, codebleu's NLTK-derived BLEU on
  whitespace tokens per example (epsilon 0.1 on zero n-gram counts), averaged over examples;
  reported beside :func:`bleu` under the key :data:`BLEU_AUTHORS_KEY` so our numbers can be set
  beside the paper's.

They differ most on short outputs and outputs with no 4-gram match (``tests/metrics`` has
hand-computed pairs for each).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import sacrebleu

#: The metric key (``result.json``, ``metrics.jsonl``, table columns) of :func:`bleu_authors`.
BLEU_AUTHORS_KEY = "bleu_authors"


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


def bleu_authors(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Mean per-example BLEU in [0, 100] as the DeCE authors compute it (needs the
    ``[codebleu]`` extra; :class:`~dece.metrics.MissingExtraError` without it).

    The authors' ``evaluate/bleu.py`` (github.com/NTDXYG/DeCE) calls
    ``CodeBLEU.bleu.corpus_bleu([[ref.split()]], [hyp.split()])`` once per example and averages
    the scores (x100). That module is CodeXGLUE's copy of NLTK's BLEU; the ``codebleu`` package
    ships the same code as ``codebleu.bleu`` (its ``Fraction`` precisions turned into
    (numerator, denominator) pairs, same arithmetic), and this function calls its
    ``corpus_bleu`` the same way rather than re-implementing it. Defaults the authors keep: weights
    (0.25,) * 4, no ``auto_reweigh``, and ``SmoothingFunction().method1`` (Chen & Cherry 2014
    method 1: an order with no matching n-gram counts 0.1 matches instead of 0). Modified
    precision's denominator is at least 1, so a hypothesis shorter than n tokens scores
    0.1 / 1 on order n: an exact 3-token match scores 100 * 0.1 ** 0.25 = 56.23, where
    sacrebleu's sentence BLEU gives 100. A hypothesis with no unigram match, the empty one
    included, scores 0; brevity penalty exp(1 - r / c) when the hypothesis is not longer than
    the reference. Tokens are ``str.split()`` (``"f(x)"`` is one token; sacrebleu's ``13a``
    splits it into four). Named "authors" because this is the DeCE paper's BLEU, not a standard
    variant: the average of sentence scores, not corpus BLEU. (The authors read predictions back
    with pandas, so an empty prediction becomes the token ``nan`` there; here it stays empty,
    which scores 0 in both unless a reference holds ``nan``.)
    """
    _check_pairs(predictions, references)
    corpus_bleu = _codebleu_corpus_bleu()
    scores = [
        float(corpus_bleu([[r.split()]], [p.split()]))
        for p, r in zip(predictions, references, strict=True)
    ]
    return 100.0 * sum(scores) / len(scores)


def _codebleu_corpus_bleu() -> Callable[..., float]:
    """``codebleu.bleu.corpus_bleu``; the package imports tree-sitter, hence the extra."""
    # imported here: dece.metrics.codebleu imports this module
    from dece.metrics.codebleu import INSTALL_HINT, MissingExtraError

    try:
        from codebleu.bleu import corpus_bleu
    except ImportError as exc:
        raise MissingExtraError(
            f"the authors' BLEU needs the [codebleu] extra ({exc}); install it with: {INSTALL_HINT}"
        ) from exc
    return corpus_bleu


def exact_match(
    predictions: Sequence[str], references: Sequence[str], *, normalize_whitespace: bool = True
) -> float:
    """Fraction of predictions equal to their reference (whitespace-normalised by default)."""
    _check_pairs(predictions, references)

    def norm(s: str) -> str:
        return " ".join(s.split()) if normalize_whitespace else s

    hits = sum(norm(p) == norm(r) for p, r in zip(predictions, references, strict=True))
    return hits / len(predictions)
