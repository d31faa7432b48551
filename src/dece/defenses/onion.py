"""``onion``: ONION (Qi et al., "ONION: A Simple and Effective Defense Against Textual Backdoor
Attacks", EMNLP 2021), a test-time purifier that never looks at the victim.

For an input of ``n`` whitespace-separated words, a causal LM gives the perplexity ``p0`` of the
whole text and ``p_i`` of the text without word ``i``; the suspicion of word ``i`` is
``f_i = p0 - p_i`` (removing an out-of-place word lowers the perplexity a lot). Every word with
``f_i > threshold`` is removed. All ``n + 1`` texts of one input are scored in one batch
(:func:`leave_one_out_suspicion`).

The threshold is fixed or calibrated on clean validation inputs, without the victim: it is the
largest word suspicion of the clean inputs at the ``1 - clean_fraction`` quantile, so that at most
``clean_fraction`` of them lose a word (ONION itself tunes its threshold on clean validation
data; ``threshold=0`` is OpenBackdoor's default). A row is *detected* when a word is removed; its
score is its largest word suspicion.

The LM: ``gpt2`` (the paper's) or any causal LM by Hugging Face id / path; offline, the
``smollm2-135m`` preset for natural language, or ``tiny-causal`` pretrained on the clean training
texts of the bundle given to :meth:`Onion.prepare` (abstracted code such as Bugs2Fix). Because
the suspicions depend only on the LM and the text, they are cached on disk (SQLite under
``$DECE_CACHE_DIR/onion``, keyed by the LM and the text) and every victim, threshold and run reuses
them; the purified input follows from them for any threshold.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from dece.data import Example, check_examples
from dece.defenses._support import (
    DiskCache,
    calibrate_threshold,
    default_cache_dir,
    side_text,
    stable_key,
    train_texts,
    with_side_text,
)
from dece.defenses.base import DEFENSES, Change, Purifier, PurifyResult

if TYPE_CHECKING:
    from dece.pipeline.data import DataBundle
    from dece.victim import Victim

__all__ = ["Onion", "leave_one_out_suspicion", "load_causal_lm", "remove_words", "word_scores"]

logger = logging.getLogger(__name__)

_WORD = re.compile(r"\S+")


def load_causal_lm(
    spec: str, *, texts: Sequence[str] | None = None, cache_dir: str | None = None,
    seed: int = 42, **args: Any,
) -> tuple[Any, Any, str]:  # fmt: skip
    """``(model, tokenizer, identity)`` of a causal LM: a preset (``tiny-causal`` pretrained on
    ``texts``; ``smollm2-135m``), a Hugging Face id or a path. ``identity`` names the weights
    (the preset's cache directory, else the spec) for cache keys."""
    from dece.training.models import load_model

    if spec == "tiny-causal" and not texts:
        raise ValueError("the tiny-causal LM needs the clean training texts (prepare(bundle))")
    corpus = list(texts) if spec == "tiny-causal" and texts else None
    loaded = load_model(spec, task="causal", cache_dir=cache_dir, seed=seed, train_texts=corpus,
                        **args)  # fmt: skip
    tok = loaded.tokenizer
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return loaded.model.eval(), tok, f"{spec}|{loaded.source}|{sorted(args.items())}"


def perplexities(
    model: Any, tokenizer: Any, texts: Sequence[str], *, max_length: int = 512
) -> np.ndarray:
    """``[N]`` perplexity of each text under a causal LM, one padded batch: ``exp`` of the mean
    NLL of its tokens, each predicted from the ones before (a BOS/EOS token is prepended when the
    tokenizer adds none, so the first word is scored too)."""
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    rows = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=True, truncation=True,
                        max_length=max_length)["input_ids"]  # fmt: skip
        if start is not None and (not ids or ids[0] != start):
            ids = [start, *ids][:max_length]
        rows.append(ids)
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    device = next(model.parameters()).device
    with torch.inference_mode():
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
    logp = torch.log_softmax(logits[:, :-1], -1)  # [N, T-1, V]
    target = ids[:, 1:].to(device)
    valid = mask[:, 1:].to(device).bool()
    nll = -logp.gather(2, target.unsqueeze(2)).squeeze(2).masked_fill(~valid, 0.0)  # [N, T-1]
    mean = nll.sum(1) / valid.sum(1).clamp(min=1)
    return torch.exp(mean).cpu().numpy()


