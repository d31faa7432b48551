"""Tables of test-time defenses in the layout of CodePurify's Tables II-IV (and the DeCE paper's
Table 7): one row per method (``<loss>`` undefended, ``<loss> w. <purifier>``), one column group
per attack.

- **Effectiveness** (Table II / III): ASR_D and BLEU_D / BLEU_D (authors) / CodeBLEU_D
  (generation; see :mod:`dece.experiments.tables` for the two BLEUs) or ACC_D / F1_D
  (classification) — the metrics of the purified inputs (the undefended rows: plain ASR/BLEU);
- **Detection and localisation**: TPR on poisoned inputs, FPR on clean inputs, ``Loc`` (poisoned
  inputs whose edits overlap the trigger), ``Loc@top`` (whose top-ranked element does, whatever
  the decision: CodePurify);
- **Cost** (Table IV): seconds per input of the purifier, of the plain prediction, and of the
  defended prediction (purifier + prediction on its output) as measured inside the grid's
  evaluation (the controlled per-input measurement is ``benchmarks/codepurify_cost.py``);
- **Premise** (CodePurify, issue 24): the victim's confidence on triggered and clean inputs
  (median, share >= 0.98), the trigger's share of the suspicion mass (median over triggered
  inputs), and the threshold-free AUROC of every detection statistic against the manifest;
- **Settings**: the threshold, statistic, normalisation, scoring, masks and revision that
  produced each purifier cell (CodePurify cells without a revision are revision 1).

CodePurify cells of different revisions (:data:`dece.defenses.codepurify.REVISION`) are never
mixed in one report: :func:`check_revisions` refuses.

:func:`purifier_report` renders all of them (empty text when no purifier cell ran), so
:func:`dece.experiments.report.write_report` appends it to the ordinary tables.
"""

from __future__ import annotations

from collections.abc import Sequence

from dece.experiments.markdown import md_table
from dece.experiments.results import ResultRow
from dece.experiments.tables import build_tables, format_tables
from dece.metrics.bleu import BLEU_AUTHORS_KEY

__all__ = [
    "COST",
    "DETECTION",
    "EFFECTIVENESS",
    "PREMISE",
    "check_revisions",
    "purifier_report",
    "purifier_rows",
    "revision",
]

EFFECTIVENESS: tuple[tuple[str, str, float], ...] = (
    ("asr", "ASR_D", 100.0),
    ("bleu", "BLEU_D", 1.0),
    (BLEU_AUTHORS_KEY, "BLEU_D (authors)", 1.0),
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
PREMISE: tuple[tuple[str, str, float], ...] = (
    ("premise_conf_triggered_median", "conf trig. median", 1.0),
    ("premise_conf_triggered_share_098", "trig. >= 0.98", 100.0),
    ("premise_conf_clean_median", "conf clean median", 1.0),
    ("premise_conf_clean_share_098", "clean >= 0.98", 100.0),
    ("premise_trigger_share", "trigger share", 1.0),
    ("localisation_top", "Loc@top", 100.0),
    ("premise_auroc_entropy", "AUROC entropy", 100.0),
    ("premise_auroc_max_delta", "AUROC max_delta", 100.0),
    ("premise_auroc_entropy_gap", "AUROC entropy_gap", 100.0),
)
COST: tuple[tuple[str, str, float], ...] = (
    ("purify_s_per_input", "defense s", 1.0),
    ("predict_s_per_input", "predict s", 1.0),
    ("defended_s_per_input", "total s", 1.0),
)
_SETTINGS = ("purify_threshold", "purify_normalisation", "purify_score", "purify_level",
             "purify_detect", "purify_lm", "purify_backend", "purify_statistic",
             "purify_victim_statement", "purify_revision", "purify_unjudged_clean",
             "purify_unjudged_poisoned")  # fmt: skip


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
    check_revisions(rows)
    parts = []
    for title, metrics, d in (("Defense effectiveness (Tables II/III)", EFFECTIVENESS, digits),
                              ("Detection and trigger localisation", DETECTION, digits),
                              ("CodePurify premise (issue 24)", PREMISE, digits),
                              ("Cost per input (Table IV)", COST, 4)):  # fmt: skip
        shown = _shown(rows, metrics)
        if not shown or (metrics is PREMISE and not _shown(rows, PREMISE[:-4])):
            continue
        text = format_tables(build_tables(rows, shown), fmt, digits=d)
        unit = {COST: "in seconds", PREMISE: "in [0, 1]"}.get(metrics)  # scale 1.0 is not BLEU's
        for _, header, _ in shown if unit else ():
            text = text.replace(f"{header} 0-100", f"{header} {unit}")
        parts.append(f"## {title}\n\n{text}" if fmt == "md" else text)
    if fmt == "md":
        parts.append(_settings_md(rows))
    return "\n".join(parts)


def revision(row: ResultRow) -> int | None:
    """The CodePurify revision of a cell (None for other methods; 1 for archived CodePurify
    cells, which predate the field)."""
    final = row.final
    if "purify_revision" in final:
        return int(final["purify_revision"])
    codepurify = "purify_score" in final and "purify_normalisation" in final
    return 1 if codepurify else None


def check_revisions(rows: Sequence[ResultRow]) -> int | None:
    """The one CodePurify revision among ``rows`` (None when none is a CodePurify cell);
    ``ValueError`` naming the revisions when they are mixed."""
    found = {revision(r) for r in rows} - {None}
    if len(found) > 1:
        raise ValueError(f"CodePurify cells of revisions {sorted(found)} in one report: rerun the "
                         "older cells or report them apart (issue 24)")  # fmt: skip
    return found.pop() if found else None


def _settings_md(rows: Sequence[ResultRow]) -> str:
    """The purifier cells' settings; a setting no cell records is left out (as :func:`_shown`
    leaves out metrics)."""
    body = []
    for r in rows:
        if "detect_tpr" not in r.final:
            continue
        final = dict(r.final)
        if revision(r) is not None:
            final.setdefault("purify_revision", revision(r))
        body.append([r.method, r.attack, *(_setting(final, key) for key in _SETTINGS)])
    keep = [0, 1] + [i + 2 for i in range(len(_SETTINGS)) if any(b[i + 2] != "-" for b in body)]
    header = ["Method", "Attack", *(s.removeprefix("purify_") for s in _SETTINGS)]
    table = md_table([header[i] for i in keep], [[b[i] for i in keep] for b in body])
    return f"## Purifier settings\n\n{table}\n"


def _setting(final: dict, key: str) -> str:
    """One settings cell; the threshold cell adds the per-prediction thresholds if any."""
    value = final.get(key)
    text = "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)
    per_label = final.get("purify_thresholds_by_prediction") if key == "purify_threshold" else None
    if per_label:
        text += " (by prediction: " + ", ".join(f"{k}: {v:.4g}" for k, v in per_label.items()) + ")"
    return text
