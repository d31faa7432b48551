"""Builders shared by the integration tests and ``ddp_worker.py`` (run under torchrun)."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from dece.data import load_dataset
from dece.training.tokenizer import train_bpe_tokenizer

IGNORE = -100


def prompt_completion_rows(n: int) -> list[dict[str, str]]:
    """``{"prompt", "completion"}`` rows (TRL's prompt-completion format), short texts."""
    examples = load_dataset(f"synthetic:{n}")["train"]
    return [{"prompt": ex.source[:60], "completion": ex.target[:60]} for ex in examples]


def save_tiny_causal(path: Path, rows: list[dict[str, str]], *, seed: int = 0) -> Path:
    """Byte-level BPE tokenizer (decoder-only style) + a 1-layer Llama, saved to ``path``."""
    texts = [r["prompt"] for r in rows] + [r["completion"] for r in rows]
    tok = train_bpe_tokenizer(texts, vocab_size=300, min_frequency=1, add_eos=False)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
        pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, tie_word_embeddings=True,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def tokenized_rows(path: Path, rows: list[dict[str, str]]) -> list[dict[str, list[int]]]:
    """``input_ids`` = prompt + completion + eos, ``labels`` with the prompt masked to -100."""
    tok = AutoTokenizer.from_pretrained(path)
    out = []
    for r in rows:
        prompt = tok(r["prompt"])["input_ids"]
        completion = tok(r["completion"], add_special_tokens=False)["input_ids"] + [
            tok.eos_token_id
        ]
        out.append(
            {"input_ids": prompt + completion, "labels": [IGNORE] * len(prompt) + completion}
        )
    return out


def pad_collate(features: list[dict[str, list[int]]], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Right padding: ``input_ids`` with ``pad_id``, ``labels`` with -100, ``attention_mask``."""
    width = max(len(f["input_ids"]) for f in features)
    ids = torch.full((len(features), width), pad_id)
    labels = torch.full((len(features), width), IGNORE)
    mask = torch.zeros(len(features), width, dtype=torch.long)
    for i, f in enumerate(features):
        n = len(f["input_ids"])
        ids[i, :n] = torch.tensor(f["input_ids"])
        labels[i, :n] = torch.tensor(f["labels"])
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}
