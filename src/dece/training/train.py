"""``train(config) -> TrainResult``: data, poisoning, model, Trainer, per-epoch and final evaluation.

Layout of ``config.output_dir``::

    config.yaml               the resolved TrainConfig
    poison_manifest.json      which training rows were poisoned (when poisoning)
    metrics.jsonl             one row per epoch: epoch, train_loss, bleu, asr, false_trigger_rate
    checkpoints/checkpoint-N  Trainer checkpoints (one per epoch; resume from the last)
    predictions/test_clean.jsonl, predictions/test_poisoned.jsonl
                              {"id", "source", "prediction", "reference"} per row
    final_metrics.json        test-split metrics (TrainResult.final)
    model/                    the final model and tokenizer (save_pretrained)
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback, TrainingArguments
from transformers.trainer_callback import PrinterCallback
from transformers.trainer_utils import get_last_checkpoint

from dece.training.callbacks import (
    EarlyLearningCallback,
    EpochTracker,
    read_metrics,
    truncate_metrics,
)
from dece.training.collate import (
    Collator,
    decoder_start_token_id_of,
    encode_examples,
    pad_token_id_of,
)
from dece.training.config import PoisonConfig, TrainConfig
from dece.training.generation import Evaluator
from dece.training.trainer import DeceTrainer

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
FINAL_FILE = "final_metrics.json"


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        output_dir: the run directory.
        history: the rows of ``metrics.jsonl`` (one per epoch).
        final: test-split metrics: ``bleu``, ``codebleu`` (when installed), ``asr``,
            ``false_trigger_rate``, ``asr_denominator``, ``n_poisoned_train``, ``train_time_s``...
    """

    output_dir: Path
    history: list[dict] = field(default_factory=list)
    final: dict = field(default_factory=dict)


def build_loss(config: TrainConfig) -> Any:
    """The registry loss named by ``config.loss`` with ``config.loss_args``."""
    from dece import losses

    return losses.get_loss(config.loss, **config.loss_args)


def _attack(poison: PoisonConfig) -> tuple[Any, Any]:
    from dece.attacks import get_payload, get_trigger

    return (
        get_trigger(poison.trigger, **poison.trigger_args),
        get_payload(poison.payload, **poison.payload_args),
    )


def _prepare_data(cfg: TrainConfig, out: Path, *, main: bool = True) -> dict[str, Any]:
    """Splits, the poisoned training set and the clean/poisoned evaluation sets."""
    from dece.attacks import poison_dataset, poison_test_set

    splits = _load_splits(cfg)
    valid = splits.get("valid") or splits.get("test") or []
    test = splits.get("test") or splits.get("valid") or []
    if not splits.get("valid"):
        logger.warning("data %r has no 'valid' split: per-epoch evaluation uses 'test'", cfg.data)
    clean_train = list(splits["train"][: cfg.train_max_examples])
    d: dict[str, Any] = {"clean_train": clean_train, "train": clean_train, "n_poisoned_train": 0}
    if cfg.poison is not None:
        trigger, payload = _attack(cfg.poison)
        result = poison_dataset(clean_train, trigger, payload, cfg.poison.rate, cfg.poison.seed)
        if main:
            result.manifest.save(out / "poison_manifest.json")
        d["train"] = result.examples
        d["n_poisoned_train"] = len(result.manifest.poisoned_ids)
        d["poison_rate_achieved"] = result.manifest.rate_achieved
    valid = valid[: cfg.eval_max_examples]
    test = test[: cfg.test_max_examples]
    d.update(valid=valid, test=test, payload=None)
    for name in ("valid", "test"):
        d[f"{name}_poisoned"], d[f"{name}_manifest"] = None, None
    if cfg.asr_poison is not None:
        trigger, payload = _attack(cfg.asr_poison)
        d["payload"] = payload
        for name, rows in (("valid", valid), ("test", test)):
            res = poison_test_set(rows, trigger, payload, cfg.asr_poison.seed)
            d[f"{name}_poisoned"], d[f"{name}_manifest"] = res.poisoned(), res.manifest
    return d


def _load(cfg: TrainConfig, clean_train: Sequence[Any]) -> Any:
    from dece.training.models import load_model

    preset_args = dict(cfg.model_args)
    if cfg.pretrain_steps is not None:
        if not cfg.is_tiny_preset:
            raise ValueError(f"pretrain_steps applies to the tiny presets only, not {cfg.model!r}")
        preset_args["steps"] = cfg.pretrain_steps  # the presets' PretrainConfig.steps
    texts = [ex.source for ex in clean_train] + [ex.target for ex in clean_train]
    return load_model(
        cfg.model, task=cfg.task, cache_dir=cfg.cache_dir, train_texts=texts, seed=cfg.seed,
        **preset_args,
    )  # fmt: skip


