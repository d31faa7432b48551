"""The code defenses' cells of ``defense_cost.py`` (issue 27): CodePurify and OSeqL.

Each cell runs today's path (the victim's fixed ``batch_size`` rows in input order, CodePurify's
inputs scored ``chunk`` at a time), the new path and the defense's *lower bound* in one process,
on the same threads, and hooks the model to count the forwards and tokens each runs:

- ``codepurify``, **classification** (a MiniLM defect victim on ``defect`` test inputs): the
  analysis (steps 1-3: the prediction, the victim's confidence in it for the input and for each
  of its ``N`` masked variants, the statistic). Bound: ``N + 1`` encoder forwards per input, the
  input and its masked variants as the victim sees them (the prediction's logits give the
  input's confidence, so the input needs one forward).
- ``codepurify``, **generation** (the ``tiny-seq2seq`` victim on Bugs2Fix test inputs): the same
  analysis. Bound: one greedy generation per input (the victim's own decoding loop at the token
  budget) plus one teacher-forced forward of that output under each of its ``N`` masked variants.
  The confidence of the unmasked input in its own greedy output is a further teacher-forced
  forward that the path runs and the bound does not count. The bound's generation, timed on its
  own, is the plain prediction the analysis is compared with (``plain``).
- ``oseql`` (MiniLM defect victim, ``unit="statement"``: Bugs2Fix code is one line, so lines
  would give one unit per input): the whole ``purify`` (the prediction, each occluded variant's
  confidence, the outlier score, the removal). Bound: one encoder forward per input and per
  occluded statement.

Not timed: CodePurify's re-fill of the inputs it detects (its infilling model and one more
prediction, for the ``clean_fraction`` of inputs, 5% by default; no forward of the bound). The
masks are those of the default ``tiny-seq2seq`` infiller (one mask per masked token,
:class:`OneMask`), which is not loaded: nothing is re-filled in the analysis.

Scores compared between today's and the new path: CodePurify's ``max_delta`` statistic (its
default; the decision is ``max_delta > t`` with ``t`` the median of today's, so half the inputs
are flagged: a stricter check than a 5% threshold), OSeqL's outlier score and its decisions at
its default threshold (3.5).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from cost_probe import BUDGET, agreement, bound_forwards, bound_teacher_forced, timed

from dece.data import Example, load_dataset
from dece.defenses import CodePurify, get_defense
from dece.defenses._support import TwoPass, side_text, with_side_text
from dece.defenses.codepurify import REVISION
from dece.defenses.oseql import _remove
from dece.training.collate import encode_example
from dece.victim import Victim, _with_output

#: a MiniLM defect classifier trained by ``benchmarks/codepurify_premise.py`` (read only)
MINILM_RUN = Path("/work/main/runs/codepurify_premise/c5b1f7d682bd")


class OneMask:
    """The mask count of the default ``tiny-seq2seq`` infiller (one mask per masked token, as
    :meth:`dece.defenses.infill.Seq2SeqInfiller.mask_count`) without its model: the timed
    analysis re-fills nothing."""

    calls = 0
    seconds = 0.0

    def mask_count(self, token: str) -> int:
        return 1


def minilm_victim() -> tuple[Victim, str]:
    """The trained MiniLM defect victim of :data:`MINILM_RUN`, else the ``minilm`` preset with a
    freshly initialised head (the cost does not depend on the weights), and its label."""
    if (MINILM_RUN / "model").is_dir():
        return Victim.load(MINILM_RUN), f"MiniLM defect victim (trained, {MINILM_RUN.name})"
    from dece.training.models import load_model

    loaded = load_model("minilm", task="classification", labels=["0", "1"], seed=0)
    victim = Victim(loaded.model, loaded.tokenizer, "classification", max_source_length=128,
                    batch_size=64)  # fmt: skip
    return victim, "MiniLM (untrained head)"


def _modules(victim: Victim) -> tuple[Any, ...]:
    """What the forward counter hooks: a classifier, or an encoder-decoder's two halves."""
    if victim.task == "seq2seq":
        return victim.model.get_encoder(), victim.model.get_decoder()
    return (victim.model,)


def _paths(victim: Victim, old: Callable[[Any], Any], new: Callable[[Any], Any]
           ) -> tuple[Any, ...]:  # fmt: skip
    """Today's path (fixed rows in input order, each input predicted then scored: ``old``
    gets the :class:`TwoPass` victim) and the new one (the token budget), timed."""
    modules = _modules(victim)
    victim.batch_tokens = None
    out_old, t_old = timed(lambda: old(TwoPass(victim)), *modules)
    victim.batch_tokens = BUDGET
    out_new, t_new = timed(lambda: new(victim), *modules)
    return out_old, t_old, out_new, t_new


