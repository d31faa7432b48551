"""Benchmark: CodePurify's cost per input against a plain prediction (CodePurify's Table IV).

For ``--n`` test inputs of a trained run (half clean, half poisoned: the first ``n/2`` of each
set of the run's test split), each input is processed on its own — the same batch size (one
input) for both — and timed twice, interleaved input by input so both share the machine's load:

- **plain**: ``victim.predict([x])`` (greedy decoding);
- **defended**: ``CodePurify.defend([x], victim)``: the prediction of ``x``, the victim's
  confidence in it for every masked variant (one batched pass), the detection test (``--statistic``,
  default CodePurify's) and, when ``x``
  is judged poisoned (or always, with ``--no-detect``), the infilling model's re-fill and the
  victim's prediction on the purified input. Every call to the victim and to the infilling model
  is inside the timed region; the analysis cache is off.

Set-up outside the timed region, once: loading the models and calibrating the threshold on the
run's clean validation rows (``prepare``). Prints a markdown section (medians, ratio of medians,
median per-input ratio, means, calls per input) and writes it to ``--out`` when given.

Without a trained run, ``--standin-steps S`` measures the same on a stand-in (issue 27): a
``tiny-seq2seq`` denoising-pretrained for ``S`` steps on the Bugs2Fix training code (the program-
repair victims' starting point, seed 0, from the preset cache that ``defense_cost.py`` builds) is
both the victim and the infiller, on the test rows of ``bugs2fix-repair:<n/2>`` (data seed 0)
clean and with the DeadCode trigger, calibrated on 200 clean validation rows. It has no
backdoor and was not fine-tuned on repair; its greedy outputs re-write the input at about its
length, as a repair victim's do, so it measures the cost, not the defense's effect.

Usage: ``python benchmarks/codepurify_cost.py --run runs/bugs2fix_codepurify/<cell> [--n 200]
[--normalisation softmax|sum] [--statistic max_delta|entropy|entropy_gap] [--threads 1]
[--out PATH]``, or ``--standin-steps 300`` in place of ``--run``
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from dece.data import load_dataset
from dece.defenses import CodePurify
from dece.defenses.codepurify_stats import STATISTICS
from dece.defenses.infill import Seq2SeqInfiller
from dece.experiments.markdown import md_table
from dece.pipeline.data import DataBundle, prepare_data
from dece.pipeline.fit import victim_settings
from dece.training.config import PoisonConfig, ResolvedTrainConfig, TrainConfig
from dece.victim import Victim


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    source = ap.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="a finished run (config.yaml + model/)")
    source.add_argument("--standin-steps", type=int, default=None,
                        help="no run: the Bugs2Fix stand-in victim (module docstring)")  # fmt: skip
    ap.add_argument("--n", type=int, default=200, help="inputs, half clean and half poisoned")
    ap.add_argument("--normalisation", default="softmax", choices=["softmax", "sum"])
    ap.add_argument("--statistic", default=CodePurify.statistic, choices=list(STATISTICS))
    ap.add_argument("--clean-fraction", type=float, default=CodePurify.clean_fraction)
    ap.add_argument("--no-detect", action="store_true", help="purify every input (-E)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    infiller: dict = {}
    if args.run:
        run = Path(args.run)
        cfg = ResolvedTrainConfig.from_yaml(run / "config.yaml")
        bundle = prepare_data(cfg)
        victim = Victim.load(run / "model", **victim_settings(cfg))
    else:
        bundle, victim = standin(args.standin_steps, args.n // 2)
        infiller["infiller"] = Seq2SeqInfiller(victim.model, victim.tokenizer)
    cp = CodePurify(normalisation=args.normalisation, clean_fraction=args.clean_fraction,
                    statistic=args.statistic, detect=not args.no_detect, cache=False,
                    **infiller)  # fmt: skip
    t0 = time.perf_counter()
    cp.prepare(bundle, victim)
    setup_s = time.perf_counter() - t0
    half = args.n // 2
    inputs = [("clean", ex) for ex in bundle.test.clean[:half]]
    inputs += [("poisoned", ex) for ex in (bundle.test.poisoned or [])[:half]]
    for _, ex in inputs[: args.warmup]:
        victim.predict([ex])
        cp.defend([ex], victim)

    rows = []
    for kind, ex in inputs:
        t, c = time.perf_counter(), time.process_time()
        victim.predict([ex])
        plain, plain_cpu = time.perf_counter() - t, time.process_time() - c
        calls = dict(victim.stats.rows)
        fills = cp._infiller.calls
        t, c = time.perf_counter(), time.process_time()
        result, _ = cp.defend([ex], victim)
        defended, defended_cpu = time.perf_counter() - t, time.process_time() - c
        rows.append({
            "kind": kind, "plain_s": plain, "defended_s": defended,
            "plain_cpu_s": plain_cpu, "defended_cpu_s": defended_cpu,
            "detected": bool(result.detected[0]),
            "victim_rows": {k: v - calls.get(k, 0) for k, v in victim.stats.rows.items()},
            "infiller_calls": cp._infiller.calls - fills,
        })  # fmt: skip
    text = report(rows, args, setup_s, cp)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
        Path(args.out).with_suffix(".json").write_text(json.dumps(rows, indent=1))


def standin(steps: int, n_test: int) -> tuple[DataBundle, Victim]:
    """The stand-in's inputs and victim (module docstring)."""
    from dece.training.models import load_model

    cfg = TrainConfig(output_dir="unused", data=f"bugs2fix-repair:{n_test}", data_seed=0,
                      train_max_examples=100, eval_max_examples=200, model="tiny-seq2seq",
                      task="seq2seq", poison=PoisonConfig(trigger="deadcode",
                                                          payload="infinite_loop"))  # fmt: skip
    bundle = prepare_data(cfg)
    train = load_dataset(f"bugs2fix-repair:{n_test}", seed=0)["train"]
    texts = [ex.source for ex in train] + [ex.target for ex in train]
    tiny = load_model("tiny-seq2seq", task="seq2seq", train_texts=texts, steps=steps, seed=0)
    victim = Victim(tiny.model, tiny.tokenizer, "seq2seq", max_source_length=128,
                    max_target_length=128, max_new_tokens=100)  # fmt: skip
    return bundle, victim