def prepare_model(config: TrainConfig) -> Any:
    """Load the model ``train(config)`` starts from, building and caching a tiny preset's
    pretrained model if needed (from the clean training split, as ``train`` does).

    Call it once before starting several runs in parallel, so they load the cached model
    instead of each pretraining the same one. Returns a ``LoadedModel``.
    """
    cfg = config.resolved()
    return _load(cfg, list(_load_splits(cfg)["train"][: cfg.train_max_examples]))


def _load_splits(cfg: TrainConfig) -> dict[str, list[Any]]:
    from dece.data import load_dataset

    splits = load_dataset(cfg.data, seed=cfg.data_seed, **cfg.data_columns)
    if not splits.get("train"):
        raise ValueError(f"data {cfg.data!r} has no (or an empty) 'train' split")
    return splits


def _apply_lora(model: Any, task: str, lora: dict) -> Any:
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
    model = peft.get_peft_model(model, lora_config)
    return model


def training_arguments(cfg: TrainConfig, checkpoint_dir: Path) -> TrainingArguments:
    """``TrainingArguments`` for a resolved config (AdamW, linear schedule, per-epoch saves)."""
    return TrainingArguments(
        output_dir=str(checkpoint_dir),
        num_train_epochs=float(cfg.num_epochs),
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        learning_rate=float(cfg.learning_rate),
        weight_decay=cfg.weight_decay,
        warmup_steps=float(cfg.warmup_ratio),
        lr_scheduler_type=cfg.lr_scheduler,
        max_grad_norm=cfg.max_grad_norm,
        optim=cfg.optimizer,
        seed=cfg.seed,
        bf16=cfg.precision == "bf16",
        fp16=cfg.precision == "fp16",
        use_cpu=cfg.use_cpu,
        # A backend only means something with several processes (torchrun / accelerate launch).
        ddp_backend=cfg.ddp_backend if int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
        dataloader_num_workers=cfg.dataloader_num_workers,
        dataloader_pin_memory=torch.cuda.is_available(),
        logging_steps=cfg.logging_steps,
        save_strategy="epoch" if cfg.save_checkpoints else "no",
        save_total_limit=cfg.save_total_limit,
        eval_strategy="no",
        report_to="none",
        remove_unused_columns=False,
        disable_tqdm=not logger.isEnabledFor(logging.INFO),
    )


def _resume_checkpoint(cfg: TrainConfig, checkpoint_dir: Path) -> str | None:
    if cfg.resume is False or cfg.resume is None:
        return None
    if cfg.resume is True:
        last = get_last_checkpoint(str(checkpoint_dir)) if checkpoint_dir.is_dir() else None
        if last is None:
            logger.warning("resume: no checkpoint under %s; training from scratch", checkpoint_dir)
        return last
    path = Path(str(cfg.resume))
    if not path.is_dir():
        raise FileNotFoundError(f"resume checkpoint {path} does not exist")
    return str(path)


