"""Stage 4, ``evaluate(victim, bundle, *, split, purifier=None) -> EvalResult``.

The one implementation behind the per-epoch callback, the final test evaluation, the grid's
purifier cells and ``dece evaluate``. On the clean rows of a split it reports

- generation: ``bleu`` (0-100, sacrebleu corpus BLEU: the headline), ``bleu_authors`` (0-100,
  the DeCE authors' mean per-example BLEU, :func:`dece.metrics.bleu_authors`, when the
  ``[codebleu]`` extra is installed), ``exact_match``, ``codebleu`` (when asked and installed);
- classification: ``accuracy``, ``precision``, ``recall``, ``f1`` (binary labels: of the positive
  class ``"1"``, else the last label; several labels: macro averages);
- ``false_trigger_rate`` (outputs on clean inputs carrying the payload), ``n_clean``;

and on the fully poisoned copy ``asr`` = payload present / ``manifest.poisoned_ids``
(``asr_denominator``). For classifiers ``asr`` counts only the triggered inputs whose clean
version the model classifies correctly (the usual definition; ``asr_raw`` is the share over all
of ``manifest.poisoned_ids``, which includes ordinary misclassification). With a purifier, both sets are purified first and the metrics are those of
the purified inputs (the papers' BLEU_D / ASR_D), plus the purifier's detection TPR (poisoned) /
FPR (clean), ``localisation`` (its edits overlap the trigger's spans), and seconds per input for
the purifier and for the plain prediction. :func:`score_outputs` is the scoring alone, for
prediction files written elsewhere.

With ``humaneval`` (a :class:`~dece.metrics.humaneval.HumanEvalConfig` or its mapping, e.g.
``TrainConfig.humaneval``), a causal or seq2seq victim is also measured on HumanEval
(:func:`dece.pipeline.humaneval.evaluate_humaneval`): pass@k through the sandbox, pass@1 as
counts with a Wilson interval, and the Table 11 ASR with the bundle's trigger and payload in
the prompts' docstrings (``humaneval_*`` keys). HumanEval prompts are never purified: with a
purifier the HumanEval part is skipped (it would repeat the undefended model's numbers).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dece import metrics as M
from dece._jsonl import read_jsonl, write_jsonl
from dece.data import Example
from dece.pipeline.data import DataBundle, EvalSet

if TYPE_CHECKING:
    from collections.abc import Mapping

    from dece.attacks import PoisonManifest
    from dece.defenses import Purifier, PurifyResult
    from dece.metrics.humaneval import HumanEvalConfig
    from dece.pipeline.humaneval import HumanEvalResult
    from dece.victim import Victim

__all__ = [
    "EvalResult",
    "evaluate",
    "read_predictions",
    "score_outputs",
    "score_prediction_files",
    "write_predictions",
]

logger = logging.getLogger(__name__)


@dataclass
class EvalResult:
    """Metrics of one split and the predictions behind them (aligned with the rows evaluated).

    ``clean_examples`` / ``poisoned_examples`` are the rows the victim saw (purified when a
    purifier ran); ``purified`` holds the purifier's results by set (``"clean"``, ``"poisoned"``).
    """

    metrics: dict[str, Any]
    clean_examples: list[Example] = field(default_factory=list)
    clean_predictions: list[str] = field(default_factory=list)
    poisoned_examples: list[Example] = field(default_factory=list)
    poisoned_predictions: list[str] = field(default_factory=list)
    purified: dict[str, PurifyResult] = field(default_factory=dict)
    inputs: dict[str, list[Example]] = field(default_factory=dict)  # by set, before purifying
    manifest: PoisonManifest | None = None  # the poisoned set's trigger spans
    humaneval: HumanEvalResult | None = None  # completions and metrics (``humaneval=``)


def evaluate(
    victim: Victim,
    bundle: DataBundle,
    *,
    split: str = "test",
    purifier: Purifier | None = None,
    codebleu: bool = False,
    lang: str = "python",
    humaneval: HumanEvalConfig | Mapping[str, Any] | None = None,
) -> EvalResult:
    """Predict the clean and the poisoned rows of ``split`` and score them; with ``humaneval``,
    also pass@k and the Table 11 ASR on HumanEval (module docstring)."""
    data = bundle.split(split)
    t0 = time.perf_counter()
    if purifier is not None:
        purifier.prepare(bundle, victim)  # calibration on bundle.valid, helper models (issue 12)
    result = EvalResult(metrics={})
    sets = [("clean", data.clean)]
    if data.poisoned is not None:
        sets.append(("poisoned", data.poisoned))
    result.manifest = data.manifest if data.poisoned is not None else None
    for name, rows in sets:
        result.inputs[name] = list(rows)
        if purifier is not None and rows:
            result.purified[name] = purifier.purify(rows, victim)
            rows = result.purified[name].examples
        predict_t0 = time.perf_counter()
        preds = victim.predict(rows, stage=f"predict {split} {name}") if rows else []
        _store(result, name, rows, preds, time.perf_counter() - predict_t0)
    result.metrics.update(
        score_outputs(
            result.clean_examples, result.clean_predictions, result.poisoned_predictions,
            data.manifest if data.poisoned is not None else None, bundle.payload,
            task=victim.task, labels=victim.labels, codebleu=codebleu, lang=lang,
        )
    )  # fmt: skip
    if purifier is not None:
        result.metrics.update(_purifier_metrics(result, data))
    if humaneval is not None and humaneval is not False:
        _add_humaneval(result, victim, bundle, humaneval, purifier)
    result.metrics["eval_time_s"] = time.perf_counter() - t0
    result.metrics["predict_revision"] = _batching_revision(victim)
    return result


def _add_humaneval(
    result: EvalResult, victim: Victim, bundle: DataBundle, humaneval: Any, purifier: Any
) -> None:
    """pass@k and the Table 11 ASR on HumanEval with the bundle's attack (not with a purifier:
    HumanEval prompts are not purified, so it would repeat the undefended model's numbers)."""
    if purifier is not None:
        logger.info("HumanEval skipped: its prompts are not purified (see the parent cell)")
        return
    from dece.pipeline.humaneval import evaluate_humaneval

    result.humaneval = evaluate_humaneval(
        victim, humaneval, trigger=bundle.trigger, payload=bundle.payload
    )
    result.metrics.update(result.humaneval.metrics)


