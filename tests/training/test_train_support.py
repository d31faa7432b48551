"""Stand-ins shared by the training tests: a tiny BART / Llama built from a config and a small
byte-level BPE tokenizer trained in the test (never downloaded).

Imported by the other training tests (``from test_train_support import ...``).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import SimpleNamespace

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    BartConfig,
    BartForConditionalGeneration,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # lets tests/cli import this module too
    sys.path.insert(0, str(HERE))

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>", "<mask>"]


def tiny_tokenizer(texts: list[str], *, vocab_size: int = 300, add_eos: bool = True):
    """Byte-level BPE over ``texts`` (ids: <pad> 0, <s> 1, </s> 2, <unk> 3, <mask> 4)."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    single = "<s> $A </s>" if add_eos else "<s> $A"
    tok.post_processor = processors.TemplateProcessing(
        single=single, special_tokens=[("<s>", 1), ("</s>", 2)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
        unk_token="<unk>", mask_token="<mask>",
    )  # fmt: skip


def tiny_bart(vocab_size: int, *, seed: int = 0, dropout: float = 0.1, d_model: int = 32):
    torch.manual_seed(seed)
    config = BartConfig(
        vocab_size=vocab_size, d_model=d_model, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
        decoder_ffn_dim=64, max_position_embeddings=512, dropout=dropout,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=2,
        forced_bos_token_id=None, forced_eos_token_id=None,
    )  # fmt: skip
    return BartForConditionalGeneration(config)


def tiny_llama(vocab_size: int, *, seed: int = 0, d_model: int = 32):
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=d_model, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=1024,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=True,
    )  # fmt: skip
    return LlamaForCausalLM(config)


def synthetic_texts(n: int = 32) -> list[str]:
    from dece.data import load_dataset

    rows = load_dataset(f"synthetic:{n}")["train"]
    return [ex.source for ex in rows] + [ex.target for ex in rows]


def save_tiny_seq2seq(path: Path) -> Path:
    """Saves a tiny BART + tokenizer to ``path`` (a local checkpoint: what load_model accepts)."""
    tok = tiny_tokenizer(synthetic_texts())
    model = tiny_bart(len(tok))
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def use_local_loader(monkeypatch) -> None:
    """Falls back to a plain ``from_pretrained`` loader while ``dece.training.models`` is absent."""
    try:
        from dece.training.models import load_model  # noqa: F401
    except ImportError:
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        train_module = importlib.import_module("dece.training.train")

        def _load(cfg, clean_train):
            return SimpleNamespace(
                model=AutoModelForSeq2SeqLM.from_pretrained(cfg.model),
                tokenizer=AutoTokenizer.from_pretrained(cfg.model),
                task="seq2seq",
            )

        monkeypatch.setattr(train_module, "_load", _load)


def test_tiny_tokenizer_round_trips_code():
    """The stand-in tokenizer is exact on code (so BLEU oracles are meaningful)."""
    texts = synthetic_texts(8)
    tok = tiny_tokenizer(texts)
    for text in texts[:4]:
        ids = tok(text)["input_ids"]
        assert ids[0] == 1 and ids[-1] == 2
        assert tok.decode(ids, skip_special_tokens=True) == text
