"""``dece evaluate``: clean BLEU / CodeBLEU / false-trigger rate and ASR of a model on a split.

Either decodes a model (``--model DIR --data SPEC``) on the clean split and on its fully
poisoned copy (``--trigger``/``--payload``), writing ``predictions/{split}_clean.jsonl`` and
``predictions/{split}_poisoned.jsonl``, or scores existing prediction files
(``--predictions-dir``, e.g. a run directory's ``predictions/``). Writes ``metrics.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from dece._jsonl import read_jsonl


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="BLEU, CodeBLEU, ASR and false-trigger rate of a model or predictions",
        description=__doc__,
    )  # fmt: skip
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="model directory, preset or HF id (decodes the split)")
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
    parser.add_argument("--output-dir", default=None, help="where metrics.json goes")
    parser.set_defaults(func=run)


def _read_jsonl(path: Path) -> list[dict]:
    rows = read_jsonl(path)
    for lineno, row in enumerate(rows, start=1):
        for key in ("id", "prediction"):
            if key not in row:
                raise ValueError(f"{path}: row {lineno} has no {key!r} field")
    return rows


def score_predictions(
    clean: list[dict], poisoned: list[dict] | None, payload: Any, *, codebleu: bool, lang: str
) -> dict[str, Any]:
    """Metrics of prediction rows (``{"id", "prediction", "reference"}``)."""
    from types import SimpleNamespace

    from dece import metrics as M
    from dece.training.generation import _maybe_codebleu

    out: dict[str, Any] = {}
    if clean:
        preds = [r["prediction"] for r in clean]
        refs = [r.get("reference", "") for r in clean]
        out.update(bleu=M.bleu(preds, refs), exact_match=M.exact_match(preds, refs))
        if codebleu:
            out.update(_maybe_codebleu(preds, refs, lang))
        if payload is not None:
            out["false_trigger_rate"] = M.false_trigger_rate(preds, payload)
        out["n_clean"] = len(clean)
    if poisoned:
        manifest = SimpleNamespace(poisoned_ids=[r["id"] for r in poisoned])
        outputs = {r["id"]: r["prediction"] for r in poisoned}
        out["asr"] = M.attack_success_rate(outputs, payload, manifest)
        out["asr_denominator"] = len(poisoned)
    return out


def run(args: argparse.Namespace) -> int:
    payload = None if args.trigger == "none" else args.payload
    if args.predictions_dir:
        pred_dir = Path(args.predictions_dir)
        clean_path = pred_dir / f"{args.split}_clean.jsonl"
        if not clean_path.is_file():
            raise FileNotFoundError(f"{clean_path} does not exist")
        poisoned_path = pred_dir / f"{args.split}_poisoned.jsonl"
        poisoned = _read_jsonl(poisoned_path) if poisoned_path.is_file() and payload else None
        metrics = score_predictions(
            _read_jsonl(clean_path),
            poisoned,
            payload,
            codebleu=not args.no_codebleu,
            lang=args.lang,
        )
        out_dir = Path(args.output_dir) if args.output_dir else pred_dir
    else:
        metrics, out_dir = _evaluate_model(args, payload)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    sys.stdout.write(json.dumps(metrics, indent=2) + "\n")
    return 0


def _evaluate_model(args: argparse.Namespace, payload: str | None) -> tuple[dict, Path]:
    from dece.attacks import poison_test_set
    from dece.cli.generate import load_for_inference
    from dece.data import load_dataset
    from dece.training.generation import Evaluator
    from dece.training.train import write_predictions

    if not args.output_dir:
        raise ValueError("--output-dir is required with --model")
    splits = load_dataset(args.data)
    if args.split not in splits:
        raise ValueError(f"data {args.data!r} has no split {args.split!r}; has {sorted(splits)}")
    clean = splits[args.split][: args.max_examples]
    poisoned, manifest = None, None
    if payload is not None:
        result = poison_test_set(clean, args.trigger, payload, args.seed)
        poisoned, manifest = result.poisoned(), result.manifest
    model, tokenizer, task = load_for_inference(args.model, args.task)
    evaluator = Evaluator(
        tokenizer, task=task, clean=clean, poisoned=poisoned, manifest=manifest, payload=payload,
        batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
        max_source_length=args.max_source_length, codebleu=not args.no_codebleu, lang=args.lang,
    )  # fmt: skip
    result = evaluator(model)
    out_dir = Path(args.output_dir)
    pred_dir = out_dir / "predictions"
    pred_dir.mkdir(parents=True, exist_ok=True)
    write_predictions(pred_dir / f"{args.split}_clean.jsonl", clean, result.clean_predictions)
    if poisoned is not None:
        write_predictions(
            pred_dir / f"{args.split}_poisoned.jsonl", poisoned, result.poisoned_predictions
        )
    return result.metrics, out_dir