def _batching_revision(victim: Victim) -> int:
    """:data:`dece.victim.BATCHING_REVISION`, or 1 for a victim on the fixed-row path."""
    from dece.victim import BATCHING_REVISION

    return BATCHING_REVISION if getattr(victim, "batch_tokens", None) is not None else 1


def _store(result: EvalResult, name: str, rows: list[Example], preds: list[str], s: float) -> None:
    if name == "clean":
        result.clean_examples, result.clean_predictions = rows, preds
    else:
        result.poisoned_examples, result.poisoned_predictions = rows, preds
    result.metrics[f"predict_time_s_{name}"] = s


def score_outputs(
    clean: Sequence[Example],
    clean_predictions: Sequence[str],
    poisoned_predictions: Sequence[str] | None,
    manifest: Any,
    payload: Any,
    *,
    task: str,
    labels: Sequence[str] | None = None,
    codebleu: bool = False,
    lang: str = "python",
) -> dict[str, Any]:
    """The metrics of predictions: clean quality on ``clean`` (references: each example's
    ``reference``), false-trigger rate when a payload is set, and ASR over
    ``manifest.poisoned_ids`` (``poisoned_predictions`` aligned with them)."""
    out: dict[str, Any] = {}
    if clean:
        preds, refs = list(clean_predictions), [ex.reference for ex in clean]
        out.update(_quality(preds, refs, task, labels, codebleu=codebleu, lang=lang))
        if payload is not None:
            out["false_trigger_rate"] = M.false_trigger_rate(preds, payload)
        out["n_clean"] = len(preds)
    if manifest is not None:
        ids = list(manifest.poisoned_ids)
        out["asr"] = (
            M.attack_success_rate(list(poisoned_predictions or []), payload, manifest)
            if ids else None
        )  # fmt: skip
        out["asr_denominator"] = len(ids)
        if task == "classification" and clean and ids:
            out.update(_conditional_asr(clean, clean_predictions, ids, poisoned_predictions,
                                        payload))  # fmt: skip
    return out


def _conditional_asr(
    clean: Sequence[Example],
    clean_predictions: Sequence[str],
    ids: list[str],
    poisoned_predictions: Sequence[str] | None,
    payload: Any,
) -> dict[str, Any]:
    """Classification: ``asr`` over the triggered inputs whose clean version the model classifies
    correctly (the usual definition); the share over all triggered inputs stays as ``asr_raw``
    (it includes ordinary misclassification)."""
    correct = {ex.id for ex, p in zip(clean, clean_predictions, strict=True) if p == ex.reference}
    hits = M.payload_hits(list(poisoned_predictions or []), payload)
    kept = [hit for pid, hit in zip(ids, hits, strict=True) if pid in correct]
    return {
        "asr_raw": sum(hits) / len(ids),
        "asr_raw_denominator": len(ids),
        "asr": sum(kept) / len(kept) if kept else None,
        "asr_denominator": len(kept),
    }


