"""Command-line front end: ``dece <command> ...``.

Each sub-command lives in its own module under :mod:`dece.cli` and exposes
``register(subparsers) -> None``, which adds an ``argparse`` parser whose
``func`` default is called with the parsed namespace and returns an exit code.
The CLI holds no logic that the library lacks.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import warnings
from collections.abc import Sequence

from dece import __version__

# Sub-command modules, in the order ``dece --help`` lists them.
_COMMANDS: tuple[str, ...] = (
    "demo",
    "poison",
    "train",
    "generate",
    "evaluate",
    "run",
    "report",
    "purify",
    "filter",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dece",
        description="Backdoor attack simulation and DeCE defense for code language models.",
    )
    parser.add_argument("--version", action="version", version=f"dece {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-v info, -vv debug)"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMANDS:
        try:
            module = importlib.import_module(f"dece.cli.{name}")
        except ModuleNotFoundError as exc:  # sub-command not built yet
            if exc.name == f"dece.cli.{name}":
                continue
            raise
        module.register(subparsers)
    return parser


def _quiet_third_parties(verbose: int) -> None:
    """Unless ``-v``: transformers' own warnings and progress bars ("Loading weights", ...) off,
    before it is imported (worker processes inherit the environment). ``dece`` reports progress
    through one display of its own (:mod:`dece.progress`)."""
    if verbose == 0:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        warnings.filterwarnings("ignore", category=FutureWarning)
        if "transformers" in sys.modules:  # imported by a sub-command module already
            from transformers.utils import logging as hf_logging

            hf_logging.set_verbosity_error()
            hf_logging.disable_progress_bar()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _quiet_third_parties(args.verbose)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from dece import progress

    sink = None if getattr(args, "no_progress", False) else progress.TqdmSink()
    try:
        with progress.use(sink):
            return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        parser.exit(2, f"dece {args.command}: error: {exc}\n")
    return 0  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
