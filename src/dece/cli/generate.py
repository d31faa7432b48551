"""``dece generate``: greedy batched decoding (or label prediction) of a data file with a model.

Writes one ``{"id", "source", "prediction", "reference"}`` JSON line per input row, through
:meth:`dece.pipeline.Victim.predict`.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "generate", help="decode a CSV/JSONL file with a model (greedy, batched)",
        description=__doc__,
    )  # fmt: skip
    parser.add_argument("--model", required=True, help="run dir, model dir, preset or HF id")
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
    parser.add_argument("--no-progress", action="store_true", help="no progress display")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dece.data import load_examples
    from dece.pipeline import Victim, write_predictions

    examples = load_examples(
        args.input, source_col=args.source_col, target_col=args.target_col, id_col=args.id_col
    )[: args.max_examples]
    victim = Victim.load(
        args.model, task=args.task, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
        max_source_length=args.max_source_length,
    )  # fmt: skip
    predictions = victim.predict(examples)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    write_predictions(Path(args.output), examples, predictions)
    return 0
