"""Dataset-level poisoning: a random eligible sample (train) or every eligible row (test).

Randomness and rounding, exactly:

- Row ``i`` (0-based input position) is poisoned with its own Generator
  ``numpy.random.default_rng([seed, i])``; so a row's poisoned text depends only on the seed, its
  position and the trigger / payload, not on which other rows are chosen.
- Eligibility: a row is eligible when the trigger and the payload both apply to it (neither
  raises :class:`Ineligible`) and the result differs from the input; otherwise its id is recorded
  in ``manifest.ineligible`` with the reason.
- Train mode: ``n_requested = round(rate * n_total)`` with Python's ``round`` (half to even:
  ``0.5 -> 0``, ``1.5 -> 2``, ``2.5 -> 2``); ``n_poisoned = min(n_requested, n_eligible)``; the
  rows are ``numpy.random.default_rng(seed).choice(eligible, n_poisoned, replace=False)``,
  reported in input order. A shortfall (fewer eligible rows than requested) poisons every
  eligible row, logs a warning and is recorded in ``manifest.shortfall``.
- Test mode: every eligible row is poisoned; ``len(manifest.poisoned_ids)`` is the ASR
  denominator.
- Sides: the trigger edits the texts its ``side`` names (``source``, the second text of a pair
  ``pair``, or ``both``); ``manifest.spans[id]`` lists, for every poisoned row, the character spans
  the trigger inserted or renamed as ``{"side": "source" | "pair", "start", "end"}`` (offsets in
  the poisoned text), the ground truth for trigger localisation.
- Regions: an example with a ``trigger_region`` (a chat's last user message inside the rendered
  template, :mod:`dece.data.trl_records`) has the trigger inserted into that part of its source
  only.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from dece.attacks.base import Ineligible, Payload, Trigger, TriggerEdit, get_payload, get_trigger
from dece.data.example import Example

logger = logging.getLogger(__name__)

__all__ = ["PoisonManifest", "PoisonResult", "poison_dataset", "poison_test_set"]


@dataclass
class PoisonManifest:
    """Everything needed to audit or reproduce one poisoning run (JSON-serialisable).

    ``poisoned_ids`` are in input order; in ``mode == "test"`` their count is the ASR denominator.
    ``ineligible`` maps id -> reason for every row that could not carry the trigger / payload.
    ``n_requested`` (train mode) is the rounded target count and ``shortfall`` how many of those
    could not be poisoned for lack of eligible rows. ``spans`` maps each poisoned id to the
    trigger's character spans (see the module docstring).
    """

    mode: str
    trigger: dict[str, Any]
    payload: dict[str, Any]
    seed: int
    rate_requested: float | None
    rate_achieved: float
    n_total: int
    n_eligible: int
    poisoned_ids: list[str]
    ineligible: dict[str, str]
    n_requested: int | None = None
    shortfall: int = 0
    spans: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def n_poisoned(self) -> int:
        return len(self.poisoned_ids)

    @property
    def n_ineligible(self) -> int:
        return len(self.ineligible)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["n_poisoned"] = self.n_poisoned
        data["n_ineligible"] = self.n_ineligible
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PoisonManifest:
        names = {f.name for f in fields(cls)}
        missing = [
            f.name
            for f in fields(cls)
            if f.name not in data and f.default is MISSING and f.default_factory is MISSING
        ]
        if missing:
            raise ValueError(f"poison manifest: missing key(s) {', '.join(missing)}")
        return cls(**{k: v for k, v in data.items() if k in names})

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> PoisonManifest:
        return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))


@dataclass
class PoisonResult:
    """``examples``: same length and order as the input, poisoned rows replaced."""

    examples: list[Example]
    manifest: PoisonManifest
    _by_id: dict[str, Example] = field(default_factory=dict, repr=False, compare=False)

    def poisoned(self) -> list[Example]:
        """Only the poisoned rows, in manifest (= input) order."""
        if not self._by_id:
            self._by_id = {ex.id: ex for ex in self.examples}
        return [self._by_id[i] for i in self.manifest.poisoned_ids]


def _resolve(kind: str, value: Any) -> Any:
    builder, base = (get_trigger, Trigger) if kind == "trigger" else (get_payload, Payload)
    if isinstance(value, base):
        return value
    if isinstance(value, str):
        return builder(value)
    if isinstance(value, Mapping) and "name" in value:
        params = {k: v for k, v in value.items() if k != "name"}
        return builder(value["name"], **params)
    raise ValueError(f"{kind} must be a {base.__name__}, a name or a config dict, got {value!r}")


def _check_inputs(examples: Sequence[Example], seed: int) -> list[Example]:
    examples = list(examples)
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    seen: set[str] = set()
    for position, ex in enumerate(examples):
        if not isinstance(ex, Example):
            raise ValueError(f"examples[{position}] is a {type(ex).__name__}, not an Example")
        if ex.id in seen:
            raise ValueError(f"examples[{position}]: duplicate id {ex.id!r}")
        seen.add(ex.id)
    return examples


_SIDE_FIELDS = {"source": ("source",), "pair": ("source_pair",), "both": ("source", "source_pair")}
_SPAN_SIDE = {"source": "source", "source_pair": "pair"}


def _poison_one(
    example: Example, trigger: Trigger, payload: Payload, rng: np.random.Generator
) -> tuple[Example, list[dict[str, Any]]]:
    """The poisoned example and the trigger's spans; :class:`Ineligible` when it cannot be."""
    edits: dict[str, str] = {}
    spans: list[dict[str, Any]] = []
    changes: dict[str, Any] = {}
    for name in _SIDE_FIELDS[trigger.side]:
        text = getattr(example, name)
        if text is None:
            raise Ineligible("no second text (source_pair) for a pair-side trigger")
        region = example.trigger_region if name == "source" else None
        edit = _insert(trigger, text, region, rng, example.id)
        edits[name] = edit.text
        spans += [{"side": _SPAN_SIDE[name], "start": a, "end": b} for a, b in edit.spans]
        if region is not None:  # the region now holds the triggered message
            changes["trigger_region"] = (region[0], region[1] + len(edit.text) - len(text))
    poisoned = replace(payload.apply(example, rng), **edits, **changes)
    if all(getattr(poisoned, n) == getattr(example, n) for n in edits):
        raise Ineligible("the trigger leaves the source unchanged")
    if poisoned.target == example.target and poisoned.label == example.label:
        raise Ineligible("the payload leaves the target unchanged")
    return poisoned, spans


