"""Trainer callbacks: the epoch DeCE sees, and the per-epoch early-learning evaluation."""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from dece._jsonl import read_jsonl, write_jsonl

logger = logging.getLogger(__name__)

EPOCH_MODES = ("integer", "continuous")


def epoch_number(state_epoch: float | None, *, ended: bool = False) -> int:
    """The 1-based number of an epoch, from the Trainer's progress ``state.epoch`` (the number of
    epochs completed, fractional mid-epoch; 1e-6 of tolerance for its float drift).

    ``ended=False``: the epoch in progress (1 from the start up to the end of the first pass;
    at the exact end of epoch ``k``, ``k + 1``: what ``on_epoch_begin`` sees). ``ended=True``:
    the epoch that has just ended (what ``on_epoch_end`` sees: ``k`` once ``state.epoch``
    reaches ``k``; at least 1).
    """
    progress = float(state_epoch or 0.0)
    if ended:
        return max(1, math.ceil(progress - 1e-6))
    return math.floor(progress + 1e-6) + 1


def loss_epoch(state_epoch: float | None, mode: str) -> float:
    """The epoch handed to the loss, from the Trainer's progress ``state.epoch``.

    ``state.epoch`` is the number of epochs already completed (0.0 at the start, 1.5 half-way
    through the second epoch). ``integer`` gives the paper's 1-based epoch (1 during the first
    pass over the data, 2 during the second, ...); ``continuous`` gives ``1 + state.epoch``, which
    grows by ``1 / steps_per_epoch`` per step and equals the integer value at each epoch start.
    """
    if mode == "integer":
        return float(epoch_number(state_epoch))
    if mode == "continuous":
        return 1.0 + float(state_epoch or 0.0)
    raise ValueError(f"epoch_mode must be one of {EPOCH_MODES}, got {mode!r}")


class EpochTracker(TrainerCallback):
    """Holds the current loss epoch (read by :class:`dece.training.trainer.DeceTrainer`).

    The integer epoch is fixed at each epoch start (also after resuming mid-epoch); the
    continuous one is refreshed before every optimizer step.
    """

    def __init__(self, mode: str = "integer") -> None:
        if mode not in EPOCH_MODES:
            raise ValueError(f"epoch_mode must be one of {EPOCH_MODES}, got {mode!r}")
        self.mode = mode
        self.epoch: float = 1.0

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
        self.epoch = loss_epoch(state.epoch, self.mode)

    def on_epoch_begin(self, args, state, control, **kwargs):  # noqa: ANN001
        self.epoch = loss_epoch(state.epoch, self.mode)

    def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001
        if self.mode == "continuous":
            self.epoch = loss_epoch(state.epoch, self.mode)


class StopAfterEpochs(TrainerCallback):
    """Stops training (after the checkpoint of that epoch is saved) once ``n`` epochs are done;
    simulates an interrupted run."""

    def __init__(self, n: int) -> None:
        self.n = n

    def on_epoch_end(self, args, state, control, **kwargs):  # noqa: ANN001
        if state.epoch is not None and state.epoch >= self.n - 1e-6:
            control.should_training_stop = True
        return control


def read_metrics(path: str | Path) -> list[dict]:
    """The rows of a ``metrics.jsonl`` file (empty when it does not exist)."""
    return read_jsonl(path, missing_ok=True)


def truncate_metrics(path: str | Path, last_epoch: float) -> None:
    """Drop the rows of a JSON-lines file with ``epoch > last_epoch`` (``metrics.jsonl``,
    ``example_losses.jsonl``: before resuming from a checkpoint at that epoch), and a last line
    a kill cut short (no closing newline). Streams the file; replaces it atomically."""
    path = Path(path)
    if not path.exists():
        return
    tmp = path.with_name(f".{path.name}.truncate.tmp")
    with path.open(encoding="utf-8") as src, tmp.open("w", encoding="utf-8") as dst:
        for lineno, line in enumerate(src, start=1):
            if not line.endswith("\n"):
                logger.warning("%s: line %d was cut short (no newline); dropped", path, lineno)
                break
            if line.strip() and _epoch_of(line, path, lineno) <= last_epoch + 1e-6:
                dst.write(line)
    os.replace(tmp, path)


