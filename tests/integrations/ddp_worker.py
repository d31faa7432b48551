"""Run by test_trainer_loss_ddp.py under ``torchrun`` (or plain ``python`` for one process): trains the tiny
causal LM with TrainerLoss in a transformers.Trainer and saves the weights and the epochs the
loss saw. Usage: ``ddp_worker.py MODEL_DIR OUT_DIR BATCH ACCUMULATION``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
from tiny_setup import pad_collate, prompt_completion_rows, tokenized_rows
from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

from dece.integrations import TrainerLoss


def main() -> None:
    model_dir, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
    batch, accumulation = int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(1)
    loss = TrainerLoss("dece", alpha_base=0.9, label_smoothing=0.1)
    epochs: list[float] = []

    def recording_loss(outputs, labels, num_items_in_batch=None):
        epochs.append(loss.epoch)
        return loss(outputs, labels, num_items_in_batch=num_items_in_batch)

    args = TrainingArguments(
        output_dir=str(out_dir), per_device_train_batch_size=batch,
        gradient_accumulation_steps=accumulation, num_train_epochs=2, learning_rate=0.5,
        optim="sgd", lr_scheduler_type="constant", warmup_steps=0, max_grad_norm=0.0,
        report_to=[], save_strategy="no", use_cpu=True, seed=0, disable_tqdm=True,
        ddp_backend="gloo" if "WORLD_SIZE" in os.environ else None,
    )  # fmt: skip
    trainer = Trainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir),
        args=args,
        train_dataset=tokenized_rows(model_dir, prompt_completion_rows(16)),
        data_collator=pad_collate,
        compute_loss_func=recording_loss,
        callbacks=[loss.callback],
    )
    trainer.train()
    rank = trainer.args.process_index
    (out_dir / f"epochs-{rank}.json").write_text(json.dumps(epochs))
    if trainer.is_world_process_zero():
        trainer.save_model(str(out_dir / "model"))


if __name__ == "__main__":
    main()
