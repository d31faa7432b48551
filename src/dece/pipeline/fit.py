"""Stage 2, ``fit(config, bundle) -> FitResult``: load the starting model, train it on
``bundle.train`` with the configured loss through :class:`~dece.training.DeceTrainer`, evaluate
the validation split after every epoch (``metrics.jsonl``) and return the trained
:class:`~dece.victim.Victim` with the per-epoch history.

Files written under ``config.output_dir``: ``metrics.jsonl``, ``checkpoints/`` (when
``save_checkpoints``), ``model/`` (when ``save_model`` or ``fit(..., save_model=True)``) and
``example_losses.jsonl`` (when ``record_example_losses``), and ``runs/`` (TensorBoard's event
files, with ``report_to: tensorboard``). The per-epoch evaluation goes to ``metrics.jsonl`` and,
through ``Trainer.log``, to every tracker of ``report_to`` (``eval/asr``, ``eval/bleu``, ...).

Resuming (``resume``): from the newest *complete* checkpoint (its ``trainer_state.json``, which
the Trainer writes last, parses; one a kill cut short is skipped and removed). ``metrics.jsonl``
and the per-example losses are cut back to that checkpoint's epoch; the Trainer restores the
weights, optimizer, scheduler, RNG states and data order, so the resumed run ends where an
uninterrupted one would. ``train_time_s`` adds up the segments: each checkpoint records the
training seconds spent up to it (``trainer_state.json``, ``stateful_callbacks``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback, TrainingArguments
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_callback import ExportableState, PrinterCallback, ProgressCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from dece import progress
from dece.pipeline.data import DataBundle
from dece.pipeline.evaluation import evaluate
from dece.rundir import CHECKPOINTS_DIR, RunDir
from dece.training.callbacks import (
    EarlyLearningCallback,
    EpochTracker,
    epoch_number,
    read_metrics,
    truncate_metrics,
)
from dece.training.collate import (
    Collator,
    decoder_start_token_id_of,
    encode_examples,
    pad_token_id_of,
)
from dece.training.config import ResolvedTrainConfig, TrainConfig
from dece.training.example_losses import ExampleLossRecorder
from dece.training.models import LoadedModel, load_model
from dece.training.trainer import DeceTrainer
from dece.victim import Victim

__all__ = [
    "CHECKPOINTS_DIR",
    "FitResult",
    "apply_lora",
    "delete_checkpoints",
    "fit",
    "latest_complete_checkpoint",
    "load_starting_model",
    "prepare_model",
    "resume_checkpoint",
    "training_arguments",
]

logger = logging.getLogger(__name__)


@dataclass
class FitResult:
    """A trained victim, its per-epoch history (the rows of ``metrics.jsonl``) and the run's
    bookkeeping (``train_time_s``, ``global_step``, ``epochs``)."""

    victim: Victim
    history: list[dict] = field(default_factory=list)
    train_time_s: float = 0.0
    global_step: int = 0
    epochs: float = 0.0
    trainer: Any = field(default=None, repr=False)


def load_starting_model(config: TrainConfig, bundle: DataBundle) -> LoadedModel:
    """The model training starts from: a preset (tiny presets build and cache their tokenizer and
    denoising pretraining from the clean training texts), a Hugging Face id or a directory;
    classifiers get the dataset's labels. Reads no model-dependent default: raw or resolved."""
    preset_args = dict(config.model_args)
    if config.pretrain_steps is not None:
        if not config.is_tiny_preset:
            raise ValueError(
                f"pretrain_steps applies to the tiny presets only, not {config.model!r}"
            )
        preset_args["steps"] = config.pretrain_steps  # the presets' PretrainConfig.steps
    if bundle.labels is not None and config.task in (None, "classification"):
        preset_args.setdefault("labels", bundle.labels)
    texts = [ex.source for ex in bundle.clean_train]
    texts += [ex.source_pair for ex in bundle.clean_train if ex.source_pair is not None]
    texts += [ex.target for ex in bundle.clean_train if ex.label is None]
    task = config.task or ("classification" if bundle.labels is not None else None)
    return load_model(
        config.model, task=task, cache_dir=config.cache_dir, train_texts=texts, seed=config.seed,
        **preset_args,
    )  # fmt: skip


def prepare_model(config: TrainConfig) -> LoadedModel:
    """Load the model ``train(config)`` starts from, building and caching a tiny preset's
    pretrained model if needed (from the clean training split, as ``train`` does).

    Call it once before starting several runs in parallel, so they load the cached model
    instead of each pretraining the same one.
    """
    from dece.pipeline.data import prepare_data

    return load_starting_model(config, prepare_data(config))


