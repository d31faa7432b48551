"""The two kinds of defense and what they return.

- A training-time :class:`DataFilter` scores every row of a (possibly poisoned) training set:
  ``score(examples, victim=None) -> FilterResult`` with one score per input row (higher = more
  suspicious), a boolean decision per row, the threshold used and the rows kept, in input order;
  nothing is dropped silently. Filters that read a model (Spectral Signature, Activation
  Clustering, BKI) declare ``needs_victim = True`` and receive a :class:`~dece.victim.Victim`
  trained on the data they score.
- A test-time :class:`Purifier` rewrites inputs before the victim predicts:
  ``purify(examples, victim) -> PurifyResult`` with the purified rows, a detected flag and a score
  per row, what was changed (the spans, in the input's character offsets) and the time spent.
- A :class:`TrainingRecipe` (stage ``"train"``) removes no rows: it changes how the model is
  trained, ``overrides(config) -> dict`` of ``TrainConfig`` fields (Moderate-fitting: LoRA, a
  smaller learning rate, fewer epochs), applied by :func:`dece.pipeline.train` before fitting.

Components are registered by name in :data:`DEFENSES` and built with :func:`get_defense`; each
declares ``stage`` (``"train"`` for filters, ``"test"`` for purifiers).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from dece.data import Example, check_examples
from dece.registry import Registry

if TYPE_CHECKING:
    from dece.pipeline.data import DataBundle  # type only: defenses never import the pipeline
    from dece.training.config import ResolvedTrainConfig
    from dece.victim import Victim

__all__ = [
    "DEFENSES",
    "Change",
    "DataFilter",
    "Defense",
    "FilterResult",
    "PurifyResult",
    "Purifier",
    "TrainingRecipe",
    "defense_stage",
    "get_defense",
]


class Defense:
    """Shared base: a registered name, a stage and hyperparameters (dataclass fields)."""

    name: ClassVar[str]
    stage: ClassVar[str]  # "train" (filter, recipe) or "test" (purifier)
    needs_victim: ClassVar[bool] = False
    #: reads the victim run's ``example_losses.jsonl`` (the grid records it for the parent cell)
    needs_example_losses: ClassVar[bool] = False

    def params(self) -> dict[str, Any]:
        return dataclasses.asdict(self) if dataclasses.is_dataclass(self) else {}

    def config(self) -> dict[str, Any]:
        return {"name": self.name, **self.params()}


# ------------------------------------------------------------------------------ filters
@dataclass
class FilterResult:
    """What a :class:`DataFilter` decided, row by row, in input order.

    Attributes:
        ids: the input rows' ids.
        scores: ``[N]`` suspicion per row (higher = more suspicious).
        flagged: ``[N]`` bool, True = judged poisoned (removed before retraining).
        threshold: the score threshold that produced ``flagged`` (rows with ``score > threshold``
            or, for rank-based filters, the score of the last flagged row).
        kept: the rows not flagged, in input order.
        info: anything else the filter wants recorded (chosen keyword, cluster sizes, cost, ...).
    """

    ids: list[str]
    scores: np.ndarray
    flagged: np.ndarray
    threshold: float
    kept: list[Example]
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.ids)
        self.scores = np.asarray(self.scores, dtype=float)
        self.flagged = np.asarray(self.flagged, dtype=bool)
        if self.scores.shape != (n,) or self.flagged.shape != (n,):
            raise ValueError(
                f"FilterResult: {n} ids but scores {self.scores.shape} / flagged "
                f"{self.flagged.shape}; one entry per input row is required"
            )
        if len(self.kept) != n - int(self.flagged.sum()):
            raise ValueError("FilterResult: kept must be exactly the unflagged rows")

    @property
    def n_removed(self) -> int:
        return int(self.flagged.sum())

    def rows(self) -> list[dict[str, Any]]:
        """One ``{"id", "score", "flagged"}`` dict per input row (for a ``filter.jsonl``)."""
        return [
            {"id": i, "score": float(s), "flagged": bool(f)}
            for i, s, f in zip(self.ids, self.scores, self.flagged, strict=True)
        ]


class DataFilter(Defense):
    """Training-time defense: scores every training row; subclasses implement :meth:`_scores`
    (and may override :meth:`_decide`)."""

    stage = "train"

    def score(self, examples: Sequence[Example], victim: Victim | None = None) -> FilterResult:
        """Score and decide every row of ``examples`` (same length and order as the input)."""
        examples = check_examples(examples)
        if self.needs_victim and victim is None:
            raise ValueError(f"defense {self.name!r} needs a victim model trained on the data")
        scores, info = self._scores(examples, victim)
        scores = np.asarray(scores, dtype=float)
        if scores.shape != (len(examples),):
            raise ValueError(f"{self.name}: {scores.shape} scores for {len(examples)} rows")
        flagged, threshold = self._decide(scores)
        kept = [ex for ex, f in zip(examples, flagged, strict=True) if not f]
        return FilterResult([ex.id for ex in examples], scores, flagged, threshold, kept, info)

    def _scores(
        self, examples: list[Example], victim: Victim | None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        raise NotImplementedError

    def _decide(self, scores: np.ndarray) -> tuple[np.ndarray, float]:
        """Default decision: flag every row with a positive score."""
        return scores > 0.0, 0.0


# ------------------------------------------------------------------------------ purifiers
@dataclass(frozen=True)
class Change:
    """One edit a purifier made: ``text[start:end]`` of the input's ``side`` (``"source"`` or
    ``"pair"``) was replaced by ``new``."""

    side: str
    start: int
    end: int
    old: str
    new: str

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class PurifyResult:
    """What a :class:`Purifier` did, row by row, in input order.

    Attributes:
        examples: the purified rows (unchanged rows are the input rows).
        detected: ``[N]`` bool, True = the input was judged poisoned.
        scores: ``[N]`` suspicion per input (higher = more suspicious).
        changes: per row, the edits made (empty when the row was left as it was).
        seconds: wall time of the whole call (victim and helper-model calls included).
        info: anything else worth recording (threshold, calls made, ...).
        elements: per row, the elements the purifier scored, ``{"side", "start", "end",
            "score"}`` in the input's character offsets (None: the purifier does not report them).
    """

    examples: list[Example]
    detected: np.ndarray
    scores: np.ndarray
    changes: list[list[Change]]
    seconds: float
    info: dict[str, Any] = field(default_factory=dict)
    elements: list[list[dict[str, Any]]] | None = None

    def __post_init__(self) -> None:
        n = len(self.examples)
        self.detected = np.asarray(self.detected, dtype=bool)
        self.scores = np.asarray(self.scores, dtype=float)
        if self.detected.shape != (n,) or self.scores.shape != (n,) or len(self.changes) != n:
            raise ValueError(
                f"PurifyResult: {n} examples but detected {self.detected.shape}, scores "
                f"{self.scores.shape}, {len(self.changes)} change lists; one per row is required"
            )
        if self.elements is not None and len(self.elements) != n:
            raise ValueError(f"PurifyResult: {n} examples but {len(self.elements)} element lists")

    def rows(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per row: id, purified source, score, decision, changes (and the
        scored elements, when reported)."""
        rows = [
            {
                "id": ex.id, "source": ex.source, "source_pair": ex.source_pair,
                "score": float(s), "detected": bool(d), "changes": [c.to_json() for c in ch],
            }
            for ex, s, d, ch in zip(self.examples, self.scores, self.detected, self.changes,
                                    strict=True)
        ]  # fmt: skip
        for row, elements in zip(rows, self.elements or [], strict=False):
            row["elements"] = elements
        return rows


