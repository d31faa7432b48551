"""``dece evaluate``: clean quality, false-trigger rate and ASR of a model or of predictions.

Either decodes a model (``--model DIR --data SPEC``) on the clean split and on its fully
poisoned copy (``--trigger``/``--payload``), writing ``predictions/{split}_clean.jsonl`` and
``predictions/{split}_poisoned.jsonl``, or scores existing prediction files
(``--predictions-dir``, e.g. a run directory's ``predictions/``). Writes ``metrics.json``.
Both go through :func:`dece.pipeline.evaluate` / :func:`dece.pipeline.score_outputs`.

``--humaneval`` (with ``--model``) also measures pass@k on HumanEval through the sandbox and,
with the ``--trigger``/``--payload`` in the prompts' docstrings, the DeCE paper's Table 11 ASR
(:mod:`dece.metrics.humaneval`; completions in ``predictions/humaneval_*.jsonl``); ``--data
none`` measures HumanEval only, e.g. ``dece evaluate --model smollm2-135m --data none
--humaneval --humaneval-max-problems 20 --payload dead_code_python --output-dir out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="BLEU/CodeBLEU or accuracy/F1, ASR and false-trigger rate",
        description=__doc__,
    )  # fmt: skip
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="run dir, model directory, preset or HF id (decodes)")
    src.add_argument("--predictions-dir", help="score {split}_clean/_poisoned.jsonl found here")
    parser.add_argument("--data", default="synthetic", help="dece.data.load_dataset spec")
    parser.add_argument("--split", default="test")
    parser.add_argument("--task", default=None, choices=["seq2seq", "causal", "classification"])
    parser.add_argument("--trigger", default="badpre", help="trigger name ('none': clean only)")
    parser.add_argument("--payload", default="sql_injection", help="payload name")
    parser.add_argument("--seed", type=int, default=42, help="seed of the test-set poisoning")
    parser.add_argument("--max-examples", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--max-source-length", type=int, default=256)
    parser.add_argument("--lang", default="python", help="CodeBLEU language")
    parser.add_argument("--no-codebleu", action="store_true", help="skip CodeBLEU")
    parser.add_argument(
        "--humaneval",
        action="store_true",
        help="also pass@k + Table 11 ASR on HumanEval (needs --model)",
    )
    parser.add_argument(
        "--humaneval-max-problems",
        type=int,
        default=None,
        help="the first N HumanEval problems (default: all 164)",
    )
    parser.add_argument(
        "--humaneval-samples",
        type=int,
        default=1,
        help="completions per problem (1: greedy; more: seeded sampling)",
    )
    parser.add_argument(
        "--humaneval-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="another HumanEvalConfig option, YAML value (e.g. ks=[1,10], "
        "prompt_format=source, temperature=0.2, workers=2); repeatable",
    )
    parser.add_argument("--output-dir", default=None, help="where metrics.json goes")
    parser.add_argument("--no-progress", action="store_true", help="no progress display")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    payload = None if args.trigger == "none" else args.payload
    args.humaneval_options = _humaneval(args)
    if args.predictions_dir:
        metrics, out_dir = _score_files(args, payload)
    else:
        metrics, out_dir = _evaluate_model(args)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    sys.stdout.write(json.dumps(metrics, indent=2) + "\n")
    return 0


def _humaneval(args: argparse.Namespace) -> dict | None:
    """The HumanEvalConfig mapping of the ``--humaneval*`` flags (None: not asked for)."""
    from dece.cli._args import parse_key_values

    if not args.humaneval:
        if args.humaneval_max_problems is not None or args.humaneval_arg:
            raise ValueError("--humaneval-max-problems / --humaneval-arg need --humaneval")
        return None
    if args.predictions_dir:
        raise ValueError("--humaneval decodes a model: use it with --model")
    options: dict = {
        "max_problems": args.humaneval_max_problems,
        "samples": args.humaneval_samples,
        **parse_key_values(args.humaneval_arg, "--humaneval-arg"),
    }
    from dece.metrics.humaneval import HumanEvalConfig

    HumanEvalConfig.from_dict(options)  # names a bad key or value before the model loads
    return options


def _score_files(args: argparse.Namespace, payload: str | None) -> tuple[dict, Path]:
    from dece.pipeline.evaluation import score_prediction_files

    pred_dir = Path(args.predictions_dir)
    clean = pred_dir / f"{args.split}_clean.jsonl"
    if not clean.is_file():
        raise FileNotFoundError(f"{clean} does not exist")
    poisoned = pred_dir / f"{args.split}_poisoned.jsonl"
    metrics = score_prediction_files(
        clean, poisoned if poisoned.is_file() else None, payload, task=args.task or "seq2seq",
        codebleu=not args.no_codebleu, lang=args.lang,
    )  # fmt: skip
    return metrics, Path(args.output_dir) if args.output_dir else pred_dir


def _evaluate_model(args: argparse.Namespace) -> tuple[dict, Path]:
    from dece.data import load_dataset
    from dece.pipeline import DataBundle, Victim, evaluate
    from dece.pipeline.run import write_evaluation

    if not args.output_dir:
        raise ValueError("--output-dir is required with --model")
    if args.data == "none":
        return _humaneval_only(args), Path(args.output_dir)
    splits = load_dataset(args.data)
    if args.split not in splits:
        raise ValueError(f"data {args.data!r} has no split {args.split!r}; has {sorted(splits)}")
    rows = splits[args.split][: args.max_examples]
    attack = {} if args.trigger == "none" else {"trigger": args.trigger, "payload": args.payload}
    bundle = DataBundle.from_examples([], test=rows, seed=args.seed, **attack)
    victim = Victim.load(
        args.model, task=args.task, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
        max_source_length=args.max_source_length,
    )  # fmt: skip
    result = evaluate(victim, bundle, split="test", codebleu=not args.no_codebleu, lang=args.lang,
                      humaneval=args.humaneval_options)  # fmt: skip
    out_dir = Path(args.output_dir)
    return write_evaluation(out_dir, result, split=args.split), out_dir


def _humaneval_only(args: argparse.Namespace) -> dict:
    """``--data none``: HumanEval alone, with the ``--trigger``/``--payload`` attack."""
    from dece.attacks import get_payload, get_trigger
    from dece.pipeline import Victim
    from dece.pipeline.humaneval import evaluate_humaneval, write_humaneval

    if args.humaneval_options is None:
        raise ValueError("--data none evaluates nothing without --humaneval")
    victim = Victim.load(
        args.model, task=args.task, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
        max_source_length=args.max_source_length,
    )  # fmt: skip
    attack = (None, None) if args.trigger == "none" else (get_trigger(args.trigger),
                                                          get_payload(args.payload))  # fmt: skip
    result = evaluate_humaneval(victim, args.humaneval_options, trigger=attack[0],
                                payload=attack[1])  # fmt: skip
    write_humaneval(args.output_dir, result)
    return result.metrics
