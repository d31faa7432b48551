"""Each defense that runs a model, at the cost of the work it needs (issue 27).

For every listed defense, on a fixed input set, in one process and on the same threads: today's
path (the reference: fixed-row batches in input order, ONION scoring every leave-one-out variant
in full), the new path, and the defense's *lower bound*: the model forwards its algorithm
requires, run with the same model at the best batch shape (pre-tokenised rows sorted by length,
a token budget per batch, ``torch.inference_mode``, no disk cache). The ratio is a path's time
over its bound. A forward hook counts the forward calls and tokens each path runs.

The bound of each defense (the forwards its algorithm cannot skip):

- ``spectral``, ``activation_clustering``: one encoder pass over the ``N`` rows (the
  representations; the SVD / clustering after it is not a forward and is timed in the path only);
- ``bki``: one encoder pass over each row and over each of its ``n_words`` one-word-deleted
  variants (the encoder is bidirectional: a deletion changes every position, nothing is shared);
- ``onion``: per text, one causal-LM pass over its ``L`` tokens, and per leave-one-word-out
  variant a pass over its tokens after the prefix it shares with the text (the prefix's keys and
  values are the text's; counted as standalone sequences of that length, logits included);
- ``codepurify`` (classification: ``N + 1`` encoder forwards per input over it and its ``N``
  masked variants; generation: one greedy generation per input plus one teacher-forced forward
  of that output under each masked variant) and ``oseql`` (one forward per input and per
  occluded statement): ``code_defense_cost.py``, whose cells these are.

Not listed: ``moderate_fitting`` (a training recipe), ``keyword`` and ``none`` (no model),
``paraphrase`` (replays the authors' paraphrased texts), ``naturalness`` (n-gram counts, no
neural model), ``dynamics`` (reads the losses recorded during training). Not measured yet
(pending, named in the results): ONION with the ``tiny-causal`` LM pretrained on Lyra (the
benchmark uses the preset's architecture untrained: the cost does not depend on the weights),
the MiniLM victim under the training-time filters.

Code inputs: CodePurify (classification) and OSeqL run the MiniLM defect classifier of
``code_defense_cost.MINILM_RUN`` (read only; absent, the ``minilm`` preset with a fresh head) on
``defect`` test rows; CodePurify (generation) runs a ``tiny-seq2seq`` victim denoising-pretrained
for ``--b2f-steps`` steps on the Bugs2Fix training code (``bugs2fix-repair``; the program-repair
victims' starting point, whose greedy outputs re-write the input at its length, as a repair
victim's do; built once into the preset cache) on Bugs2Fix test rows.

Times are CPU seconds of this process (``time.process_time``), because the machine is shared:
with one thread they equal the wall time of an idle machine, and a busy neighbour does not
inflate them; wall seconds are recorded too.

    python benchmarks/defense_cost.py [--rows 200] [--bki-rows 20] [--onion-rows 20]
        [--smollm2-rows 2] [--code-rows 20] [--b2f-rows 20] [--threads 1]
        [--out benchmarks/results/defense_cost.md]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from code_defense_cost import code_cells
from cost_probe import BUDGET, agreement, bound_forwards, timed

from dece.data import Example, load_dataset
from dece.defenses import get_defense
from dece.defenses.bki import _without, _words
from dece.defenses.onion import _WORD, _common_prefix, leave_one_out_suspicion, token_rows
from dece.experiments.markdown import md_table
from dece.victim import Victim

REPO = Path(__file__).resolve().parents[1]
LYRA = Path("/work/shared/data/lyra")


# ---------------------------------------------------------------------------------- cells
def filter_cell(name: str, victim: Victim, rows: list[Example], variants: bool,
                **args: Any) -> dict[str, Any]:  # fmt: skip
    """A victim-based filter: today (fixed rows), new (token budget), bound (encoder passes)."""
    encoder = victim.model.get_encoder()
    get_defense(name, **args).score(rows[:16], victim)  # warm-up (imports, first calls)
    victim.batch_tokens = None
    old, t_old = timed(lambda: get_defense(name, **args).score(rows, victim), encoder)
    victim.batch_tokens = BUDGET
    new, t_new = timed(lambda: get_defense(name, **args).score(rows, victim), encoder)
    texts = rows
    if variants:  # BKI: every row and each of its one-word deletions
        texts = [v for ex in rows for v in [ex] + [_without(ex, s, i) for s, i, _ in _words(ex)]]
    encoded = victim.encode_inputs(texts)
    _, t_bound = timed(lambda: bound_forwards(lambda i, m: encoder(input_ids=i, attention_mask=m),
                                              encoded), encoder)  # fmt: skip
    return {
        "defense": name,
        "model": "tiny-seq2seq victim",
        "inputs": len(rows),
        "old": t_old,
        "new": t_new,
        "bound": t_bound,
        **agreement(old.scores, new.scores, old.flagged, new.flagged, old.threshold),
    }


def onion_cell(label: str, model: Any, tok: Any, texts: list[str]) -> dict[str, Any]:
    """ONION's suspicions: every variant in full (today) vs prefix-shared (new) vs the bound."""
    old, t_old = timed(lambda: [leave_one_out_suspicion(model, tok, t, prefix_cache=False)
                                for t in texts], model)  # fmt: skip
    new, t_new = timed(lambda: [leave_one_out_suspicion(model, tok, t) for t in texts], model)
    needed: list[list[int]] = []
    for text in texts:
        words = _WORD.findall(text)
        variants = [" ".join(words[:i] + words[i + 1 :]) or " " for i in range(len(words))]
        base, *rest = token_rows(tok, [" ".join(words), *variants])
        needed.append(base)
        for v in rest:
            k = _common_prefix(base, v)
            if len(v) - 1 > k:
                needed.append(v[k:-1])  # the tokens after the shared prefix that must run
    _, t_bound = timed(lambda: bound_forwards(lambda i, m: model(input_ids=i, attention_mask=m),
                                              needed), model)  # fmt: skip
    a, b = np.concatenate(old), np.concatenate(new)
    scale = max(float(np.abs(a).max(initial=0.0)), 1e-12)
    return {
        "defense": "onion",
        "model": label,
        "inputs": len(texts),
        "old": t_old,
        "new": t_new,
        "bound": t_bound,
        "max_rel_diff": float(np.abs(a - b).max()) / scale,
        "decisions_differ": None,
        "differ_near_threshold": None,
    }


