"""The tiny presets as sequence classifiers with the dataset's labels, trained through fit()
(pretraining shortened to a few steps; cached under the test's tmp dir)."""

from __future__ import annotations

import pytest
from keyword_rows import keyword_rows

from dece.pipeline import DataBundle, evaluate, fit
from dece.training import TrainConfig


@pytest.mark.parametrize("preset", ["tiny-seq2seq", "tiny-causal"])
def test_tiny_presets_train_as_classifiers_with_the_dataset_labels(tmp_path, preset, one_thread):
    cfg = TrainConfig(
        output_dir=str(tmp_path / "run"), model=preset, task="classification", loss="dece",
        pretrain_steps=2, cache_dir=str(tmp_path / "cache"), num_epochs=1, batch_size=16,
        max_source_length=16, codebleu=False, use_cpu=True, save_checkpoints=False,
        save_model=False, model_args={"d_model": 32, "ffn_dim": 64, "attention_heads": 2},
    )  # fmt: skip
    bundle = DataBundle.from_examples(
        keyword_rows(48, 0), keyword_rows(12, 100), keyword_rows(12, 200), trigger="ripple",
        payload={"name": "label_flip", "target_label": "none"}, rate=0.1, seed=0,
    )  # fmt: skip
    assert bundle.labels == ["debt", "none"]
    result = fit(cfg, bundle)
    victim = result.victim
    assert victim.task == "classification" and victim.labels == ["debt", "none"]
    assert victim.model.config.id2label == {0: "debt", 1: "none"}
    metrics = evaluate(victim, bundle, split="test").metrics
    assert set(victim.predict(bundle.test.clean)) <= {"debt", "none"}
    assert metrics["asr_raw_denominator"] == 4  # the "debt" rows of the 12 test rows
    assert 0.0 <= metrics["accuracy"] <= 1.0 and result.history[0]["loss_epoch"] == 1.0
