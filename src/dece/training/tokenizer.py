"""Byte-level BPE tokenizer trained on the data, for the tiny offline presets.

Byte-level BPE (GPT-2 / BART style) maps every byte to a symbol before merging, so any text —
tabs, newlines, unicode — encodes and decodes back exactly: nothing becomes ``<unk>``. The trained
``tokenizers.Tokenizer`` is wrapped as a ``transformers.PreTrainedTokenizerFast`` so the rest of
the pipeline (``Trainer``, ``generate``, ``save_pretrained``) treats it like any Hub tokenizer.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

logger = logging.getLogger(__name__)

PAD, BOS, EOS, UNK, MASK = "<pad>", "<s>", "</s>", "<unk>", "<mask>"
#: Special tokens in id order: ``<pad>`` = 0, ``<s>`` = 1, ``</s>`` = 2, ``<unk>`` = 3, ``<mask>`` = 4.
SPECIAL_TOKENS: tuple[str, ...] = (PAD, BOS, EOS, UNK, MASK)
#: Byte-level BPE needs the 256 byte symbols plus the special tokens at the very least.
MIN_VOCAB_SIZE = 256 + len(SPECIAL_TOKENS)


def train_bpe_tokenizer(
    texts: Iterable[str],
    *,
    vocab_size: int = 4096,
    min_frequency: int = 2,
    add_eos: bool = True,
    model_max_length: int = 1024,
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on ``texts`` and wrap it for transformers.

    Args:
        texts: training texts (any characters; whitespace is kept byte for byte).
        vocab_size: target vocabulary size including the 5 special tokens (at least 261).
        min_frequency: a pair must occur this often to be merged.
        add_eos: encoder-decoder style ``<s> text </s>`` when True (BART); decoder-only style
            ``<s> text`` when False (Llama), so a prompt can be followed by its continuation.
        model_max_length: recorded on the tokenizer; truncation uses it when asked.

    Returns:
        A ``PreTrainedTokenizerFast`` with ``pad``/``bos``/``eos``/``unk``/``mask`` tokens set
        (ids 0-4) and ``padding_side="right"``.
    """
    if vocab_size < MIN_VOCAB_SIZE:
        raise ValueError(
            f"vocab_size must be >= {MIN_VOCAB_SIZE} for byte-level BPE, got {vocab_size}"
        )
    if min_frequency < 1:
        raise ValueError(f"min_frequency must be >= 1, got {min_frequency}")
    texts = list(texts)
    if not texts:
        raise ValueError("texts is empty: the tokenizer needs at least one training text")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"texts[{i}] is {type(text).__name__}, expected str")

    tok = Tokenizer(models.BPE(unk_token=UNK))
    # use_regex splits words GPT-2 style; add_prefix_space=False keeps the text exactly as given.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    logger.info("trained byte-level BPE on %d texts: vocab %d", len(texts), tok.get_vocab_size())
    return wrap_tokenizer(tok, add_eos=add_eos, model_max_length=model_max_length)


def wrap_tokenizer(
    tok: Tokenizer, *, add_eos: bool = True, model_max_length: int = 1024
) -> PreTrainedTokenizerFast:
    """Attach the BOS/EOS post-processor to ``tok`` and wrap it as a ``PreTrainedTokenizerFast``."""
    bos_id, eos_id = tok.token_to_id(BOS), tok.token_to_id(EOS)
    if bos_id is None or eos_id is None:
        raise ValueError(f"tokenizer lacks {BOS!r} or {EOS!r}")
    single = f"{BOS} $A {EOS}" if add_eos else f"{BOS} $A"
    pair = f"{BOS} $A {EOS} $B {EOS}" if add_eos else f"{BOS} $A $B"
    tok.post_processor = processors.TemplateProcessing(
        single=single, pair=pair, special_tokens=[(BOS, bos_id), (EOS, eos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        mask_token=MASK,
        padding_side="right",
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )


def decode_exact(tokenizer: PreTrainedTokenizerFast, ids: Sequence[int]) -> str:
    """Decode ``ids`` dropping special tokens and without whitespace clean-up (lossless)."""
    return tokenizer.decode(list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=False)
