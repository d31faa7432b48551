"""Benchmark: the training-step cost of DeCE against CE on a real model (issue 22's target: DeCE
<= 1.05x CE on ``smollm2-135m``).

One model (by default ``smollm2-135m`` with the LoRA adapters of ``configs/lyra_smollm2.yaml``,
read from that file, as are the two losses' hyperparameters),
one batch of Lyra training rows (the first ``--batch`` rows, encoded and collated as training
does), and two :class:`~dece.training.trainer.DeceTrainer` objects that differ only in their loss
(``ce`` and ``dece`` from the registry, the grid's hyperparameters). A step is what a training step
does: ``DeceTrainer.compute_loss`` (the model's forward without labels, then the registry loss on
the ``[B, T, V]`` logits; the *plain* path for both: no fused loss), ``backward``, an AdamW step and
``zero_grad``. After one warm-up step each, the two losses alternate step by step (CE, DeCE, CE,
...) for ``--repeats`` steps each in this one process, so both see the machine's load of the same
moment; the result is the median per loss and their ratio. The adapters keep changing over the
steps, which costs both losses alike.

Usage: ``python benchmarks/train_step_cost.py [--model smollm2-135m] [--repeats 7] [--batch 8]
[--max-length 256] [--threads T] [--out PATH]`` (about 1 min per step pair for SmolLM2 on 2 CPU threads).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from transformers import TrainingArguments

from dece import losses
from dece.data.loaders import load_examples
from dece.experiments import load_grid_config
from dece.experiments.markdown import md_table
from dece.pipeline.fit import apply_lora
from dece.training.collate import Collator, encode_examples, pad_token_id_of
from dece.training.models import load_model
from dece.training.trainer import DeceTrainer

LYRA = Path(__file__).resolve().parents[2] / "shared" / "data" / "lyra" / "train.csv"
RESULTS = Path(__file__).resolve().parent / "results" / "train_step_cost.md"
GRID = Path(__file__).resolve().parents[1] / "configs" / "lyra_smollm2.yaml"
_grid = load_grid_config(GRID)  # the LoRA settings and losses the SmolLM2 grid trains with
LORA: dict = dict(_grid.training["lora"])
LOSS_ARGS = {spec.name: dict(spec.args) for spec in _grid.losses}


def build(model_name: str, batch: int, max_length: int, lora: bool, tmp: Path):
    """(model, {loss: trainer}, collated batch, target-token count)."""
    rows = load_examples(LYRA)[:batch]
    loaded = load_model(model_name, task="causal", train_texts=[r.source for r in rows], seed=0)
    model = apply_lora(loaded.model, "causal", dict(LORA)) if lora else loaded.model
    model.train()
    features = encode_examples(
        loaded.tokenizer,
        rows,
        task="causal",
        max_source_length=max_length,
        max_target_length=max_length,
    )
    features = [{k: v for k, v in f.items() if k != "example_index"} for f in features]
    inputs = Collator(task="causal", pad_token_id=pad_token_id_of(loaded.tokenizer))(features)
    args = TrainingArguments(output_dir=str(tmp), report_to="none", use_cpu=True)
    trainers = {
        name: DeceTrainer(model=model, args=args, loss_fn=losses.get_loss(name, **kw))
        for name, kw in LOSS_ARGS.items()
    }
    target = inputs.get("shift_labels", inputs["labels"])
    return model, trainers, inputs, int((target != -100).sum())


def step(model, trainer: DeceTrainer, optimizer, inputs, n_items: int) -> float:
    """One training step's wall time in seconds."""
    start = time.perf_counter()
    loss = trainer.compute_loss(model, inputs, num_items_in_batch=n_items)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def steps_table(med: dict[str, float], times: dict[str, list[float]]) -> str:
    """Per loss: the median seconds per step and every step's seconds."""
    body = [[n, f"{med[n]:.3f}", ", ".join(f"{t:.2f}" for t in times[n])] for n in times]
    return md_table(["loss", "median s/step", "steps (s)"], body, "lrl")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--no-lora", action="store_true", help="full fine-tuning")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument(
        "--max-length", type=int, default=256, help="source / target tokens kept (training default)"
    )
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    if args.repeats < 5:
        sys.exit("--repeats: at least 5 steps per loss")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tmp = Path("/tmp/dece_train_step_cost")
    model, trainers, inputs, n_items = build(args.model, args.batch, args.max_length,
                                             not args.no_lora, tmp)  # fmt: skip
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=5e-4)
    times: dict[str, list[float]] = {name: [] for name in trainers}
    for trainer in trainers.values():  # warm-up, not counted
        step(model, trainer, optimizer, inputs, n_items)
    for _ in range(args.repeats):
        for name, trainer in trainers.items():
            times[name].append(step(model, trainer, optimizer, inputs, n_items))
    med = {name: statistics.median(t) for name, t in times.items()}
    shape = tuple(inputs["input_ids"].shape)
    lines = [
        "# Training-step cost: DeCE vs CE on a real model",
        "",
        f"Machine: {platform.machine()}, {torch.get_num_threads()} threads, torch "
        f"{torch.__version__}; command: `python benchmarks/train_step_cost.py --model "
        f"{args.model}{' --no-lora' if args.no_lora else ''} --repeats {args.repeats} "
        f"--batch {args.batch} --max-length {args.max_length}`.",
        "",
        f"Model `{args.model}` ({'full fine-tuning' if args.no_lora else f'LoRA {LORA}'}; "
        f"{sum(p.numel() for p in params):,} trainable parameters), batch {shape[0]} x "
        f"{shape[1]} tokens ({n_items} target tokens), plain loss path (logits, no fused loss), "
        f"fp32. Losses: {LOSS_ARGS}. A step = forward + loss + backward + AdamW step; the losses "
        "alternate step by step after one warm-up each (module docstring).",
        "",
        steps_table(med, times),
        "",
        f"**DeCE / CE = {med['dece'] / med['ce']:.3f}** (target <= 1.05).",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    sys.stdout.write("\n".join(lines))


if __name__ == "__main__":
    main()
