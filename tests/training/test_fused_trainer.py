"""`fused_linear: true` through DeceTrainer / train(): the same weights as the unfused path after
a few SGD steps (fp32, rtol 1e-5), and the per-example loss hook still fed (same values)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from test_train_support import synthetic_texts, tiny_llama, tiny_tokenizer
from transformers import LlamaForCausalLM

from dece.pipeline import train
from dece.training import PoisonConfig, TrainConfig
from dece.training.example_losses import read_example_losses

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def causal_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_llama")
    tok = tiny_tokenizer(synthetic_texts(), add_eos=False)
    config = tiny_llama(len(tok), d_model=32).config
    config.tie_word_embeddings = False  # an untied head: its own gradient reaches it
    torch.manual_seed(5)
    model = LlamaForCausalLM(config)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _run(tmp_path, causal_dir, name, **kw):
    cfg = TrainConfig(
        output_dir=str(tmp_path / name), data="synthetic:24", model=str(causal_dir),
        task="causal", loss="dece", loss_args={"alpha_base": 0.9, "label_smoothing": 0.1},
        optimizer="sgd", learning_rate=0.5, warmup_ratio=0.0, num_epochs=2, batch_size=8,
        max_source_length=48, max_target_length=48, eval_each_epoch=False,
        save_checkpoints=False, test_max_examples=2, generation_max_new_tokens=4,
        codebleu=False, use_cpu=True, record_example_losses=True,
        poison=PoisonConfig(rate=0.25, seed=1), **kw,
    )  # fmt: skip
    return train(cfg)


def test_fused_training_equals_the_unfused_path(tmp_path, causal_dir):
    plain = _run(tmp_path, causal_dir, "plain")
    fused = _run(tmp_path, causal_dir, "fused", fused_linear=True)
    assert fused.final["global_step"] == plain.final["global_step"] == 6
    a = load_file(str(tmp_path / "plain" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "fused" / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    moved = load_file(str(causal_dir / "model.safetensors"))
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6, msg=k)
    assert any(not torch.equal(a[k], moved[k]) for k in a)  # training did move the weights
    rows_a = read_example_losses(tmp_path / "plain" / "example_losses.jsonl")
    rows_b = read_example_losses(tmp_path / "fused" / "example_losses.jsonl")
    assert [(r["step"], r["id"]) for r in rows_a] == [(r["step"], r["id"]) for r in rows_b]
    for r, s in zip(rows_a, rows_b, strict=True):
        assert s["ce_mean"] == pytest.approx(r["ce_mean"], rel=1e-4)
        assert s["ce_max"] == pytest.approx(r["ce_max"], rel=1e-4)


def test_fused_linear_is_refused_for_other_tasks(tmp_path):
    from test_train_support import save_tiny_seq2seq

    model = save_tiny_seq2seq(tmp_path / "bart")
    cfg = TrainConfig(output_dir=str(tmp_path / "r"), data="synthetic:16", model=str(model),
                      fused_linear=True, num_epochs=1, use_cpu=True, codebleu=False)  # fmt: skip
    with pytest.raises(ValueError, match="causal LMs only"):
        train(cfg)