class Purifier(Defense):
    """Test-time defense: subclasses implement :meth:`purify`, and :meth:`prepare` when they
    set themselves up from the data before purifying."""

    stage = "test"

    def prepare(self, bundle: DataBundle, victim: Victim) -> None:
        """Set up from ``bundle`` (its clean training texts and validation rows: calibration,
        helper models) before :meth:`purify`; called once per evaluation. The default does
        nothing."""

    def purify(self, examples: Sequence[Example], victim: Victim) -> PurifyResult:
        raise NotImplementedError


# ------------------------------------------------------------------------------ recipes
class TrainingRecipe(Defense):
    """Training-time defense that changes the training itself (no row is removed): subclasses
    implement :meth:`overrides`."""

    stage = "train"

    def overrides(self, config: ResolvedTrainConfig) -> dict[str, Any]:
        """``TrainConfig`` fields to replace in ``config`` before fitting."""
        raise NotImplementedError


# ------------------------------------------------------------------------------ registry
DEFENSES: Registry[type[Defense]] = Registry("defense")


def get_defense(name: str, **params: Any) -> Defense:
    """Build the defense registered as ``name`` with its hyperparameters, e.g.
    ``get_defense("keyword", tokens=["bb"])``; unknown names or parameters raise ValueError."""
    return DEFENSES.build(name, **params)


def defense_stage(name: str) -> str:
    """``"train"`` or ``"test"`` for a registered defense name."""
    return DEFENSES.get(name).stage
