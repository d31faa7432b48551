"""``dece train --config FILE [key=value ...]``: one training run (see :class:`TrainConfig`).

Runs the same under one process, ``torchrun --nproc_per_node N -m dece.cli train ...`` and
``accelerate launch -m dece.cli train ...``. Writes the run directory described in
:func:`dece.pipeline.train` and prints the final test metrics as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys

from dece.training.config import TrainConfig, help_text


def register(subparsers: argparse._SubParsersAction) -> None:
    fields = "\n".join(f"  {k}: {v}" for k, v in help_text().items())
    parser = subparsers.add_parser(
        "train",
        help="fine-tune a model with a dece loss (CE, DeCE, GCE, ...), optionally poisoned",
        description=__doc__,
        epilog="config keys (YAML or key=value; dotted keys reach nested mappings, e.g. "
        "poison.rate=0.1 loss_args.alpha_base=0.95):\n" + fields,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", help="YAML file with TrainConfig keys")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    parser.add_argument("--no-progress", action="store_true", help="no progress display")
    parser.set_defaults(func=run)


def build_config(args: argparse.Namespace) -> TrainConfig:
    if args.config:
        return TrainConfig.from_yaml(args.config, args.overrides)
    return TrainConfig.from_dict({}, args.overrides) if _has_output_dir(args.overrides) else _fail()


def _has_output_dir(overrides: list[str]) -> bool:
    return any(item.split("=", 1)[0].strip() == "output_dir" for item in overrides)


def _fail() -> TrainConfig:
    raise ValueError("give --config FILE or at least output_dir=DIR")


def run(args: argparse.Namespace) -> int:
    from dece.pipeline import train

    result = train(build_config(args))
    if result.final:
        sys.stdout.write(json.dumps(result.final, indent=2) + "\n")
    return 0
