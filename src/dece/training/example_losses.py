"""The per-example loss hook: every training step, per-example values keyed by example id.

:class:`~dece.training.DeceTrainer` calls its ``example_loss_hook`` with the plain per-token
cross-entropy of the step's batch, computed from the same logits the training loss used (never
the training loss itself: DeCE's value is bounded and would hide the signal), so recording costs
no extra forward pass. :class:`ExampleLossRecorder` reduces each row to

- ``ce_mean``: mean over its target tokens (a classifier has one "token": its label);
- ``ce_max``: the largest token loss (a poisoned SQL target differs from a clean one in a few of
  ~80 tokens: a mean dilutes that);
- ``ce_top{k}``: the mean of its ``k`` largest token losses;

and appends one JSON line per row to a file: ``{"epoch", "step", "id", "ce_mean", "ce_max",
"ce_top3"}`` (``epoch`` is the 1-based integer epoch of the step). Read it back with
:func:`read_example_losses`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, Protocol

import torch

from dece._jsonl import read_jsonl, write_rows

__all__ = ["ExampleLossHook", "ExampleLossRecorder", "read_example_losses", "token_cross_entropy"]


class ExampleLossHook(Protocol):
    """What ``DeceTrainer`` calls each training step (on every process)."""

    def record(
        self, epoch: float, step: int, indices: torch.Tensor, token_ce: torch.Tensor,
        valid: torch.Tensor,
    ) -> None:  # fmt: skip
        """indices ``[B]`` positions in the training set; token_ce ``[B, T]`` (``[B]`` for
        classification), 0 where ignored; valid: bool, same shape as ``token_ce``."""
        ...

    def close(self) -> None: ...


def token_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int = -100
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain per-token cross-entropy (no smoothing), detached, in fp32.

    logits ``[B, T, V]`` / ``[B, C]``; target ``[B, T]`` / ``[B]`` -> (ce shaped like target,
    0 where ignored; valid mask)."""
    with torch.no_grad():
        valid = target != ignore_index
        ce = torch.nn.functional.cross_entropy(
            logits.detach().float().reshape(-1, logits.shape[-1]),
            target.reshape(-1).long(),
            ignore_index=ignore_index,
            reduction="none",
        ).reshape(target.shape)
    return ce, valid


class ExampleLossRecorder:
    """Writes the per-example reductions of each step to ``path`` (JSON lines).

    Args:
        example_ids: the training rows' ids, by position (what ``indices`` refer to).
        path: the output file (appended to; opened on the first record).
        top_k: the ``k`` of ``ce_top{k}``.
    """

    def __init__(self, example_ids: Sequence[str], path: str | Path, *, top_k: int = 3) -> None:
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        self.example_ids = list(example_ids)
        self.path = Path(path)
        self.top_k = int(top_k)
        self._fh: IO[str] | None = None

    def record(
        self, epoch: float, step: int, indices: torch.Tensor, token_ce: torch.Tensor,
        valid: torch.Tensor,
    ) -> None:  # fmt: skip
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("a", encoding="utf-8")
        ce = token_ce.detach().float().cpu()
        ok = valid.detach().cpu()
        if ce.dim() == 1:  # classification: one value per example
            ce, ok = ce.unsqueeze(1), ok.unsqueeze(1)
        write_rows(self._fh, [
            self._reduce(epoch, step, int(position), ce[row][ok[row]])
            for row, position in enumerate(indices.tolist())
        ])  # fmt: skip

    def _reduce(
        self, epoch: float, step: int, position: int, values: torch.Tensor
    ) -> dict[str, Any]:
        n = int(values.numel())
        top = values.topk(min(self.top_k, n)).values if n else values
        return {
            "epoch": int(math.floor(epoch + 1e-9)), "step": int(step),
            "id": self.example_ids[position],
            "ce_mean": float(values.mean()) if n else 0.0,
            "ce_max": float(values.max()) if n else 0.0,
            f"ce_top{self.top_k}": float(top.mean()) if n else 0.0,
        }  # fmt: skip

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def read_example_losses(path: str | Path) -> list[dict[str, Any]]:
    """The rows an :class:`ExampleLossRecorder` wrote (empty when the file does not exist)."""
    return read_jsonl(path, missing_ok=True)