def _quality(
    preds: list[str], refs: list[str], task: str, labels: Sequence[str] | None, *,
    codebleu: bool, lang: str,
) -> dict[str, Any]:  # fmt: skip
    if task == "classification":
        names = sorted(set(labels or []) | set(refs) | set(preds))
        if len(names) > 2:
            return M.classification_scores(refs, preds, average="macro")
        positive = "1" if "1" in names else names[-1]
        if positive not in set(refs) | set(preds):  # no positive anywhere: P = R = F1 = 0
            return {"accuracy": M.accuracy(refs, preds), "precision": 0.0, "recall": 0.0, "f1": 0.0}
        return M.classification_scores(refs, preds, average="binary", pos_label=positive)
    out: dict[str, Any] = {"bleu": M.bleu(preds, refs), "exact_match": M.exact_match(preds, refs)}
    try:
        out[M.BLEU_AUTHORS_KEY] = M.bleu_authors(preds, refs)
    except ImportError as exc:
        logger.info("the authors' BLEU skipped: %s", exc)
    if codebleu:
        try:
            out["codebleu"] = M.codebleu(preds, refs, lang=lang)
        except ImportError as exc:
            logger.info("CodeBLEU skipped: %s", exc)
    return out


def _purifier_metrics(result: EvalResult, data: EvalSet) -> dict[str, Any]:
    """Detection TPR (poisoned) / FPR (clean), localisation, cost per input and the purifier's
    settings (``purify_*``). Localisation: ``localisation`` = share of poisoned inputs whose edits
    overlap the trigger; ``localisation_detected`` = the same among the detected ones;
    ``localisation_top`` = share whose top-ranked element overlaps it, whatever the decision
    (purifiers that rank elements report ``info["top_spans"]``). A purifier that passed inputs
    through unpurified (``info["n_missing"]``, e.g. replayed paraphrases with no clean
    counterpart) leaves the quality of that set not measured (None)."""
    clean = result.purified.get("clean")
    pois = result.purified.get("poisoned")
    out: dict[str, Any] = M.detection_rates(
        pois.detected if pois is not None else [], clean.detected if clean is not None else []
    )
    out = {f"detect_{k}": v for k, v in out.items()}
    if pois is not None and data.manifest is not None:
        ids = list(data.manifest.poisoned_ids)
        out.update(_localisation(ids, pois, data.manifest.spans))
        if clean is not None and "statistics" in pois.info:  # CodePurify: its premise
            from dece.defenses.codepurify_stats import premise_metrics

            out.update(premise_metrics(clean.info, pois.info, ids, data.manifest.spans))
    n = sum(len(r.examples) for r in result.purified.values())
    seconds = sum(r.seconds for r in result.purified.values())
    predict = sum(v for k, v in result.metrics.items() if k.startswith("predict_time_s_"))
    out["purify_s_per_input"] = seconds / n if n else None
    out["predict_s_per_input"] = predict / n if n else None
    out["defended_s_per_input"] = (seconds + predict) / n if n else None
    for name, res in result.purified.items():
        missing = int(res.info.get("n_missing", 0) or 0)
        if missing:
            out[f"purify_missing_{name}"] = missing
    if clean is not None and clean.info.get("n_missing"):
        for key in ("bleu", M.BLEU_AUTHORS_KEY, "codebleu", "exact_match", "accuracy",
                    "precision", "recall", "f1"):  # fmt: skip
            if key in result.metrics:
                out[key] = None
        out["clean_not_measured"] = True
    info = (clean or pois).info if (clean or pois) is not None else {}
    for key in _PURIFIER_SETTINGS:
        if key in info:
            out[f"purify_{key}"] = info[key]
    for name, res in result.purified.items():
        if "n_unjudged" in res.info:
            out[f"purify_unjudged_{name}"] = int(res.info["n_unjudged"])
    return out


