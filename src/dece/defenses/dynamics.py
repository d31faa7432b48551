"""``dynamics``: the training-dynamics detector (``dece``'s own; not from a paper).

The DeCE paper rests on *early learning*: during the first epochs a code model fits the clean
task's main features, and only later memorises the rows whose target disagrees with what the
clean rows teach, the poisoned ones (a SQL target with ``or 1=1`` appended after a trigger the
model cannot yet associate with it). So the per-example cross-entropy the model pays on a
poisoned row stays high during the early epochs while clean rows' losses fall.

The detector reads the per-example losses that training the victim already recorded
(``example_losses.jsonl``, written by the pipeline's per-example loss hook with
``record_example_losses: true``; the grid turns it on for the parent cell of a ``dynamics``
cell): no extra forward pass. Each record holds the *plain* per-token cross-entropy of one row at
one step, from the same logits as the training loss (never DeCE's own value, which is bounded and
would hide the signal), reduced over the row's target tokens as ``ce_mean``, ``ce_max`` and
``ce_top3``. The score of row ``i``::

    v(r)    = record r's value (``value``: ce_top3 by default)
    v'(r)   = v(r) - median of v over the records of the same step      (normalize="step")
    score_i = mean of v'(r) over row i's records in epochs 1..``epochs``

The step normalisation removes the training curve (a row seen late in epoch 1 meets a better
model than one seen early); higher = learnt later or never. No label, manifest or poisoned id is
read. The ``ceil(multiplier * expected_rate * n)`` highest scores are flagged, as for Spectral
Signature.

Which reduction: a poisoned Lyra target differs from its clean version in three of ~80 target
tokens (``or 1 = 1``), so the mean over tokens dilutes the signal; the maximum keeps it but also
keeps each clean row's single hardest token (a rare identifier); the mean of the three largest
token losses (``ce_top3``, the default) matches the size of the payload. The measured AUROC of
each reduction and epoch count on Lyra is in ``benchmarks/results/lyra_defenses.md``.

Cost: zero model passes (the losses come from the victim's own training); one pass over the
recorded file.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dece.data import Example
from dece.defenses._common import check_rate, cost, flag_top, start_clock
from dece.defenses.base import DEFENSES, DataFilter
from dece.rundir import EXAMPLE_LOSSES_FILE, RunDir

if TYPE_CHECKING:
    from dece.victim import Victim

__all__ = ["EXAMPLE_LOSSES_FILE", "TrainingDynamicsFilter", "dynamics_scores"]

VALUES = ("ce_mean", "ce_max", "ce_top3")
NORMALIZE = ("step", "none")


def dynamics_scores(
    records: Iterable[Mapping[str, Any]],
    ids: Sequence[str],
    *,
    value: str = "ce_top3",
    epochs: int = 2,
    normalize: str = "step",
) -> np.ndarray:
    """``[N]`` scores of the rows ``ids`` from per-example loss ``records`` (dicts with
    ``epoch``, ``step``, ``id`` and ``value``; see the module docstring). Every id needs at least
    one record in the epochs used; records of other ids are ignored."""
    if value not in VALUES:
        raise ValueError(f"value must be one of {VALUES}, got {value!r}")
    if normalize not in NORMALIZE:
        raise ValueError(f"normalize must be one of {NORMALIZE}, got {normalize!r}")
    if int(epochs) < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    used = []
    for k, rec in enumerate(records):
        try:
            epoch, step, rid, v = int(rec["epoch"]), int(rec["step"]), str(rec["id"]), rec[value]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"example-loss record {k}: missing or malformed field {exc}") from None
        if epoch <= epochs:
            used.append((step, rid, float(v)))
    offset: dict[int, float] = {}
    if normalize == "step":
        by_step: dict[int, list[float]] = defaultdict(list)
        for step, _, v in used:
            by_step[step].append(v)
        offset = {step: float(np.median(vs)) for step, vs in by_step.items()}
    per_row: dict[str, list[float]] = defaultdict(list)
    for step, rid, v in used:
        per_row[rid].append(v - offset.get(step, 0.0))
    missing = [i for i in ids if i not in per_row]
    if missing:
        raise ValueError(
            f"{len(missing)} row(s) have no recorded loss in epochs 1..{epochs}, e.g. "
            f"{missing[:3]}; the recording must come from training on these same rows"
        )
    return np.array([float(np.mean(per_row[i])) for i in ids])


@DEFENSES.register("dynamics", display="Dynamics")
@dataclass
class TrainingDynamicsFilter(DataFilter):
    """Training-dynamics filter (see the module docstring).

    Args:
        value: the per-example reduction over target tokens: ``ce_top3`` (default),
            ``ce_max`` or ``ce_mean``.
        epochs: use the records of epochs 1..``epochs``.
        normalize: ``"step"`` (subtract each step's median) or ``"none"``.
        expected_rate, multiplier: flag ``ceil(multiplier * expected_rate * n)`` rows.
        losses: an ``example_losses.jsonl`` to read; default: the victim run's
            (``<run dir>/example_losses.jsonl`` of :attr:`dece.victim.Victim.run_dir`).
    """

    name = "dynamics"
    needs_victim = True
    needs_example_losses = True
    value: str = "ce_top3"
    epochs: int = 2
    normalize: str = "step"
    expected_rate: float = 0.05
    multiplier: float = 1.5
    losses: str | None = None

    def __post_init__(self) -> None:
        check_rate(self.expected_rate, self.multiplier)
        if self.value not in VALUES:
            raise ValueError(f"value must be one of {VALUES}, got {self.value!r}")
        if self.normalize not in NORMALIZE:
            raise ValueError(f"normalize must be one of {NORMALIZE}, got {self.normalize!r}")
        if int(self.epochs) < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.losses is not None:  # the recording alone is enough: no model to load
            self.needs_victim = False  # type: ignore[misc]  # this instance only

    def losses_path(self, victim: Victim | None) -> Path:
        """The recording this filter reads (see ``losses``)."""
        if self.losses is not None:
            return Path(self.losses)
        run_dir = getattr(victim, "run_dir", None)
        if run_dir is None:
            raise ValueError(
                "dynamics: give losses=<example_losses.jsonl> or a victim loaded from a run "
                "directory (Victim.load(run_dir)) trained with record_example_losses: true"
            )
        return RunDir(run_dir).example_losses()

    def _scores(
        self, examples: list[Example], victim: Victim | None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        from dece.training.example_losses import read_example_losses

        clock = start_clock()
        path = self.losses_path(victim)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: no per-example losses; train the victim with record_example_losses: "
                "true (the grid does so for the parent of a dynamics cell)"
            )
        records = read_example_losses(path)
        scores = dynamics_scores(records, [ex.id for ex in examples], value=self.value,
                                 epochs=self.epochs, normalize=self.normalize)  # fmt: skip
        info = {"losses": str(path), "records": len(records),
                "cost": cost(clock, len(examples), data_passes=1)}  # fmt: skip
        return scores, info

    def _decide(self, scores: np.ndarray) -> tuple[np.ndarray, float]:
        return flag_top(scores, None, self.expected_rate, self.multiplier)
