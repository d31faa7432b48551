"""``train(config)``: the stages composed, and the run directory they leave.

::

    prepare_data ──> [filter: score, drop flagged rows] ──> fit ──> Victim ──> [purify] ──> evaluate
     (DataBundle)         (FilterResult)                              (predict/...)  (PurifyResult)  (EvalResult)

``config.output_dir`` is laid out as :class:`dece.rundir.RunDir` says (``config.yaml``,
``poison_manifest.json``, ``filter.jsonl`` / ``filter.json``, ``metrics.jsonl``,
``example_losses.jsonl``, ``checkpoints/``, ``predictions/``, ``purified/``,
``final_metrics.json``, ``model/``). A run resumed from a checkpoint reuses ``filter.jsonl``
instead of filtering again; ``predictions/*.jsonl`` hold ``{"id", "source", "prediction",
"reference"}`` per row, ``purified/*.jsonl`` the purifier's output with its input.

:func:`evaluate_run` evaluates an existing run's model (with a purifier) without retraining it,
into a directory of its own laid out the same way.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from transformers import TrainerCallback

from dece._jsonl import read_jsonl, write_jsonl
from dece.defenses import DataFilter, FilterResult, Purifier, TrainingRecipe, get_defense
from dece.metrics import detection_scores
from dece.pipeline.data import DataBundle, prepare_data
from dece.pipeline.evaluation import EvalResult, evaluate, write_predictions
from dece.pipeline.fit import fit, resume_checkpoint, victim_settings
from dece.rundir import FILTER_ROWS_FILE, RunDir
from dece.training.config import ResolvedTrainConfig, TrainConfig
from dece.victim import Victim

__all__ = ["TrainResult", "apply_filter", "apply_recipe", "evaluate_run", "filter_victim", "train"]

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        output_dir: the run directory.
        history: the rows of ``metrics.jsonl`` (one per epoch).
        final: test-split metrics: ``bleu``, ``bleu_authors`` and ``codebleu`` (when
            installed), ``asr``, ``false_trigger_rate``, ``asr_denominator``,
            ``n_poisoned_train``, ``train_time_s``...
        victim: the trained model behind the :class:`~dece.victim.Victim` interface.
    """

    output_dir: Path
    history: list[dict] = field(default_factory=list)
    final: dict = field(default_factory=dict)
    victim: Victim | None = None


def _is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _defense(cfg: TrainConfig) -> Any:
    return None if cfg.defense is None else get_defense(cfg.defense.name, **cfg.defense.args)


def train(
    config: TrainConfig,
    *,
    callbacks: Sequence[TrainerCallback] = (),
    save_model: bool | None = None,
) -> TrainResult:
    """Prepare the data, filter it (a training-time ``config.defense``) or change the training
    (a recipe), fit, and evaluate the test split (through a test-time ``config.defense``); writes
    the run directory above (``config.yaml`` holds the configuration after a recipe's changes).

    Args:
        config: the run; a raw one is resolved here, once (:meth:`TrainConfig.resolved`).
        callbacks: extra ``TrainerCallback`` objects (e.g. ``StopAfterEpochs`` in tests).
        save_model: overrides ``config.save_model`` (the grid forces it for reused cells).
    """
    cfg = config.resolved()
    defense = _defense(cfg)
    extra: dict[str, Any] = {}
    if isinstance(defense, TrainingRecipe):
        cfg, extra["recipe"] = apply_recipe(defense, cfg)
    run = RunDir(cfg.output_dir)
    out = run.root
    out.mkdir(parents=True, exist_ok=True)
    if _is_main():
        cfg.to_yaml(run.config)
    bundle = prepare_data(cfg)
    if _is_main() and bundle.train_manifest is not None:
        bundle.train_manifest.save(run.poison_manifest)
    if isinstance(defense, DataFilter):
        result = _recorded_filter(cfg, bundle) or _run_filter(defense, cfg, bundle)
        extra.update(_filter_summary(result, bundle))
        bundle = bundle.with_train(result.kept)
    fitted = fit(cfg, bundle, callbacks=callbacks, save_model=save_model)
    final: dict[str, Any] = {}
    if fitted.trainer.is_world_process_zero():
        purifier = defense if isinstance(defense, Purifier) else None
        evaluation = evaluate(fitted.victim, bundle, split="test", purifier=purifier,
                              codebleu=cfg.codebleu, lang=cfg.lang,
                              humaneval=cfg.humaneval)  # fmt: skip
        final = write_evaluation(out, evaluation)
        final.update(
            n_train=len(bundle.train), n_poisoned_train=_n_poisoned(bundle),
            poison_rate_achieved=bundle.train_manifest.rate_achieved
            if bundle.train_manifest else 0.0,
            train_time_s=fitted.train_time_s, global_step=fitted.global_step,
            epochs=fitted.epochs, loss=cfg.loss, **extra,
        )  # fmt: skip
        run.final_metrics.write_text(json.dumps(final, indent=2) + "\n")
    fitted.trainer.accelerator.wait_for_everyone()
    return TrainResult(out, fitted.history, final, fitted.victim)