def report(rows: list[dict], args: argparse.Namespace, setup_s: float, cp: CodePurify) -> str:
    plain = [r["plain_s"] for r in rows]
    defended = [r["defended_s"] for r in rows]
    ratios = [d / p for d, p in zip(defended, plain, strict=True)]
    med_p, med_d = statistics.median(plain), statistics.median(defended)
    flags = " --no-detect" if args.no_detect else ""
    if args.clean_fraction != CodePurify.clean_fraction:
        flags += f" --clean-fraction {args.clean_fraction}"
    if args.statistic != CodePurify.statistic:
        flags += f" --statistic {args.statistic}"
    threshold = (
        f"threshold {cp._threshold:.4f} ({args.statistic}, {args.normalisation}, "
        f"{args.clean_fraction:.0%} of "
        "clean validation inputs)"
        if cp._threshold is not None
        else "no detection (-E): every input is purified"
    )
    lines = [
        "Command: `python benchmarks/codepurify_cost.py "
        + (f"--run {args.run}" if args.run else f"--standin-steps {args.standin_steps}")
        + f" --n {args.n} "
        f"--normalisation {args.normalisation} --threads {args.threads}{flags}`",
        f"Machine: {platform.platform()}, torch {torch.__version__}, {args.threads} thread(s); "
        f"set-up (models + calibration, untimed): {setup_s:.1f} s; {threshold}",
        "",
    ]
    header = ["inputs", "n", "detected", "median plain s", "median defended s", "ratio of medians",
              "median per-input ratio", "mean plain s", "mean defended s"]  # fmt: skip
    body = []
    for kind in ("all", "clean", "poisoned"):
        sel = [r for r in rows if kind == "all" or r["kind"] == kind]
        if not sel:
            continue
        p = [r["plain_s"] for r in sel]
        d = [r["defended_s"] for r in sel]
        rr = [x / y for x, y in zip(d, p, strict=True)]
        body.append([kind, str(len(sel)), str(sum(r["detected"] for r in sel)),
                     f"{statistics.median(p):.4f}", f"{statistics.median(d):.4f}",
                     f"{statistics.median(d) / statistics.median(p):.2f}x",
                     f"{statistics.median(rr):.2f}x", f"{np.mean(p):.4f}",
                     f"{np.mean(d):.4f}"])  # fmt: skip
    lines.append(md_table(header, body, "l" + "r" * (len(header) - 1)))
    calls = {k: np.mean([r["victim_rows"].get(k, 0) for r in rows]) for k in
             ("predict", "confidence")}  # fmt: skip
    lines += [
        "",
        f"Median defended / median plain = **{med_d / med_p:.2f}x** ({med_d:.4f} s vs "
        f"{med_p:.4f} s per input); median per-input ratio {statistics.median(ratios):.2f}x. "
        f"Per input on average: {calls['predict']:.2f} rows decoded by the victim, "
        f"{calls['confidence']:.1f} rows scored (confidence), "
        f"{np.mean([r['infiller_calls'] for r in rows]):.2f} infilling calls.",
    ]
    if "plain_cpu_s" in rows[0]:  # CPU seconds: a shared machine's load does not inflate them
        cpu_p = statistics.median(r["plain_cpu_s"] for r in rows)
        cpu_d = statistics.median(r["defended_cpu_s"] for r in rows)
        lines += ["", f"CPU seconds of this process (one thread): median plain {cpu_p:.4f} s, "
                      f"median defended {cpu_d:.4f} s, ratio of medians **{cpu_d / cpu_p:.2f}x**."]  # fmt: skip
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