def victim_speedup(victim: Victim, rows: list[Example], n_predict: int) -> list[dict[str, Any]]:
    """Item 3: embed / confidence / predict, fixed rows in input order vs the token budget."""
    out = []
    calls = {"embed": (lambda: victim.embed(rows)),
             "confidence": (lambda: victim.confidence(rows, [ex.target for ex in rows])),
             "predict": (lambda: victim.predict(rows[:n_predict]))}  # fmt: skip
    for method, fn in calls.items():
        victim.batch_tokens = None
        old, t_old = timed(fn, victim.model)
        victim.batch_tokens = BUDGET
        new, t_new = timed(fn, victim.model)
        same = (sum(a == b for a, b in zip(old, new, strict=True)) if method == "predict" else
                float(np.abs(np.asarray(old) - np.asarray(new)).max()))  # fmt: skip
        out.append({"method": method, "rows": n_predict if method == "predict" else len(rows),
                    "old": t_old, "new": t_new, "same": same})  # fmt: skip
    return out


# ---------------------------------------------------------------------------------- report
def revision() -> str:
    def git(*a: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *a], capture_output=True,
                              text=True).stdout.strip()  # fmt: skip

    return git("rev-parse", "--short", "HEAD") + ("+dirty" if git("status", "--porcelain",
                                                                   "src") else "")  # fmt: skip


def n_params(model: torch.nn.Module) -> str:
    return f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M"


