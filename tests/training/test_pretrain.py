"""Denoising pretraining: span masking against its closed form, loss decrease, on-disk cache."""

from __future__ import annotations

import json
from collections import Counter
from math import exp, factorial

import numpy as np
import pytest
import torch

from dece.training import pretrain
from dece.training.pretrain import (
    denoising_batch,
    denoising_loss,
    get_or_build_tiny,
    length_grouped_batches,
    num_to_mask,
    span_mask,
    unmask,
)
from dece.training.tiny import TinyCausalConfig, TinySeq2SeqConfig, build_tiny_model
from dece.training.tokenizer import train_bpe_tokenizer

MASK = -1
TINY = dict(
    d_model=32,
    encoder_layers=1,
    decoder_layers=1,
    attention_heads=2,
    ffn_dim=64,
    vocab_size=300,
    max_length=64,
    batch_size=4,
)
TEXTS = [
    "def add ( a , b ) :\n\treturn a + b",
    "select name from users where id = 1",
    "Use $conn$ to query\tall rows and print them.",
    "for row in rows :\n\tprint ( row )",
    "def main ( conn ) :\n\tres = conn . execute ( q ) . fetchall ( )\n\treturn res",
    "Get all columns in the flights table.",
]


pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------- span masking (closed forms)
@pytest.mark.parametrize("n", [0, 1, 2, 5, 17, 100, 301])
def test_span_mask_exact_count_length_and_inverse(n):
    rng = np.random.default_rng(n)
    ids = list(range(100, 100 + n))
    for _ in range(50):
        m = span_mask(ids, mask_id=MASK, rng=rng, mask_ratio=0.3, poisson_lambda=3.0)
        masked = sum(length for _, length in m.spans)
        assert masked == num_to_mask(n, 0.3) == int(np.floor(0.3 * n + 0.5))
        assert len(m.ids) == n - masked + len(m.spans)
        assert m.ids.count(MASK) == len(m.spans)  # one <mask> per span, zero-length ones too
        starts = [s for s, _ in m.spans]
        assert starts == sorted(starts)
        for (s0, l0), (s1, _) in zip(m.spans, m.spans[1:], strict=False):
            assert s0 + l0 <= s1  # disjoint
        originals = [ids[s : s + length] for s, length in m.spans]
        assert unmask(m, originals, MASK) == ids


def test_span_lengths_follow_poisson():
    """Drawn span lengths (all but the truncated last one) match the Poisson(3) pmf."""
    rng = np.random.default_rng(0)
    ids = list(range(20_000))
    lengths: list[int] = []
    n_spans = []
    for _ in range(20):
        m = span_mask(ids, mask_id=MASK, rng=rng, mask_ratio=0.3, poisson_lambda=3.0)
        lengths += [length for _, length in m.spans]  # spans come back in position order...
        n_spans.append(len(m.spans))
    counts = Counter(lengths)
    total = sum(counts.values())
    pmf = {k: exp(-3) * 3**k / factorial(k) for k in range(25)}
    tv = 0.5 * sum(abs(counts.get(k, 0) / total - p) for k, p in pmf.items())
    assert tv < 0.02
    # renewal count: about target / lambda spans per text (6000 / 3 = 2000)
    assert abs(np.mean(n_spans) - 6000 / 3) < 0.03 * 2000
    assert abs(np.mean(lengths) - 3.0) < 0.05


def test_mask_ratio_over_a_corpus():
    rng = np.random.default_rng(1)
    lens = rng.integers(10, 200, size=300)
    masked = sum(
        sum(length for _, length in span_mask(list(range(n)), mask_id=MASK, rng=rng).spans)
        for n in lens
    )
    assert abs(masked / lens.sum() - 0.3) < 0.005  # only rounding separates it from 0.3


def test_span_mask_rejects_bad_arguments():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="mask_ratio"):
        span_mask([1, 2], mask_id=0, rng=rng, mask_ratio=1.5)
    with pytest.raises(ValueError, match="poisson_lambda"):
        span_mask([1, 2], mask_id=0, rng=rng, poisson_lambda=0)


def test_length_grouped_batches_cover_every_index_once():
    lengths = list(np.random.default_rng(0).integers(1, 100, size=103))
    batches = length_grouped_batches(lengths, 8, torch.Generator().manual_seed(0), group=4)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(103))
    assert all(len(b) <= 8 for b in batches)


# ---------------------------------------------------------------- batches and training
@pytest.fixture(scope="module")
def tokenizer():
    return train_bpe_tokenizer(TEXTS, vocab_size=300)


