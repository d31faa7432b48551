"""BART-style denoising pretraining of the tiny presets, cached on disk.

Text infilling (Lewis et al., 2020): in each text, spans with Poisson(lambda=3) lengths are
chosen until ``round(mask_ratio * n)`` of its ``n`` tokens are covered; each span is replaced by a
single ``<mask>`` (a zero-length span inserts one). The model reconstructs the whole original
text from the masked copy of itself — the corpus is unpaired clean texts, never source->target.

The artefact (tokenizer + pretrained model + ``pretrain.json``) is stored under
``cache_dir/<preset>-<key>`` where ``key`` hashes the corpus, the config, the seed and the steps,
and reused by the next call with the same inputs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import sysconfig
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase, get_linear_schedule_with_warmup

from dece import progress
from dece.cachedir import cache_root
from dece.training.tiny import TinyCausalConfig, TinySeq2SeqConfig, build_tiny_model
from dece.training.tokenizer import train_bpe_tokenizer

logger = logging.getLogger(__name__)

META_FILE = "pretrain.json"
LOG_EVERY = 100  # pretraining steps between progress log lines


# --------------------------------------------------------------------------- span masking (pure)
@dataclass(frozen=True)
class SpanMask:
    """One masked text. ``spans[i] = (start, length)`` in the original token positions, sorted;
    ``ids`` is the original with each span replaced by one ``mask_id``."""

    ids: list[int]
    spans: list[tuple[int, int]]


def num_to_mask(n: int, mask_ratio: float) -> int:
    """Tokens masked in a text of ``n`` tokens: ``round(mask_ratio * n)`` (half rounds up)."""
    return int(np.floor(mask_ratio * n + 0.5))


def span_mask(
    ids: Sequence[int],
    *,
    mask_id: int,
    rng: np.random.Generator,
    mask_ratio: float = 0.3,
    poisson_lambda: float = 3.0,
) -> SpanMask:
    """Text infilling on one token sequence (no special tokens in ``ids``).

    Span lengths are drawn i.i.d. from Poisson(``poisson_lambda``) until they cover
    ``num_to_mask(len(ids), mask_ratio)`` tokens; the last one is cut to hit that total exactly.
    The spans and the unmasked tokens are then interleaved in a uniformly random order, so the
    output has ``n - masked + n_spans`` tokens.
    """
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
    if poisson_lambda <= 0:
        raise ValueError(f"poisson_lambda must be > 0, got {poisson_lambda}")
    ids = list(ids)
    n = len(ids)
    target = num_to_mask(n, mask_ratio)
    if target == 0:
        return SpanMask(ids=ids, spans=[])
    lengths: list[int] = []
    covered = 0
    while covered < target:
        length = int(rng.poisson(poisson_lambda))
        length = min(length, target - covered)
        lengths.append(length)
        covered += length
    k, n_keep = len(lengths), n - target
    # Choose which of the k + n_keep slots hold spans; spans keep their drawn order.
    is_span = np.zeros(k + n_keep, dtype=bool)
    is_span[rng.choice(k + n_keep, size=k, replace=False)] = True
    out: list[int] = []
    spans: list[tuple[int, int]] = []
    pos, span_i = 0, 0
    for slot_is_span in is_span:
        if slot_is_span:
            length = lengths[span_i]
            spans.append((pos, length))
            out.append(mask_id)
            pos += length
            span_i += 1
        else:
            out.append(ids[pos])
            pos += 1
    return SpanMask(ids=out, spans=spans)


def unmask(masked: SpanMask, original_spans: Sequence[Sequence[int]], mask_id: int) -> list[int]:
    """Inverse of :func:`span_mask`: put ``original_spans[i]`` back at the i-th ``mask_id``."""
    out: list[int] = []
    it = iter(original_spans)
    for tok in masked.ids:
        out.extend(next(it) if tok == mask_id else [tok])
    return out


# --------------------------------------------------------------------------- corpus
def stdlib_corpus(*, max_texts: int = 4000, max_lines: int = 12, seed: int = 0) -> list[str]:
    """Chunks of Python's standard-library source (``max_lines`` lines each, non-blank).

    Files are read in sorted order and ``max_texts`` chunks sampled with ``seed``.
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.glob("*.py") if p.is_file())
    if not files:
        raise ValueError(f"no Python source files found under stdlib path {root}")
    chunks: list[str] = []
    for path in files:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (UnicodeDecodeError, OSError) as err:
            logger.debug("skipping %s: %s", path, err)
            continue
        for i in range(0, len(lines), max_lines):
            chunk = "\n".join(lines[i : i + max_lines])
            if chunk.strip():
                chunks.append(chunk)
    rng = np.random.default_rng(seed)
    if len(chunks) > max_texts:
        chunks = [chunks[i] for i in sorted(rng.choice(len(chunks), max_texts, replace=False))]
    return chunks