def leave_one_out_suspicion(
    model: Any, tokenizer: Any, text: str, *, max_batch: int = 128, max_length: int = 512
) -> np.ndarray:
    """``[n]`` ONION suspicion ``p0 - p_i`` of each whitespace-separated word of ``text``; the
    ``n + 1`` texts go through the LM in one batch (``max_batch`` texts at most per pass)."""
    words = _WORD.findall(text)
    if not words:
        return np.zeros(0)
    variants = [" ".join(words)] + [" ".join(words[:i] + words[i + 1 :]) for i in range(len(words))]
    variants = [v if v else " " for v in variants]
    ppl = np.concatenate([
        perplexities(model, tokenizer, variants[s : s + max_batch], max_length=max_length)
        for s in range(0, len(variants), max_batch)
    ])  # fmt: skip
    return ppl[0] - ppl[1:]


def word_scores(text: str, side: str, scores: Sequence[float]) -> list[dict[str, Any]]:
    """Each word of ``text`` with its suspicion: ``{"side", "start", "end", "score"}``."""
    return [
        {"side": side, "start": m.start(), "end": m.end(), "score": float(s)}
        for m, s in zip(_WORD.finditer(text), scores, strict=True)
    ]


def remove_words(text: str, remove: Sequence[bool]) -> tuple[str, list[tuple[int, int, str]]]:
    """``text`` without the flagged words (each with one adjacent space), and the removed words
    ``(start, end, word)`` in the input's offsets; the rest of the text is kept byte for byte."""
    matches = list(_WORD.finditer(text))
    if len(matches) != len(remove):
        raise ValueError(f"{len(remove)} flags for {len(matches)} words")
    cuts, removed = [], []
    for m, flag in zip(matches, remove, strict=True):
        if not flag:
            continue
        start, end = m.start(), m.end()
        if end < len(text) and text[end].isspace():
            cut = (start, end + 1)
        elif start > 0 and text[start - 1].isspace():
            cut = (start - 1, end)
        else:
            cut = (start, end)
        cuts.append(cut)
        removed.append((start, end, m.group(0)))
    out, last = [], 0
    for a, b in sorted(cuts):
        a = max(a, last)
        out.append(text[last:a])
        last = max(last, b)
    out.append(text[last:])
    return "".join(out), removed


