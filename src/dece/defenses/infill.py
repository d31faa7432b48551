"""Re-filling masked spans of a text with a language model (CodePurify's purification step).

Two kinds of infilling model, one interface ``Infiller.fill(text, groups) -> list[str]`` (one new
string per group of masked character spans; a group is replaced as a whole):

- :class:`MaskedLMInfiller` — a masked LM (e.g. ``microsoft/codebert-base-mlm``, the CodePurify
  paper's choice): every masked token becomes as many ``<mask>`` tokens as the model's tokenizer
  needs for it, one forward pass, the most likely token at each mask;
- :class:`Seq2SeqInfiller` — a BART-style span infiller (the ``tiny-seq2seq`` preset is
  denoising-pretrained this way on the clean training texts): each group becomes one ``<mask>``
  (as in its pretraining), the decoder is forced through the unmasked text before the first mask
  and generates the rest greedily until the masked region and a few tokens of context after it
  are covered; the new text of each group is read off by aligning the generated tokens with the
  unmasked context (:func:`align_fills`, ``difflib``).

:func:`load_infiller` builds either from a Hugging Face id / path (the model's config decides)
or a ``dece`` preset (pretrained on ``train_texts``, cached).
"""

from __future__ import annotations

import difflib
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

__all__ = [
    "Infiller",
    "MaskedLMInfiller",
    "Seq2SeqInfiller",
    "align_fills",
    "group_spans",
    "load_infiller",
]

logger = logging.getLogger(__name__)

_TOKEN = re.compile(r"\S+")


class Infiller(Protocol):
    """Fills groups of masked spans of a text; ``stats`` counts calls and seconds."""

    tokenizer: Any
    calls: int
    seconds: float

    def fill(self, text: str, groups: Sequence[Sequence[tuple[int, int]]]) -> list[str]: ...

    def mask_count(self, token: str) -> int: ...


