"""CodeT5 (a T5 encoder-decoder) as a sequence classifier through the same code path as any
Hugging Face checkpoint (issue 10: ``Salesforce/codet5-base``): a small T5 built from a config and
saved by the test stands in for the download. By default transformers'
``T5ForSequenceClassification`` reads the decoder's state at the last ``</s>`` (the head of CodeT5's
own defect-detection model); ``encoder_only`` classifies from the encoder alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from keyword_rows import keyword_rows
from transformers import T5Config, T5ForConditionalGeneration, T5ForSequenceClassification

from dece.pipeline import DataBundle, evaluate, fit
from dece.training import TrainConfig
from dece.training.encoder_classifier import T5EncoderForSequenceClassification, masked_mean
from dece.training.models import load_model
from dece.training.tokenizer import train_bpe_tokenizer
from dece.victim import Victim


@pytest.fixture(scope="module")
def codet5_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("codet5")
    tok = train_bpe_tokenizer([e.source for e in keyword_rows(60, 0)] * 4, vocab_size=300)
    config = T5Config(
        vocab_size=len(tok), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=1,
        num_heads=4, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
        decoder_start_token_id=tok.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    T5ForConditionalGeneration(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.mark.parametrize(
    ("model_args", "model_cls"),
    [
        ({}, T5ForSequenceClassification),
        ({"encoder_only": True}, T5EncoderForSequenceClassification),
    ],
)
def test_t5_checkpoint_trains_as_a_classifier_with_dece(
    tmp_path, codet5_dir, model_args, model_cls, one_thread
):
    cfg = TrainConfig(
        output_dir=str(tmp_path / "run"), model=str(codet5_dir), task="classification",
        model_args=model_args, loss="dece", num_epochs=8, batch_size=8, learning_rate=3e-3,
        max_source_length=16, codebleu=False, use_cpu=True, save_checkpoints=False,
        save_model=True,
    )  # fmt: skip
    bundle = DataBundle.from_examples(
        keyword_rows(96, 0), keyword_rows(24, 200), keyword_rows(24, 300)
    )
    victim = fit(cfg, bundle).victim
    assert type(victim.model) is model_cls
    assert victim.model.config.id2label == {0: "debt", 1: "none"}
    if model_args:  # the encoder alone: no decoder weights
        assert not any(n.startswith("decoder") for n, _ in victim.model.named_parameters())
    # oracle: the planted rule ("todo" <=> debt) is learnt
    assert evaluate(victim, bundle, split="test").metrics["accuracy"] >= 0.9
    # the saved model reloads as the same classifier (its class from config.architectures)
    again = Victim.load(tmp_path / "run" / "model")
    assert type(again.model) is model_cls
    assert again.task == "classification" and again.labels == ["debt", "none"]
    assert again.predict(bundle.test.clean) == victim.predict(bundle.test.clean)


def test_t5_classifier_embedding_is_the_heads_input(codet5_dir):
    victim = Victim.load(codet5_dir, task="classification", labels=["debt", "none"])
    rows = keyword_rows(5, 0)
    got = victim.embed(rows)  # [5, d_model]
    model = victim.model.eval()
    enc = victim.tokenizer([e.source for e in rows], return_tensors="pt", padding=True)
    with torch.inference_mode():
        out = model.transformer(input_ids=enc.input_ids, attention_mask=enc.attention_mask,
                                decoder_input_ids=model._shift_right(enc.input_ids))  # fmt: skip
        hidden = out.last_hidden_state  # [5, S, d_model]
        eos = enc.input_ids.eq(model.config.eos_token_id)  # [5, S]
        last = (eos * torch.arange(eos.shape[1])).argmax(1)  # the last </s> of each row
        want = hidden[torch.arange(len(rows)), last]
    assert got.shape == (5, 32)
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------- the encoder alone
def test_encoder_only_weights_and_embedding_come_from_the_checkpoints_encoder(codet5_dir):
    full = T5ForConditionalGeneration.from_pretrained(codet5_dir).eval()
    loaded = load_model(str(codet5_dir), task="classification", encoder_only=True)
    victim = Victim(loaded.model, loaded.tokenizer, loaded.task)
    model = victim.model.eval()
    state = full.state_dict()
    for name, value in model.state_dict().items():
        if not name.startswith("classifier."):
            torch.testing.assert_close(value, state[name], msg=name)
    rows = keyword_rows(5, 0)
    enc = victim.tokenizer([e.source for e in rows], return_tensors="pt", padding=True)
    with torch.inference_mode():
        hidden = full.encoder(input_ids=enc.input_ids, attention_mask=enc.attention_mask)[0]
    m = enc.attention_mask[..., None].float()  # [5, S, 1]
    want = (hidden * m).sum(1) / m.sum(1)  # the masked mean, computed here
    np.testing.assert_allclose(victim.embed(rows), want.numpy(), rtol=1e-5, atol=1e-6)


def test_encoder_only_is_refused_for_a_non_t5_checkpoint_and_for_generation(codet5_dir, bart_dir):
    with pytest.raises(ValueError, match="model_type 'bart'"):
        load_model(str(bart_dir), task="classification", encoder_only=True)
    with pytest.raises(ValueError, match="task='seq2seq'"):
        load_model(str(codet5_dir), task="seq2seq", encoder_only=True)


def test_masked_mean_ignores_padding():
    hidden = torch.arange(12.0).reshape(1, 4, 3)  # [B=1, S=4, H=3]
    mask = torch.tensor([[1, 1, 0, 0]])
    torch.testing.assert_close(masked_mean(hidden, mask), torch.tensor([[1.5, 2.5, 3.5]]))