# --------------------------------------------------------------------------- batches and loss
def encode_corpus(
    texts: Sequence[str], tokenizer: PreTrainedTokenizerBase, max_length: int
) -> list[list[int]]:
    """Token ids of each text without special tokens, cut to ``max_length - 2``."""
    enc = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return [ids[: max_length - 2] for ids in enc]


def _pad(rows: list[list[int]], value: int) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([r + [value] * (width - len(r)) for r in rows], dtype=torch.long)


def denoising_batch(
    rows: Sequence[Sequence[int]],
    tokenizer: PreTrainedTokenizerBase,
    *,
    task: str,
    rng: np.random.Generator,
    mask_ratio: float = 0.3,
    poisson_lambda: float = 3.0,
) -> dict[str, torch.Tensor]:
    """Model inputs for one denoising step on ``rows`` (token ids without specials).

    seq2seq: ``input_ids`` = ``<s> masked </s>`` ``[B, S]``, ``labels`` = ``<s> original </s>``
    ``[B, T]`` padded with -100. causal: plain language modelling on ``<s> original </s>``
    (``labels`` = ``input_ids`` with padding at -100; the model shifts them).
    """
    bos, eos, pad = tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
    targets = [[bos, *r, eos] for r in rows]
    labels = _pad(targets, -100)
    if task == "causal":
        input_ids = _pad(targets, pad)
        return {"input_ids": input_ids, "attention_mask": (labels != -100).long(), "labels": labels}
    if task != "seq2seq":
        raise ValueError(f"task must be 'seq2seq' or 'causal', got {task!r}")
    masked = [
        [
            bos,
            *span_mask(
                r,
                mask_id=tokenizer.mask_token_id,
                rng=rng,
                mask_ratio=mask_ratio,
                poisson_lambda=poisson_lambda,
            ).ids,
            eos,
        ]
        for r in rows
    ]
    input_ids = _pad(masked, pad)
    attention = _pad([[1] * len(m) for m in masked], 0)
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


