"""CodeBLEU through the ``codebleu`` package (needs the ``[codebleu]`` extra).

``codebleu==0.7.0`` only works with ``tree-sitter==0.22.3`` and the 0.21-era grammar wheels
(``tree-sitter-python==0.21.0``, ``tree-sitter-java==0.21.0``, ``tree-sitter-c==0.21.4``), which
the extra pins. Weights are the standard (0.25, 0.25, 0.25, 0.25) over n-gram match, weighted
n-gram match, syntax (AST) match and data-flow match; tokenisation is whitespace splitting.
"""

from __future__ import annotations

from collections.abc import Sequence

from dece.metrics.bleu import _check_pairs

LANGUAGES = ("python", "java", "c")
INSTALL_HINT = "pip install 'dece[codebleu]'"


class MissingExtraError(ImportError):
    """An optional dependency is missing; the message names the install command."""


def _calc_codebleu():
    try:
        import tree_sitter  # noqa: F401
        from codebleu import calc_codebleu
    except ImportError as exc:
        raise MissingExtraError(
            f"codebleu needs the [codebleu] extra ({exc}); install it with: {INSTALL_HINT}"
        ) from exc
    return calc_codebleu


def codebleu_components(
    predictions: Sequence[str], references: Sequence[str], lang: str = "python"
) -> dict[str, float]:
    """All CodeBLEU components in [0, 1]: codebleu, ngram_match_score, weighted_ngram_match_score,
    syntax_match_score, dataflow_match_score."""
    if lang not in LANGUAGES:
        raise ValueError(f"lang must be one of {LANGUAGES}, got {lang!r}")
    _check_pairs(predictions, references)
    calc = _calc_codebleu()
    try:
        scores = calc(list(references), list(predictions), lang=lang)
    except (ImportError, AttributeError, TypeError) as exc:
        # wrong tree-sitter / grammar versions surface here
        raise MissingExtraError(
            f"codebleu failed to load the {lang} grammar ({exc}); the pinned versions are "
            f"installed with: {INSTALL_HINT}"
        ) from exc
    return {k: float(v) for k, v in scores.items()}


def codebleu(predictions: Sequence[str], references: Sequence[str], lang: str = "python") -> float:
    """CodeBLEU in [0, 1] (one reference per prediction). Raises MissingExtraError without the
    extra."""
    return codebleu_components(predictions, references, lang)["codebleu"]