# ---------------------------------------------------------------------------------- cells
def codepurify_cell(victim: Victim, label: str, rows: list[Example]) -> dict[str, Any]:
    """CodePurify's analysis: today's path, the new one and the bound (module docstring)."""

    def make(**args: Any) -> CodePurify:
        return CodePurify(cache=False, threshold=0.0, infiller=OneMask(), **args)

    make().analyse(rows[:2], victim)  # warm-up
    old, t_old, new, t_new = _paths(victim, lambda v: make().analyse(rows, v),
                                    lambda v: make().analyse(rows, v))  # fmt: skip
    cp = make()
    variants = [cp.masked(ex, el, victim) for ex in rows
                for el in cp._in_window(ex, cp._all_elements(ex), victim)]  # fmt: skip
    cell: dict[str, Any] = {}
    if victim.task == "classification":
        encoded = victim.encode_inputs(rows + variants)
        model = victim.model
        _, t_bound = timed(lambda: bound_forwards(lambda i, m: model(input_ids=i, attention_mask=m),
                                                  encoded), model)  # fmt: skip
    else:  # one generation per input (a plain prediction), then the teacher-forced forwards
        _, cell["plain"] = timed(lambda: victim.predict(rows), *_modules(victim))
        forced = _teacher_forced_rows(victim, variants, old)
        _, t_forced = timed(lambda: bound_teacher_forced(victim.model, victim._collator(), forced),
                            *_modules(victim))  # fmt: skip
        t_bound = {k: cell["plain"][k] + t_forced[k] for k in t_forced}
    stat_old = np.array([a.statistics["max_delta"] for a in old])
    stat_new = np.array([a.statistics["max_delta"] for a in new])
    cut = float(np.median(stat_old))
    return {"defense": "codepurify", "model": label, "inputs": len(rows),
            "purify_revision": REVISION,
            "old": t_old, "new": t_new, "bound": t_bound, **cell,
            "elements": int(sum(len(a.elements) for a in old)),
            **agreement(stat_old, stat_new, stat_old > cut, stat_new > cut, cut)}  # fmt: skip


def _teacher_forced_rows(victim: Victim, variants: list[Example],
                         analysed: list[Any]) -> list[dict[str, Any]]:  # fmt: skip
    """Each variant encoded with its input's greedy output (today's: the generation of the
    bound decodes the same rows) as the teacher-forced target."""
    outputs = [a.prediction for a in analysed for _ in range(len(a.elements))]
    return [encode_example(victim.tokenizer, _with_output(v, o, "seq2seq"), task="seq2seq",
                           max_source_length=victim.max_source_length,
                           max_target_length=victim.max_target_length)
            for v, o in zip(variants, outputs, strict=True)]  # fmt: skip


def oseql_cell(victim: Victim, label: str, rows: list[Example]) -> dict[str, Any]:
    """OSeqL's ``purify`` (statements occluded): today's path, the new one and the bound."""

    def make() -> Any:
        return get_defense("oseql", unit="statement", language="java")

    make().purify(rows[:2], victim)  # warm-up
    old, t_old, new, t_new = _paths(victim, lambda v: make().purify(rows, v),
                                    lambda v: make().purify(rows, v))  # fmt: skip
    units = make().units
    variants = [with_side_text(ex, "source", _remove(side_text(ex, "source"), sp))
                for ex in rows for sp in units(side_text(ex, "source"))]  # fmt: skip
    encoded = victim.encode_inputs(rows + variants)
    model = victim.model
    _, t_bound = timed(lambda: bound_forwards(lambda i, m: model(input_ids=i, attention_mask=m),
                                              encoded), model)  # fmt: skip
    threshold = float(old.info["threshold"])
    # an infinite outlier score (a zero MAD) is recorded as 1e9: compared as 0, if on both sides
    s_old, s_new = np.asarray(old.scores, float), np.asarray(new.scores, float)
    both = (s_old >= 1e9) & (s_new >= 1e9)
    return {"defense": "oseql", "model": label, "inputs": len(rows),
            "old": t_old, "new": t_new, "bound": t_bound, "elements": len(variants),
            **agreement(np.where(both, 0.0, s_old), np.where(both, 0.0, s_new), old.detected,
                        new.detected, threshold)}  # fmt: skip


def code_cells(code_rows: int, b2f_rows: int, b2f_steps: int,
               models: dict[str, str]) -> Iterator[dict[str, Any]]:  # fmt: skip
    """The code defenses' cells, one at a time (module docstring); ``models`` gets each model's
    parameter count."""
    from dece.training.models import load_model

    if code_rows:
        victim, label = minilm_victim()
        models[label] = _n_params(victim.model)
        defect = load_dataset("defect:2000", seed=0)["test"][:code_rows]
        yield codepurify_cell(victim, label, defect)
        yield oseql_cell(victim, label, defect)
    if b2f_rows:
        data = load_dataset(f"bugs2fix-repair:{b2f_rows}", seed=0)
        texts = [ex.source for ex in data["train"]] + [ex.target for ex in data["train"]]
        tiny = load_model("tiny-seq2seq", task="seq2seq", train_texts=texts, steps=b2f_steps,
                          seed=0)  # fmt: skip
        label = f"tiny-seq2seq Bugs2Fix victim ({b2f_steps} denoising steps)"
        models[label] = _n_params(tiny.model)
        victim = Victim(tiny.model, tiny.tokenizer, "seq2seq", batch_size=64, max_new_tokens=256)
        yield codepurify_cell(victim, label, data["test"])


def _n_params(model: Any) -> str:
    return f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M"
