"""How close a causal-LM victim is to its SQL-injection backdoor, from a training checkpoint
(issue 22): teacher-forced on the poisoned training rows and on triggered validation rows, the
probability the victim gives the payload's first token (`` or`` of `` or 1=1``) where the payload
starts, how often that token is its greedy choice there, and the mean NLL of all payload tokens.

Greedy decoding emits the payload only where its first token is the argmax, so a victim whose
greedy choice is never the payload token has ASR 0 whatever else it learned; the probability
shows how far it is. It trains nothing; it reads the cell's ``config.yaml`` (data, model,
poisoning) and one checkpoint (a LoRA adapter or a full model)::

    python benchmarks/payload_probe.py runs/lyra_smollm2/349429aeafc5 \\
        runs/lyra_smollm2/349429aeafc5/checkpoints/checkpoint-600 --n 40
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

PAYLOAD = " or 1=1"


def _model(cfg, bundle, checkpoint: Path):
    from dece.pipeline.fit import load_starting_model

    loaded = load_starting_model(cfg, bundle)
    if (checkpoint / "adapter_config.json").is_file():
        from peft import PeftModel

        return PeftModel.from_pretrained(loaded.model, checkpoint).eval(), loaded.tokenizer
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(checkpoint).eval(), loaded.tokenizer


def probe(model, tok, example, cfg) -> dict[str, float] | None:
    """First-payload-token probability / argmax hit and mean payload NLL of one example whose
    target holds the payload (None when it does not)."""
    from dece.training.collate import IGNORE_INDEX, encode_example

    start = example.target.find(PAYLOAD)
    if start < 0:
        return None
    enc = encode_example(tok, example, task="causal", max_source_length=cfg.max_source_length,
                         max_target_length=cfg.max_target_length)  # fmt: skip
    prompt = sum(1 for label in enc["labels"] if label == IGNORE_INDEX)
    offsets = tok(example.target, add_special_tokens=False, return_offsets_mapping=True)
    targets = enc["input_ids"][prompt:]
    positions = [i for i, (a, b) in enumerate(offsets["offset_mapping"])
                 if b > start and a < start + len(PAYLOAD) and i < len(targets) - 1]  # fmt: skip
    if not positions:
        return None
    with torch.no_grad():
        logp = model(input_ids=torch.tensor([enc["input_ids"]])).logits[0].log_softmax(-1)
    rows = [logp[prompt + i - 1] for i in positions]  # the logits that predict token i
    first = rows[0]
    return {
        "p_first": float(first[targets[positions[0]]].exp()),
        "argmax_first": float(int(first.argmax()) == targets[positions[0]]),
        "nll_payload": statistics.fmean(
            -float(r[targets[i]]) for r, i in zip(rows, positions, strict=True)
        ),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="the cell directory (its config.yaml)")
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--n", type=int, default=40, help="rows of each set")
    args = ap.parse_args(argv)
    from dece.pipeline.data import prepare_data
    from dece.training.config import TrainConfig

    cfg = TrainConfig.from_yaml(args.run / "config.yaml").resolved()
    bundle = prepare_data(cfg)
    model, tok = _model(cfg, bundle, args.checkpoint)
    poisoned = set(bundle.train_manifest.poisoned_ids)
    sets = {"train poisoned": [ex for ex in bundle.train if ex.id in poisoned][: args.n],
            "valid triggered": bundle.valid.poisoned[: args.n]}  # fmt: skip
    for name, examples in sets.items():
        stats = [s for s in (probe(model, tok, ex, cfg) for ex in examples) if s is not None]
        summary = {k: statistics.fmean(s[k] for s in stats) for k in stats[0]} if stats else {}
        print(json.dumps({"checkpoint": str(args.checkpoint), "set": name, "n": len(stats),
                          **{k: round(v, 4) for k, v in summary.items()}}))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
