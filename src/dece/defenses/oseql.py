"""``oseql``: OSeqL (Hussain et al., "Occlusion-based Detection of Trojan-triggering Inputs in
Large Language Models of Code", 2023), a test-time purifier for **classification** victims.

Each line of the input is occluded in turn (removed); the drop of the victim's confidence in its
original prediction, ``d_i = c(x, y) - c(x_{-i}, y)``, is the line's influence. A trigger line
stands out from the others, so the input's score is the robust z-score of the most influential
line among all lines' influences (median and MAD, Iglewicz & Hoaglin's modified z-score,
``0.6745 (d_max - median) / MAD``). An input whose score exceeds the threshold (fixed, 3.5 by
default as for that outlier rule, or calibrated on clean validation inputs at a chosen fraction)
is poisoned and its most influential line is removed. Inputs with fewer than ``min_lines`` lines
are left alone (no outlier can be told apart). Generation victims are refused, as in the paper.

``unit="statement"`` occludes tree-sitter statements instead of lines (the innermost ones, i.e.
those containing no other statement; :mod:`dece.defenses.code_elements`): the paper's unit is
the line, but abstracted one-line code such as Bugs2Fix's has a single line.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from dece.data import Example, check_examples
from dece.defenses._support import (
    calibrate_threshold,
    predict_with_confidence,
    side_text,
    with_side_text,
)
from dece.defenses.base import DEFENSES, Change, Purifier, PurifyResult
from dece.defenses.code_elements import extract_elements

if TYPE_CHECKING:
    from dece.pipeline.data import DataBundle
    from dece.victim import Victim

__all__ = ["OSeqL", "line_spans", "outlier_score"]


def line_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of every non-blank line (without its newline)."""
    spans, start = [], 0
    for line in text.split("\n"):
        if line.strip():
            spans.append((start, start + len(line)))
        start += len(line) + 1
    return spans


def outlier_score(influence: Sequence[float] | np.ndarray) -> float:
    """Modified z-score of the largest influence: ``0.6745 (max - median) / MAD``; with a zero
    MAD, ``inf`` when the maximum exceeds the median, else 0."""
    d = np.asarray(influence, dtype=float)
    if d.size == 0:
        return 0.0
    med = float(np.median(d))
    mad = float(np.median(np.abs(d - med)))
    top = float(d.max()) - med
    if mad == 0.0:
        return float("inf") if top > 0 else 0.0
    return 0.6745 * top / mad


def _remove(text: str, span: tuple[int, int]) -> str:
    """``text`` without ``span`` and one adjacent newline (or space)."""
    start, end = span
    for sep in ("\n", " "):
        if end < len(text) and text[end] == sep:
            return text[:start] + text[end + 1 :]
        if start > 0 and text[start - 1] == sep:
            return text[: start - 1] + text[end:]
    return text[:start] + text[end:]


@DEFENSES.register("oseql", display="OSeqL")
@dataclass
class OSeqL(Purifier):
    """Line occlusion + outlier detection (module docstring).

    Args:
        threshold: modified z-score above which an input is poisoned; None calibrates it.
        clean_fraction: calibration (``threshold=None``): the fraction of clean validation inputs
            that would be purified.
        calibration_max_examples: clean validation inputs used for calibration.
        min_lines: inputs with fewer units (lines or statements) are never flagged.
        side: the text whose lines are occluded (``"source"`` or ``"pair"``).
        unit: ``"line"`` (paper) or ``"statement"`` (module docstring).
        language: the code's language for ``unit="statement"`` (``"auto"``: guessed).
    """

    name = "oseql"
    threshold: float | None = 3.5
    clean_fraction: float = 0.05
    calibration_max_examples: int | None = 200
    min_lines: int = 3
    side: str = "source"
    unit: str = "line"
    language: str = "auto"

    def __post_init__(self) -> None:
        if not 0.0 <= self.clean_fraction < 1.0:
            raise ValueError(f"clean_fraction must be in [0, 1), got {self.clean_fraction}")
        if self.unit not in ("line", "statement"):
            raise ValueError(f"unit must be 'line' or 'statement', got {self.unit!r}")
        if self.side not in ("source", "pair"):
            raise ValueError(f"side must be 'source' or 'pair', got {self.side!r}")
        self._threshold: float | None = self.threshold

    def prepare(self, bundle: DataBundle, victim: Victim) -> None:
        """Calibrate on the bundle's clean validation inputs when no threshold is fixed."""
        if self.threshold is None:
            self.calibrate(bundle.valid.clean[: self.calibration_max_examples], victim)

    def calibrate(self, clean: Sequence[Example], victim: Victim) -> float:
        scores = [s for s, _, _ in self._analyse(check_examples(clean), victim)]
        self._threshold = calibrate_threshold(scores, self.clean_fraction, below=False)
        return self._threshold

    def _analyse(
        self, rows: list[Example], victim: Victim
    ) -> list[tuple[float, tuple[int, int] | None, np.ndarray]]:
        """Per input: score, the most influential line's span, the influences ``[n_lines]``."""
        if victim.task != "classification":
            raise ValueError(
                f"oseql works on classification victims only (as in its paper); got {victim.task}"
            )
        preds, base = predict_with_confidence(victim, rows)  # [N]: each input run once
        spans = [self.units(side_text(ex, self.side)) for ex in rows]
        variants = [with_side_text(ex, self.side, _remove(side_text(ex, self.side), sp))
                    for ex, lines in zip(rows, spans, strict=True) for sp in lines]  # fmt: skip
        outputs = [p for p, lines in zip(preds, spans, strict=True) for _ in lines]
        conf = victim.confidence(variants, outputs) if variants else np.zeros(0)
        out: list[tuple[float, tuple[int, int] | None, np.ndarray]] = []
        offset = 0
        for i, lines in enumerate(spans):
            d = base[i] - conf[offset : offset + len(lines)]
            offset += len(lines)
            if len(lines) < self.min_lines:
                out.append((0.0, None, d))
                continue
            out.append((outlier_score(d), lines[int(np.argmax(d))], d))
        return out

    def units(self, text: str) -> list[tuple[int, int]]:
        """The occluded spans of ``text``: its non-blank lines, or its innermost statements."""
        if self.unit == "line":
            return line_spans(text)
        stmts = [e.spans[0] for e in extract_elements(text, self.language, kinds=("statement",),
                                                      keep="keywords+punctuation")]  # fmt: skip
        return [s for s in stmts if not any(o != s and s[0] <= o[0] and o[1] <= s[1]
                                            for o in stmts)]  # fmt: skip

    def purify(self, examples: Sequence[Example], victim: Victim) -> PurifyResult:
        """Remove the most influential line of every input whose score exceeds the threshold."""
        t0 = time.perf_counter()
        rows = check_examples(examples)
        if self._threshold is None:
            raise ValueError("oseql: no threshold; give threshold=... or call prepare/calibrate")
        analysed = self._analyse(rows, victim)
        out, detected, scores, changes = [], [], [], []
        for ex, (score, span, _) in zip(rows, analysed, strict=True):
            hit = span is not None and score > self._threshold
            scores.append(score if np.isfinite(score) else 1e9)
            detected.append(hit)
            if not hit:
                out.append(ex)
                changes.append([])
                continue
            text = side_text(ex, self.side)
            out.append(with_side_text(ex, self.side, _remove(text, span)))
            changes.append([Change(self.side, span[0], span[1], text[span[0] : span[1]], "")])
        info: dict[str, Any] = {"threshold": self._threshold, "n_detected": int(sum(detected))}
        return PurifyResult(out, detected, scores, changes, time.perf_counter() - t0, info)
