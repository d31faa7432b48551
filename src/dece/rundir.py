"""The layout of a run directory, in one place: every module that writes or reads a file of a
run (``dece.pipeline``, :class:`~dece.victim.Victim`, the grid runner and report, the CLI,
the training-dynamics filter) asks :class:`RunDir` for its path.

::

    config.yaml               the resolved TrainConfig
    poison_manifest.json      which training rows were poisoned (when poisoning), with spans
    filter.jsonl, filter.json every row's score, decision and text; detection P/R/F1/AUROC (filters)
    metrics.jsonl             one row per epoch: epoch, train_loss, bleu, asr, false_trigger_rate
    example_losses.jsonl      per-example training losses per step (record_example_losses;
                              example_losses.rank<N>.jsonl from the other processes)
    checkpoints/checkpoint-N  Trainer checkpoints (one per epoch)
    runs/                     TensorBoard's event files (report_to: tensorboard)
    predictions/<split>_clean.jsonl, predictions/<split>_poisoned.jsonl
    predictions/<split>_poisoned_manifest.json   the poisoned test inputs' trigger spans
    predictions/humaneval_{clean,triggered}.jsonl  HumanEval completions (TrainConfig.humaneval)
    purified/<split>_{clean,poisoned}.jsonl      purifier output per row, with its input
    final_metrics.json        test-split metrics
    model/                    the final model and tokenizer (save_pretrained)

The names are part of the on-disk format: run directories and the archived grid cells under
``benchmarks/results/cells`` are read by them. This module imports nothing of ``dece``'s layers
above it, so defenses, training and metrics may use it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dece._jsonl import read_jsonl

__all__ = [
    "CHECKPOINTS_DIR",
    "CONFIG_FILE",
    "EXAMPLE_LOSSES_FILE",
    "FILTER_FILE",
    "FILTER_ROWS_FILE",
    "FINAL_METRICS_FILE",
    "METRICS_FILE",
    "MODEL_DIR",
    "POISON_MANIFEST_FILE",
    "PREDICTIONS_DIR",
    "PURIFIED_DIR",
    "TENSORBOARD_DIR",
    "RunDir",
]

CONFIG_FILE = "config.yaml"
MODEL_DIR = "model"
METRICS_FILE = "metrics.jsonl"
FINAL_METRICS_FILE = "final_metrics.json"
EXAMPLE_LOSSES_FILE = "example_losses.jsonl"
POISON_MANIFEST_FILE = "poison_manifest.json"
FILTER_ROWS_FILE = "filter.jsonl"
FILTER_FILE = "filter.json"
PREDICTIONS_DIR = "predictions"
PURIFIED_DIR = "purified"
CHECKPOINTS_DIR = "checkpoints"
TENSORBOARD_DIR = "runs"


@dataclass(frozen=True)
class RunDir:
    """The files of the run directory ``root`` (module docstring); creates nothing."""

    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    def __fspath__(self) -> str:
        return str(self.root)

    # ------------------------------------------------------------------------------ paths
    @property
    def config(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def model(self) -> Path:
        return self.root / MODEL_DIR

    @property
    def metrics(self) -> Path:
        return self.root / METRICS_FILE

    @property
    def final_metrics(self) -> Path:
        return self.root / FINAL_METRICS_FILE

    @property
    def poison_manifest(self) -> Path:
        return self.root / POISON_MANIFEST_FILE

    @property
    def filter_rows(self) -> Path:
        return self.root / FILTER_ROWS_FILE

    @property
    def filter_summary(self) -> Path:
        return self.root / FILTER_FILE

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS_DIR

    @property
    def tensorboard(self) -> Path:
        return self.root / TENSORBOARD_DIR

    @property
    def predictions_dir(self) -> Path:
        return self.root / PREDICTIONS_DIR

    @property
    def purified_dir(self) -> Path:
        return self.root / PURIFIED_DIR

    def example_losses(self, rank: int = 0) -> Path:
        """Process ``rank``'s per-example losses (``example_losses.jsonl`` on rank 0)."""
        if rank == 0:
            return self.root / EXAMPLE_LOSSES_FILE
        return self.root / f"example_losses.rank{int(rank)}.jsonl"

    def predictions(self, split: str, kind: str) -> Path:
        """``predictions/<split>_<kind>.jsonl`` (kind: ``clean`` or ``poisoned``)."""
        return self.predictions_dir / f"{split}_{kind}.jsonl"

    def poisoned_manifest(self, split: str) -> Path:
        """The trigger spans of the poisoned ``split`` inputs the predictions were made on."""
        return self.predictions_dir / f"{split}_poisoned_manifest.json"

    def purified(self, split: str, kind: str) -> Path:
        """``purified/<split>_<kind>.jsonl``: the purifier's output on those inputs."""
        return self.purified_dir / f"{split}_{kind}.jsonl"

    # ------------------------------------------------------------------------------ reading
    def has_model(self) -> bool:
        """A finished run whose model another step can load (``config.yaml`` and ``model/``)."""
        return self.config.is_file() and self.model.is_dir()

    def history(self) -> list[dict[str, Any]]:
        """The rows of ``metrics.jsonl`` (one per epoch; empty when there is none)."""
        return read_jsonl(self.metrics, missing_ok=True)

    def read_final(self) -> dict[str, Any] | None:
        """The parsed ``final_metrics.json``; None when the run has not written it."""
        return _read_json(self.final_metrics)

    def read_filter_summary(self) -> dict[str, Any] | None:
        """The parsed ``filter.json`` (threshold, info, detection scores); None when absent."""
        return _read_json(self.filter_summary)


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data
