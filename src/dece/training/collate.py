"""Tokenisation and batching for the three task kinds.

Conventions (those of transformers' losses, ``loss/loss_utils.py``):

- padded label positions are ``-100`` (``IGNORE_INDEX``) and never count in the loss;
- seq2seq: ``labels`` ``[B, T]`` are the target ids; ``decoder_input_ids`` ``[B, T]`` are the
  labels shifted right behind ``decoder_start_token_id`` (the model is *not* given the labels, so
  it computes no loss of its own: the registry loss does);
- causal: one sequence ``prompt + target + eos``; ``labels`` ``[B, T]`` copy the ids with the
  prompt masked to ``-100``; ``shift_labels`` ``[B, T]`` are ``labels`` moved one position left
  (position ``t`` holds the token predicted from ``t``), so the loss compares ``logits[:, t]`` with
  ``shift_labels[:, t]`` with no shifting inside the loss;
- classification: ``labels`` ``[B]`` class indices (``label2id`` maps the dataset's labels);
- text pairs (``Example.source_pair``) are encoded as the tokenizer's own text-pair encoding;
- every batch carries ``example_index`` ``[B]``: the rows' positions in the encoded list, so a
  per-example loss hook can key its values by example id (the trainer removes it before the
  forward pass).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from dece.data import Example

IGNORE_INDEX = -100
TASKS = ("seq2seq", "causal", "classification")


def pad_token_id_of(tokenizer: Any) -> int:
    """The tokenizer's pad id, else its eos id (decoder-only tokenizers often lack a pad)."""
    for name in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, name, None)
        if value is not None:
            return int(value)
    raise ValueError("tokenizer has neither pad_token_id nor eos_token_id")


def shift_right(
    labels: torch.Tensor, decoder_start_token_id: int, pad_token_id: int
) -> torch.Tensor:
    """Decoder inputs for teacher forcing: ``[start, y_0, ..., y_{T-2}]``, ``-100`` -> pad.

    labels ``[B, T]`` -> ``[B, T]``.
    """
    out = labels.new_full(labels.shape, pad_token_id)
    out[:, 1:] = labels[:, :-1]
    out[:, 0] = decoder_start_token_id
    return out.masked_fill(out == IGNORE_INDEX, pad_token_id)


def shift_left(labels: torch.Tensor) -> torch.Tensor:
    """Causal-LM targets aligned with the logits: ``out[:, t] = labels[:, t + 1]``, last = -100.

    labels ``[B, T]`` -> ``[B, T]``.
    """
    out = labels.new_full(labels.shape, IGNORE_INDEX)
    out[:, :-1] = labels[:, 1:]
    return out


def _encode(tokenizer: Any, text: str, *, add_special_tokens: bool, max_length: int) -> list[int]:
    ids = tokenizer(
        text, add_special_tokens=add_special_tokens, truncation=True, max_length=max_length
    )["input_ids"]
    return list(ids)


def encode_source(
    tokenizer: Any, source: str, source_pair: str | None, *, max_length: int
) -> list[int]:
    """Input ids of a source, or of a text pair ``(source, source_pair)`` as the tokenizer itself
    encodes pairs (truncating the longer text first)."""
    if source_pair is None:
        return _encode(tokenizer, source, add_special_tokens=True, max_length=max_length)
    ids = tokenizer(
        source, source_pair, add_special_tokens=True, truncation="longest_first",
        max_length=max_length,
    )["input_ids"]  # fmt: skip
    return list(ids)


def causal_prompt_ids(
    tokenizer: Any, source: str, max_source_length: int, source_pair: str | None = None
) -> list[int]:
    """Prompt of a causal LM: the source's ids (with the tokenizer's own BOS when it adds one)
    followed by an EOS separator, unless the tokenizer already ends the source with EOS."""
    ids = encode_source(tokenizer, source, source_pair, max_length=max_source_length)
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is None:
        raise ValueError("a causal-LM tokenizer needs an eos_token_id (the prompt separator)")
    if not ids or ids[-1] != eos:
        ids = ids + [int(eos)]
    return ids


