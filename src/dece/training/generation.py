"""Greedy batched decoding (generation tasks) and label prediction (classification)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from dece import progress as progress_module
from dece.training.collate import causal_prompt_ids, encode_source, pad_token_id_of

logger = logging.getLogger(__name__)


def _left_pad(rows: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row) :] = torch.as_tensor(row, dtype=torch.long)
            mask[i, width - len(row) :] = 1
    return ids, mask


def _right_pad(rows: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return ids, mask


def _model_device(model: torch.nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover
        return torch.device("cpu")


def length_batches(
    lengths: Sequence[int], *, token_budget: int, max_rows: int = 1024, fill: float = 0.8
) -> list[list[int]]:
    """Row indices grouped into batches of similar length: longest first; a batch takes the next
    row while ``rows * longest <= token_budget`` (its padded area; a row longer than the budget
    gets a batch to itself), it has fewer than ``max_rows`` rows and the row is at least
    ``fill * longest`` long (so padding is at most ``1 - fill`` of a batch). Every index appears
    once; put outputs back with the indices."""
    if token_budget < 1 or max_rows < 1:
        raise ValueError(f"token_budget and max_rows must be >= 1, got {token_budget}, {max_rows}")
    if not 0.0 <= fill <= 1.0:
        raise ValueError(f"fill must be in [0, 1], got {fill}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        if batches:
            batch = batches[-1]
            width = max(lengths[batch[0]], 1)
            fits = len(batch) < max_rows and (len(batch) + 1) * width <= token_budget
            if fits and lengths[i] >= fill * width:
                batch.append(i)
                continue
        batches.append([i])
    return batches


def generate(
    model: Any,
    tokenizer: Any,
    sources: Sequence[str],
    *,
    batch_size: int = 32,
    max_new_tokens: int = 256,
    task: str = "seq2seq",
    max_source_length: int = 256,
    id2label: dict[int, str] | None = None,
    progress: bool = False,
) -> list[str]:
    """Greedy decoding of ``sources`` in batches; one output string per source, in input order.

    Seq2seq inputs are right-padded; causal prompts (``source + eos``, see
    :func:`dece.training.collate.causal_prompt_ids`) are left-padded and only the continuation is
    decoded. For ``classification`` the output is the predicted label name (``id2label``, else
    the model config's). ``progress``: report a "generate" stage (see :mod:`dece.progress`).
    """
    if task not in ("seq2seq", "causal", "classification"):
        raise ValueError(f"task must be seq2seq, causal or classification, got {task!r}")
    sources = list(sources)
    for i, s in enumerate(sources):
        if not isinstance(s, str):
            raise ValueError(f"sources[{i}] is {type(s).__name__}, expected str")
    if task == "causal":
        encoded = [causal_prompt_ids(tokenizer, s, max_source_length) for s in sources]
    else:
        encoded = [encode_source(tokenizer, s, None, max_length=max_source_length) for s in sources]
    return decode_rows(
        model, tokenizer, encoded, task=task, batch_size=batch_size,
        max_new_tokens=max_new_tokens, id2label=id2label, stage="generate" if progress else None,
    )  # fmt: skip


def decode_rows(
    model: Any,
    tokenizer: Any,
    encoded: Sequence[Sequence[int]],
    *,
    task: str,
    batch_size: int = 32,
    max_new_tokens: int = 256,
    id2label: dict[int, str] | None = None,
    stage: str | None = None,
    token_budget: int | None = None,
) -> list[str]:
    """Greedy outputs of already-encoded inputs (``encoded[i]``: input ids of row ``i``), in
    input order. Rows are sorted by length so each batch pads little, then put back in order.
    ``token_budget``: batch by padded area instead of ``batch_size`` rows, counting each row as
    its input plus ``max_new_tokens`` (:func:`length_batches`; classification: the input only).
    ``stage``: name of the progress stage to report (None: silent)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if not encoded:
        return []
    pad = pad_token_id_of(tokenizer)
    if token_budget is None:
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
        batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    else:
        extra = 0 if task == "classification" else max_new_tokens
        batches = length_batches([len(r) + extra for r in encoded], token_budget=token_budget)
    outputs: list[str] = [""] * len(encoded)
    device = _model_device(model)
    with inference(model, stage, total=len(encoded), unit="row") as advance:
        for idx in batches:
            texts = _generate_batch(
                model, tokenizer, [list(encoded[i]) for i in idx], task=task, pad=pad,
                device=device, max_new_tokens=max_new_tokens, id2label=id2label,
            )  # fmt: skip
            for i, text in zip(idx, texts, strict=True):
                outputs[i] = text
            advance(len(idx))
    return outputs


@contextlib.contextmanager
def inference(model: Any, stage: str | None, *, total: int, unit: str) -> Iterator[Any]:
    """``model`` in eval mode under ``torch.inference_mode`` for the block (its training flag
    restored after), yielding ``advance(n)`` of the progress stage ``stage`` over ``total``
    ``unit``s (a no-op when ``stage`` is None)."""
    was_training = model.training
    model.eval()
    report = progress_module.task(stage, total=total, unit=unit) if stage else None
    try:
        with torch.inference_mode(), report or contextlib.nullcontext(lambda n=1: None) as advance:
            yield advance
    finally:
        model.train(was_training)


def _generate_batch(
    model: Any,
    tokenizer: Any,
    rows: list[list[int]],
    *,
    task: str,
    pad: int,
    device: torch.device,
    max_new_tokens: int,
    id2label: dict[int, str] | None,
) -> list[str]:
    if task == "classification":
        ids, mask = _right_pad(rows, pad)
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits  # [B, C]
        labels = id2label or getattr(model.config, "id2label", None) or {}
        return [str(labels.get(int(k), int(k))) for k in logits.argmax(-1).tolist()]
    greedy = {"do_sample": False, "num_beams": 1, "max_new_tokens": max_new_tokens}
    eos = getattr(tokenizer, "eos_token_id", None)
    if task == "causal":
        ids, mask = _left_pad(rows, pad)
        out = model.generate(
            input_ids=ids.to(device), attention_mask=mask.to(device),
            pad_token_id=pad, eos_token_id=eos, **greedy,
        )  # fmt: skip
        out = out[:, ids.shape[1] :]  # [B, new] continuation only
    else:
        ids, mask = _right_pad(rows, pad)
        out = model.generate(
            input_ids=ids.to(device), attention_mask=mask.to(device), pad_token_id=pad, **greedy
        )
    return tokenizer.batch_decode(out, skip_special_tokens=True)
