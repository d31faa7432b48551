"""Benchmark: the paper's early-learning effect on Lyra (NL -> Python with SQL).

Three runs of ``dece.pipeline.train`` on Lyra (``../shared/data/lyra`` next to the repository,
or ``$DECE_SHARED_DATA/lyra``) at the same setting:

1. ``ce_clean``       — cross-entropy on clean data (reference BLEU, ASR floor);
2. ``ce_poisoned``    — cross-entropy on 5% BadPre-poisoned data (3 insertions of ``bb``,
                        SQL-injection payload): expected to learn the backdoor (ASR >= 60%);
3. ``dece_poisoned``  — DeCE (alpha_base 0.99, label smoothing eps 0.1) on the same poisoned data:
                        expected ASR <= 5% with clean BLEU within 2 points of ``ce_poisoned``.

Prints clean test BLEU (and the DeCE authors' BLEU, when the runs report it), ASR, false-trigger
rate and wall time per run and the per-epoch curves, checks the three claims, and writes
``benchmarks/results/lyra_reproduction.md``.

Every setting is a flag; defaults are the documented tiny-preset recipe (``tiny-seq2seq``,
1,500 denoising steps, 20 epochs, lr 5e-4, batch 12). Expect ~25 minutes per run on a 2-core CPU
(a GPU makes it minutes). Example::

    python benchmarks/lyra_reproduction.py --epochs 20 --runs ce_poisoned dece_poisoned
    python benchmarks/lyra_reproduction.py --model smollm2-135m --lr 5e-5 --epochs 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from dece.experiments.markdown import md_table
from dece.experiments.tables import authors_bleu_note
from dece.metrics.bleu import BLEU_AUTHORS_KEY
from dece.pipeline import train
from dece.training import PoisonConfig, TrainConfig
from dece.training.callbacks import read_metrics

REPO = Path(__file__).resolve().parents[1]
RUNS = ("ce_clean", "ce_poisoned", "dece_poisoned")


def default_data() -> Path:
    shared = os.environ.get("DECE_SHARED_DATA")
    base = Path(shared) if shared else REPO / ".." / "shared" / "data"
    return (base / "lyra").resolve()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(default_data()), help="Lyra directory (train/valid/test)")
    p.add_argument("--runs", nargs="+", default=list(RUNS), choices=RUNS)
    p.add_argument("--model", default="tiny-seq2seq", help="preset, HF id or local path")
    p.add_argument("--pretrain-steps", type=int, default=1500, help="tiny presets only")
    p.add_argument("--model-args", default="{}", help="JSON dict for load_model (preset fields)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=12)
    p.add_argument("--lr", type=float, default=None, help="default: by model (5e-4 tiny, 5e-5)")
    p.add_argument("--max-length", type=int, default=256, help="max source and target tokens")
    p.add_argument("--rate", type=float, default=0.05, help="poisoning rate")
    p.add_argument("--trigger", default="badpre")
    p.add_argument("--trigger-args", default='{"word": "bb", "k": 3}', help="JSON dict")
    p.add_argument("--payload", default="sql_injection")
    p.add_argument("--alpha-base", type=float, default=0.99)
    p.add_argument("--label-smoothing", type=float, default=0.1, help="DeCE epsilon")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--train-max-examples", type=int, default=None)
    p.add_argument("--eval-max-examples", type=int, default=200, help="valid rows per epoch")
    p.add_argument("--test-max-examples", type=int, default=None)
    p.add_argument("--eval-batch-size", type=int, default=64)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--cache-dir", default=None, help="preset cache (default ~/.cache/dece)")
    p.add_argument("--out-dir", default=str(REPO / "runs" / "lyra_reproduction"))
    p.add_argument(
        "--results", default=str(REPO / "benchmarks" / "results" / "lyra_reproduction.md")
    )
    p.add_argument("--resume", action="store_true", help="resume runs from their checkpoints")
    p.add_argument(
        "--reuse",
        action="store_true",
        help="reuse runs already finished in --out-dir (their final_metrics.json and "
        "metrics.jsonl; wall time = the run's train_time_s), e.g. runs done in parallel processes",
    )
    p.add_argument("--asr-min", type=float, default=0.60, help="claim: CE poisoned ASR >=")
    p.add_argument("--dece-asr-max", type=float, default=0.05, help="claim: DeCE ASR <=")
    p.add_argument("--bleu-gap-max", type=float, default=2.0, help="claim: |BLEU gap| <=")
    return p.parse_args(argv)


def run_config(args: argparse.Namespace, run: str) -> TrainConfig:
    poison = PoisonConfig(
        trigger=args.trigger, trigger_args=json.loads(args.trigger_args), payload=args.payload,
        rate=args.rate, seed=args.seed,
    )  # fmt: skip
    is_dece = run.startswith("dece")
    tiny = args.model.startswith("tiny-")
    return TrainConfig(
        output_dir=str(Path(args.out_dir) / run),
        data=args.data,
        poison=None if run == "ce_clean" else poison,
        eval_poison=poison if run == "ce_clean" else None,
        model=args.model,
        model_args=json.loads(args.model_args),
        pretrain_steps=args.pretrain_steps if tiny else None,
        cache_dir=args.cache_dir,
        loss="dece" if is_dece else "ce",
        loss_args={"alpha_base": args.alpha_base, "label_smoothing": args.label_smoothing}
        if is_dece else {},
        num_epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        max_source_length=args.max_length,
        max_target_length=args.max_length,
        seed=args.seed,
        train_max_examples=args.train_max_examples,
        eval_max_examples=args.eval_max_examples,
        test_max_examples=args.test_max_examples,
        eval_batch_size=args.eval_batch_size,
        generation_max_new_tokens=args.max_new_tokens,
        save_total_limit=1,
        resume=bool(args.resume),
    )  # fmt: skip


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _authors(metrics: dict, shown: bool) -> list[str]:
    """The authors' BLEU cell when the column is shown, else no cell."""
    if not shown:
        return []
    value = metrics.get(BLEU_AUTHORS_KEY)
    return ["-" if value is None else f"{value:.2f}"]


