"""Completions for code benchmarks: ``n`` per prompt, greedy or sampled under an explicit seed,
each row stopped as soon as a predicate on its text says so.

``transformers``' sampling draws from the global torch RNG. To keep every draw under an explicit
``torch.Generator``, sampling here runs ``generate``'s *greedy* search behind
:class:`SeededSampler`, a logits processor that draws the next token itself (temperature, then
top-p, then ``torch.multinomial`` with its generator) and leaves only that token finite, so the
greedy step picks it. Greedy decoding (``samples=1``) uses no processor and batches prompts by
length; sampling runs one prompt's ``samples`` copies per batch with that prompt's own seed, so a
prompt's samples do not depend on the other prompts.

:class:`StopWhen` checks each row's decoded continuation after every step (the predicate gets
the text generated so far) and finishes the rows it accepts; ``generate`` pads them until the
whole batch is done.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
)

from dece.training.collate import pad_token_id_of
from dece.training.generation import _left_pad, _model_device, _right_pad, inference

__all__ = ["SeededSampler", "StopWhen", "complete"]

Stop = Callable[[str], bool]


class SeededSampler(LogitsProcessor):
    """Draws the next token of every row from ``softmax(scores / temperature)`` restricted to
    the top-p nucleus, with ``generator``; returns scores that are 0 at the drawn token and
    ``-inf`` elsewhere."""

    def __init__(self, generator: torch.Generator, temperature: float = 1.0, top_p: float = 1.0):
        if not temperature > 0 or not 0 < top_p <= 1:
            raise ValueError(f"need temperature > 0 and 0 < top_p <= 1, got {temperature}, {top_p}")
        self.generator, self.temperature, self.top_p = generator, temperature, top_p

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        logits = scores.float() / self.temperature  # [B, V]
        if self.top_p < 1.0:
            ordered, order = logits.sort(dim=-1, descending=True)  # [B, V]
            probs = ordered.softmax(-1)
            outside = probs.cumsum(-1) - probs > self.top_p  # the top token is always kept
            logits = torch.full_like(logits, float("-inf")).scatter(
                1, order, ordered.masked_fill(outside, float("-inf"))
            )
        token = torch.multinomial(logits.softmax(-1), 1, generator=self.generator)  # [B, 1]
        return torch.full_like(scores, float("-inf")).scatter(1, token, 0.0)


class StopWhen(StoppingCriteria):
    """Finishes row ``i`` once ``stops[i](text generated so far)`` is true. ``start``: where the
    generated tokens begin in ``input_ids`` (a causal LM's padded prompt width; 0 for a
    seq2seq decoder, whose start token the decoding skips as special)."""

    def __init__(self, tokenizer: Any, start: int, stops: Sequence[Stop]) -> None:
        self.tokenizer, self.start, self.stops = tokenizer, start, list(stops)

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.start :], skip_special_tokens=True)
        done = [stop(text) for stop, text in zip(self.stops, texts, strict=True)]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def complete(
    model: Any,
    tokenizer: Any,
    encoded: Sequence[Sequence[int]],
    *,
    task: str,
    samples: int = 1,
    seeds: Sequence[int] | None = None,
    temperature: float = 0.8,
    top_p: float = 0.95,
    max_new_tokens: int = 256,
    stops: Sequence[Stop] | None = None,
    batch_size: int = 8,
    stage: str | None = None,
) -> list[list[str]]:
    """``samples`` continuations of each encoded prompt (``encoded[i]``: its input ids),
    ``out[i][j]`` the j-th of prompt ``i``, special tokens dropped.

    ``samples=1``: greedy; otherwise sampled with a generator seeded ``seeds[i]`` for prompt
    ``i`` (required). ``stops[i]``: prompt ``i``'s stop predicate (None: stop at EOS or
    ``max_new_tokens`` only). ``task``: ``causal`` (prompts left-padded, the continuation
    returned) or ``seq2seq`` (the decoder's output). ``stage``: progress stage name.
    """
    if task not in ("causal", "seq2seq"):
        raise ValueError(f"task must be causal or seq2seq, got {task!r}")
    if samples < 1 or batch_size < 1 or max_new_tokens < 1:
        raise ValueError("samples, batch_size and max_new_tokens must be >= 1")
    if samples > 1 and (seeds is None or len(seeds) != len(encoded)):
        raise ValueError("sampling (samples > 1) needs one seed per prompt")
    if stops is not None and len(stops) != len(encoded):
        raise ValueError(f"{len(encoded)} prompts but {len(stops)} stop predicates")
    if any(not row for row in encoded):
        raise ValueError("every prompt needs at least one token")
    jobs: list[tuple[list[int], list[int], Any]] = []  # (prompt indices, ids rows, processor)
    if samples == 1:
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            jobs.append((idx, [list(encoded[i]) for i in idx], None))
    else:
        device = _model_device(model)
        for i, row in enumerate(encoded):
            generator = torch.Generator(device=device).manual_seed(int(seeds[i]))
            sampler = SeededSampler(generator, temperature, top_p)
            for s in range(0, samples, batch_size):
                n = min(batch_size, samples - s)
                jobs.append(([i] * n, [list(row)] * n, sampler))
    out: list[list[str]] = [[] for _ in encoded]
    with inference(model, stage, total=len(encoded) * samples, unit="completion") as advance:
        for idx, rows, sampler in jobs:
            row_stops = None if stops is None else [stops[i] for i in idx]
            texts = _generate(model, tokenizer, rows, task=task, sampler=sampler,
                              max_new_tokens=max_new_tokens, stops=row_stops)  # fmt: skip
            for i, text in zip(idx, texts, strict=True):
                out[i].append(text)
            advance(len(idx))
    return out


def _generate(
    model: Any,
    tokenizer: Any,
    rows: list[list[int]],
    *,
    task: str,
    sampler: SeededSampler | None,
    max_new_tokens: int,
    stops: list[Stop] | None,
) -> list[str]:
    pad = pad_token_id_of(tokenizer)
    device = _model_device(model)
    ids, mask = (_left_pad if task == "causal" else _right_pad)(rows, pad)  # [B, S]
    start = ids.shape[1] if task == "causal" else 0
    kwargs: dict[str, Any] = {"do_sample": False, "num_beams": 1, "max_new_tokens": max_new_tokens}
    if sampler is not None:
        kwargs["logits_processor"] = LogitsProcessorList([sampler])
    if stops is not None:
        kwargs["stopping_criteria"] = StoppingCriteriaList([StopWhen(tokenizer, start, stops)])
    if task == "causal":
        kwargs["eos_token_id"] = getattr(tokenizer, "eos_token_id", None)
    out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                         pad_token_id=pad, **kwargs)  # fmt: skip
    return tokenizer.batch_decode(out[:, start:], skip_special_tokens=True)