def report(cells: list[dict], speed: list[dict], meta: dict[str, Any]) -> str:
    lines = ["# Defense cost against each defense's lower bound (issue 27)", "",
             f"Written by `benchmarks/defense_cost.py`; code revision `{meta['revision']}`; "
             f"{meta['machine']}; torch {torch.__version__}, {meta['threads']} thread(s). "
             "Times are CPU seconds of the benchmark process (the machine is shared with a "
             "long experiment; wall seconds under that load are not comparable); each cell's "
             "three paths ran in one process, one after the other.", "",
             f"Models: {meta['models']}. Inputs: {meta['inputs']}.", ""]  # fmt: skip
    header = ["defense", "model", "inputs", "today s", "new s", "bound s", "today/bound",
              "new/bound", "new/today", "forwards today / new / bound",
              "tokens today / new / bound", "max rel. score diff",
              "decisions differ (near threshold)"]  # fmt: skip
    body = []
    for c in cells:
        o, n, b = c["old"], c["new"], c["bound"]
        dec = ("-" if c["decisions_differ"] is None
               else f"{c['decisions_differ']} ({c['differ_near_threshold']})")  # fmt: skip
        body.append([c["defense"], c["model"], _inputs(c), f"{o['cpu_s']:.2f}",
                     f"{n['cpu_s']:.2f}", f"{b['cpu_s']:.2f}", f"{o['cpu_s'] / b['cpu_s']:.2f}x",
                     f"{n['cpu_s'] / b['cpu_s']:.2f}x", f"{n['cpu_s'] / o['cpu_s']:.2f}x",
                     f"{o['forwards']} / {n['forwards']} / {b['forwards']}",
                     f"{o['padded']} / {n['padded']} / {b['padded']}",
                     f"{c['max_rel_diff']:.1e}", dec])  # fmt: skip
    lines += [
        md_table(header, body),
        "",
        "Tokens are padded tokens fed to the model (the bound's batches are "
        "length-sorted, so its padding is small). Scores: the largest difference between "
        "today's and the new path relative to the largest |score|; decisions that differ, and "
        "in brackets how many of those have a score within 1e-4 x that scale of the threshold.",
        "",
        *NOTES,
        "",
        "## Victim batching (item 3), tiny victim on the Lyra test set",
        "",
    ]
    header = ["method", "rows", "fixed rows, input order s", "token budget s", "new/old",
              "outputs (max abs diff, or identical greedy outputs)"]  # fmt: skip
    body = [[s["method"], str(s["rows"]), f"{s['old']['cpu_s']:.2f}", f"{s['new']['cpu_s']:.2f}",
             f"{s['new']['cpu_s'] / s['old']['cpu_s']:.2f}x", str(s["same"])]
            for s in speed]  # fmt: skip
    lines.append(md_table(header, body))
    return "\n".join(lines + targets(cells, speed)) + "\n"


def _inputs(cell: dict) -> str:
    """The inputs of a cell, and the variants a code defense scores for them."""
    return f"{cell['inputs']} ({cell['elements']} variants)" if "elements" in cell else (
        str(cell["inputs"]))  # fmt: skip


def targets(cells: list[dict], speed: list[dict]) -> list[str]:
    """The issue's targets against this run's numbers (CPU-second ratios)."""
    out = ["", "## Against the issue's targets", ""]
    for c in cells:
        ratio = c["new"]["cpu_s"] / c["bound"]["cpu_s"]
        out.append(f"- {c['defense']} ({c['model']}): {ratio:.2f}x its bound, target <= 1.5x: "
                   f"{'met' if ratio <= 1.5 else 'not met'}")  # fmt: skip
    for c in cells:
        if c["model"].startswith("SmolLM2"):
            r, floor = (c["new"]["cpu_s"] / c["old"]["cpu_s"],
                        c["bound"]["cpu_s"] / c["old"]["cpu_s"])  # fmt: skip
            out.append(f"- ONION with SmolLM2-135M: {r:.2f}x today's time per description, "
                       f"target <= 0.5x: {'met' if r <= 0.5 else 'not met'} (its bound, the "
                       f"prefix-shared work, is {floor:.2f}x today's)")  # fmt: skip
    for sp in speed:
        if sp["method"] == "embed":
            r = sp["new"]["cpu_s"] / sp["old"]["cpu_s"]
            out.append(
                f"- embedding pass of the tiny victim: {r:.2f}x today's, target <= 0.3x: "
                f"{'met' if r <= 0.3 else 'not met'} (the spectral row gives its bound)"
            )
    for c in cells:
        if "plain" in c:
            r, floor = (c["new"]["cpu_s"] / c["plain"]["cpu_s"],
                        c["bound"]["cpu_s"] / c["plain"]["cpu_s"])  # fmt: skip
            out.append(f"- CodePurify on program repair ({c['model']}, {c['inputs']} inputs in "
                       f"one batched call, its analysis; no input re-filled): {r:.2f}x a plain "
                       "prediction of the same inputs at the same batching, target <= 1.5x: "
                       f"{'met' if r <= 1.5 else 'not met'} (its bound, one generation plus "
                       f"the teacher-forced forwards, is {floor:.2f}x)")  # fmt: skip
    out += REPAIR_PER_INPUT
    return out


