"""``onion``: ONION (Qi et al., "ONION: A Simple and Effective Defense Against Textual Backdoor
Attacks", EMNLP 2021), a test-time purifier that never looks at the victim.

For an input of ``n`` whitespace-separated words, a causal LM gives the perplexity ``p0`` of the
whole text and ``p_i`` of the text without word ``i``; the suspicion of word ``i`` is
``f_i = p0 - p_i`` (removing an out-of-place word lowers the perplexity a lot). Every word with
``f_i > threshold`` is removed (:func:`leave_one_out_suspicion`).

The threshold is fixed or calibrated on clean validation inputs, without the victim: it is the
largest word suspicion of the clean inputs at the ``1 - clean_fraction`` quantile, so that at most
``clean_fraction`` of them lose a word (ONION itself tunes its threshold on clean validation
data; ``threshold=0`` is OpenBackdoor's default). A row is *detected* when a word is removed; its
score is its largest word suspicion.

The ``n`` leave-one-out texts share their beginning with the whole text: the LM runs the whole
text once, keeps its key/value cache, and each variant is scored from the cache of the longest
token prefix it shares with the whole text, so only its tokens after the removed word go through
the LM again (:func:`prefix_shared_perplexities`; about half the tokens of scoring every variant
in full, the same perplexities within float32 rounding).

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
from dece.training.generation import length_batches

if TYPE_CHECKING:
    from dece.pipeline.data import DataBundle
    from dece.victim import Victim

__all__ = [
    "Onion",
    "leave_one_out_suspicion",
    "load_causal_lm",
    "perplexities",
    "prefix_shared_perplexities",
    "remove_words",
    "token_rows",
    "word_scores",
]

logger = logging.getLogger(__name__)

_WORD = re.compile(r"\S+")
_SUFFIX_TOKENS = 4096  # padded tokens per pass of variant suffixes


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


def token_rows(tokenizer: Any, texts: Sequence[str], *, max_length: int = 512) -> list[list[int]]:
    """The LM's token ids of each text as ONION scores it: a BOS/EOS token is prepended when the
    tokenizer adds none, so the first word is scored too; at most ``max_length`` tokens."""
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    rows = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=True, truncation=True,
                        max_length=max_length)["input_ids"]  # fmt: skip
        if start is not None and (not ids or ids[0] != start):
            ids = [start, *ids][:max_length]
        rows.append(list(ids))
    return rows


def perplexities(
    model: Any, tokenizer: Any, texts: Sequence[str], *, max_length: int = 512
) -> np.ndarray:
    """``[N]`` perplexity of each text under a causal LM, one padded batch: ``exp`` of the mean
    NLL of its tokens (:func:`token_rows`), each predicted from the ones before."""
    rows = token_rows(tokenizer, texts, max_length=max_length)
    return _padded_perplexities(model, rows)


def _padded_perplexities(model: Any, rows: Sequence[Sequence[int]]) -> np.ndarray:
    """``[N]`` perplexities of token rows, every row in full in one right-padded batch (the pad
    id is irrelevant: padded positions are masked and never scored)."""
    width = max(len(r) for r in rows)
    pad = 0
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(list(r), dtype=torch.long)
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
    model: Any, tokenizer: Any, text: str, *, max_batch: int = 128, max_length: int = 512,
    prefix_cache: bool = True,
) -> np.ndarray:  # fmt: skip
    """``[n]`` ONION suspicion ``p0 - p_i`` of each whitespace-separated word of ``text``.

    ``prefix_cache``: score the variants from the whole text's key/value cache
    (:func:`prefix_shared_perplexities`); False: every one of the ``n + 1`` texts in full, in
    padded batches of ``max_batch`` texts (the reference path)."""
    words = _WORD.findall(text)
    if not words:
        return np.zeros(0)
    variants = [" ".join(words)] + [" ".join(words[:i] + words[i + 1 :]) for i in range(len(words))]
    variants = [v if v else " " for v in variants]
    rows = token_rows(tokenizer, variants, max_length=max_length)  # tokenised once per text
    if prefix_cache and rows[0]:
        ppl = prefix_shared_perplexities(model, rows[0], rows[1:], max_batch=max_batch)
    else:
        ppl = np.concatenate([
            _padded_perplexities(model, rows[s : s + max_batch])
            for s in range(0, len(rows), max_batch)
        ])  # fmt: skip
    return ppl[0] - ppl[1:]


def prefix_shared_perplexities(
    model: Any, base: Sequence[int], variants: Sequence[Sequence[int]], *, max_batch: int = 128
) -> np.ndarray:
    """``[1 + N]`` perplexities of the token row ``base`` and of each of ``variants``, the
    variants scored from ``base``'s key/value cache.

    ``base`` runs once (``L`` tokens, cache kept). Variant ``v`` shares its first ``k`` tokens
    with ``base``: its predictions at positions ``< k`` are ``base``'s (a causal LM sees only the
    past), so only ``v[k : -1]`` runs, attending to ``base``'s cached keys/values at positions
    ``< k`` (the later ones masked) with position ids ``k, k + 1, ...``; the suffixes sorted by
    length and batched by a token budget (at most ``max_batch`` per pass). A variant with no shared prefix runs in full. Equal to scoring every row in full
    within float32 rounding."""
    device = next(model.parameters()).device
    with torch.inference_mode():
        ids = torch.tensor([list(base)], dtype=torch.long, device=device)  # [1, L]
        out = model(input_ids=ids, use_cache=True)
        base_logp = torch.log_softmax(out.logits[0].float(), -1)  # [L, V]
        base_nll = torch.zeros(len(base), device=device)  # [L]: 0 at position 0 (no prediction)
        base_nll[1:] = -base_logp[:-1].gather(1, ids[0, 1:, None]).squeeze(1)
        kept = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
        cached = [(layer.keys, layer.values) for layer in kept.layers]
        total = np.zeros(len(variants) + 1)
        total[0] = float(base_nll.sum())
        shared = [_common_prefix(base, v) for v in variants]
        suffix: list[int] = []  # variants with tokens left to run
        full: list[int] = []  # variants with no shared prefix
        for i, (v, k) in enumerate(zip(variants, shared, strict=True)):
            if k == 0:
                full.append(i)
                continue
            total[i + 1] = float(base_nll[1:k].sum())
            if len(v) > k:  # v[k] is predicted at position k - 1, still base's
                total[i + 1] -= float(base_logp[k - 1, v[k]])
            if len(v) - 1 > k:
                suffix.append(i)
        lengths = [len(variants[i]) - 1 - shared[i] for i in suffix]
        for group in length_batches(lengths, token_budget=_SUFFIX_TOKENS, max_rows=max_batch):
            chunk = [suffix[j] for j in group]
            nll = _suffix_nll(model, cached, len(base), [variants[i] for i in chunk],
                              [shared[i] for i in chunk], device)  # fmt: skip
            total[[i + 1 for i in chunk]] += nll
    counts = np.array([len(base)] + [len(v) for v in variants], dtype=float) - 1.0
    ppl = np.exp(total / np.maximum(counts, 1.0))
    if full:
        rows = [variants[i] for i in full]
        ppl[[i + 1 for i in full]] = _padded_perplexities(model, rows)
    return ppl


def _cache_argument(model: Any) -> str:
    """The forward argument that takes a key/value cache (``cache`` in transformers >= 5.2x,
    ``past_key_values`` before)."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    k = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        k += 1
    return k