def denoising_loss(model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> float:
    """Mean token cross-entropy of ``model`` on ``batch`` (eval mode, no gradient)."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        loss = model(**batch).loss.item()
    model.train(was_training)
    return loss


# --------------------------------------------------------------------------- training loop
def length_grouped_batches(
    lengths: Sequence[int], batch_size: int, generator: torch.Generator, *, group: int = 16
) -> list[list[int]]:
    """One epoch of batches (every index exactly once) with little padding.

    Indices are shuffled, cut into mega-batches of ``group * batch_size``, sorted by length
    inside each, cut into batches, and the batch order shuffled (as transformers'
    ``group_by_length``).
    """
    order = torch.randperm(len(lengths), generator=generator).tolist()
    mega = group * batch_size
    batches: list[list[int]] = []
    for start in range(0, len(order), mega):
        chunk = sorted(order[start : start + mega], key=lambda i: lengths[i])
        batches.extend(chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size))
    perm = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in perm]


def run_pretraining(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    cfg: TinySeq2SeqConfig | TinyCausalConfig,
    *,
    seed: int,
) -> list[float]:
    """Denoising-pretrain ``model`` in place for ``cfg.steps`` steps; returns the step losses."""
    rows = encode_corpus(texts, tokenizer, cfg.max_length)
    if not rows:
        raise ValueError("pretraining corpus is empty")
    if cfg.steps == 0:
        return []
    threads = torch.get_num_threads()
    # Dropout draws from torch's global RNG: seed it inside a fork so the caller's is untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if cfg.num_threads is not None:
            torch.set_num_threads(cfg.num_threads)
        try:
            return _pretrain_loop(model, tokenizer, rows, cfg, seed=seed)
        finally:
            torch.set_num_threads(threads)


def _pretrain_loop(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    rows: list[list[int]],
    cfg: TinySeq2SeqConfig | TinyCausalConfig,
    *,
    seed: int,
) -> list[float]:
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay
    )
    scheduler = get_linear_schedule_with_warmup(
        optimizer, int(cfg.warmup_ratio * cfg.steps), cfg.steps
    )
    model.train()
    batches: list[list[int]] = []
    losses: list[float] = []
    with progress.task(f"pretrain tiny {cfg.task}", total=cfg.steps, unit="step") as advance:
        for _ in range(cfg.steps):
            losses.append(_pretrain_step(model, tokenizer, rows, batches, cfg, gen, rng))
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            advance()
            if len(losses) % LOG_EVERY == 0 or len(losses) == cfg.steps:
                logger.info(
                    "pretraining step %d/%d: loss %.4f (mean of last %d: %.4f)",
                    len(losses), cfg.steps, losses[-1], min(LOG_EVERY, len(losses)),
                    float(np.mean(losses[-LOG_EVERY:])),
                )  # fmt: skip
    model.eval()
    return losses


def _pretrain_step(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    rows: list[list[int]],
    batches: list[list[int]],
    cfg: TinySeq2SeqConfig | TinyCausalConfig,
    gen: torch.Generator,
    rng: np.random.Generator,
) -> float:
    """Forward + backward of one denoising batch (refilling ``batches`` at each corpus epoch);
    returns its loss. The caller steps the optimizer."""
    if not batches:  # a new epoch over the corpus
        batches.extend(length_grouped_batches([len(r) for r in rows], cfg.batch_size, gen))
    idx = batches.pop()
    batch = denoising_batch(
        [rows[i] for i in idx], tokenizer, task=cfg.task, rng=rng, mask_ratio=cfg.mask_ratio,
        poisson_lambda=cfg.poisson_lambda,
    )  # fmt: skip
    loss = model(**batch).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    return loss.item()


# --------------------------------------------------------------------------- cache
def default_cache_dir() -> Path:
    """:func:`dece.cachedir.cache_root`: ``$DECE_CACHE_DIR``, else ``~/.cache/dece`` on Linux."""
    return cache_root()


def cache_key(
    preset: str, texts: Sequence[str], cfg: TinySeq2SeqConfig | TinyCausalConfig, seed: int
) -> str:
    """16 hex digits of SHA-256 over preset, config (steps included), seed and every text."""
    h = hashlib.sha256()
    config = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in cfg.unhashed}
    h.update(
        json.dumps({"preset": preset, "seed": seed, "config": config}, sort_keys=True).encode()
    )
    for text in texts:
        data = text.encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()[:16]


def resolve_corpus(
    cfg: TinySeq2SeqConfig | TinyCausalConfig, train_texts: Sequence[str] | None, seed: int
) -> tuple[list[str], list[str]]:
    """(tokenizer texts, pretraining texts) for ``cfg.corpus``."""
    if train_texts is not None:
        train_texts = list(train_texts)
        for i, t in enumerate(train_texts):
            if not isinstance(t, str):
                raise ValueError(f"train_texts[{i}] is {type(t).__name__}, expected str")
        if not train_texts:
            raise ValueError("train_texts is empty")
    if cfg.corpus == "stdlib":
        corpus = stdlib_corpus(seed=seed)
        return (train_texts or corpus), corpus
    if train_texts is None:
        raise ValueError(
            "train_texts is required for corpus='texts' (pass the training split's sources and "
            "targets), or pass corpus='stdlib' to pretrain on Python's standard library"
        )
    return train_texts, train_texts


def get_or_build_tiny(
    preset: str,
    cfg: TinySeq2SeqConfig | TinyCausalConfig,
    train_texts: Sequence[str] | None,
    *,
    seed: int,
    cache_dir: str | os.PathLike | None = None,
) -> Path:
    """Directory of the cached tokenizer + pretrained model for these inputs; built if missing."""
    tok_texts, corpus = resolve_corpus(cfg, train_texts, seed)
    key = cache_key(preset, [*tok_texts, "\x00corpus\x00", *corpus], cfg, seed)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = root / f"{preset}-{key}"
    if (target / META_FILE).is_file():
        logger.info("reusing cached %s at %s", preset, target)
        return target
    logger.info("building %s (%d pretraining steps) into %s", preset, cfg.steps, target)
    start = time.perf_counter()
    tokenizer = train_bpe_tokenizer(
        tok_texts,
        vocab_size=cfg.vocab_size,
        add_eos=cfg.task == "seq2seq",
        model_max_length=cfg.max_length,
    )
    model = build_tiny_model(cfg, tokenizer, seed=seed)
    losses = run_pretraining(model, tokenizer, corpus, cfg, seed=seed)
    elapsed = time.perf_counter() - start
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{preset}-", dir=root))
    tmp.chmod(0o755)  # mkdtemp makes it private; the cache entry is an ordinary directory
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        meta = {
            "preset": preset,
            "key": key,
            "seed": seed,
            "config": dataclasses.asdict(cfg),
            "n_tokenizer_texts": len(tok_texts),
            "n_corpus_texts": len(corpus),
            "build_time_s": elapsed,
            "losses": losses,
        }
        (tmp / META_FILE).write_text(json.dumps(meta, indent=1))
        try:
            os.replace(tmp, target)  # atomic: a concurrent builder's copy wins, ours is dropped
        except OSError:
            if not (target / META_FILE).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info(
        "built %s in %.1f s (final loss %s)",
        preset,
        elapsed,
        f"{losses[-1]:.3f}" if losses else "n/a",
    )
    return target