def apply_recipe(
    recipe: TrainingRecipe, config: ResolvedTrainConfig
) -> tuple[ResolvedTrainConfig, dict]:
    """``config`` with the recipe's overrides applied (validated), and the overrides."""
    changes = dict(recipe.overrides(config))
    unknown = sorted(set(changes) - set(TrainConfig.model_fields))
    if unknown:
        raise ValueError(f"recipe {recipe.name!r} overrides unknown TrainConfig keys {unknown}")
    return config.replace(**changes), changes


def filter_victim(defense: DataFilter, cfg: TrainConfig) -> Victim | None:
    """The model a filter scores the training rows with: ``cfg.defense_victim`` loaded when
    the filter needs one (a ``ValueError`` naming the setting when it is unset), else None."""
    if not defense.needs_victim:
        return None
    if cfg.defense_victim is None:
        raise ValueError(f"defense {defense.name!r} needs defense_victim (a trained run dir)")
    return Victim.load(cfg.defense_victim)


def _run_filter(defense: DataFilter, cfg: TrainConfig, bundle: DataBundle) -> FilterResult:
    victim = filter_victim(defense, cfg)
    return apply_filter(defense, bundle, victim, Path(cfg.output_dir) if _is_main() else None)


def _recorded_filter(cfg: TrainConfig, bundle: DataBundle) -> FilterResult | None:
    """The decisions the filter recorded (``filter.jsonl``, ``filter.json``) before the run was
    interrupted, when it resumes from a checkpoint: training goes on with the rows it started
    with, without scoring them again. None when the run starts from the beginning or the record
    is missing or does not list the training rows."""
    run = RunDir(cfg.output_dir)
    if resume_checkpoint(cfg) is None:
        return None
    if not run.filter_rows.is_file() or not run.filter_summary.is_file():
        return None
    rows = read_jsonl(run.filter_rows)
    if [r.get("id") for r in rows] != [ex.id for ex in bundle.train]:
        logger.warning("%s does not list this run's training rows; filtering again",
                       run.filter_rows)  # fmt: skip
        return None
    summary = run.read_filter_summary() or {}
    flagged = np.array([bool(r["flagged"]) for r in rows], dtype=bool)
    logger.info("%s: resuming with the filter decisions in %s", run.root, FILTER_ROWS_FILE)
    return FilterResult(
        ids=[r["id"] for r in rows], scores=np.array([float(r["score"]) for r in rows]),
        flagged=flagged, threshold=summary.get("threshold"),
        kept=[ex for ex, drop in zip(bundle.train, flagged, strict=True) if not drop],
        info=dict(summary.get("info") or {}),
    )  # fmt: skip


def _n_poisoned(bundle: DataBundle) -> int:
    """Poisoned rows among the rows trained on (after any filter)."""
    if bundle.train_manifest is None:
        return 0
    kept = {ex.id for ex in bundle.train}
    return sum(pid in kept for pid in bundle.train_manifest.poisoned_ids)


