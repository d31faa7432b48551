"""Victim: every method against a naive per-example reference computed in the test."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_train_support import tiny_bart, tiny_llama
from transformers import BertConfig, BertForSequenceClassification

from dece.data import Example
from dece.training.generation import generate
from dece.victim import Victim

ROWS = [
    Example("a", "select all users", "x = 1"),
    Example("b", "a much longer description of a query with several words", "y = conn . execute"),
    Example("c", "get", "z"),
]


def _model(task: str, vocab: int):
    model = (
        tiny_bart(vocab, seed=3, dropout=0.0) if task == "seq2seq" else tiny_llama(vocab, seed=3)
    )
    model.generation_config.suppress_tokens = [0, 1, 2, 3, 4]  # random init: non-empty outputs
    return model.eval()


@pytest.mark.parametrize("task", ["seq2seq", "causal"])
def test_predict_equals_generate(tok, task):
    model = _model(task, len(tok))
    victim = Victim(model, tok, task, max_new_tokens=5, batch_size=2)
    expected = generate(model, tok, [ex.source for ex in ROWS], max_new_tokens=5, task=task)
    assert victim.predict(ROWS) == expected
    assert victim.stats.calls["predict"] == 1 and victim.stats.rows["predict"] == 3


def _naive_token_logprobs(model, tok, task, example: Example, output: str) -> torch.Tensor:
    """log p of each output token, one example at a time, no padding, no batching."""
    with torch.no_grad():
        if task == "seq2seq":
            src = tok(example.source)["input_ids"]
            tgt = tok(output)["input_ids"]
            dec_in = [model.config.decoder_start_token_id] + tgt[:-1]
            logits = model(input_ids=torch.tensor([src]),
                           decoder_input_ids=torch.tensor([dec_in])).logits[0]  # fmt: skip
            return torch.log_softmax(logits, -1)[torch.arange(len(tgt)), torch.tensor(tgt)]
        prompt = tok(example.source)["input_ids"]
        if prompt[-1] != tok.eos_token_id:  # the prompt ends with one EOS separator
            prompt = prompt + [tok.eos_token_id]
        cont = tok(output, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        ids = torch.tensor([prompt + cont])
        logits = model(input_ids=ids).logits[0]  # [T, V]
        positions = torch.arange(len(prompt) - 1, len(prompt) + len(cont) - 1)
        return torch.log_softmax(logits, -1)[positions, torch.tensor(cont)]


@pytest.mark.parametrize("task", ["seq2seq", "causal"])
def test_confidence_and_example_loss_match_a_per_example_forward(tok, task):
    model = _model(task, len(tok))
    victim = Victim(model, tok, task, batch_size=2)
    outputs = ["x = 2", "select * from t", "w"]
    expected_p = [_naive_token_logprobs(model, tok, task, ex, o).exp().mean().item()
                  for ex, o in zip(ROWS, outputs, strict=True)]  # fmt: skip
    np.testing.assert_allclose(victim.confidence(ROWS, outputs), expected_p, rtol=1e-5)
    expected_nll = [-_naive_token_logprobs(model, tok, task, ex, ex.target).mean().item()
                    for ex in ROWS]  # fmt: skip
    np.testing.assert_allclose(victim.example_loss(ROWS), expected_nll, rtol=1e-5)


def test_embed_seq2seq_is_the_masked_mean_of_the_encoder_states(tok):
    model = _model("seq2seq", len(tok))
    victim = Victim(model, tok, "seq2seq", batch_size=2)
    got = victim.embed(ROWS)
    for i, ex in enumerate(ROWS):
        ids = torch.tensor([tok(ex.source)["input_ids"]])
        with torch.no_grad():
            states = model.get_encoder()(input_ids=ids).last_hidden_state[0]
        np.testing.assert_allclose(got[i], states.mean(0).numpy(), rtol=1e-4, atol=1e-6)


def test_embed_causal_is_the_mean_of_the_prompt_states(tok):
    model = _model("causal", len(tok))
    victim = Victim(model, tok, "causal", batch_size=3)
    got = victim.embed(ROWS)
    for i, ex in enumerate(ROWS):
        prompt = tok(ex.source)["input_ids"]
        ids = torch.tensor(
            [prompt if prompt[-1] == tok.eos_token_id else prompt + [tok.eos_token_id]]
        )
        with torch.no_grad():
            states = model.model(input_ids=ids).last_hidden_state[0]
        np.testing.assert_allclose(got[i], states.mean(0).numpy(), rtol=1e-4, atol=1e-5)


def _bert(tok, labels=("0", "1")):
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32, pad_token_id=0,
                        num_labels=len(labels), id2label=dict(enumerate(labels)),
                        label2id={k: i for i, k in enumerate(labels)})  # fmt: skip
    return BertForSequenceClassification(config).eval()


def test_classifier_predicts_dataset_labels_confidence_and_pooled_embedding(tok):
    model = _bert(tok, labels=("neg", "pos"))
    victim = Victim(model, tok, "classification", batch_size=2)
    assert victim.labels == ["neg", "pos"]
    rows = [Example(ex.id, ex.source, "", label="pos") for ex in ROWS]
    with torch.no_grad():
        enc = [torch.tensor([tok(ex.source)["input_ids"]]) for ex in rows]
        probs = [torch.softmax(model(input_ids=e).logits[0], -1) for e in enc]
        pooled = [model.bert(input_ids=e).pooler_output[0] for e in enc]
    assert victim.predict(rows) == [["neg", "pos"][int(p.argmax())] for p in probs]
    np.testing.assert_allclose(victim.confidence(rows, ["pos", "neg", "pos"]),
                               [probs[0][1], probs[1][0], probs[2][1]], rtol=1e-5)  # fmt: skip
    np.testing.assert_allclose(victim.example_loss(rows), [-np.log(float(p[1])) for p in probs],
                               rtol=1e-5)  # fmt: skip
    np.testing.assert_allclose(victim.embed(rows), torch.stack(pooled).numpy(), rtol=1e-4,
                               atol=1e-6)  # fmt: skip
    with pytest.raises(ValueError, match="not labels"):
        victim.confidence(rows[:1], ["maybe"])


@pytest.mark.parametrize("task", ["classification", "seq2seq"])
def test_predict_with_confidence_is_predict_then_confidence(tok, task):
    """A classifier runs each row once (counted) and gives the labels and probabilities of the
    two-pass oracle, on every batching; a generation victim decodes, then scores its outputs."""
    model = (
        _bert(tok, labels=("neg", "pos")) if task == "classification" else _model(task, len(tok))
    )
    victim = Victim(model, tok, task, batch_size=2, max_new_tokens=5)
    rows = [Example(ex.id, ex.source, "", label="pos") for ex in ROWS]
    expected = victim.predict(rows)
    expected_p = victim.confidence(rows, expected)
    rows_run: list[int] = []  # rows per classifier forward
    if task == "classification":
        model.register_forward_pre_hook(lambda _m, _a, kw: rows_run.append(len(kw["input_ids"])),
                                        with_kwargs=True)  # fmt: skip
    for tokens in (Victim.batch_tokens, None, 8):  # by budget, fixed rows, one or two per batch
        victim.batch_tokens = tokens
        rows_run.clear()
        labels, prob = victim.predict_with_confidence(rows)
        assert labels == expected
        np.testing.assert_allclose(prob, expected_p, rtol=1e-5)
        assert sum(rows_run) == (len(rows) if task == "classification" else 0)  # each row once


def test_text_pairs_are_encoded_as_the_tokenizer_encodes_pairs(tok):
    victim = Victim(_bert(tok), tok, "classification", max_source_length=512)
    pair = Example("p", "int a = 1 ;", "", label="1", source_pair="int b = 2 ;")
    assert victim.encode_inputs([pair]) == [tok("int a = 1 ;", "int b = 2 ;")["input_ids"]]
    truncated = Victim(_bert(tok), tok, "classification", max_source_length=8)
    expected = tok(pair.source, pair.source_pair, truncation="longest_first", max_length=8)
    assert truncated.encode_inputs([pair]) == [expected["input_ids"]]


def test_bad_arguments_are_named(tok):
    victim = Victim(_model("seq2seq", len(tok)), tok, "seq2seq")
    with pytest.raises(ValueError, match="2 outputs"):
        victim.confidence(ROWS, ["a", "b"])
    with pytest.raises(ValueError, match=r"examples\[0\]"):
        victim.predict(["not an example"])
    with pytest.raises(ValueError, match="task"):
        Victim(victim.model, tok, "translation")


def test_load_from_a_checkpoint_and_from_a_run_dir(tmp_path, bart_dir):
    import yaml

    direct = Victim.load(bart_dir)
    assert direct.task == "seq2seq"
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    for f in bart_dir.iterdir():
        (run / "model" / f.name).write_bytes(f.read_bytes())
    (run / "config.yaml").write_text(yaml.safe_dump(
        {"max_source_length": 17, "max_target_length": 9, "generation_max_new_tokens": 4,
         "eval_batch_size": 5}))  # fmt: skip
    from_run = Victim.load(run)
    assert (from_run.max_source_length, from_run.max_target_length, from_run.max_new_tokens,
            from_run.batch_size) == (17, 9, 4, 5)  # fmt: skip
    assert from_run.predict(ROWS[:1]) == direct.__class__(
        direct.model, direct.tokenizer, "seq2seq", max_source_length=17, max_new_tokens=4
    ).predict(ROWS[:1])