def group_spans(text: str, spans: Sequence[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    """Sorted ``spans`` merged into groups of spans separated only by whitespace."""
    groups: list[list[tuple[int, int]]] = []
    for start, end in sorted(spans):
        if groups and not text[groups[-1][-1][1] : start].strip():
            groups[-1].append((start, end))
        else:
            groups.append([(start, end)])
    return groups


def align_fills(template: Sequence[str | None], generated: Sequence[str]) -> list[list[str]]:
    """The generated tokens standing where the template has a mask (``None``).

    ``template``: context tokens with ``None`` at each mask; ``generated``: the model's tokens
    for the same region. Context tokens are matched with ``difflib`` (longest matching blocks);
    a mask's fill is what lies between the match before it and the match after it (all of it
    goes to the first of several masks between the same two matches; a mask with no match after
    it takes the rest of the generation).
    """
    masks = [i for i, tok in enumerate(template) if tok is None]
    keyed = [f"\x00mask{i}" if tok is None else tok for i, tok in enumerate(template)]
    blocks = [
        b for b in difflib.SequenceMatcher(None, keyed, list(generated), autojunk=False)
        .get_matching_blocks() if b.size
    ]  # fmt: skip
    fills: list[list[str]] = []
    taken = -1
    for m in masks:
        before = [b for b in blocks if b.a + b.size <= m]
        after = [b for b in blocks if b.a > m]
        g0 = before[-1].b + before[-1].size if before else 0
        g1 = after[0].b if after else len(generated)
        g0 = max(g0, taken)
        fills.append(list(generated[g0:g1]) if g1 > g0 else [])
        taken = max(taken, g1)
    return fills


@dataclass
class _Counting:
    calls: int = field(default=0, init=False)
    seconds: float = field(default=0.0, init=False)

    def _count(self, t0: float) -> None:
        self.calls += 1
        self.seconds += time.perf_counter() - t0


@dataclass
class MaskedLMInfiller(_Counting):
    """A masked LM (``AutoModelForMaskedLM``) filling each masked token independently."""

    model: Any
    tokenizer: Any
    max_length: int = 512

    def mask_count(self, token: str) -> int:
        return max(1, len(self.tokenizer.tokenize(" " + token)))

    def fill(self, text: str, groups: Sequence[Sequence[tuple[int, int]]]) -> list[str]:
        t0 = time.perf_counter()
        mask = self.tokenizer.mask_token
        pieces, counts, last = [], [], 0
        for group in groups:
            for start, end in group:
                k = self.mask_count(text[start:end])
                pieces += [text[last:start], mask * k]
                counts.append(k)
                last = end
        pieces.append(text[last:])
        enc = self.tokenizer("".join(pieces), return_tensors="pt", truncation=True,
                             max_length=self.max_length)  # fmt: skip
        with torch.inference_mode():
            logits = self.model(**enc.to(self.model.device)).logits[0]  # [S, V]
        positions = (enc["input_ids"][0] == self.tokenizer.mask_token_id).nonzero().flatten()
        best = logits[positions].argmax(-1).tolist()  # one id per mask (truncated: fewer)
        out: list[str] = []
        offset, i = 0, 0
        for group in groups:
            words = []
            for _ in group:
                ids = best[offset : offset + counts[i]]
                words.append(self.tokenizer.decode(ids).strip())
                offset += counts[i]
                i += 1
            out.append(" ".join(w for w in words if w))
        self._count(t0)
        return out


@dataclass
class Seq2SeqInfiller(_Counting):
    """A BART-style span infiller (see the module docstring); ``context`` tokens after the last
    mask are generated to anchor the alignment."""

    model: Any
    tokenizer: Any
    context: int = 4
    max_length: int = 256

    def mask_count(self, token: str) -> int:
        return 1

    def fill(self, text: str, groups: Sequence[Sequence[tuple[int, int]]]) -> list[str]:
        t0 = time.perf_counter()
        if not groups:
            return []
        mask = self.tokenizer.mask_token
        extents = [(g[0][0], g[-1][1]) for g in groups]
        masked, last = [], 0
        for start, end in extents:
            masked += [text[last:start], mask]
            last = end
        masked.append(text[last:])
        first = extents[0][0]
        prefix = text[:first]
        region = text[first:]
        template: list[str | None] = []
        last = first
        for start, end in extents:
            template += _TOKEN.findall(text[last:start])
            template.append(None)
            last = end
        tail = _TOKEN.findall(text[last:])[: self.context]
        template += tail
        budget = len(self.tokenizer.tokenize(region[: extents[-1][1] - first])) + 3 * (
            self.context + 2
        )
        generated = self._generate("".join(masked), prefix, budget)
        fills = align_fills(template, _TOKEN.findall(generated))
        self._count(t0)
        return [" ".join(f) for f in fills]

    def _generate(self, masked: str, prefix: str, budget: int) -> str:
        tok = self.tokenizer
        enc = tok(masked, return_tensors="pt", truncation=True, max_length=self.max_length)
        start = self.model.config.decoder_start_token_id
        prefix_ids = tok(prefix, add_special_tokens=True, truncation=True,
                         max_length=self.max_length)["input_ids"]  # fmt: skip
        if prefix_ids and prefix_ids[-1] == tok.eos_token_id:
            prefix_ids = prefix_ids[:-1]
        decoder = torch.tensor([[start, *prefix_ids]], dtype=torch.long)
        device = self.model.device
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=enc["input_ids"].to(device),
                attention_mask=enc["attention_mask"].to(device),
                decoder_input_ids=decoder.to(device), max_new_tokens=max(1, budget),
                do_sample=False, num_beams=1,
            )  # fmt: skip
        new = out[0, decoder.shape[1] :].tolist()
        return tok.decode(new, skip_special_tokens=True)


def load_infiller(
    spec: str,
    *,
    train_texts: Sequence[str] | None = None,
    cache_dir: str | None = None,
    seed: int = 42,
    **preset_args: Any,
) -> MaskedLMInfiller | Seq2SeqInfiller:
    """An infiller from a ``dece`` preset (``tiny-seq2seq``: pretrained on ``train_texts``, from
    the cache when the victim's pretraining already built it), a Hugging Face id or a path: a
    masked-LM config -> :class:`MaskedLMInfiller`, an encoder-decoder -> :class:`Seq2SeqInfiller`.
    """
    from transformers import AutoConfig, AutoModelForMaskedLM, AutoTokenizer

    from dece.training.models import PRESETS, load_model

    if spec in PRESETS:
        if spec != "tiny-seq2seq":
            raise ValueError(f"infiller preset must be 'tiny-seq2seq', got {spec!r}")
        if not train_texts:
            raise ValueError(
                "the tiny-seq2seq infiller needs train_texts (the clean training texts)"
            )
        loaded = load_model(spec, train_texts=list(train_texts), cache_dir=cache_dir, seed=seed,
                            **preset_args)  # fmt: skip
        return Seq2SeqInfiller(loaded.model.eval(), loaded.tokenizer)
    config = AutoConfig.from_pretrained(spec)
    if getattr(config, "is_encoder_decoder", False):
        loaded = load_model(spec, task="seq2seq")
        return Seq2SeqInfiller(loaded.model.eval(), loaded.tokenizer)
    model = AutoModelForMaskedLM.from_pretrained(spec).eval()
    tokenizer = AutoTokenizer.from_pretrained(spec)
    if tokenizer.mask_token is None:
        raise ValueError(f"{spec}: the tokenizer has no mask token; not a masked LM")
    return MaskedLMInfiller(model, tokenizer)