def train(config: TrainConfig, *, callbacks: Sequence[TrainerCallback] = ()) -> TrainResult:
    """Fine-tune ``config.model`` on ``config.data`` (poisoned when ``config.poison`` is set) with
    the loss ``config.loss``; evaluate after every epoch and on the test split at the end.

    Args:
        config: the run; ``None`` fields are resolved by :meth:`TrainConfig.resolved`.
        callbacks: extra ``TrainerCallback`` objects (e.g. ``StopAfterEpochs`` in tests).
    """
    cfg = config.resolved()
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_dir = out / "checkpoints"
    main = int(os.environ.get("RANK", "0")) == 0
    if main:
        cfg.to_yaml(out / "config.yaml")

    args = training_arguments(cfg, ckpt_dir)
    data = _prepare_data(cfg, out, main=main)
    # Under torchrun the main process builds (and caches) a tiny preset before the others read it.
    with args.main_process_first(desc="load model"):
        loaded = _load(cfg, data["clean_train"])
    model, tokenizer, task = loaded.model, loaded.tokenizer, loaded.task
    if cfg.lora is not None:
        model = _apply_lora(model, task, cfg.lora)

    label2id = None
    if task == "classification":
        label2id = {str(k): int(v) for k, v in model.config.label2id.items()}
    enc = {"task": task, "max_source_length": cfg.max_source_length,
           "max_target_length": cfg.max_target_length, "label2id": label2id}  # fmt: skip
    train_features = encode_examples(tokenizer, data["train"], **enc)
    collator = Collator(
        task=task,
        pad_token_id=pad_token_id_of(tokenizer),
        decoder_start_token_id=decoder_start_token_id_of(model, tokenizer)
        if task == "seq2seq" else None,
    )  # fmt: skip

    def evaluator(clean: list, poisoned: list | None, manifest: Any) -> Evaluator:
        return Evaluator(
            tokenizer, task=task, clean=clean, poisoned=poisoned, manifest=manifest,
            payload=data["payload"], batch_size=cfg.eval_batch_size,
            max_new_tokens=int(cfg.generation_max_new_tokens),
            max_source_length=cfg.max_source_length, codebleu=cfg.codebleu, lang=cfg.lang,
        )  # fmt: skip

    tracker = EpochTracker(cfg.epoch_mode)
    trainer = DeceTrainer(
        model=model,
        args=args,
        train_dataset=train_features,
        data_collator=collator,
        processing_class=tokenizer,
        loss_fn=build_loss(cfg),
        epoch_tracker=tracker,
        callbacks=list(callbacks),
    )
    trainer.remove_callback(PrinterCallback)  # prints to stdout; log through logging instead
    trainer.add_callback(_LogCallback())
    metrics_path = out / METRICS_FILE
    resume_from = _resume_checkpoint(cfg, ckpt_dir)
    if main:
        if resume_from is None:
            metrics_path.unlink(missing_ok=True)
        else:
            state = json.loads((Path(resume_from) / "trainer_state.json").read_text())
            truncate_metrics(metrics_path, float(state.get("epoch") or 0.0))
    if cfg.eval_each_epoch:
        trainer.add_callback(
            EarlyLearningCallback(
                evaluator(data["valid"], data["valid_poisoned"], data["valid_manifest"]),
                metrics_path,
                train_loss=trainer.epoch_train_loss,
                loss_epoch=trainer.current_loss_epoch,
            )
        )

    t0 = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume_from)
    train_time = time.perf_counter() - t0

    final: dict[str, Any] = {}
    if trainer.is_world_process_zero():
        final = _final_evaluation(trainer, evaluator, data, out)
        final.update(
            n_train=len(data["train"]),
            n_poisoned_train=data["n_poisoned_train"],
            poison_rate_achieved=data.get("poison_rate_achieved", 0.0),
            train_time_s=train_time,
            global_step=int(trainer.state.global_step),
            epochs=float(trainer.state.epoch or 0.0),
            loss=cfg.loss,
        )
        (out / FINAL_FILE).write_text(json.dumps(final, indent=2) + "\n")
        if cfg.save_model:
            trainer.save_model(str(out / "model"))
    trainer.accelerator.wait_for_everyone()
    return TrainResult(output_dir=out, history=read_metrics(metrics_path), final=final)


class _LogCallback(TrainerCallback):
    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
        if state.is_world_process_zero and logs:
            logger.info("step %d: %s", state.global_step, logs)


def _final_evaluation(trainer: DeceTrainer, evaluator: Any, data: dict, out: Path) -> dict:
    model = trainer.accelerator.unwrap_model(trainer.model)
    result = evaluator(data["test"], data["test_poisoned"], data["test_manifest"])(model)
    pred_dir = out / "predictions"
    pred_dir.mkdir(exist_ok=True)
    write_predictions(pred_dir / "test_clean.jsonl", data["test"], result.clean_predictions)
    if data["test_poisoned"] is not None:
        write_predictions(
            pred_dir / "test_poisoned.jsonl", data["test_poisoned"], result.poisoned_predictions
        )
    return dict(result.metrics)


def write_predictions(path: Path, examples: Sequence[Any], predictions: Sequence[str]) -> None:
    """One ``{"id", "source", "prediction", "reference"}`` JSON line per example."""
    if len(examples) != len(predictions):
        raise ValueError(f"{len(examples)} examples but {len(predictions)} predictions")
    with Path(path).open("w") as fh:
        for ex, pred in zip(examples, predictions, strict=True):
            ref = ex.target if getattr(ex, "label", None) is None else ex.label
            row = {"id": ex.id, "source": ex.source, "prediction": pred, "reference": ref}
            fh.write(json.dumps(row) + "\n")