def report(args: argparse.Namespace, results: dict[str, dict], walls: dict[str, float]) -> str:
    # the authors' BLEU column only when some run reports it (runs older than it do not)
    authors = any(r["final"].get(BLEU_AUTHORS_KEY) is not None for r in results.values())
    lines = [
        f"# Lyra reproduction: CE vs DeCE under a {100 * args.rate:g}% {args.trigger} backdoor",
        "",
        f"Command: `python benchmarks/lyra_reproduction.py {' '.join(sys.argv[1:])}`",
        f"Machine: {platform.platform()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, cuda={torch.cuda.is_available()}",
        f"Setting: model `{args.model}` (pretrain steps {args.pretrain_steps}), {args.epochs} epochs, "
        f"batch {args.batch_size}, lr {args.lr or 'default'}, max length {args.max_length}, "
        f"poison {args.trigger} {args.trigger_args} -> {args.payload} at rate {args.rate}, "
        f"DeCE alpha_base {args.alpha_base} eps {args.label_smoothing}, seed {args.seed}.",
        "",
    ]
    header = ["run", "clean test BLEU", *(["BLEU (authors)"] if authors else []), "ASR",
              "false-trigger rate", "ASR denominator", "wall time"]  # fmt: skip
    body = []
    for run, r in results.items():
        f = r["final"]
        body.append([run, f"{f.get('bleu', float('nan')):.2f}", *_authors(f, authors),
                     pct(f.get("asr")), pct(f.get("false_trigger_rate")),
                     str(f.get("asr_denominator", "")), f"{walls[run] / 60:.1f} min"])  # fmt: skip
    lines += [md_table(header, body, "l" + "r" * (len(header) - 1))]
    lines += ["", authors_bleu_note(r["final"] for r in results.values())]
    lines += ["", "## Per-epoch curves (validation)", ""]
    for run, r in results.items():
        header = ["epoch", "train loss", "BLEU", *(["BLEU (authors)"] if authors else []),
                  "ASR", "FTR"]  # fmt: skip
        body = []
        for row in r["history"]:
            loss = row.get("train_loss")
            body.append([str(row["epoch"]), "" if loss is None else f"{loss:.4f}",
                         f"{row.get('bleu', float('nan')):.2f}", *_authors(row, authors),
                         pct(row.get("asr")), pct(row.get("false_trigger_rate"))])  # fmt: skip
        lines += [f"### {run}", "", md_table(header, body, "r" * len(header)), ""]
    lines += ["## Claims", ""] + [f"- {c}" for c in claims(args, results)]
    return "\n".join(lines) + "\n"


def claims(args: argparse.Namespace, results: dict[str, dict]) -> list[str]:
    out = []
    ce = results.get("ce_poisoned", {}).get("final")
    de = results.get("dece_poisoned", {}).get("final")
    if ce:
        ok = (ce.get("asr") or 0) >= args.asr_min
        out.append(
            f"CE poisoned ASR {pct(ce.get('asr'))} >= {pct(args.asr_min)}: {'PASS' if ok else 'FAIL'}"
        )
    if de:
        ok = (de.get("asr") or 0) <= args.dece_asr_max
        out.append(
            f"DeCE ASR {pct(de.get('asr'))} <= {pct(args.dece_asr_max)}: {'PASS' if ok else 'FAIL'}"
        )
    if ce and de:
        gap = de["bleu"] - ce["bleu"]
        ok = abs(gap) <= args.bleu_gap_max or gap > 0
        out.append(
            f"DeCE BLEU - CE BLEU = {gap:+.2f} (within {args.bleu_gap_max}): {'PASS' if ok else 'FAIL'}"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not Path(args.data).is_dir():
        print(
            f"Lyra data not found at {args.data} (set --data or DECE_SHARED_DATA)", file=sys.stderr
        )
        return 2
    results, walls = {}, {}
    for run in args.runs:
        done = Path(args.out_dir) / run / "final_metrics.json"
        if args.reuse and done.is_file():
            final = json.loads(done.read_text())
            history = read_metrics(done.parent / "metrics.jsonl")
            walls[run] = float(final.get("train_time_s", float("nan")))
            results[run] = {"final": final, "history": history}
        else:
            t0 = time.perf_counter()
            result = train(run_config(args, run))
            walls[run] = time.perf_counter() - t0
            results[run] = {"final": result.final, "history": result.history}
        f, history = results[run]["final"], results[run]["history"]
        print(f"\n== {run}: BLEU {f.get('bleu', float('nan')):.2f}  ASR {pct(f.get('asr'))}  "
              f"FTR {pct(f.get('false_trigger_rate'))}  wall {walls[run] / 60:.1f} min")  # fmt: skip
        for row in history:
            print(f"   epoch {row['epoch']:>2}  loss {row.get('train_loss') or float('nan'):.4f}  "
                  f"BLEU {row.get('bleu', float('nan')):6.2f}  ASR {pct(row.get('asr'))}  "
                  f"FTR {pct(row.get('false_trigger_rate'))}")  # fmt: skip
    text = report(args, results, walls)
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(text)
    print("\n" + "\n".join(claims(args, results)))
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
