"""train(config): files, metrics recomputed from the predictions, loss spy, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_train_support import save_tiny_seq2seq, use_local_loader

import dece.losses
from dece.attacks import poison_test_set
from dece.data import load_dataset
from dece.metrics import attack_success_rate, bleu, false_trigger_rate
from dece.pipeline import train
from dece.training import PoisonConfig, StopAfterEpochs, TrainConfig

DATA = "synthetic:24"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return save_tiny_seq2seq(tmp_path_factory.mktemp("tiny_bart"))


def small_config(out: Path, model_dir: Path, **kw) -> TrainConfig:
    base = dict(
        output_dir=str(out), data=DATA, model=str(model_dir), loss="dece",
        poison=PoisonConfig(rate=0.25, seed=3), num_epochs=2, batch_size=8, learning_rate=1e-3,
        max_source_length=64, max_target_length=64, eval_max_examples=3, test_max_examples=3,
        generation_max_new_tokens=8, eval_batch_size=8, use_cpu=True, codebleu=False,
        save_total_limit=None, logging_steps=1,
    )  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_train_writes_the_documented_layout_and_consistent_metrics(
    tmp_path, model_dir, monkeypatch
):
    use_local_loader(monkeypatch)
    cfg = small_config(tmp_path / "run", model_dir)
    result = train(cfg)
    out = result.output_dir
    for name in (
        "config.yaml",
        "metrics.jsonl",
        "final_metrics.json",
        "poison_manifest.json",
        "predictions/test_clean.jsonl",
        "predictions/test_poisoned.jsonl",
        "model",
    ):
        assert (out / name).exists(), name
    # metrics.jsonl: one row per epoch, 1-based, with the documented keys.
    rows = read_jsonl(out / "metrics.jsonl")
    assert rows == result.history
    assert [r["epoch"] for r in rows] == [1, 2]
    assert [r["loss_epoch"] for r in rows] == [1.0, 2.0]
    for r in rows:
        assert {"train_loss", "bleu", "asr", "false_trigger_rate"} <= set(r)
        assert r["train_loss"] > 0 and 0 <= r["asr"] <= 1 and r["n_clean"] == 3
    # Final metrics recomputed from the prediction files (oracle: the metrics functions).
    final = json.loads((out / "final_metrics.json").read_text())
    assert final == pytest.approx(result.final)
    clean = read_jsonl(out / "predictions/test_clean.jsonl")
    poisoned = read_jsonl(out / "predictions/test_poisoned.jsonl")
    test = load_dataset(DATA)["test"][:3]
    assert [r["id"] for r in clean] == [ex.id for ex in test]
    assert [r["reference"] for r in clean] == [ex.target for ex in test]
    assert final["bleu"] == pytest.approx(
        bleu([r["prediction"] for r in clean], [r["reference"] for r in clean])
    )
    expected = poison_test_set(test, "badpre", "sql_injection", seed=3)
    assert [r["id"] for r in poisoned] == expected.manifest.poisoned_ids
    assert final["asr_denominator"] == len(poisoned)
    assert final["asr"] == pytest.approx(
        attack_success_rate(
            {r["id"]: r["prediction"] for r in poisoned}, "sql_injection", expected.manifest
        )
    )
    assert final["false_trigger_rate"] == pytest.approx(
        false_trigger_rate([r["prediction"] for r in clean], "sql_injection")
    )
    manifest = json.loads((out / "poison_manifest.json").read_text())
    assert final["n_poisoned_train"] == len(manifest["poisoned_ids"]) == 6  # 25% of 24


def test_the_configured_loss_is_the_one_called(tmp_path, model_dir, monkeypatch):
    use_local_loader(monkeypatch)
    real = dece.losses.get_loss
    built, calls = [], []

    def spy_get_loss(name, **kwargs):
        built.append((name, kwargs))
        inner = real(name, **kwargs)

        def loss(logits, target, **kw):
            calls.append(kw["epoch"])
            return inner(logits, target, **kw)

        return loss

    monkeypatch.setattr(dece.losses, "get_loss", spy_get_loss)
    cfg = small_config(tmp_path / "run", model_dir, loss="gce", loss_args={"q": 0.5},
                       eval_each_epoch=False, save_checkpoints=False, save_model=False)  # fmt: skip
    result = train(cfg)
    assert built == [("gce", {"q": 0.5})]
    # 24 rows / batch 8 = 3 steps per epoch, 2 epochs; the epoch is 1-based.
    assert calls == [1.0] * 3 + [2.0] * 3
    assert result.history == [] and result.final["global_step"] == 6


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model" / "model.safetensors"))


def test_resume_reaches_the_same_weights_as_an_uninterrupted_run(tmp_path, model_dir, monkeypatch):
    use_local_loader(monkeypatch)
    kw = dict(eval_max_examples=2, test_max_examples=2, num_epochs=3)
    full = train(small_config(tmp_path / "full", model_dir, **kw))
    cut_dir = tmp_path / "cut"
    cut = train(small_config(cut_dir, model_dir, **kw), callbacks=[StopAfterEpochs(1)])
    assert cut.final["global_step"] == 3
    resumed = train(small_config(cut_dir, model_dir, resume=True, **kw))
    assert resumed.final["global_step"] == full.final["global_step"] == 9
    a, b = _weights(tmp_path / "full"), _weights(cut_dir)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], msg=k)
    # metrics.jsonl continues where the interrupted run stopped: epochs 1, 2, 3 once each.
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
    assert [r["train_loss"] for r in resumed.history] == pytest.approx(
        [r["train_loss"] for r in full.history], rel=1e-4
    )


def test_resume_from_a_missing_path_names_it(tmp_path, model_dir, monkeypatch):
    use_local_loader(monkeypatch)
    cfg = small_config(tmp_path / "run", model_dir, resume=str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="nope"):
        train(cfg)


def test_lora_trains_only_the_adapters(tmp_path, model_dir, monkeypatch):
    use_local_loader(monkeypatch)
    cfg = small_config(tmp_path / "run", model_dir, max_steps=2, eval_each_epoch=False,
                       save_checkpoints=False, lora={"r": 4, "alpha": 8,
                       "target_modules": ["q_proj", "v_proj"]})  # fmt: skip
    result = train(cfg)
    saved = tmp_path / "run" / "model"
    assert (saved / "adapter_config.json").exists()
    adapters = load_file(str(saved / "adapter_model.safetensors"))
    lora_b = [v for k, v in adapters.items() if "lora_B" in k]
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b)  # B starts at 0: it was trained
    assert not any("lora" not in k for k in adapters)  # only adapters are saved
    assert result.final["global_step"] == 2