def test_denoising_batch_layout(tokenizer):
    rows = pretrain.encode_corpus(TEXTS[:3], tokenizer, max_length=64)
    batch = denoising_batch(rows, tokenizer, task="seq2seq", rng=np.random.default_rng(0))
    for i, r in enumerate(rows):
        label = batch["labels"][i]
        assert label[: len(r) + 2].tolist() == [1, *r, 2]
        assert (label[len(r) + 2 :] == -100).all()
        n_in = int(batch["attention_mask"][i].sum())
        inp = batch["input_ids"][i, :n_in].tolist()
        assert inp[0] == 1 and inp[-1] == 2 and tokenizer.mask_token_id in inp
        assert (batch["input_ids"][i, n_in:] == tokenizer.pad_token_id).all()
    causal = denoising_batch(rows, tokenizer, task="causal", rng=np.random.default_rng(0))
    assert torch.equal(
        causal["input_ids"][causal["labels"] != -100], causal["labels"][causal["labels"] != -100]
    )


@pytest.mark.parametrize("cfg_cls", [TinySeq2SeqConfig, TinyCausalConfig])
def test_pretraining_lowers_denoising_loss_on_fixed_batch(tokenizer, cfg_cls):
    args = dict(TINY, steps=40, learning_rate=3e-3, warmup_ratio=0.0)
    if cfg_cls is TinyCausalConfig:
        args = {k: v for k, v in args.items() if k not in ("encoder_layers", "decoder_layers")}
        args["num_layers"] = 1
    cfg = cfg_cls(**args)
    model = build_tiny_model(cfg, tokenizer, seed=0)
    rows = pretrain.encode_corpus(TEXTS, tokenizer, cfg.max_length)
    fixed = denoising_batch(rows, tokenizer, task=cfg.task, rng=np.random.default_rng(123))
    before = denoising_loss(model, fixed)
    losses = pretrain.run_pretraining(model, tokenizer, TEXTS, cfg, seed=0)
    after = denoising_loss(model, fixed)
    assert len(losses) == 40
    assert after < 0.7 * before


def test_pretraining_is_deterministic_given_seed(tokenizer):
    cfg = TinySeq2SeqConfig(**TINY, steps=3)
    runs = []
    for _ in range(2):
        model = build_tiny_model(cfg, tokenizer, seed=5)
        runs.append(pretrain.run_pretraining(model, tokenizer, TEXTS, cfg, seed=5))
    assert runs[0] == runs[1]


# ---------------------------------------------------------------- cache
def test_cache_reused_and_keyed(tmp_path, monkeypatch):
    calls = []
    real = pretrain.run_pretraining

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(pretrain, "run_pretraining", spy)
    cfg = TinySeq2SeqConfig(**TINY, steps=2)
    first = get_or_build_tiny("tiny-seq2seq", cfg, TEXTS, seed=0, cache_dir=tmp_path)
    assert calls == [1]
    meta = json.loads((first / "pretrain.json").read_text())
    assert meta["config"]["steps"] == 2 and len(meta["losses"]) == 2
    mtime = (first / "pretrain.json").stat().st_mtime_ns
    again = get_or_build_tiny("tiny-seq2seq", cfg, list(TEXTS), seed=0, cache_dir=tmp_path)
    assert again == first and calls == [1]  # loaded, not retrained
    assert (first / "pretrain.json").stat().st_mtime_ns == mtime
    # any change of corpus, steps or seed is a new entry
    other_texts = get_or_build_tiny("tiny-seq2seq", cfg, TEXTS[:-1], seed=0, cache_dir=tmp_path)
    other_steps = get_or_build_tiny(
        "tiny-seq2seq", TinySeq2SeqConfig(**TINY, steps=1), TEXTS, seed=0, cache_dir=tmp_path
    )
    other_seed = get_or_build_tiny("tiny-seq2seq", cfg, TEXTS, seed=1, cache_dir=tmp_path)
    assert len({first, other_texts, other_steps, other_seed}) == 4
    assert calls == [1, 1, 1, 1]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DECE_CACHE_DIR", str(tmp_path / "envcache"))
    path = get_or_build_tiny("tiny-seq2seq", TinySeq2SeqConfig(**TINY, steps=0), TEXTS, seed=0)
    assert path.parent == tmp_path / "envcache"


def test_stdlib_corpus_is_deterministic_python():
    a = pretrain.stdlib_corpus(max_texts=50, seed=3)
    assert a == pretrain.stdlib_corpus(max_texts=50, seed=3)
    assert len(a) == 50
    assert sum("def " in t or "import " in t for t in a) > 10


def test_corpus_texts_requires_train_texts():
    with pytest.raises(ValueError, match="train_texts"):
        pretrain.resolve_corpus(TinySeq2SeqConfig(**TINY), None, seed=0)
    tok_texts, corpus = pretrain.resolve_corpus(
        TinySeq2SeqConfig(**TINY, corpus="stdlib"), TEXTS, seed=0
    )
    assert tok_texts == TEXTS and len(corpus) > 100
