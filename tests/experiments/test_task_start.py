"""The demo's starting point ``tiny-seq2seq-sql``: its builder, the shipped copy and its preset."""

import json

import pytest
import torch
from safetensors.torch import load_file

from dece.data import load_dataset
from dece.experiments.task_start import START_FILES, START_RECIPE, build_task_start, file_sha256
from dece.metrics import bleu
from dece.training.models import ASSETS_DIR, load_model
from dece.victim import Victim

SHIPPED = ASSETS_DIR / "tiny-seq2seq-sql"

TINY_RECIPE = {
    **START_RECIPE,
    "data": "synthetic:48",
    "model_args": {
        "steps": 2,
        "d_model": 32,
        "encoder_layers": 1,
        "decoder_layers": 1,
        "ffn_dim": 64,
        "attention_heads": 2,
    },  # fmt: skip
    "num_epochs": 1,
    "test_max_examples": 4,
    "generation_max_new_tokens": 8,
    "codebleu": False,
}


def test_build_writes_the_model_its_run_trained_and_an_honest_record(tmp_path, one_thread):
    record = build_task_start(tmp_path / "start", TINY_RECIPE, work_dir=tmp_path / "work")
    out = tmp_path / "start"
    assert sorted(p.name for p in out.iterdir()) == sorted([*START_FILES, "build.json"])
    assert json.loads((out / "build.json").read_text()) == record
    assert record["recipe"] == TINY_RECIPE
    assert record["sha256"]["model.safetensors"] == file_sha256(out / "model.safetensors")
    final = json.loads((tmp_path / "work" / "run" / "final_metrics.json").read_text())
    assert record["test"]["bleu"] == final["bleu"]
    # the directory loads as a model whose weights are the ones the run saved
    loaded = load_model(str(out), task="seq2seq")
    saved = load_file(tmp_path / "work" / "run" / "model" / "model.safetensors")
    state = loaded.model.state_dict()
    for name, tensor in saved.items():
        assert torch.equal(state[name], tensor), name


def test_the_shipped_start_is_the_one_its_record_describes():
    record = json.loads((SHIPPED / "build.json").read_text())
    assert record["recipe"] == START_RECIPE  # the code's recipe built the shipped weights
    assert record["sha256"]["model.safetensors"] == file_sha256(SHIPPED / "model.safetensors")
    assert all((SHIPPED / name).is_file() for name in START_FILES)


def test_the_shipped_start_knows_the_clean_task(one_thread):
    """Its recorded clean test BLEU is reproduced on the same rows (greedy decoding)."""
    record = json.loads((SHIPPED / "build.json").read_text())
    rows = load_dataset(START_RECIPE["data"], seed=START_RECIPE["data_seed"])["test"]
    rows = rows[: START_RECIPE["test_max_examples"]]
    victim = Victim.load(
        "tiny-seq2seq-sql", max_new_tokens=START_RECIPE["generation_max_new_tokens"]
    )
    score = bleu(victim.predict(rows), [ex.target for ex in rows])
    assert score == pytest.approx(record["test"]["bleu"], abs=1.0)
    assert score >= 70.0


def test_the_preset_takes_no_model_args_and_only_seq2seq():
    with pytest.raises(ValueError, match="takes no model_args"):
        load_model("tiny-seq2seq-sql", steps=5)
    with pytest.raises(ValueError, match="not available"):
        load_model("tiny-seq2seq-sql", task="classification")