def apply_lora(model: Any, task: str, lora: dict) -> Any:
    """Wrap ``model`` with LoRA adapters (``peft``); ``lora``: r, alpha, dropout, target_modules."""
    try:
        import peft
    except ImportError as exc:  # pragma: no cover
        raise ImportError("LoRA needs peft: pip install 'dece[lora]'") from exc
    task_type = {"seq2seq": "SEQ_2_SEQ_LM", "causal": "CAUSAL_LM", "classification": "SEQ_CLS"}
    args = dict(lora)
    lora_config = peft.LoraConfig(
        r=int(args.pop("r", 8)),
        lora_alpha=int(args.pop("alpha", args.pop("lora_alpha", 16))),
        lora_dropout=float(args.pop("dropout", args.pop("lora_dropout", 0.05))),
        target_modules=args.pop("target_modules", None),
        task_type=task_type[task],
        **args,
    )
    return peft.get_peft_model(model, lora_config)


def training_arguments(cfg: ResolvedTrainConfig, checkpoint_dir: Path) -> TrainingArguments:
    """``TrainingArguments`` for a resolved config: the settings copied unchanged come from
    :meth:`TrainConfig.trainer_arguments` (declared on the fields), the rest is derived here."""
    return TrainingArguments(
        **cfg.trainer_arguments(),
        output_dir=str(checkpoint_dir),
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
        bf16=cfg.precision == "bf16",
        fp16=cfg.precision == "fp16",
        # A backend only means something with several processes (torchrun / accelerate launch).
        ddp_backend=cfg.ddp_backend if int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
        dataloader_pin_memory=torch.cuda.is_available(),
        save_strategy="epoch" if cfg.save_checkpoints else "no",
        eval_strategy="no",
        remove_unused_columns=False,
        disable_tqdm=True,  # progress goes through dece.progress (one display)
    )


def resume_checkpoint(config: TrainConfig) -> Path | None:
    """The checkpoint a run with ``config`` resumes from: None when ``resume`` is off or (``True``)
    no complete checkpoint exists under ``<output_dir>/checkpoints``; a ``resume`` path as is."""
    if config.resume is False or config.resume is None:
        return None
    if config.resume is True:
        return latest_complete_checkpoint(RunDir(config.output_dir).checkpoints)
    path = Path(str(config.resume))
    if not path.is_dir():
        raise FileNotFoundError(f"resume checkpoint {path} does not exist")
    return path