def apply_filter(
    defense: DataFilter, bundle: DataBundle, victim: Victim | None, out: Path | None = None
) -> FilterResult:
    """Score the training rows with ``defense``; writes ``filter.jsonl`` (every row's score and
    decision) and ``filter.json`` (threshold, info, detection scores) under ``out``."""
    result = defense.score(bundle.train, victim)
    if out is not None:
        run = RunDir(out)
        rows = result.rows()
        for row, ex in zip(rows, bundle.train, strict=True):
            row.update(source=ex.source, source_pair=ex.source_pair)  # for the HTML report
        write_jsonl(run.filter_rows, rows)
        summary = {"defense": defense.config(), "threshold": result.threshold,
                   "info": result.info, **_filter_summary(result, bundle)}  # fmt: skip
        run.filter_summary.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return result


def _filter_summary(result: FilterResult, bundle: DataBundle) -> dict[str, Any]:
    out: dict[str, Any] = {"filter_removed": result.n_removed}
    if bundle.train_manifest is not None:
        scores = detection_scores(
            result.ids, result.scores, result.flagged, bundle.train_manifest.poisoned_ids
        )
        out.update({f"filter_{k}": v for k, v in scores.items()})
    return out


def write_evaluation(out: Path, evaluation: EvalResult, split: str = "test") -> dict[str, Any]:
    """Write an evaluation's predictions (and purifier outputs) under ``out``; its metrics."""
    run = RunDir(out)
    run.predictions_dir.mkdir(parents=True, exist_ok=True)
    write_predictions(run.predictions(split, "clean"), evaluation.clean_examples,
                      evaluation.clean_predictions)  # fmt: skip
    if evaluation.poisoned_examples:
        write_predictions(run.predictions(split, "poisoned"), evaluation.poisoned_examples,
                          evaluation.poisoned_predictions)  # fmt: skip
        if evaluation.manifest is not None:  # the trigger spans of the poisoned inputs
            evaluation.manifest.save(run.poisoned_manifest(split))
    if evaluation.humaneval is not None:
        from dece.pipeline.humaneval import write_humaneval

        write_humaneval(out, evaluation.humaneval)
    if evaluation.purified:
        run.purified_dir.mkdir(exist_ok=True)
        for name, result in evaluation.purified.items():
            inputs = evaluation.inputs.get(name) or [None] * len(result.examples)
            rows = result.rows()
            for row, before in zip(rows, inputs, strict=True):
                if before is not None:  # the input as it was before purifying
                    row.update(input=before.source, input_pair=before.source_pair)
            write_jsonl(run.purified(split, name), rows)
    return dict(evaluation.metrics)


def evaluate_run(
    run_dir: str | Path,
    output_dir: str | Path,
    *,
    purifier: Purifier | None = None,
    split: str = "test",
) -> dict[str, Any]:
    """Evaluate the model of a finished run (``run_dir``, with ``config.yaml`` and ``model/``)
    on the same data, through ``purifier``, without retraining; writes ``predictions/``,
    ``purified/`` and ``final_metrics.json`` under ``output_dir`` and returns the metrics."""
    trained, out = RunDir(run_dir), RunDir(output_dir)
    if not trained.has_model():
        raise FileNotFoundError(
            f"{trained.root}: not a finished run (needs config.yaml and model/)"
        )
    cfg = ResolvedTrainConfig.from_yaml(trained.config)  # resolved at load
    out.root.mkdir(parents=True, exist_ok=True)
    bundle = prepare_data(cfg)
    victim = Victim.load(trained.model, task=None, **victim_settings(cfg))
    evaluation = evaluate(victim, bundle, split=split, purifier=purifier,
                          codebleu=cfg.codebleu, lang=cfg.lang, humaneval=cfg.humaneval)  # fmt: skip
    final = write_evaluation(out.root, evaluation, split)
    facts = trained.read_final()
    if facts is not None:  # training facts of the evaluated model
        for key in ("n_train", "n_poisoned_train", "poison_rate_achieved", "train_time_s",
                    "global_step", "epochs", "loss"):  # fmt: skip
            if key in facts:
                final.setdefault(key, facts[key])
    final["evaluated_run"] = str(trained.root)
    out.final_metrics.write_text(json.dumps(final, indent=2) + "\n")
    return final