def encode_example(
    tokenizer: Any,
    example: Example,
    *,
    task: str,
    max_source_length: int,
    max_target_length: int,
    label2id: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """Token ids of one example (unpadded lists)."""
    if task == "seq2seq":
        return {
            "input_ids": encode_source(
                tokenizer, example.source, example.source_pair, max_length=max_source_length
            ),
            "labels": _encode(
                tokenizer, example.target, add_special_tokens=True, max_length=max_target_length
            ),
        }
    if task == "causal":
        prompt = causal_prompt_ids(
            tokenizer, example.source, max_source_length, example.source_pair
        )
        target = _encode(
            tokenizer, example.target, add_special_tokens=False, max_length=max_target_length - 1
        )
        target = target + [int(tokenizer.eos_token_id)]
        return {"input_ids": prompt + target, "labels": [IGNORE_INDEX] * len(prompt) + target}
    if task == "classification":
        if label2id is None:
            raise ValueError("label2id is required for task 'classification'")
        label = example.reference
        if label not in label2id:
            raise ValueError(
                f"example {example.id!r}: label {label!r} not among {sorted(label2id)}"
            )
        return {
            "input_ids": encode_source(
                tokenizer, example.source, example.source_pair, max_length=max_source_length
            ),
            "labels": int(label2id[label]),
        }
    raise ValueError(f"task must be one of {TASKS}, got {task!r}")


def encode_examples(
    tokenizer: Any, examples: Sequence[Example], **kwargs: Any
) -> list[dict[str, Any]]:
    """:func:`encode_example` over a list (the Trainer's ``train_dataset``); each row also holds
    its position as ``example_index``."""
    return [
        {**encode_example(tokenizer, ex, **kwargs), "example_index": i}
        for i, ex in enumerate(examples)
    ]


def _pad(rows: Sequence[Sequence[int]], value: int) -> torch.Tensor:
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), value, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
    return out


@dataclass
class Collator:
    """Pads a list of :func:`encode_example` outputs into a batch (right padding).

    Args:
        task: ``seq2seq`` | ``causal`` | ``classification``.
        pad_token_id: id used to pad ``input_ids`` / ``decoder_input_ids``.
        decoder_start_token_id: first decoder input of a seq2seq model (its config's).
    """

    task: str
    pad_token_id: int
    decoder_start_token_id: int | None = None

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.task == "seq2seq" and self.decoder_start_token_id is None:
            raise ValueError("decoder_start_token_id is required for task 'seq2seq'")

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("features is empty")
        input_ids = _pad([f["input_ids"] for f in features], self.pad_token_id)  # [B, S]
        attention_mask = _pad([[1] * len(f["input_ids"]) for f in features], 0)  # [B, S]
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        if all("example_index" in f for f in features):
            batch["example_index"] = torch.tensor([int(f["example_index"]) for f in features])
        if self.task == "classification":
            batch["labels"] = torch.tensor([int(f["labels"]) for f in features], dtype=torch.long)
            return batch
        labels = _pad([f["labels"] for f in features], IGNORE_INDEX)  # [B, T]
        batch["labels"] = labels
        if self.task == "seq2seq":
            batch["decoder_input_ids"] = shift_right(
                labels, int(self.decoder_start_token_id), self.pad_token_id
            )
        else:
            batch["shift_labels"] = shift_left(labels)
        return batch


def decoder_start_token_id_of(model: Any, tokenizer: Any) -> int:
    """The decoder start id of a seq2seq model: its config's, else the tokenizer's bos/pad."""
    config = getattr(model, "config", None)
    for owner in (config, getattr(config, "decoder", None)):
        value = getattr(owner, "decoder_start_token_id", None) if owner is not None else None
        if value is not None:
            return int(value)
    generation_config = getattr(model, "generation_config", None)
    value = getattr(generation_config, "decoder_start_token_id", None)
    if value is not None:
        return int(value)
    for name in ("bos_token_id", "cls_token_id", "pad_token_id"):
        value = getattr(tokenizer, name, None)
        if value is not None:
            return int(value)
    raise ValueError("cannot determine decoder_start_token_id from the model or tokenizer")
