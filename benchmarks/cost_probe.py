"""What ``defense_cost.py`` measures a path with: a forward counter, a CPU-second timer, the
bound's batching (pre-tokenised rows, length-sorted, a token budget, inference mode) and the
agreement of two paths' scores and decisions."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from dece.training.generation import length_batches

BUDGET = 16384  # padded tokens per batch of the bound (Victim.batch_tokens' default)


@dataclass
class Counter:
    """Forward calls and tokens (real and padded) seen by a forward pre-hook."""

    calls: int = 0
    tokens: int = 0
    padded: int = 0
    handles: list = field(default_factory=list)

    def hook(self, _module: Any, args: tuple, kwargs: dict) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None:
            return
        mask = kwargs.get("attention_mask")
        self.calls += 1
        self.padded += int(ids.numel())
        self.tokens += int(ids.numel() if mask is None else mask[:, -ids.shape[1] :].sum())


def counted(*modules: torch.nn.Module) -> Counter:
    """One counter of the forwards of ``modules`` (an encoder-decoder: its encoder and decoder,
    whose decoding steps are forwards of their own)."""
    counter = Counter()
    for module in modules:
        counter.handles.append(module.register_forward_pre_hook(counter.hook, with_kwargs=True))
    return counter


def timed(fn: Callable[[], Any], *modules: torch.nn.Module) -> tuple[Any, dict[str, float]]:
    """``fn()``'s result and its CPU / wall seconds, forwards and tokens (hooks on ``modules``)."""
    counter = counted(*modules)
    cpu, wall = time.process_time(), time.perf_counter()
    try:
        out = fn()
    finally:
        for h in counter.handles:
            h.remove()
    return out, {"cpu_s": time.process_time() - cpu, "wall_s": time.perf_counter() - wall,
                 "forwards": counter.calls, "tokens": counter.tokens,
                 "padded": counter.padded}  # fmt: skip


def bound_forwards(run: Callable[[torch.Tensor, torch.Tensor], Any],
                   rows: Sequence[Sequence[int]]) -> None:  # fmt: skip
    """``run(ids [B, T], mask [B, T])`` over pre-tokenised ``rows``, length-sorted, batched by
    :data:`BUDGET` padded tokens, in inference mode."""
    with torch.inference_mode():
        for idx in length_batches([len(r) for r in rows], token_budget=BUDGET):
            width = len(rows[idx[0]])
            ids = torch.zeros((len(idx), width), dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for b, i in enumerate(idx):
                ids[b, : len(rows[i])] = torch.as_tensor(list(rows[i]))
                mask[b, : len(rows[i])] = 1
            run(ids, mask)


def bound_teacher_forced(model: Any, collate: Callable[[list], dict[str, torch.Tensor]],
                         rows: Sequence[dict[str, Any]]) -> None:  # fmt: skip
    """One encoder-decoder forward per pre-encoded ``(input_ids, labels)`` row, the output
    teacher-forced: length-sorted (input plus output tokens), :data:`BUDGET` padded tokens per
    batch, inference mode, the logits and nothing after them."""
    with torch.inference_mode():
        for idx in length_batches([len(r["input_ids"]) + len(r["labels"]) for r in rows],
                                  token_budget=BUDGET):  # fmt: skip
            batch = collate([rows[i] for i in idx])
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                  decoder_input_ids=batch["decoder_input_ids"])  # fmt: skip


def agreement(old: np.ndarray, new: np.ndarray, old_flag: np.ndarray, new_flag: np.ndarray,
              threshold: float, rtol: float = 1e-4) -> dict[str, Any]:  # fmt: skip
    """Largest score difference (relative to the largest |score|), decisions that differ, and
    how many of those have a score within the tolerance of the threshold."""
    old, new = np.asarray(old, float), np.asarray(new, float)
    scale = max(float(np.abs(old).max(initial=0.0)), 1e-12)
    differ = np.flatnonzero(np.asarray(old_flag) != np.asarray(new_flag))
    near = int(sum(abs(old[i] - threshold) <= rtol * scale for i in differ))
    return {
        "max_rel_diff": float(np.abs(old - new).max(initial=0.0)) / scale,
        "decisions_differ": int(differ.size),
        "differ_near_threshold": near,
    }