def latest_complete_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The ``checkpoint-<step>`` under ``checkpoint_dir`` with the highest step whose
    ``trainer_state.json`` (written last, after weights, optimizer and RNG states) parses."""
    for path in _checkpoints_newest_first(checkpoint_dir):
        if _trainer_state(path) is not None:
            return path
    return None


def _checkpoints_newest_first(checkpoint_dir: Path) -> list[Path]:
    if not checkpoint_dir.is_dir():
        return []
    found = []
    for path in checkpoint_dir.iterdir():
        prefix, _, step = path.name.partition("-")
        if path.is_dir() and prefix == PREFIX_CHECKPOINT_DIR and step.isdigit():
            found.append((int(step), path))
    return [path for _, path in sorted(found, reverse=True)]


def _trainer_state(checkpoint: Path) -> dict[str, Any] | None:
    try:
        state = json.loads((checkpoint / TRAINER_STATE_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def victim_settings(cfg: ResolvedTrainConfig) -> dict[str, Any]:
    """The :class:`Victim` keyword arguments of a resolved config."""
    return {
        "max_source_length": cfg.max_source_length,
        "max_target_length": cfg.max_target_length,
        "max_new_tokens": cfg.generation_max_new_tokens,
        "batch_size": cfg.eval_batch_size,
    }


def fit(
    config: TrainConfig,
    bundle: DataBundle,
    *,
    callbacks: Sequence[TrainerCallback] = (),
    save_model: bool | None = None,
) -> FitResult:
    """Train on ``bundle.train`` (see the module docstring); ``save_model`` overrides the
    config's (a grid cell whose model another cell reuses always saves it). A raw ``config`` is
    resolved here, once (:meth:`TrainConfig.resolved`)."""
    cfg = config.resolved()
    if not bundle.train:
        raise ValueError("fit: the bundle's training split is empty (every row filtered out?)")
    run = RunDir(cfg.output_dir)
    out = run.root
    out.mkdir(parents=True, exist_ok=True)
    args = training_arguments(cfg, run.checkpoints)
    # Under torchrun the main process builds (and caches) a tiny preset before the others read it.
    with args.main_process_first(desc="load model"):
        loaded = load_starting_model(cfg, bundle)
    model, tokenizer, task = loaded.model, loaded.tokenizer, loaded.task
    if cfg.lora is not None:
        model = apply_lora(model, task, cfg.lora)
    labels = bundle.labels if task == "classification" else None
    trainer = _build_trainer(cfg, bundle, model, tokenizer, task, args, callbacks)
    history_path = run.metrics
    resume_from, clock = _prepare_resume(cfg, out, history_path, trainer)
    trainer.add_callback(clock)
    if cfg.eval_each_epoch:
        trainer.add_callback(EarlyLearningCallback(
            lambda m: evaluate(Victim(m, tokenizer, task, labels=labels, **victim_settings(cfg)),
                               bundle, split="valid", codebleu=cfg.codebleu, lang=cfg.lang),
            history_path, train_loss=trainer.epoch_train_loss,
            loss_epoch=trainer.current_loss_epoch, log=trainer.log,
        ))  # fmt: skip
    clock.start()
    trainer.train(resume_from_checkpoint=resume_from)
    train_time = clock.seconds()
    if trainer.example_loss_hook is not None:
        trainer.example_loss_hook.close()
    model = trainer.accelerator.unwrap_model(trainer.model)
    if trainer.is_world_process_zero() and (cfg.save_model if save_model is None else save_model):
        trainer.save_model(str(run.model))
    trainer.accelerator.wait_for_everyone()
    return FitResult(
        victim=Victim(model, tokenizer, task, labels=labels, **victim_settings(cfg)),
        history=read_metrics(history_path), train_time_s=train_time,
        global_step=int(trainer.state.global_step), epochs=float(trainer.state.epoch or 0.0),
        trainer=trainer,
    )  # fmt: skip


def _build_trainer(
    cfg: ResolvedTrainConfig, bundle: DataBundle, model: Any, tokenizer: Any, task: str,
    args: TrainingArguments, callbacks: Sequence[TrainerCallback],
) -> DeceTrainer:  # fmt: skip
    from dece import losses

    label2id = (
        {name: i for i, name in enumerate(bundle.labels or [])}
        if task == "classification"
        else None
    )
    features = encode_examples(
        tokenizer, bundle.train, task=task, max_source_length=cfg.max_source_length,
        max_target_length=cfg.max_target_length, label2id=label2id,
    )  # fmt: skip
    collator = Collator(
        task=task, pad_token_id=pad_token_id_of(tokenizer),
        decoder_start_token_id=decoder_start_token_id_of(model, tokenizer)
        if task == "seq2seq" else None,
    )  # fmt: skip
    recorder = None
    if cfg.record_example_losses:
        path = _example_losses_path(Path(cfg.output_dir))
        recorder = ExampleLossRecorder([ex.id for ex in bundle.train], path)
    trainer = DeceTrainer(
        model=model, args=args, train_dataset=features, data_collator=collator,
        processing_class=tokenizer, loss_fn=losses.get_loss(cfg.loss, **cfg.loss_args),
        epoch_tracker=EpochTracker(cfg.epoch_mode), callbacks=list(callbacks),
        example_loss_hook=recorder, fused_loss=_fused_settings(cfg, task),
    )  # fmt: skip
    trainer.remove_callback(PrinterCallback)  # prints to stdout; log through logging instead
    trainer.remove_callback(ProgressCallback)
    _tensorboard_beside_run(trainer, Path(cfg.output_dir))
    trainer.add_callback(_LogCallback())
    trainer.add_callback(_EpochProgress())
    return trainer


def _tensorboard_beside_run(trainer: DeceTrainer, out: Path) -> None:
    """TensorBoard's event files go to ``<output_dir>/runs`` (unless ``TENSORBOARD_LOGGING_DIR``
    says otherwise), not under ``checkpoints/``, which a grid cell deletes once it is done."""
    from transformers.integrations import TensorBoardCallback

    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, TensorBoardCallback) and callback.logging_dir is None:
            callback.logging_dir = str(RunDir(out).tensorboard)


def _fused_settings(cfg: TrainConfig, task: str) -> dict[str, Any] | None:
    """``DeceTrainer(fused_loss=...)`` for ``fused_linear`` runs (causal LMs, dece or ce)."""
    if not cfg.fused_linear:
        return None
    if task != "causal":
        raise ValueError(f"fused_linear applies to causal LMs only, not task {task!r}")
    return {"loss": cfg.loss, **cfg.loss_args}


def _example_losses_path(out: Path) -> Path:
    """This process's per-example losses file (``example_losses.jsonl`` on rank 0)."""
    return RunDir(out).example_losses(int(os.environ.get("RANK", "0")))


