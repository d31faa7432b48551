"""``dece filter``: score a dataset with a training-time filter and keep the unflagged rows.

Two modes:

- ``dece filter --data PATH --defense NAME [--arg KEY=VALUE ...] [--model DIR] --out DIR``: a
  user's own (possibly crowd-sourced) dataset, no manifest needed. Writes, under ``--out``,
  ``scores.jsonl`` (every row's ``id``, ``score`` and ``flagged``, in input order),
  ``kept.<csv|jsonl>`` (the rows not flagged, copied from the input file: every column, every
  value and id as they were; a parquet or ``datasets`` input gives the columns dece reads) and
  ``filter.json``
  (the defense, its threshold, what it found, its cost). Filters that read a model (``bki``,
  ``spectral``, ``activation_clustering``, ``dynamics``) need ``--model``: a model trained on
  this data (a ``dece train`` run directory; ``dynamics`` needs one trained with
  ``record_example_losses=true``).
- ``dece filter --grid CONFIG [-o RUNS] [--shard i/n]``: detection quality of every filter cell
  of a grid config, without retraining (:func:`dece.experiments.detection_table.run_detection`):
  each filter scores its cell's poisoned training split with the parent cell's model and the
  result is scored against the poison manifest; ``dece report RUNS`` tabulates it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dece._jsonl import write_jsonl
from dece.cli._args import parse_key_values


def register(subparsers: argparse._SubParsersAction) -> None:
    from dece.defenses import DEFENSES, DataFilter

    filters = [n for n in DEFENSES.names() if issubclass(DEFENSES.get(n), DataFilter)]
    parser = subparsers.add_parser(
        "filter",
        help="score a dataset with a training-time filter (BKI, SS, AC, ...); keep clean rows",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", help="dataset file (.csv/.jsonl) or directory (its train split)")
    parser.add_argument("--defense", choices=filters, help="the filter")
    parser.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE",
                        help="filter parameter (YAML value), repeatable")  # fmt: skip
    parser.add_argument("--model", help="run directory / checkpoint of a model trained on --data")
    parser.add_argument("--out", type=Path, help="output directory")
    parser.add_argument("--source-col", default="src")
    parser.add_argument("--target-col", default="tgt")
    parser.add_argument("--label-col", default=None)
    parser.add_argument("--id-col", default=None)
    parser.add_argument("--pair-col", default=None)
    parser.add_argument("--grid", type=Path, help="grid config: score every filter cell")
    parser.add_argument("-o", "--output-dir", type=Path, default=None,
                        help="--grid: runs directory (default: the config's output_dir)")  # fmt: skip
    parser.add_argument("--shard", default="0/1", help="--grid: parents i of n (default 0/1)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    if args.grid is not None:
        return _grid(args)
    missing = [o for o, v in (("--data", args.data), ("--defense", args.defense),
                              ("--out", args.out)) if v is None]  # fmt: skip
    if missing:
        raise ValueError(f"give {', '.join(missing)} (or --grid CONFIG)")
    return _dataset(args)


def _dataset(args: argparse.Namespace) -> int:
    from dece.data import load_splits, save_examples
    from dece.data.subset import save_row_subset
    from dece.defenses import get_defense
    from dece.victim import Victim

    columns = {
        "source_col": args.source_col,
        "target_col": args.target_col,
        "label_col": args.label_col,
        "id_col": args.id_col,
        "pair_col": args.pair_col,
    }
    splits = load_splits(args.data, **{k: v for k, v in columns.items() if v is not None})
    if "train" not in splits:
        raise ValueError(f"{args.data}: no train split (found {sorted(splits)})")
    examples = splits["train"]
    defense = get_defense(args.defense, **parse_key_values(args.arg))
    victim = None
    if defense.needs_victim:
        if args.model is None:
            raise ValueError(f"--defense {args.defense} reads a model: give --model DIR")
        victim = Victim.load(args.model)
    result = defense.score(examples, victim)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "scores.jsonl", result.rows())
    train_file = _train_file(Path(args.data))
    if train_file is not None:  # the user's rows as they were: every column, the original ids
        suffix = train_file.suffix.lower()
        save_row_subset(train_file, [not f for f in result.flagged], out / f"kept{suffix}")
    else:
        suffix = ".csv"
        save_examples(result.kept, out / f"kept{suffix}", source_col=args.source_col,
                      target_col=args.target_col, id_col=args.id_col or "id",
                      label_col=args.label_col or "label", pair_col=args.pair_col or "src_pair")  # fmt: skip
    summary = {
        "data": str(args.data),
        "defense": defense.config(),
        "threshold": result.threshold,
        "n_rows": len(result.ids),
        "n_flagged": result.n_removed,
        "info": result.info,
    }
    (out / "filter.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    sys.stdout.write(f"{args.defense}: flagged {result.n_removed} of {len(result.ids)} rows; "
                     f"wrote {out / 'scores.jsonl'}, {out / f'kept{suffix}'}, "
                     f"{out / 'filter.json'}\n")  # fmt: skip
    return 0


def _train_file(data: Path) -> Path | None:
    """The .csv/.jsonl file the train split was read from; None for parquet and datasets."""
    from dece.data import discover_splits, hf
    from dece.data.subset import ROW_COPY_SUFFIXES

    if data.is_dir():
        if hf.is_saved_dataset(data):
            return None
        data = discover_splits(data)["train"]
    return data if data.suffix.lower() in ROW_COPY_SUFFIXES else None


def _grid(args: argparse.Namespace) -> int:
    from dece.experiments import load_grid_config, parse_shard
    from dece.experiments.detection_table import (
        format_detection_table,
        load_detection_rows,
        run_detection,
    )

    config = load_grid_config(args.grid)
    out = args.output_dir or Path(config.output_dir or Path("runs") / config.name)
    written = run_detection(config, out, shard=parse_shard(args.shard),
                            progress=not args.no_progress)  # fmt: skip
    keep = {p.parent.name for p in written}
    rows = [r for r in load_detection_rows(out) if r.hash in keep]
    if rows:
        sys.stdout.write(format_detection_table(rows))
    sys.stderr.write(f"{out}: {len(written)} filter cell(s) scored\n")
    return 0