NOTES = (
    "Bounds (the forwards each algorithm requires): spectral and activation_clustering, one "
    "encoder pass over the rows; bki, one encoder pass over each row and each of its one-word "
    "deletions (a bidirectional encoder shares nothing between them); onion, per text one "
    "causal-LM pass over its tokens plus, per leave-one-word-out variant, its tokens after the "
    "prefix it shares with the text (logits included); codepurify on a classifier, N + 1 "
    "forwards per input (the input, whose prediction's logits give its confidence, and its N "
    "masked variants); codepurify on a generation victim, one greedy generation per input plus "
    "one teacher-forced forward of that output under each masked variant (the path also scores "
    "the unmasked input's own output, one forward more per input); oseql, one forward per "
    "input and per occluded statement. CodePurify's cells time its analysis (prediction, "
    "scores, statistic), not the re-fill of the inputs it detects (5% of clean inputs at the "
    "default calibration), and compare its max_delta statistic, decisions at today's median "
    "(half the inputs flagged); OSeqL's time its whole purify (statements occluded: Bugs2Fix "
    "code is one line) and compare its outlier score and decisions at 3.5. Today's path for "
    "both predicts and then scores each input in two passes (a victim without "
    "predict_with_confidence); the new one takes a classifier's prediction and confidence "
    "from one forward (CodePurify revision 5, recorded in its cells as purify_revision).",
    "",
    "Code victims: the MiniLM defect classifier trained by benchmarks/codepurify_premise.py "
    "(/work/main/runs/codepurify_premise/c5b1f7d682bd, read only); for program repair, a "
    "tiny-seq2seq denoising-pretrained 300 steps on the Bugs2Fix training code (no repair "
    "fine-tuning: no trained repair victim is on this machine; its greedy outputs re-write the "
    "input at about its length, as a repair victim's do, so decoding and teacher-forcing run "
    "over outputs of realistic length; the cost does not depend on what the output says).",
    "",
    "Not listed: moderate_fitting (a training recipe), keyword and none (no model), paraphrase "
    "(replays the authors' paraphrased texts), naturalness (n-gram counts), dynamics (reads "
    "the losses recorded in training). Pending: the training-time filters (spectral, "
    "activation_clustering, bki) with the MiniLM victim on defect rows, CodePurify with a "
    "repair-trained Bugs2Fix victim (none on this machine; the stand-in above) and a per-input "
    "profile of its batch-of-one cost, ONION with the "
    "tiny-causal LM pretrained on Lyra (here the preset's architecture, untrained: the cost "
    "does not depend on the weights; the Lyra victim likewise is the tiny-seq2seq preset "
    "untrained: its greedy outputs end after a few tokens, so the predict row measures "
    "batching, not a trained model's decoding).",
    "",
    "The CodePurify paper's Table IV (seconds per test input at inference, hardware not "
    "stated), beside which our ratios stand: undefended 0.01 / 0.02 / 0.34 s (defect / clone / "
    "repair); CodePurify 0.21 / 0.23 / 0.82 s (21x / 11.5x / 2.41x undefended); ONION 2.47 / "
    "1.86 / 1.98 s; OSeqL 0.45 / 1.07 s / not run on repair. Its repair ratio, 2.41x, is the one "
    "the <= 1.5x target is set against (ours: the targets below).",
)

