"""Tables of test-time defenses in the layout of CodePurify's Tables II-IV (and the DeCE paper's
Table 7): one row per method (``<loss>`` undefended, ``<loss> w. <purifier>``), one column group
per attack.

- **Effectiveness** (Table II / III): ASR_D and BLEU_D / CodeBLEU_D (generation) or ACC_D / F1_D
  (classification) — the metrics of the purified inputs (the undefended rows: plain ASR/BLEU);
- **Detection and localisation**: TPR on poisoned inputs, FPR on clean inputs, ``Loc`` (poisoned
  inputs whose edits overlap the trigger), ``Loc@top`` (whose top-ranked element does, whatever
  the decision: CodePurify);
- **Cost** (Table IV): seconds per input of the purifier, of the plain prediction, and of the
  defended prediction (purifier + prediction on its output) as measured inside the grid's
  evaluation (the controlled per-input measurement is ``benchmarks/codepurify_cost.py``);
- **Settings**: the threshold, normalisation and scoring that produced each purifier cell.

:func:`purifier_report` renders all of them (empty text when no purifier cell ran), so
:func:`dece.experiments.report.write_report` appends it to the ordinary tables.
"""

from __future__ import annotations

from collections.abc import Sequence

from dece.experiments.results import ResultRow
from dece.experiments.tables import build_tables, format_tables

__all__ = ["COST", "DETECTION", "EFFECTIVENESS", "purifier_report", "purifier_rows"]

EFFECTIVENESS: tuple[tuple[str, str, float], ...] = (
    ("asr", "ASR_D", 100.0),
    ("bleu", "BLEU_D", 1.0),
    ("codebleu", "CodeBLEU_D", 100.0),
    ("accuracy", "ACC_D", 100.0),
    ("f1", "F1_D", 100.0),
)
DETECTION: tuple[tuple[str, str, float], ...] = (
    ("detect_tpr", "TPR", 100.0),
    ("detect_fpr", "FPR", 100.0),
    ("localisation", "Loc", 100.0),
    ("localisation_top", "Loc@top", 100.0),
)
COST: tuple[tuple[str, str, float], ...] = (
    ("purify_s_per_input", "defense s", 1.0),
    ("predict_s_per_input", "predict s", 1.0),
    ("defended_s_per_input", "total s", 1.0),
)
_SETTINGS = ("purify_threshold", "purify_normalisation", "purify_score", "purify_level",
             "purify_detect", "purify_lm", "purify_backend")  # fmt: skip


def purifier_rows(rows: Sequence[ResultRow]) -> list[ResultRow]:
    """The rows of the contexts (dataset, model) where at least one purifier cell finished."""
    contexts = {(r.dataset, r.model) for r in rows if "detect_tpr" in r.final}
    return [r for r in rows if (r.dataset, r.model) in contexts]


def _shown(rows: Sequence[ResultRow], metrics: Sequence[tuple[str, str, float]]) -> list:
    return [m for m in metrics if any(r.final.get(m[0]) is not None for r in rows)]


def purifier_report(rows: Sequence[ResultRow], fmt: str = "md", *, digits: int = 2) -> str:
    """The four tables of the module docstring for the rows of :func:`purifier_rows` ("" when
    there are none). ``fmt``: ``"md"``, ``"latex"`` or ``"csv"``."""
    rows = purifier_rows(rows)
    if not rows:
        return ""
    parts = []
    for title, metrics, d in (("Defense effectiveness (Tables II/III)", EFFECTIVENESS, digits),
                              ("Detection and trigger localisation", DETECTION, digits),
                              ("Cost per input (Table IV)", COST, 4)):  # fmt: skip
        shown = _shown(rows, metrics)
        if not shown:
            continue
        text = format_tables(build_tables(rows, shown), fmt, digits=d)
        for _, header, _ in shown if metrics is COST else ():
            text = text.replace(f"{header} 0-100", f"{header} in seconds")
        parts.append(f"## {title}\n\n{text}" if fmt == "md" else text)
    if fmt == "md":
        parts.append(_settings_md(rows))
    return "\n".join(parts)


def _settings_md(rows: Sequence[ResultRow]) -> str:
    lines = ["## Purifier settings", "", "| Method | Attack | " + " | ".join(
        s.removeprefix("purify_") for s in _SETTINGS) + " |",
        "|---|---|" + "---|" * len(_SETTINGS)]  # fmt: skip
    for r in rows:
        if "detect_tpr" not in r.final:
            continue
        cells = [_setting(r.final, key) for key in _SETTINGS]
        lines.append(f"| {r.method} | {r.attack} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _setting(final: dict, key: str) -> str:
    """One settings cell; the threshold cell adds the per-prediction thresholds if any."""
    value = final.get(key)
    text = "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)
    per_label = final.get("purify_thresholds_by_prediction") if key == "purify_threshold" else None
    if per_label:
        text += " (by prediction: " + ", ".join(f"{k}: {v:.4g}" for k, v in per_label.items()) + ")"
    return text
