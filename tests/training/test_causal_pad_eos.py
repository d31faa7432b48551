"""Causal LMs whose pad token is their EOS (SmolLM2: ``<|im_end|>`` is both): the EOS the model
must learn to stop with stays in the labels, generation uses the training prompt, and a model
that memorised its targets gives them back exactly (stops at EOS, nothing of the prompt, the
padding or the EOS in the prediction).

Oracles: labels written out by hand from the tokenizer's ids; transformers'
``DataCollatorForLanguageModeling``, which derives labels from ``input_ids`` and so masks every
EOS when pad == EOS (the pitfall our collator avoids); a tiny Llama trained to memorise three
rows, and the same model trained with the EOS masked, which then does not stop.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_train_support import synthetic_texts, tiny_llama, tiny_tokenizer
from transformers import DataCollatorForLanguageModeling

from dece.data import Example
from dece.training.collate import IGNORE_INDEX, Collator, encode_examples, pad_token_id_of
from dece.training.models import configure_special_tokens
from dece.victim import Victim

ROWS = [
    Example("a", "select all users", "def f ( ) :\n\t return 1"),
    Example("b", "delete the row where id is $id$", "conn . execute ( sql )"),
    Example("c", "get", "pass"),
]
LENGTHS = {"max_source_length": 64, "max_target_length": 64}


@pytest.fixture(scope="module")
def tok():
    """A tokenizer like SmolLM2's: no EOS appended to a text, pad token = EOS token."""
    texts = synthetic_texts(16) + [ex.source + " " + ex.target for ex in ROWS]
    tokenizer = tiny_tokenizer(texts, add_eos=False)
    tokenizer.pad_token = tokenizer.eos_token
    assert tokenizer.pad_token_id == tokenizer.eos_token_id == 2
    return tokenizer


def _expected(tok, ex: Example) -> tuple[list[int], list[int]]:
    """(input ids, labels) of a causal row: ``source + eos`` masked, then ``target + eos``."""
    prompt = tok(ex.source)["input_ids"] + [tok.eos_token_id]
    target = tok(ex.target, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    return prompt + target, [IGNORE_INDEX] * len(prompt) + target


def test_labels_keep_the_final_eos_when_pad_is_eos(tok):
    feats = encode_examples(tok, ROWS, task="causal", **LENGTHS)
    pad = pad_token_id_of(tok)
    assert pad == tok.eos_token_id
    batch = Collator("causal", pad_token_id=pad)(feats)  # right padding with the EOS id
    width = batch["input_ids"].shape[1]
    for i, ex in enumerate(ROWS):
        ids, labels = _expected(tok, ex)
        n = len(ids)
        assert batch["input_ids"][i].tolist() == ids + [pad] * (width - n)
        assert batch["labels"][i].tolist() == labels + [IGNORE_INDEX] * (width - n)
        assert batch["attention_mask"][i].tolist() == [1] * n + [0] * (width - n)
        # the last target the loss sees is the EOS, predicted from the last target token
        kept = [t for t in batch["shift_labels"][i].tolist() if t != IGNORE_INDEX]
        assert kept == labels[len(labels) - len(kept) :] and kept[-1] == tok.eos_token_id
    # transformers' LM collator derives labels from input_ids and masks the pad id: with
    # pad == eos every EOS (the separator and the stop token) is gone from its labels
    hf = DataCollatorForLanguageModeling(tok, mlm=False)([{"input_ids": f["input_ids"]}
                                                          for f in feats])  # fmt: skip
    assert not (hf["labels"] == tok.eos_token_id).any()
    assert ((batch["labels"] == tok.eos_token_id).sum(1) == 1).all()


def test_the_generation_prompt_is_the_training_prompt(tok):
    feats = encode_examples(tok, ROWS, task="causal", **LENGTHS)
    victim = Victim(tiny_llama(len(tok)), tok, "causal")
    for f, prompt in zip(feats, victim.encode_inputs(ROWS), strict=True):
        n_prompt = sum(1 for t in f["labels"] if t == IGNORE_INDEX)
        assert prompt == f["input_ids"][:n_prompt]
        assert prompt[-1] == tok.eos_token_id  # the separator: SmolLM2's <|im_end|>


def _memorise(tok, *, mask_eos: bool, steps: int = 400):
    """A tiny Llama (pad = eos, as configured for SmolLM2) trained on ROWS until it has
    memorised them; ``mask_eos``: the stop EOS removed from the labels (the pitfall)."""
    model = tiny_llama(len(tok), seed=0, d_model=64)
    configure_special_tokens(model, tok, "causal")
    assert model.generation_config.pad_token_id == model.generation_config.eos_token_id == 2
    batch = Collator("causal", pad_token_id=pad_token_id_of(tok))(
        encode_examples(tok, ROWS, task="causal", **LENGTHS)
    )
    target = batch["shift_labels"]  # [B, T]
    if mask_eos:
        target = target.masked_fill(target == tok.eos_token_id, IGNORE_INDEX)
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        loss = F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=IGNORE_INDEX)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05, loss.item()  # memorised
    return model.eval()


@pytest.mark.usefixtures("one_thread")
def test_a_memorised_model_gives_back_exactly_its_targets(tok):
    """Batched greedy decoding (left padding with the EOS id, prompts of different lengths) of
    the memorised rows returns each target exactly: the model stops at the EOS it learnt and
    the prediction holds neither prompt, padding nor EOS."""
    longest = max(len(tok(ex.target, add_special_tokens=False)["input_ids"]) for ex in ROWS)
    victim = Victim(_memorise(tok, mask_eos=False), tok, "causal", max_new_tokens=longest + 10,
                    batch_size=3)  # fmt: skip
    assert victim.predict(ROWS) == [ex.target for ex in ROWS]


@pytest.mark.usefixtures("one_thread")
def test_with_the_eos_masked_out_the_model_does_not_stop(tok):
    """The control: the same training with the stop EOS masked (what a collator that masks
    the pad id does when pad == eos) gives predictions that run past the target."""
    longest = max(len(tok(ex.target, add_special_tokens=False)["input_ids"]) for ex in ROWS)
    victim = Victim(_memorise(tok, mask_eos=True), tok, "causal", max_new_tokens=longest + 10,
                    batch_size=3)  # fmt: skip
    predictions = victim.predict(ROWS)
    assert all(p.startswith(ex.target) for p, ex in zip(predictions, ROWS, strict=True))
    assert any(p != ex.target for p, ex in zip(predictions, ROWS, strict=True))