#: CodePurify against a plain prediction per input, batch of one (``codepurify_cost.py``):
#: written by hand from that benchmark's own result file.
REPAIR_PER_INPUT: list[str] = [
    "- CodePurify on program repair per input, batch of one (the paper's Table IV measure; "
    "benchmarks/codepurify_cost.py --standin-steps 300 --n 40, the same stand-in victim, "
    "revision 735240c, results/codepurify_cost_bugs2fix_standin.md): 2.02x a plain prediction "
    "in CPU seconds (median 0.328 s vs 0.162 s; wall: median per-input ratio 1.90x), target "
    "<= 1.5x: not met. By the path's construction (not profiled per input here), defended "
    "minus plain is the analysis' scoring pass, the input and its 13.8 masked variants on "
    "average teacher-forced in one batch, which the bound needs bar the input's own row (1 of "
    "14.8); the batched row above puts the analysis at 1.05x its bound. So on this model the "
    "1.5x target sits below the bound; a plain prediction's share depends on the output "
    "length and the model. The trained repair victim of issue 12 measured 1.91x (wall, 200 "
    "inputs, results/codepurify_cost_bugs2fix.md, before revision 4).",
]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200, help="Lyra training rows (SS, AC)")
    parser.add_argument("--bki-rows", type=int, default=20, help="Lyra training rows (BKI)")
    parser.add_argument("--onion-rows", type=int, default=20, help="descriptions (tiny LM)")
    parser.add_argument("--smollm2-rows", type=int, default=2, help="descriptions (SmolLM2)")
    parser.add_argument("--predict-rows", type=int, default=50, help="Lyra test rows, predict")
    parser.add_argument("--test-rows", type=int, default=200, help="Lyra test rows, embed etc.")
    parser.add_argument(
        "--code-rows",
        type=int,
        default=20,
        help="defect test rows (CodePurify classification, OSeqL)",
    )
    parser.add_argument(
        "--b2f-rows", type=int, default=20, help="Bugs2Fix test rows (CodePurify generation)"
    )
    parser.add_argument(
        "--b2f-steps",
        type=int,
        default=300,
        help="denoising steps of the Bugs2Fix tiny-seq2seq victim",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rewrite", action="store_true",
                        help="only rewrite the markdown from the .json next to --out")  # fmt: skip
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/defense_cost.md")
    args = parser.parse_args(argv)
    if args.rewrite:
        saved = json.loads(args.out.with_suffix(".json").read_text())
        args.out.write_text(report(saved["cells"], saved["victim"], saved["meta"]))
        return
    torch.set_num_threads(args.threads)
    from dece.training.models import load_model

    meta = {"revision": revision(), "threads": args.threads,
            "machine": f"{platform.machine()} {_cpu_name()}, {platform.python_version()}",
            "inputs": f"Lyra train rows 0..{args.rows} (SS, AC), 0..{args.bki_rows} (BKI); "
                      f"Lyra test descriptions 0..{args.onion_rows} (ONION, tiny LM), "
                      f"0..{args.smollm2_rows} (ONION, SmolLM2); Lyra test rows "
                      f"0..{args.test_rows} (embed, confidence), 0..{args.predict_rows} "
                      f"(predict, 192 new tokens at most); defect test rows 0..{args.code_rows} "
                      "(seed 0; CodePurify classification, OSeqL); the test rows of "
                      f"bugs2fix-repair:{args.b2f_rows} (seed 0; CodePurify generation)"}  # fmt: skip
    cells: list[dict] = []
    speed: list[dict] = []

    def write() -> None:  # after every cell: a run cut short keeps what it measured
        meta["models"] = ", ".join(f"{k} {v} parameters" for k, v in models.items())
        args.out.write_text(report(cells, speed, meta))
        args.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "cells": cells,
                                                             "victim": speed}, indent=1))  # fmt: skip

    data = load_dataset(str(LYRA))
    train, test = data["train"], data["test"]
    texts = [ex.source for ex in train] + [ex.target for ex in train]
    tiny = load_model("tiny-seq2seq", task="seq2seq", train_texts=texts, steps=0, seed=0)
    victim = Victim(tiny.model, tiny.tokenizer, "seq2seq", batch_size=64, max_new_tokens=192)
    causal = load_model("tiny-causal", task="causal", train_texts=texts, steps=0, seed=0)
    models = {"tiny-seq2seq victim": n_params(tiny.model), "tiny-causal LM": n_params(causal.model)}
    lm = causal.model.eval()
    victim.embed(train[:8])  # warm-up: one-time set-up is not any path's cost
    leave_one_out_suspicion(lm, causal.tokenizer, train[0].source)
    for name, n in (("spectral", args.rows), ("activation_clustering", args.rows),
                    ("bki", args.bki_rows)):  # fmt: skip
        cells.append(filter_cell(name, victim, train[:n], name == "bki"))
        write()
    cells.append(onion_cell("tiny-causal (untrained)", lm, causal.tokenizer,
                            [ex.source for ex in test[: args.onion_rows]]))  # fmt: skip
    write()
    speed += victim_speedup(victim, test[: args.test_rows], args.predict_rows)
    write()
    if args.smollm2_rows:
        from dece.defenses.onion import load_causal_lm

        smol, tok, _ = load_causal_lm("smollm2-135m")
        models["SmolLM2-135M"] = n_params(smol)
        cells.append(onion_cell("SmolLM2-135M", smol, tok,
                                [ex.source for ex in test[: args.smollm2_rows]]))  # fmt: skip
    write()
    for cell in code_cells(args.code_rows, args.b2f_rows, args.b2f_steps, models):
        cells.append(cell)
        write()


def _cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


if __name__ == "__main__":
    main()