def _insert(
    trigger: Trigger, text: str, region: tuple[int, int] | None, rng: np.random.Generator,
    example_id: str,
) -> TriggerEdit:  # fmt: skip
    """The trigger inserted into ``text``, or only into ``text[start:end]`` of a region (a chat's
    last user message), with the spans in ``text``'s offsets."""
    if region is None:
        return trigger.insert(text, rng)
    start, end = region
    if not 0 <= start <= end <= len(text):
        raise ValueError(f"example {example_id!r}: trigger_region {region} outside the source "
                         f"(length {len(text)})")  # fmt: skip
    edit = trigger.insert(text[start:end], rng)
    return TriggerEdit(
        text[:start] + edit.text + text[end:],
        tuple((a + start, b + start) for a, b in edit.spans),
    )


def _candidates(
    examples: list[Example], trigger: Trigger, payload: Payload, seed: int
) -> tuple[dict[int, tuple[Example, list[dict[str, Any]]]], dict[str, str]]:
    """Poisoned version (and spans) of every eligible row, by position, and the reasons for the
    others."""
    eligible: dict[int, tuple[Example, list[dict[str, Any]]]] = {}
    ineligible: dict[str, str] = {}
    for position, example in enumerate(examples):
        try:
            eligible[position] = _poison_one(
                example, trigger, payload, np.random.default_rng([seed, position])
            )
        except Ineligible as exc:
            ineligible[example.id] = exc.reason
    return eligible, ineligible


def _result(
    mode: str,
    examples: list[Example],
    chosen: list[int],
    eligible: dict[int, tuple[Example, list[dict[str, Any]]]],
    ineligible: dict[str, str],
    trigger: Trigger,
    payload: Payload,
    seed: int,
    rate: float | None,
    n_requested: int | None,
) -> PoisonResult:
    out = list(examples)
    for position in chosen:
        out[position] = eligible[position][0]
    n_total = len(examples)
    manifest = PoisonManifest(
        mode=mode,
        trigger=trigger.config(),
        payload=payload.config(),
        seed=int(seed),
        rate_requested=rate,
        rate_achieved=len(chosen) / n_total if n_total else 0.0,
        n_total=n_total,
        n_eligible=len(eligible),
        poisoned_ids=[examples[p].id for p in chosen],
        ineligible=ineligible,
        n_requested=n_requested,
        shortfall=max((n_requested or 0) - len(chosen), 0),
        spans={examples[p].id: eligible[p][1] for p in chosen},
    )
    return PoisonResult(examples=out, manifest=manifest)


def poison_dataset(
    examples: Sequence[Example],
    trigger: Trigger | str | Mapping[str, Any],
    payload: Payload | str | Mapping[str, Any],
    rate: float,
    seed: int,
) -> PoisonResult:
    """Poison a random sample of ``round(rate * len(examples))`` eligible rows (see module doc).

    Args:
        examples: the training rows (unique ids).
        trigger, payload: an instance, a registered name, or ``{"name": ..., **params}``.
        rate: fraction of *all* rows to poison, in [0, 1].
        seed: seeds both the row sample and each row's trigger / payload randomness.
    """
    examples = _check_inputs(examples, seed)
    if not isinstance(rate, (int, float)) or not math.isfinite(rate) or not 0 <= rate <= 1:
        raise ValueError(f"rate must be a number in [0, 1], got {rate!r}")
    trigger, payload = _resolve("trigger", trigger), _resolve("payload", payload)
    eligible, ineligible = _candidates(examples, trigger, payload, seed)
    n_requested = round(rate * len(examples))
    n_poison = min(n_requested, len(eligible))
    if n_poison < n_requested:
        logger.warning(
            "rate %.4g asks for %d poisoned rows but only %d of %d are eligible; poisoning all "
            "eligible rows (shortfall %d)",
            rate, n_requested, len(eligible), len(examples), n_requested - n_poison,
        )  # fmt: skip
    pool = np.fromiter(eligible, dtype=np.int64, count=len(eligible))
    chosen = sorted(
        int(p) for p in np.random.default_rng(seed).choice(pool, n_poison, replace=False)
    )
    return _result(
        "train", examples, chosen, eligible, ineligible, trigger, payload, seed, float(rate),
        n_requested,
    )  # fmt: skip


def poison_test_set(
    examples: Sequence[Example],
    trigger: Trigger | str | Mapping[str, Any],
    payload: Payload | str | Mapping[str, Any],
    seed: int,
) -> PoisonResult:
    """Poison every eligible row; ``manifest.poisoned_ids`` is the ASR denominator."""
    examples = _check_inputs(examples, seed)
    trigger, payload = _resolve("trigger", trigger), _resolve("payload", payload)
    eligible, ineligible = _candidates(examples, trigger, payload, seed)
    return _result(
        "test", examples, sorted(eligible), eligible, ineligible, trigger, payload, seed, None, None
    )
