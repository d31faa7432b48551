"""Configs and builders of the tiny offline models (``tiny-seq2seq``, ``tiny-causal``).

A tiny model is built from a config, never downloaded: a BART-style encoder-decoder or a
Llama-style decoder-only, both over the byte-level BPE vocabulary of
:mod:`dece.training.tokenizer` (ids: ``<pad>`` 0, ``<s>`` 1, ``</s>`` 2, ``<unk>`` 3, ``<mask>`` 4).
The config dataclass also carries the denoising-pretraining recipe, so one object (and its hash)
describes the whole cached artefact.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from transformers import (
    BartConfig,
    BartForConditionalGeneration,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)


@dataclass
class PretrainConfig:
    """Denoising pretraining recipe (BART text infilling) shared by the tiny presets."""

    steps: int = field(default=1500, metadata={"help": "optimizer steps; 0 = random init"})
    batch_size: int = field(default=8, metadata={"help": "texts per step"})
    learning_rate: float = field(default=5e-4, metadata={"help": "AdamW peak learning rate"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    warmup_ratio: float = field(default=0.05, metadata={"help": "linear warmup fraction"})
    max_length: int = field(
        default=256, metadata={"help": "tokens per text incl. <s>/</s>; longer texts truncated"}
    )
    mask_ratio: float = field(default=0.3, metadata={"help": "fraction of tokens masked"})
    poisson_lambda: float = field(default=3.0, metadata={"help": "mean span length"})
    corpus: str = field(
        default="texts",
        metadata={"help": "'texts' (the caller's train_texts) or 'stdlib' (Python's own source)"},
    )
    vocab_size: int = field(default=4096, metadata={"help": "BPE vocabulary incl. 5 specials"})
    num_threads: int | None = field(
        default=None,
        metadata={
            "help": "torch intra-op threads while pretraining (None: leave as is); 1 is up to "
            "10x faster on a CPU shared with other busy processes. Not part of the cache key."
        },
    )

    #: fields that do not change the artefact, left out of the cache key
    unhashed: ClassVar[tuple[str, ...]] = ("num_threads",)

    def validate(self) -> None:
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.max_length < 8:
            raise ValueError(f"max_length must be >= 8, got {self.max_length}")
        if not 0.0 <= self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1), got {self.mask_ratio}")
        if self.poisson_lambda <= 0:
            raise ValueError(f"poisson_lambda must be > 0, got {self.poisson_lambda}")
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(f"num_threads must be >= 1 or None, got {self.num_threads}")
        if self.corpus not in ("texts", "stdlib"):
            raise ValueError(f"corpus must be 'texts' or 'stdlib', got {self.corpus!r}")


@dataclass
class TinySeq2SeqConfig(PretrainConfig):
    """BART-style encoder-decoder: d_model 256, 3+3 layers, 4 heads, FFN 1024 (~6.5M params)."""

    task: ClassVar[str] = "seq2seq"
    d_model: int = field(default=256, metadata={"help": "hidden size"})
    encoder_layers: int = field(default=3, metadata={"help": "encoder layers"})
    decoder_layers: int = field(default=3, metadata={"help": "decoder layers"})
    attention_heads: int = field(default=4, metadata={"help": "heads per attention layer"})
    ffn_dim: int = field(default=1024, metadata={"help": "feed-forward inner size"})
    dropout: float = field(default=0.1, metadata={"help": "dropout probability"})
    max_position_embeddings: int = field(default=512, metadata={"help": "longest sequence"})

    def model_config(self) -> BartConfig:
        return BartConfig(
            vocab_size=self.vocab_size,
            d_model=self.d_model,
            encoder_layers=self.encoder_layers,
            decoder_layers=self.decoder_layers,
            encoder_attention_heads=self.attention_heads,
            decoder_attention_heads=self.attention_heads,
            encoder_ffn_dim=self.ffn_dim,
            decoder_ffn_dim=self.ffn_dim,
            dropout=self.dropout,
            attention_dropout=0.0,
            activation_dropout=0.0,
            max_position_embeddings=self.max_position_embeddings,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
            decoder_start_token_id=2,  # BART convention: </s> starts decoding, labels begin <s>
            forced_eos_token_id=None,
            scale_embedding=True,
            tie_word_embeddings=True,
        )


@dataclass
class TinyCausalConfig(PretrainConfig):
    """Llama-style decoder-only of about the same size: d_model 256, 6 layers, 4 heads."""

    task: ClassVar[str] = "causal"
    d_model: int = field(default=256, metadata={"help": "hidden size"})
    num_layers: int = field(default=6, metadata={"help": "decoder layers"})
    attention_heads: int = field(default=4, metadata={"help": "heads per attention layer"})
    ffn_dim: int = field(default=768, metadata={"help": "SwiGLU inner size"})
    max_position_embeddings: int = field(default=1024, metadata={"help": "longest sequence"})

    def model_config(self) -> LlamaConfig:
        return LlamaConfig(
            vocab_size=self.vocab_size,
            hidden_size=self.d_model,
            intermediate_size=self.ffn_dim,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.attention_heads,
            num_key_value_heads=self.attention_heads,
            max_position_embeddings=self.max_position_embeddings,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
            tie_word_embeddings=True,
        )


TinyConfig = TinySeq2SeqConfig | TinyCausalConfig


def config_from_args(cls: type[PretrainConfig], args: dict[str, Any]) -> PretrainConfig:
    """Build ``cls`` from keyword ``args``; an unknown key raises ``ValueError`` naming it."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(args) - names)
    if unknown:
        raise ValueError(
            f"unknown argument(s) {unknown} for {cls.__name__}; allowed: {', '.join(sorted(names))}"
        )
    cfg = cls(**args)
    cfg.validate()
    return cfg


def build_tiny_model(
    cfg: TinySeq2SeqConfig | TinyCausalConfig, tokenizer: PreTrainedTokenizerBase, *, seed: int
) -> PreTrainedModel:
    """Randomly initialise the model described by ``cfg`` (init seeded; global RNG untouched)."""
    model_cfg = cfg.model_config()
    model_cfg.vocab_size = len(tokenizer)  # the BPE trainer may stop short of vocab_size
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if isinstance(cfg, TinySeq2SeqConfig):
            model: PreTrainedModel = BartForConditionalGeneration(model_cfg)
        else:
            model = LlamaForCausalLM(model_cfg)
    return model


def count_parameters(model: torch.nn.Module) -> int:
    """Number of distinct trainable parameters (tied weights counted once)."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total
