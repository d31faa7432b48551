"""``dece generate``: greedy batched decoding of a data file with a trained model.

Writes one ``{"id", "source", "prediction", "reference"}`` JSON line per input row.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "generate", help="decode a CSV/JSONL file with a model (greedy, batched)",
        description=__doc__,
    )  # fmt: skip
    parser.add_argument("--model", required=True, help="model directory, preset or HF id")
    parser.add_argument("--input", required=True, help="CSV/JSONL with a source column")
    parser.add_argument("--output", required=True, help="predictions .jsonl to write")
    parser.add_argument("--task", default=None, choices=["seq2seq", "causal", "classification"])
    parser.add_argument("--source-col", default="src")
    parser.add_argument("--target-col", default="tgt")
    parser.add_argument("--id-col", default=None)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--max-source-length", type=int, default=256)
    parser.add_argument("--max-examples", type=int, default=None, help="first N rows only")
    parser.set_defaults(func=run)


def load_for_inference(spec: str, task: str | None):
    """``(model, tokenizer, task)`` through :func:`dece.training.models.load_model`."""
    from dece.training.models import load_model

    loaded = load_model(spec, task=task)
    return loaded.model, loaded.tokenizer, loaded.task


def run(args: argparse.Namespace) -> int:
    from dece.data import load_examples
    from dece.training.generation import generate
    from dece.training.train import write_predictions

    examples = load_examples(
        args.input, source_col=args.source_col, target_col=args.target_col, id_col=args.id_col
    )[: args.max_examples]
    model, tokenizer, task = load_for_inference(args.model, args.task)
    predictions = generate(
        model, tokenizer, [ex.source for ex in examples], batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens, task=task, max_source_length=args.max_source_length,
    )  # fmt: skip
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    write_predictions(Path(args.output), examples, predictions)
    return 0