def _epoch_of(line: str, path: Path, lineno: int) -> float:
    try:
        return float(json.loads(line).get("epoch", 0))
    except (ValueError, TypeError, AttributeError):
        raise ValueError(f"{path}: line {lineno}: not a JSON object with a numeric epoch") from None


class EarlyLearningCallback(TrainerCallback):
    """After each epoch, evaluates the model and appends one row to ``metrics.jsonl``.

    Args:
        evaluator: called with the (unwrapped) model; returns an object with a ``metrics`` dict
            (``fit`` passes one that runs :func:`dece.pipeline.evaluation.evaluate` on the
            validation split: greedy batched decoding of the clean and the fully poisoned
            inputs -> BLEU, ASR, false-trigger rate, in an ``EvalResult``).
        metrics_path: the ``metrics.jsonl`` file.
        train_loss: returns the mean training loss of the epoch just finished (called on every
            process: it may gather across processes).
        loss_epoch: returns the epoch value the loss received during that epoch.
        log: ``Trainer.log`` (or any function of a dict): receives the row's numbers as
            ``eval_<metric>`` (``eval_bleu``, ``eval_asr``, ``eval_false_trigger_rate``, ...;
            :func:`tracker_metrics`), so
            the trackers of ``report_to`` (TensorBoard ``eval/asr``, W&B, MLflow, ...) show them
            beside the training loss.

    Only the main process decodes and writes; the row is
    ``{"epoch", "global_step", "train_loss", "loss_epoch", **evaluator metrics}``.
    """

    def __init__(
        self,
        evaluator: Callable[[Any], Any] | None,
        metrics_path: str | Path,
        *,
        train_loss: Callable[[], float | None] = lambda: None,
        loss_epoch: Callable[[], float] | None = None,
        log: Callable[[dict[str, float]], Any] | None = None,
    ) -> None:
        self.evaluator = evaluator
        self.log = log
        self.metrics_path = Path(metrics_path)
        self.train_loss = train_loss
        self.loss_epoch = loss_epoch
        self.history: list[dict] = []

    def on_epoch_end(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: Any = None,
        **kwargs: Any,
    ) -> None:
        loss = self.train_loss()  # every process (may be a collective)
        if not state.is_world_process_zero:
            return
        row: dict[str, Any] = {
            "epoch": epoch_number(state.epoch, ended=True),
            "global_step": int(state.global_step),
            "train_loss": loss,
        }
        if self.loss_epoch is not None:
            row["loss_epoch"] = self.loss_epoch()
        if self.evaluator is not None and model is not None:
            row.update(self.evaluator(_unwrap(model)).metrics)
        self.history.append(row)
        self.metrics_path.parent.mkdir(parents=True, exist_ok=True)
        write_jsonl(self.metrics_path, [row], append=True)
        logger.info("epoch %s: %s", row["epoch"], row)
        if self.log is not None:
            self.log(tracker_metrics(row))


#: Training keys of a ``metrics.jsonl`` row -> their tracker names (the Trainer's own final
#: ``train_loss`` summary keeps its name); every other number becomes ``eval_<key>``.
_TRACKER_TRAIN_KEYS = {"train_loss": "epoch_train_loss", "loss_epoch": "loss_epoch"}


def tracker_metrics(row: dict[str, Any]) -> dict[str, float]:
    """The numbers of a ``metrics.jsonl`` row as trackers name them (``eval_asr``, ``eval_bleu``,
    ..., ``epoch_train_loss``), without the epoch and step (the tracker has them) and without
    missing values."""
    return {
        _TRACKER_TRAIN_KEYS.get(key, f"eval_{key}"): float(value)
        for key, value in row.items()
        if key not in ("epoch", "global_step")
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
    }


def _unwrap(model: Any) -> Any:
    while hasattr(model, "module") and not hasattr(model, "generate"):
        model = model.module
    return model
