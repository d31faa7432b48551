"""Collation: -100 label padding, decoder inputs and causal shifting against transformers' own."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_train_support import synthetic_texts, tiny_bart, tiny_llama, tiny_tokenizer

from dece.data import Example
from dece.training.collate import (
    IGNORE_INDEX,
    Collator,
    encode_example,
    encode_examples,
    shift_left,
    shift_right,
)

EXAMPLES = [
    Example("a", "select all users", "def f ( ) :\n\t return 1"),
    Example("b", "x", "y"),
    Example("c", "delete the row where id is $id$ and name is $name$", "pass"),
]


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer(synthetic_texts(16) + [ex.source + ex.target for ex in EXAMPLES])


def test_seq2seq_labels_padded_with_ignore_index_and_decoder_inputs_match_bart(tok):
    feats = encode_examples(
        tok, EXAMPLES, task="seq2seq", max_source_length=64, max_target_length=64
    )
    batch = Collator("seq2seq", pad_token_id=0, decoder_start_token_id=2)(feats)
    for i, f in enumerate(feats):
        n = len(f["labels"])
        assert batch["labels"][i, :n].tolist() == f["labels"]
        assert (batch["labels"][i, n:] == IGNORE_INDEX).all()
        assert batch["attention_mask"][i].sum() == len(f["input_ids"])
    # Oracle: BART's own shift (labels -> decoder_input_ids).
    model = tiny_bart(len(tok))
    expected = model.prepare_decoder_input_ids_from_labels(labels=batch["labels"])
    assert torch.equal(batch["decoder_input_ids"], expected)


def test_truncation_respects_max_lengths(tok):
    feats = encode_examples(tok, EXAMPLES, task="seq2seq", max_source_length=5, max_target_length=4)
    assert max(len(f["input_ids"]) for f in feats) == 5
    assert max(len(f["labels"]) for f in feats) == 4
    feats = encode_examples(tok, EXAMPLES, task="causal", max_source_length=5, max_target_length=4)
    for f in feats:
        assert sum(1 for x in f["labels"] if x != IGNORE_INDEX) <= 4


def test_causal_prompt_masked_and_shifted_loss_equals_transformers(tok):
    feats = encode_examples(
        tok, EXAMPLES, task="causal", max_source_length=64, max_target_length=64
    )
    for ex, f in zip(EXAMPLES, feats, strict=True):
        prompt_len = sum(1 for x in f["labels"] if x == IGNORE_INDEX)
        prompt = tok(ex.source)["input_ids"]
        assert prompt_len == len(prompt)  # "<s> source </s>" is the prompt
        target = f["input_ids"][prompt_len:]
        assert f["labels"][prompt_len:] == target and target[-1] == tok.eos_token_id
        assert tok.decode(target, skip_special_tokens=True) == ex.target
    batch = Collator("causal", pad_token_id=0)(feats)
    assert torch.equal(batch["shift_labels"][:, :-1], batch["labels"][:, 1:])
    assert (batch["shift_labels"][:, -1] == IGNORE_INDEX).all()
    # Oracle: transformers' causal-LM loss shifts internally; ours must give the same value.
    model = tiny_llama(len(tok)).eval()
    with torch.no_grad():
        hf = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   labels=batch["labels"]).loss  # fmt: skip
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    ours = F.cross_entropy(logits.flatten(0, 1), batch["shift_labels"].flatten(), ignore_index=-100)
    torch.testing.assert_close(ours, hf)


def test_shift_helpers_on_a_golden_example():
    labels = torch.tensor([[5, 6, 7, -100], [8, -100, -100, -100]])
    assert shift_right(labels, 2, 0).tolist() == [[2, 5, 6, 7], [2, 8, 0, 0]]
    assert shift_left(labels).tolist() == [[6, 7, -100, -100], [-100, -100, -100, -100]]


def test_classification_labels_and_errors(tok):
    rows = [Example("a", "x", "", label="pos"), Example("b", "y", "", label="neg")]
    feats = encode_examples(tok, rows, task="classification", max_source_length=8,
                            max_target_length=8, label2id={"neg": 0, "pos": 1})  # fmt: skip
    assert Collator("classification", pad_token_id=0)(feats)["labels"].tolist() == [1, 0]
    with pytest.raises(ValueError, match="label 'pos'"):
        encode_example(tok, rows[0], task="classification", max_source_length=8,
                       max_target_length=8, label2id={"neg": 0})  # fmt: skip
    with pytest.raises(ValueError, match="task"):
        Collator("translation", pad_token_id=0)
    with pytest.raises(ValueError, match="decoder_start_token_id"):
        Collator("seq2seq", pad_token_id=0)
