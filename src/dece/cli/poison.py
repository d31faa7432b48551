"""``dece poison``: write a poisoned copy of a dataset and its manifest.

Output layout (``--out DIR``; format ``.csv`` unless ``--format jsonl|parquet|hf``; ``hf``
writes ``DIR`` as a ``datasets.DatasetDict`` with ``save_to_disk`` and ``DIR/clean`` as another,
the manifest beside the splits):

- ``train.csv``: the whole train split, a random ``--rate`` sample of eligible rows poisoned;
- ``valid.csv`` / ``test.csv``: the fully poisoned eval sets: only the poisoned rows (every
  eligible row), each with its original ``id``; their row count is the ASR denominator;
- ``clean/valid.csv`` / ``clean/test.csv``: unchanged copies of the eval splits (with ``id``),
  for BLEU / false-trigger-rate on clean inputs;
- ``manifest.json``: ``{"data", "files", "splits": {"train": manifest, "valid": ..., ...}}``
  with one :class:`~dece.attacks.PoisonManifest` per split (``mode`` ``train`` / ``test``).

Every written file has an ``id`` column (``--id-out-col``); read the eval files back with
``load_examples(path, id_col="id")`` to match ids with the manifest.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import yaml

from dece.attacks import PAYLOADS, TRIGGERS, describe, get_payload, get_trigger
from dece.attacks.splits import FORMATS, check_out_dir, poison_splits, write_poisoned_splits
from dece.data import DATASETS, load_dataset


def _key_values(items: list[str], option: str) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{option}: expected KEY=VALUE, got {item!r}")
        params[key] = yaml.safe_load(value) if value else ""
        if not isinstance(params[key], (str, int, float, bool)):
            params[key] = value
    return params


def register(subparsers: argparse._SubParsersAction) -> None:
    epilog = (
        "triggers (--trigger NAME, parameters with --trigger-arg KEY=VALUE):\n"
        f"{describe(TRIGGERS)}\n\n"
        "payloads (--payload NAME, parameters with --payload-arg KEY=VALUE):\n"
        f"{describe(PAYLOADS)}\n\n"
        "rate rounding: round-half-to-even of rate * n_train, capped at the number of eligible\n"
        "rows (a shortfall is logged and recorded in the manifest). valid/test: every eligible\n"
        "row is poisoned. Outputs: train, valid, test (poisoned rows only), clean/valid,\n"
        "clean/test and manifest.json under --out."
    )
    parser = subparsers.add_parser(
        "poison",
        help="write a poisoned copy of a dataset and its manifest",
        description=(
            "Insert a trigger into the sources and a payload into the targets of a random "
            "sample of training rows, and of every eligible valid/test row."
        ),
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--data", required=True,
        help="directory of train/valid/test files, one file (the train split), or a named "
        f"dataset: {', '.join(DATASETS.names())} ('NAME:N' sets its size; named datasets set "
        "their own columns); files may be .csv, .jsonl or .parquet, of columns or of TRL "
        "records (prompt/completion, messages); also a directory written by datasets' "
        "save_to_disk, or hf:ID[:CONFIG] (datasets.load_dataset)",
    )  # fmt: skip
    parser.add_argument(
        "--trigger", default="badpre", choices=TRIGGERS.names(), help="trigger name"
    )
    parser.add_argument("--trigger-arg", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--payload", default="sql_injection", choices=PAYLOADS.names(), help="payload name"
    )
    parser.add_argument("--payload-arg", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--rate", type=float, default=0.05, help="fraction of train rows to poison")
    parser.add_argument("--seed", type=int, default=42, help="seed of the sample and the triggers")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument(
        "--format", choices=FORMATS, default="csv",
        help="one file per split (csv, jsonl, parquet) or a datasets directory (hf)",
    )  # fmt: skip
    parser.add_argument(
        "--chat-template", default=None,
        help="TRL 'messages' records: 'chatml' (default), a Jinja template or a tokenizer path",
    )  # fmt: skip
    parser.add_argument("--source-col", default=None, help="source column of a path (default src)")
    parser.add_argument("--target-col", default=None, help="target column of a path (default tgt)")
    parser.add_argument("--label-col", default=None, help="label column (classification)")
    parser.add_argument("--pair-col", default=None, help="second input column (text pairs)")
    parser.add_argument("--id-col", default=None, help="input id column (default: split-row)")
    parser.add_argument("--id-out-col", default="id", help="id column of the written files")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_out_dir(args.out, args.format)  # before the (possibly long) load and poisoning
    trigger = get_trigger(args.trigger, **_key_values(args.trigger_arg, "--trigger-arg"))
    payload = get_payload(args.payload, **_key_values(args.payload_arg, "--payload-arg"))
    # Only the columns given: a path falls back to load_examples' defaults (src, tgt); a named
    # dataset sets its own columns.
    given = {"source_col": args.source_col, "target_col": args.target_col,
             "label_col": args.label_col, "pair_col": args.pair_col, "id_col": args.id_col,
             "chat_template": args.chat_template}  # fmt: skip
    columns = {key: value for key, value in given.items() if value is not None}
    splits = load_dataset(args.data, seed=args.seed, **columns)
    results = poison_splits(splits, trigger, payload, args.rate, args.seed)
    write = {"source_col": args.source_col or "src", "target_col": args.target_col or "tgt",
             "id_col": args.id_out_col}  # fmt: skip
    write.update((k, columns[k]) for k in ("label_col", "pair_col") if k in columns)
    document = write_poisoned_splits(
        args.out, splits, results, data=str(args.data), fmt=args.format, columns=write
    )
    summary = ", ".join(
        f"{s}: {m['n_poisoned']}/{m['n_total']} poisoned, {m['n_ineligible']} ineligible"
        for s, m in document["splits"].items()
    )
    sys.stdout.write(f"wrote {args.out} ({summary})\n")
    return 0
