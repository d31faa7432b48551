"""Accuracy, precision, recall and F1 for classification outputs (scikit-learn, fractions)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from sklearn import metrics as skm


def _check(y_true: Sequence[Hashable], y_pred: Sequence[Hashable]) -> None:
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true ({len(y_true)}) and y_pred ({len(y_pred)}) differ in length")
    if len(y_true) == 0:
        raise ValueError("y_true is empty")


def accuracy(y_true: Sequence[Hashable], y_pred: Sequence[Hashable]) -> float:
    """Fraction of predictions equal to the true label."""
    _check(y_true, y_pred)
    return float(skm.accuracy_score(list(y_true), list(y_pred)))


def classification_scores(
    y_true: Sequence[Hashable],
    y_pred: Sequence[Hashable],
    *,
    average: str = "binary",
    pos_label: Hashable = 1,
) -> dict[str, float]:
    """``{"accuracy", "precision", "recall", "f1"}``, each in [0, 1].

    ``average`` as in scikit-learn (``"binary"`` uses ``pos_label``; ``"macro"``, ``"micro"``,
    ``"weighted"`` for several classes); an undefined precision/recall (no predicted/true
    positives) counts as 0.
    """
    _check(y_true, y_pred)
    if average not in ("binary", "macro", "micro", "weighted"):
        raise ValueError(f"average must be binary, macro, micro or weighted, got {average!r}")
    yt, yp = list(y_true), list(y_pred)
    if average == "binary" and pos_label not in set(yt) | set(yp):
        raise ValueError(f"pos_label {pos_label!r} occurs in neither y_true nor y_pred")
    kw = {"average": average, "zero_division": 0}
    if average == "binary":
        kw["pos_label"] = pos_label
    p, r, f, _ = skm.precision_recall_fscore_support(yt, yp, **kw)
    return {
        "accuracy": float(skm.accuracy_score(yt, yp)),
        "precision": float(p),
        "recall": float(r),
        "f1": float(f),
    }


def precision(y_true, y_pred, *, average: str = "binary", pos_label: Hashable = 1) -> float:
    return classification_scores(y_true, y_pred, average=average, pos_label=pos_label)["precision"]


def recall(y_true, y_pred, *, average: str = "binary", pos_label: Hashable = 1) -> float:
    return classification_scores(y_true, y_pred, average=average, pos_label=pos_label)["recall"]


def f1(y_true, y_pred, *, average: str = "binary", pos_label: Hashable = 1) -> float:
    return classification_scores(y_true, y_pred, average=average, pos_label=pos_label)["f1"]
