"""``dece purify``: run a test-time defense (``codepurify``, ``onion``, ``paraphrase``, ``oseql``,
``none``) over a CSV/JSONL file of inputs, with any victim.

The victim is a ``dece`` run directory (its ``config.yaml`` also gives the clean training texts
of tiny helper models and the clean validation rows the threshold is calibrated on) or any
Hugging Face checkpoint / id (then give ``--calibration`` clean rows, or a fixed threshold with
``--arg threshold=...``, and ``--train-texts`` for a tiny helper model). Defenses that never
read the victim (``onion``, ``paraphrase``) run without ``--model``.

Writes one JSON line per input row, in input order: ``id``, the purified ``source`` (and
``source_pair``), ``original_source``, ``score`` (higher = more suspicious), ``detected`` (the
decision), ``changes`` (the changed spans: ``side``, ``start``, ``end``, ``old``, ``new``, in the
input's offsets) and, with a victim, the ``prediction`` on the purified input.

Example::

    dece purify --model runs/bugs2fix_codepurify/<cell> --data inputs.csv \\
        --defense codepurify --arg normalisation=sum --out purified.jsonl
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from dece._jsonl import write_jsonl
from dece.cli._args import parse_key_values


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "purify", help="purify inputs with a test-time defense (CodePurify, ONION, ...)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--model", default=None, help="victim: dece run dir, checkpoint or HF id")
    parser.add_argument("--data", required=True,
                        help="CSV/JSONL of inputs: a source column; the target column is optional "
                        "(absent or empty: no target)")  # fmt: skip
    parser.add_argument("--defense", required=True, help="purifier name (dece.defenses)")
    parser.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE",
                        help="defense parameter (value parsed as YAML); repeatable")  # fmt: skip
    parser.add_argument("--out", required=True, help="purified rows .jsonl to write")
    parser.add_argument("--calibration", default=None, help="clean CSV/JSONL to calibrate on")
    parser.add_argument(
        "--train-texts", default=None, help="clean CSV/JSONL whose texts pretrain a tiny helper"
    )
    parser.add_argument("--task", default=None, choices=["seq2seq", "causal", "classification"])
    parser.add_argument("--source-col", default="src")
    parser.add_argument("--target-col", default="tgt")
    parser.add_argument("--label-col", default=None)
    parser.add_argument("--pair-col", default=None)
    parser.add_argument("--id-col", default=None)
    parser.add_argument("--batch-size", type=int, default=None, help="victim batch size")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="victim decoding cap")
    parser.add_argument("--max-examples", type=int, default=None, help="first N rows only")
    parser.add_argument("--no-predict", action="store_true",
                        help="do not predict on the purified inputs")  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="no progress display")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dece.defenses import Purifier, get_defense

    columns = {"source_col": args.source_col, "target_col": args.target_col,
               "label_col": args.label_col, "pair_col": args.pair_col}  # fmt: skip
    examples = _load(args.data, columns, args.id_col, "test", optional_target=True)
    examples = examples[: args.max_examples]
    defense = get_defense(args.defense, **parse_key_values(args.arg))
    if not isinstance(defense, Purifier):
        raise ValueError(f"--defense {args.defense!r} is a training-time filter, not a purifier")
    victim = _victim(args) if args.model else None
    defense.prepare(_bundle(args, columns), victim)
    if victim is not None and not args.no_predict and hasattr(defense, "defend"):
        result, predictions = defense.defend(examples, victim)
    else:
        result = defense.purify(examples, victim)
        predictions = (victim.predict(result.examples) if victim is not None
                       and not args.no_predict else None)  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = result.rows()
    for i, (row, ex) in enumerate(zip(rows, examples, strict=True)):
        row["original_source"] = ex.source
        if predictions is not None:
            row["prediction"] = predictions[i]
    write_jsonl(out, rows)
    sys.stderr.write(f"{args.defense}: {int(result.detected.sum())} of {len(examples)} inputs "
                     f"detected, {sum(bool(c) for c in result.changes)} changed, "
                     f"{result.seconds:.1f} s -> {out}\n")  # fmt: skip
    return 0


def _load(
    path: str, columns: dict[str, Any], id_col: str | None, split: str, *,
    optional_target: bool = False,
) -> list[Any]:  # fmt: skip
    """The rows of ``path``; ``optional_target``: a file of inputs only reads with empty targets."""
    from dece.data import load_examples

    cols = dict(columns)
    if cols["label_col"] is None:
        cols.pop("label_col")
    if cols["pair_col"] is None:
        cols.pop("pair_col")
    return load_examples(path, id_col=id_col, split=split, optional_target=optional_target, **cols)


def _victim(args: argparse.Namespace) -> Any:
    from dece.victim import Victim

    given = (("batch_size", args.batch_size), ("max_new_tokens", args.max_new_tokens))
    overrides = {k: v for k, v in given if v is not None}
    return Victim.load(args.model, task=args.task, **overrides)


def _bundle(args: argparse.Namespace, columns: dict[str, Any]) -> Any:
    """A bundle with the clean training texts and validation rows the purifier prepares from: the
    run's own data for a ``dece`` run directory, else ``--train-texts`` / ``--calibration``."""
    from dece.pipeline.data import DataBundle, prepare_data
    from dece.rundir import RunDir
    from dece.training.config import TrainConfig

    run_config = RunDir(args.model or "").config
    bundle = None
    if args.model and run_config.is_file() and (args.calibration is None or
                                                 args.train_texts is None):  # fmt: skip
        bundle = prepare_data(TrainConfig.from_yaml(run_config))
    train = (_load(args.train_texts, columns, None, "train") if args.train_texts
             else (bundle.clean_train if bundle else []))  # fmt: skip
    valid = (_load(args.calibration, columns, None, "valid") if args.calibration
             else (bundle.valid.clean if bundle else []))  # fmt: skip
    return DataBundle.from_examples(train, valid)