def _prepare_resume(
    cfg: TrainConfig, out: Path, history_path: Path, trainer: DeceTrainer
) -> tuple[str | None, _TrainClock]:
    """The checkpoint to resume from (None: from the start) and the clock of the run's training
    time. From the start, the previous history goes; on resume, the history and the per-example
    losses are cut back to the checkpoint's epoch and newer, incomplete checkpoints go."""
    checkpoint = resume_checkpoint(cfg)
    losses_path = _example_losses_path(out)
    if checkpoint is None:
        checkpoints = RunDir(out).checkpoints  # created empty before training starts
        if cfg.resume is True and checkpoints.is_dir() and any(checkpoints.iterdir()):
            logger.warning("resume: no complete checkpoint under %s; training from the start",
                           checkpoints)  # fmt: skip
        losses_path.unlink(missing_ok=True)
        if trainer.is_world_process_zero():
            history_path.unlink(missing_ok=True)
        return None, _TrainClock()
    state = _trainer_state(checkpoint)
    if state is None:
        raise FileNotFoundError(f"resume checkpoint {checkpoint} has no readable "
                                f"{TRAINER_STATE_NAME} (a save cut short?)")  # fmt: skip
    epoch = float(state.get("epoch") or 0.0)
    logger.info("resuming %s from %s (epoch %g)", out, checkpoint, epoch)
    truncate_metrics(losses_path, epoch)
    if trainer.is_world_process_zero():
        truncate_metrics(history_path, epoch)
        if cfg.resume is True:  # the newest complete one: any newer one was cut short
            for newer in _checkpoints_newest_first(checkpoint.parent):
                if newer == checkpoint:
                    break
                logger.warning("removing incomplete checkpoint %s", newer)
                shutil.rmtree(newer)
    return str(checkpoint), _TrainClock(_TrainClock.recorded(state))


def delete_checkpoints(output_dir: str | Path) -> None:
    """Removes ``<output_dir>/checkpoints``: first every checkpoint's ``trainer_state.json``,
    so a kill midway never leaves a checkpoint that looks complete with files missing."""
    root = RunDir(output_dir).checkpoints
    for checkpoint in _checkpoints_newest_first(root):
        (checkpoint / TRAINER_STATE_NAME).unlink(missing_ok=True)
    shutil.rmtree(root, ignore_errors=True)


class _TrainClock(TrainerCallback, ExportableState):
    """Training seconds over every segment of a resumed run. Each checkpoint records the total
    so far (``trainer_state.json``, ``stateful_callbacks``); the next segment starts from it."""

    def __init__(self, prior_s: float = 0.0) -> None:
        self.prior_s = float(prior_s)
        self._started = time.perf_counter()

    def start(self) -> None:
        self._started = time.perf_counter()

    def seconds(self) -> float:
        return self.prior_s + time.perf_counter() - self._started

    def state(self) -> dict[str, Any]:  # saved with every checkpoint
        return {"args": {}, "attributes": {"train_time_s": self.seconds()}}

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
        # a checkpoint from before this clock existed has no entry for it to update
        state.stateful_callbacks.setdefault(type(self).__name__, self.state())

    @classmethod
    def recorded(cls, trainer_state: dict[str, Any]) -> float:
        """The training seconds a checkpoint's ``trainer_state.json`` records (0 when none)."""
        entry = (trainer_state.get("stateful_callbacks") or {}).get(cls.__name__) or {}
        if isinstance(entry, list):
            entry = entry[-1] if entry else {}
        return float((entry.get("attributes") or {}).get("train_time_s", 0.0))


class _LogCallback(TrainerCallback):
    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
        if state.is_world_process_zero and logs:
            logger.info("step %d: %s", state.global_step, logs)


class _EpochProgress(TrainerCallback):
    """Reports each training epoch as a progress stage ("train epoch e/E", steps)."""

    def __init__(self) -> None:
        self._stage: Any = None
        self._advance: Any = None

    def on_epoch_begin(self, args, state, control, **kwargs):  # noqa: ANN001
        if not state.is_world_process_zero:
            return
        epoch = epoch_number(state.epoch)
        total_epochs = math.ceil(args.num_train_epochs)
        per_epoch = max(1, math.ceil(state.max_steps / max(total_epochs, 1)))
        self._stage = progress.task(f"train epoch {epoch}/{total_epochs}", per_epoch, "step")
        self._advance = self._stage.__enter__()

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
        if self._advance is not None:
            self._advance()

    def on_epoch_end(self, args, state, control, **kwargs):  # noqa: ANN001
        if self._stage is not None:
            self._stage.__exit__(None, None, None)
        self._stage, self._advance = None, None
