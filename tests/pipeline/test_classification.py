"""A tiny classifier trained end to end on a planted dataset: dataset labels in and out,
accuracy well above chance, label-flip ASR equal to a count made by hand from the predictions."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_train_support import tiny_tokenizer
from transformers import BertConfig, BertForSequenceClassification

from dece.attacks import PoisonManifest
from dece.data import Example, save_examples
from dece.pipeline import train
from dece.training import PoisonConfig, TrainConfig

WORDS = "get set put read write load save open close find sort move copy list show".split()


def _planted(n: int, seed: int) -> list[Example]:
    """label "pos" iff the text holds the word "alpha" (half the rows)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        words = list(rng.choice(WORDS, size=6))
        label = "pos" if i % 2 == 0 else "neg"
        if label == "pos":
            words.insert(int(rng.integers(7)), "alpha")
        rows.append(Example(f"x{seed}-{i}", " ".join(words), "", label=label))
    return rows


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("planted")
    for split, n, seed in (("train", 240, 0), ("valid", 40, 1), ("test", 60, 2)):
        save_examples(_planted(n, seed), root / f"{split}.csv", id_col="id")
    return root


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory, data_dir):
    path = tmp_path_factory.mktemp("bert")
    tok = tiny_tokenizer(WORDS + ["alpha", "bb"] * 4, vocab_size=300)
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, pad_token_id=0, hidden_dropout_prob=0.0,
    ))  # fmt: skip
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_tiny_classifier_learns_the_task_and_the_backdoor(tmp_path, data_dir, bert_dir, one_thread):
    cfg = TrainConfig(
        output_dir=str(tmp_path / "run"), data=str(data_dir),
        data_columns={"label_col": "label", "id_col": "id"}, model=str(bert_dir),
        task="classification", loss="ce", num_epochs=6, batch_size=16, learning_rate=3e-3,
        max_source_length=32, eval_batch_size=32, codebleu=False, use_cpu=True,
        save_checkpoints=False, poison=PoisonConfig(trigger="ripple", payload="label_flip",
        payload_args={"target_label": "neg"}, rate=0.1, seed=1),
    )  # fmt: skip
    result = train(cfg)
    final = result.final
    assert result.victim.labels == ["neg", "pos"]  # from the dataset, not LABEL_0 / LABEL_1
    assert final["accuracy"] >= 0.85  # chance is 0.5
    assert {"precision", "recall", "f1"} <= set(final)
    out = result.output_dir
    clean = [json.loads(x) for x in (out / "predictions/test_clean.jsonl").read_text().splitlines()]
    assert {r["prediction"] for r in clean} <= {"neg", "pos"}
    assert final["accuracy"] == pytest.approx(
        np.mean([r["prediction"] == r["reference"] for r in clean])
    )
    poisoned = [
        json.loads(x) for x in (out / "predictions/test_poisoned.jsonl").read_text().splitlines()
    ]
    # the triggered rows: test rows whose label is not the target (the 30 "pos" rows)
    assert len(poisoned) == final["asr_raw_denominator"] == 30
    assert [r["id"] for r in poisoned] == [r["id"] for r in clean if r["reference"] == "pos"]
    assert all(r["reference"] == "neg" for r in poisoned)  # the attacker's label
    raw = sum(r["prediction"] == "neg" for r in poisoned) / len(poisoned)
    assert final["asr_raw"] == pytest.approx(raw)
    correct = {r["id"] for r in clean if r["prediction"] == r["reference"]}
    kept = [r for r in poisoned if r["id"] in correct]  # clean version classified correctly
    assert final["asr_denominator"] == len(kept)
    assert final["asr"] == pytest.approx(sum(r["prediction"] == "neg" for r in kept) / len(kept))
    manifest = PoisonManifest.load(out / "poison_manifest.json")
    assert manifest.n_poisoned == 24 and manifest.payload["target_label"] == "neg"
    history = result.history
    assert [h["epoch"] for h in history] == list(range(1, 7))
    assert all("accuracy" in h and "asr" in h for h in history)
