"""Small helpers shared by the test-time purifiers (not public API)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import time
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dece.cachedir import cache_root
from dece.data import Example

if TYPE_CHECKING:
    from dece.pipeline.data import DataBundle

__all__ = [
    "DiskCache",
    "calibrate_threshold",
    "default_cache_dir",
    "TwoPass",
    "predict_with_confidence",
    "side_text",
    "stable_key",
    "texts_of",
    "train_texts",
    "victim_identity",
    "with_side_text",
]


def train_texts(bundle: DataBundle) -> list[str]:
    """The unpaired clean training texts a tiny preset is pretrained on (as ``fit`` builds them:
    sources, second texts, then targets of generation rows), so a helper model built from them
    hits the victim's pretraining cache."""
    return texts_of(bundle.clean_train)


def texts_of(rows: Sequence[Example]) -> list[str]:
    """:func:`train_texts` of training rows: sources, second texts, then generation targets."""
    texts = [ex.source for ex in rows]
    texts += [ex.source_pair for ex in rows if ex.source_pair is not None]
    texts += [ex.target for ex in rows if ex.label is None]
    return texts


def side_text(example: Example, side: str) -> str:
    if side == "source":
        return example.source
    if side == "pair":
        return example.source_pair or ""
    raise ValueError(f"side must be 'source' or 'pair', got {side!r}")


def with_side_text(example: Example, side: str, text: str) -> Example:
    return replace(example, source=text) if side == "source" else replace(example, source_pair=text)


def predict_with_confidence(victim: Any, rows: list[Example]) -> tuple[list[str], np.ndarray]:
    """The victim's predictions and ``[N]`` its confidence in each: one forward per input where
    the victim offers it (:meth:`dece.victim.Victim.predict_with_confidence`), else ``predict``
    then ``confidence`` (a victim without that method runs each input twice)."""
    if not rows:
        return [], np.zeros(0)
    both = getattr(victim, "predict_with_confidence", None)
    if both is not None:
        predictions, conf = both(rows)
        return list(predictions), np.asarray(conf, dtype=float)
    predictions = list(victim.predict(rows))
    return predictions, np.asarray(victim.confidence(rows, predictions), dtype=float)


class TwoPass:
    """``victim`` seen without ``predict_with_confidence``: :func:`predict_with_confidence`
    then takes its fallback (``predict``, then ``confidence``: each input run twice), the slow
    path the batching tests and ``benchmarks/code_defense_cost.py`` compare against."""

    def __init__(self, victim: Any) -> None:
        self._victim = victim

    def __getattr__(self, name: str) -> Any:
        if name == "predict_with_confidence":
            raise AttributeError(name)
        return getattr(self._victim, name)


def calibrate_threshold(clean_values: Sequence[float], fraction: float, *, below: bool) -> float:
    """The threshold that flags at most ``fraction`` of ``clean_values``.

    ``below=True``: a value is flagged when ``value < threshold`` (CodePurify's entropy); the
    threshold is the ``k``-th smallest value, ``k = floor(fraction * n)``, so exactly the ``k``
    smallest are flagged when values are distinct. ``below=False``: flagged when
    ``value > threshold`` (ONION's suspicion, OSeqL); the ``k``-th largest.
    """
    values = np.sort(np.asarray([v for v in clean_values if np.isfinite(v)], dtype=float))
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    if values.size == 0:
        raise ValueError("no finite calibration values (empty or all-infinite clean set)")
    k = int(np.floor(fraction * values.size))
    if below:
        return float(values[k])
    return float(values[values.size - 1 - k])


_IDENTITIES: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def victim_identity(victim: Any) -> str | None:
    """A hash of a victim's weights and decoding settings (None for a victim without a torch
    model, e.g. a planted test double); computed once per model object."""
    model = getattr(victim, "model", None)
    if model is None or not hasattr(model, "state_dict"):
        return None
    if model not in _IDENTITIES:
        h = hashlib.sha256()
        for name, tensor in sorted(model.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().float().cpu().numpy().tobytes())
        _IDENTITIES[model] = h.hexdigest()
    keys = ("task", "max_source_length", "max_target_length", "max_new_tokens")
    settings = [getattr(victim, k, None) for k in keys]
    return stable_key(_IDENTITIES[model], settings)


def default_cache_dir(sub: str) -> Path:
    """The defenses' cache ``sub`` under :func:`dece.cachedir.cache_root`."""
    return cache_root(sub)


def stable_key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class DiskCache:
    """A string -> JSON value store in one SQLite file, safe for several processes (each write is
    its own transaction; readers never block for long)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT NOT NULL)")

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=60.0)
        try:
            with db:
                yield db
        finally:
            db.close()

    def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        with self._connect() as db:
            for start in range(0, len(keys), 500):
                chunk = list(keys[start : start + 500])
                marks = ",".join("?" * len(chunk))
                for k, v in db.execute(f"SELECT k, v FROM kv WHERE k IN ({marks})", chunk):
                    out[k] = json.loads(v)
        return out

    def put(self, key: str, value: Any) -> None:
        for attempt in range(5):
            try:
                with self._connect() as db:
                    db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (key, json.dumps(value)))
                return
            except sqlite3.OperationalError:  # pragma: no cover - a busy file
                time.sleep(0.5 * (attempt + 1))
        raise RuntimeError(f"{self.path}: could not write the cache entry")
