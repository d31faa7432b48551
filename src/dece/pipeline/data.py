"""Stage 1, ``prepare_data(config) -> DataBundle``: clean splits, the poisoned training split and
the clean / fully poisoned evaluation sets, each poisoning with its manifest.

A :class:`DataBundle` can also be built from examples in memory
(:meth:`DataBundle.from_examples`), so a user's own rows (or a filter's kept rows,
:meth:`DataBundle.with_train`) flow through the same stages as a configured dataset.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from typing import TYPE_CHECKING, Any

from dece.attacks import (
    Payload,
    PoisonManifest,
    Trigger,
    get_payload,
    get_trigger,
    poison_dataset,
    poison_test_set,
)
from dece.data import Example, load_dataset

if TYPE_CHECKING:
    from dece.training.config import PoisonConfig, TrainConfig

__all__ = ["DataBundle", "EvalSet", "dataset_labels", "prepare_data"]

logger = logging.getLogger(__name__)


@dataclass
class EvalSet:
    """One evaluation split: its clean rows and, when an attack is set, the fully poisoned copy
    (every eligible row triggered; ``manifest.poisoned_ids`` is the ASR denominator)."""

    clean: list[Example]
    poisoned: list[Example] | None = None
    manifest: PoisonManifest | None = None

    def capped(self, n: int | None) -> EvalSet:
        """The first ``n`` clean rows and their poisoned copies (the ASR denominator follows)."""
        if n is None or n >= len(self.clean):
            return self
        clean = self.clean[:n]
        if self.poisoned is None or self.manifest is None:
            return EvalSet(clean)
        keep = {ex.id for ex in clean}
        poisoned = [ex for ex in self.poisoned if ex.id in keep]
        manifest = dataclasses.replace(
            self.manifest,
            poisoned_ids=[ex.id for ex in poisoned],
            spans={k: v for k, v in self.manifest.spans.items() if k in keep},
        )
        return EvalSet(clean, poisoned, manifest)


@dataclass
class DataBundle:
    """Everything the later stages read.

    Attributes:
        train: the rows the model trains on (poisoned rows included), in input order.
        valid, test: the evaluation splits (:class:`EvalSet`).
        clean_train: the training rows before poisoning (what tiny presets pretrain on).
        train_manifest: the training split's poisoning (None for clean training).
        trigger, payload: the attack the ASR is measured with (None: no attack).
        labels: classification only: the dataset's label names, sorted (class ``i`` is
            ``labels[i]``); None for generation data.
    """

    train: list[Example]
    valid: EvalSet
    test: EvalSet
    clean_train: list[Example] = field(default_factory=list)
    train_manifest: PoisonManifest | None = None
    trigger: Trigger | None = None
    payload: Payload | None = None
    labels: list[str] | None = None

    def split(self, name: str) -> EvalSet:
        if name not in ("valid", "test"):
            raise ValueError(f"split must be 'valid' or 'test', got {name!r}")
        return self.valid if name == "valid" else self.test

    def with_train(self, examples: Sequence[Example]) -> DataBundle:
        """The same bundle training on ``examples`` instead (e.g. the rows a filter kept)."""
        return dataclasses.replace(self, train=list(examples))

    @property
    def n_poisoned_train(self) -> int:
        return 0 if self.train_manifest is None else self.train_manifest.n_poisoned

    @classmethod
    def from_examples(
        cls,
        train: Sequence[Example],
        valid: Sequence[Example] = (),
        test: Sequence[Example] = (),
        *,
        trigger: Trigger | str | Mapping[str, Any] | None = None,
        payload: Payload | str | Mapping[str, Any] | None = None,
        rate: float = 0.0,
        seed: int = 42,
    ) -> DataBundle:
        """Poison ``train`` at ``rate`` (0: clean training) and build the fully poisoned copies of
        ``valid`` and ``test`` with ``trigger``/``payload`` (both None: no attack). ``train``
        may be empty for a bundle that is only evaluated."""
        train = list(train)  # may be empty: a bundle for evaluation only
        trig, pay = _resolve_attack(trigger, payload)
        manifest = None
        train_rows = train
        if trig is not None and rate > 0:
            result = poison_dataset(train, trig, pay, rate, seed)
            train_rows, manifest = result.examples, result.manifest
        sets = [_eval_set(list(rows), trig, pay, seed) for rows in (valid, test)]
        return cls(
            train=train_rows, valid=sets[0], test=sets[1], clean_train=train,
            train_manifest=manifest, trigger=trig, payload=pay,
            labels=dataset_labels([train, valid, test], pay),
        )  # fmt: skip

    @classmethod
    def from_hf(
        cls,
        data: Any,
        *,
        trigger: Trigger | str | Mapping[str, Any] | None = None,
        payload: Payload | str | Mapping[str, Any] | None = None,
        rate: float = 0.0,
        seed: int = 42,
        **columns: Any,
    ) -> DataBundle:
        """:meth:`from_examples` of a Hugging Face dataset: a ``datasets.Dataset`` (the train
        split) or ``DatasetDict`` (``train``; ``valid``/``validation``/``dev``; ``test``), or a
        spec ``load_dataset`` reads (``"hf:<id>[:<config>]"``, a ``save_to_disk`` directory,
        parquet files). ``columns``: ``source_col``, ``target_col``, ``label_col``, ``id_col``,
        ``pair_col``, ``chat_template``; without them TRL records (``prompt``/``completion``,
        ``messages``) are read (:mod:`dece.data.trl_records`)."""
        from dece.data.hf import examples_from_hf

        if isinstance(data, (str, PathLike)):
            splits = load_dataset(data, seed=seed, **columns)
        else:
            splits = examples_from_hf(data, **columns)
        return cls.from_examples(
            splits.get("train", []), splits.get("valid", []), splits.get("test", []),
            trigger=trigger, payload=payload, rate=rate, seed=seed,
        )  # fmt: skip


def _resolve_attack(trigger: Any, payload: Any) -> tuple[Trigger | None, Payload | None]:
    if (trigger is None) != (payload is None):
        raise ValueError("give both trigger and payload, or neither")
    if trigger is None:
        return None, None
    if isinstance(trigger, str):
        trigger = get_trigger(trigger)
    elif isinstance(trigger, Mapping):
        trigger = get_trigger(**trigger)
    if isinstance(payload, str):
        payload = get_payload(payload)
    elif isinstance(payload, Mapping):
        payload = get_payload(**payload)
    return trigger, payload


def _eval_set(rows: list[Example], trigger: Any, payload: Any, seed: int) -> EvalSet:
    if trigger is None or not rows:
        return EvalSet(rows)
    result = poison_test_set(rows, trigger, payload, seed)
    return EvalSet(rows, result.poisoned(), result.manifest)


def dataset_labels(
    splits: Sequence[Sequence[Example]], payload: Payload | None = None
) -> list[str] | None:
    """Sorted label names over all splits (plus a label-flip payload's target); None when no
    example has a label. Labels that look like integers sort numerically (``"2"`` < ``"10"``)."""
    names = {ex.label for rows in splits for ex in rows if ex.label is not None}
    if not names:
        return None
    target = getattr(payload, "target_label", None)
    if target is not None:
        names.add(str(target))
    return sorted(names, key=lambda x: (0, int(x), x) if x.lstrip("-").isdigit() else (1, 0, x))


# ------------------------------------------------------------------------------ from a config
def prepare_data(config: TrainConfig) -> DataBundle:
    """The :class:`DataBundle` of a (resolved or not) ``TrainConfig``.

    Loads ``config.data``, keeps the first ``train_max_examples`` training rows, poisons them with
    ``config.poison`` (a random ``rate`` sample, seeded), and builds the clean and fully poisoned
    validation (first ``eval_max_examples`` rows) and test (first ``test_max_examples``) sets
    with ``config.eval_poison`` or else ``config.poison``. A dataset without a ``valid`` split
    evaluates each epoch on ``test`` (logged), and vice versa.
    """
    splits = load_dataset(config.data, seed=config.data_seed, **config.data_columns)
    if not splits.get("train"):
        raise ValueError(f"data {config.data!r} has no (or an empty) 'train' split")
    if not splits.get("valid"):
        logger.warning(
            "data %r has no 'valid' split: per-epoch evaluation uses 'test'", config.data
        )
    valid = (splits.get("valid") or splits.get("test") or [])[: config.eval_max_examples]
    test = (splits.get("test") or splits.get("valid") or [])[: config.test_max_examples]
    clean_train = list(splits["train"][: config.train_max_examples])
    trigger, payload = _attack_of(config.asr_poison)
    bundle = DataBundle.from_examples(
        clean_train, valid, test, trigger=trigger, payload=payload,
        rate=0.0, seed=config.asr_poison.seed if config.asr_poison else 42,
    )  # fmt: skip
    if config.poison is not None:
        t, p = _attack_of(config.poison)
        result = poison_dataset(clean_train, t, p, config.poison.rate, config.poison.seed)
        bundle.train, bundle.train_manifest = result.examples, result.manifest
    return bundle


def _attack_of(poison: PoisonConfig | None) -> tuple[Trigger | None, Payload | None]:
    if poison is None:
        return None, None
    return (
        get_trigger(poison.trigger, **poison.trigger_args),
        get_payload(poison.payload, **poison.payload_args),
    )