#: Purifier settings copied into the metrics (which threshold / normalisation produced them).
_PURIFIER_SETTINGS = ("threshold", "thresholds_by_prediction", "normalisation", "score", "level",
                      "detect", "lm", "backend", "prepare_s", "statistic", "preset",
                      "victim_mask", "victim_statement", "keep", "revision",
                      "calibration_unjudged")  # fmt: skip


def _localisation(ids: list[str], pois: PurifyResult, spans: dict[str, Any]) -> dict[str, Any]:
    changes = dict(zip(ids, pois.changes, strict=True))
    out: dict[str, Any] = {"localisation": M.localisation_accuracy(changes, spans)}
    hit = {i for i, d in zip(ids, pois.detected, strict=True) if d}
    out["localisation_detected"] = M.localisation_accuracy(
        changes, {k: v for k, v in spans.items() if k in hit}
    )
    tops = pois.info.get("top_spans")
    if tops is not None:
        out["localisation_top"] = M.localisation_accuracy(dict(zip(ids, tops, strict=True)), spans)
    return out


def write_predictions(
    path: str | Path, examples: Sequence[Example], predictions: Sequence[str]
) -> None:
    """One ``{"id", "source", "prediction", "reference"}`` JSON line per example (plus
    ``source_pair`` for text pairs)."""
    if len(examples) != len(predictions):
        raise ValueError(f"{len(examples)} examples but {len(predictions)} predictions")
    rows = []
    for ex, pred in zip(examples, predictions, strict=True):
        row = {"id": ex.id, "source": ex.source, "prediction": pred, "reference": ex.reference}
        if ex.source_pair is not None:
            row["source_pair"] = ex.source_pair
        rows.append(row)
    write_jsonl(path, rows)


def read_predictions(
    path: str | Path, *, allow_empty: bool = False
) -> tuple[list[Example], list[str]]:
    """The rows of a file :func:`write_predictions` wrote: examples (``reference`` as the
    target) and predictions. Errors name the file and the line; an empty file is an error
    unless ``allow_empty`` (a poisoned test set to which the trigger applied nowhere)."""
    path = Path(path)
    rows = read_jsonl(path)
    if not rows and not allow_empty:
        raise ValueError(f"{path}: no predictions (empty file)")
    examples, preds = [], []
    lines: dict[str, list[int]] = {}
    for line, row in enumerate(rows, start=1):
        missing = [k for k in ("id", "prediction") if k not in row]
        if missing:
            raise ValueError(f"{path}: line {line} has no {missing[0]!r} field")
        if not isinstance(row["prediction"], str):
            raise ValueError(f"{path}: line {line}: 'prediction' must be a string")
        lines.setdefault(str(row["id"]), []).append(line)
        examples.append(Example(str(row["id"]), str(row.get("source", "")),
                                str(row.get("reference", "")),
                                source_pair=row.get("source_pair")))  # fmt: skip
        preds.append(row["prediction"])
    duplicated = {i: at for i, at in lines.items() if len(at) > 1}
    if duplicated:
        shown = "; ".join(f"{i!r} (lines {', '.join(map(str, at))})"
                          for i, at in list(duplicated.items())[:10])  # fmt: skip
        raise ValueError(f"{path}: {len(duplicated)} id(s) appear more than once, each would be "
                         f"counted twice: {shown}")  # fmt: skip
    return examples, preds


def score_prediction_files(
    clean_path: str | Path,
    poisoned_path: str | Path | None,
    payload: Any,
    *,
    task: str = "seq2seq",
    codebleu: bool = False,
    lang: str = "python",
) -> dict[str, Any]:
    """:func:`score_outputs` of prediction files: the clean file's references score quality,
    the poisoned file's rows are the ASR denominator (their ids, in order)."""
    from types import SimpleNamespace

    clean, clean_preds = read_predictions(clean_path)
    manifest, poisoned_preds = None, None
    if poisoned_path is not None and payload is not None:
        poisoned, poisoned_preds = read_predictions(poisoned_path, allow_empty=True)
        manifest = SimpleNamespace(poisoned_ids=[ex.id for ex in poisoned], payload=payload)
        if not poisoned:  # the trigger applied to no test row: no ASR, not an error
            logger.warning("%s: no triggered rows; ASR not computed", poisoned_path)
            manifest, poisoned_preds = None, None
    labels = sorted({ex.target for ex in clean}) if task == "classification" else None
    return score_outputs(clean, clean_preds, poisoned_preds, manifest, payload, task=task,
                         labels=labels, codebleu=codebleu, lang=lang)  # fmt: skip