def _suffix_nll(
    model: Any, cached: list[tuple[torch.Tensor, torch.Tensor]], length: int,
    rows: list[Sequence[int]], shared: list[int], device: torch.device,
) -> np.ndarray:  # fmt: skip
    """``[B]`` summed NLL of ``row[k + 1 :]`` per row, ``row[k : -1]`` run on top of the base's
    cache (``cached``: per layer ``[1, heads, length, head_dim]`` keys and values) cut to ``k``."""
    from transformers import DynamicCache

    width = max(len(r) - 1 - k for r, k in zip(rows, shared, strict=True))
    batch = len(rows)
    ids = torch.zeros((batch, width), dtype=torch.long)
    targets = torch.full((batch, width), -1, dtype=torch.long)
    mask = torch.zeros((batch, length + width), dtype=torch.long)
    positions = torch.zeros((batch, width), dtype=torch.long)
    for b, (row, k) in enumerate(zip(rows, shared, strict=True)):
        m = len(row) - 1 - k
        ids[b, :m] = torch.as_tensor(list(row[k:-1]))
        targets[b, :m] = torch.as_tensor(list(row[k + 1 :]))
        mask[b, :k] = 1  # the base's cache at positions < k; its later positions masked
        mask[b, length : length + m] = 1
        positions[b] = k + torch.arange(width)
    past = DynamicCache(
        [(key.expand(batch, -1, -1, -1), value.expand(batch, -1, -1, -1)) for key, value in cached],
        config=model.config,
    )
    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                   position_ids=positions.to(device), use_cache=True,
                   **{_cache_argument(model): past}).logits.float()  # [B, W, V]  # fmt: skip
    logp = torch.log_softmax(logits, -1)
    targets = targets.to(device)
    valid = targets >= 0  # [B, W]
    nll = -logp.gather(2, targets.clamp(min=0).unsqueeze(2)).squeeze(2).masked_fill(~valid, 0.0)
    return nll.sum(1).cpu().numpy()


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
        prefix_cache: score the leave-one-out variants from the whole text's key/value cache
            (module docstring); False scores every variant in full (the reference path).
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
    prefix_cache: bool = True
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
                                         max_length=self.max_length,
                                         prefix_cache=self.prefix_cache)  # fmt: skip
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