@DEFENSES.register("onion", display="ONION")
@dataclass
class Onion(Purifier):
    """Leave-one-word-out perplexity purification (module docstring).

    Args:
        lm: causal LM: Hugging Face id/path (``gpt2``), ``smollm2-135m`` or ``tiny-causal``.
        lm_args: preset arguments (``tiny-causal``: e.g. ``{"steps": 1500}``).
        lm_seed: the tiny preset's pretraining seed.
        threshold: fixed suspicion threshold; None calibrates (``clean_fraction``).
        clean_fraction: calibration: the largest fraction of clean validation inputs that may
            lose a word.
        calibration_max_examples: clean validation inputs used for calibration.
        max_batch: texts per LM forward pass (an input's ``n + 1`` texts share one when they fit).
        max_length: LM tokens per text.
        cache: keep suspicions on disk (module docstring); ``cache_dir`` overrides the place.
        sides: which texts of a pair are purified (``["source"]`` or ``["source", "pair"]``).
    """

    name = "onion"
    lm: str = "gpt2"
    lm_args: dict = field(default_factory=dict)
    lm_seed: int = 42
    threshold: float | None = None
    clean_fraction: float = 0.1
    calibration_max_examples: int | None = 100
    max_batch: int = 128
    max_length: int = 512
    cache: bool = True
    cache_dir: str | None = None
    sides: list = field(default_factory=lambda: ["source"])

    def __post_init__(self) -> None:
        if not 0.0 <= self.clean_fraction < 1.0:
            raise ValueError(f"clean_fraction must be in [0, 1), got {self.clean_fraction}")
        if not self.sides or any(s not in ("source", "pair") for s in self.sides):
            raise ValueError(f"sides must be a non-empty list of 'source'/'pair', got {self.sides}")
        self._lm: tuple[Any, Any, str] | None = None
        self._threshold: float | None = self.threshold
        self._store: DiskCache | None = None

    # ------------------------------------------------------------------------------ set-up
    def prepare(self, bundle: DataBundle, victim: Victim | None = None) -> None:
        """Load the LM (``tiny-causal``: from the bundle's clean training texts) and, unless a
        threshold is fixed, calibrate it on the bundle's clean validation inputs."""
        self._load(train_texts(bundle))
        if self._threshold is None:
            clean = bundle.valid.clean[: self.calibration_max_examples]
            if not clean:
                raise ValueError("onion: no clean validation rows to calibrate on")
            self.calibrate(clean)

    def _load(self, texts: Sequence[str] | None = None) -> tuple[Any, Any, str]:
        if self._lm is None:
            self._lm = load_causal_lm(self.lm, texts=texts, cache_dir=None, seed=self.lm_seed,
                                      **self.lm_args)  # fmt: skip
        return self._lm

    def calibrate(self, clean: Sequence[Example]) -> float:
        """Set (and return) the threshold that leaves at most ``clean_fraction`` of ``clean``
        with a word removed."""
        peaks = [max(s.max(initial=-math.inf) for s in self.suspicions(ex)) for ex in clean]
        self._threshold = calibrate_threshold(peaks, self.clean_fraction, below=False)
        logger.info("onion: threshold %.4f from %d clean inputs", self._threshold, len(clean))
        return self._threshold

    # ------------------------------------------------------------------------------ scoring
    def suspicions(self, example: Example) -> list[np.ndarray]:
        """Per purified side, ``[n_words]`` suspicions (cached)."""
        return [self._scores(side_text(example, side)) for side in self._sides(example)]

    def _sides(self, example: Example) -> list[str]:
        return [s for s in self.sides if s == "source" or example.source_pair is not None]

    def _scores(self, text: str) -> np.ndarray:
        model, tok, identity = self._load()
        key = stable_key("onion", identity, self.max_length, text)
        if self.cache:
            if self._store is None:
                root = self.cache_dir or default_cache_dir("onion")
                self._store = DiskCache(f"{root}/suspicion.sqlite")
            hit = self._store.get_many([key])
            if key in hit:
                return np.asarray(hit[key], dtype=float)
        scores = leave_one_out_suspicion(model, tok, text, max_batch=self.max_batch,
                                         max_length=self.max_length)  # fmt: skip
        if self.cache and self._store is not None:
            self._store.put(key, scores.tolist())
        return scores

    # ------------------------------------------------------------------------------ purify
    def purify(self, examples: Sequence[Example], victim: Victim | None = None) -> PurifyResult:
        """Remove every word whose suspicion exceeds the threshold, per input (victim unused)."""
        t0 = time.perf_counter()
        rows = check_examples(examples)
        if self._threshold is None:
            raise ValueError("onion: no threshold; give threshold=... or call prepare/calibrate")
        out, detected, scores, changes, elements = [], [], [], [], []
        for ex in rows:
            new, edits, peak, scored = ex, [], -math.inf, []
            for side, sus in zip(self._sides(ex), self.suspicions(ex), strict=True):
                peak = max(peak, float(sus.max(initial=-math.inf)))
                scored += word_scores(side_text(ex, side), side, sus)
                text, removed = remove_words(side_text(ex, side), sus > self._threshold)
                new = with_side_text(new, side, text)
                edits += [Change(side, a, b, w, "") for a, b, w in removed]
            out.append(new)
            detected.append(bool(edits))
            scores.append(peak if math.isfinite(peak) else 0.0)
            changes.append(edits)
            elements.append(scored)
        info = {"threshold": self._threshold, "lm": self.lm,
                "n_detected": int(sum(detected)),
                "n_removed": int(sum(len(c) for c in changes))}  # fmt: skip
        return PurifyResult(out, detected, scores, changes, time.perf_counter() - t0, info,
                            elements)  # fmt: skip
