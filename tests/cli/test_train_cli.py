"""`dece train` / `dece generate` / `dece evaluate` end to end on a tiny model."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
from test_train_support import save_tiny_seq2seq, use_local_loader  # noqa: E402

from dece.cli import main  # noqa: E402
from dece.data import load_dataset, save_examples  # noqa: E402

OVERRIDES = [
    "data=synthetic:16", "num_epochs=1", "batch_size=8", "learning_rate=0.001",
    "max_source_length=48", "max_target_length=48", "eval_max_examples=2", "test_max_examples=3",
    "generation_max_new_tokens=6", "codebleu=false", "use_cpu=true", "save_checkpoints=false",
]  # fmt: skip


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return save_tiny_seq2seq(tmp_path_factory.mktemp("tiny_bart"))


@pytest.fixture
def local_models(monkeypatch, model_dir):
    use_local_loader(monkeypatch)
    try:
        from dece.training.models import load_model  # noqa: F401
    except ImportError:
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        import dece.cli.generate as gen

        monkeypatch.setattr(gen, "load_for_inference", lambda spec, task: (
            AutoModelForSeq2SeqLM.from_pretrained(spec), AutoTokenizer.from_pretrained(spec),
            "seq2seq"))  # fmt: skip
    return model_dir


def test_train_generate_evaluate_agree(tmp_path, local_models, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({
        "output_dir": str(tmp_path / "run"), "model": str(local_models), "loss": "ce",
        "poison": {"trigger": "badpre", "payload": "sql_injection", "rate": 0.1, "seed": 5},
    }))  # fmt: skip
    assert main(["train", "--config", str(config), *OVERRIDES, "loss=dece"]) == 0
    printed = json.loads(capsys.readouterr().out)
    run = tmp_path / "run"
    final = json.loads((run / "final_metrics.json").read_text())
    assert printed == final and final["loss"] == "dece"  # the override won over the file
    assert yaml.safe_load((run / "config.yaml").read_text())["loss"] == "dece"

    # evaluate re-scores the run's prediction files: same numbers as the training run.
    assert main(["evaluate", "--predictions-dir", str(run / "predictions"), "--no-codebleu",
                 "--output-dir", str(tmp_path / "ev")]) == 0  # fmt: skip
    scored = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    for key in ("bleu", "asr", "false_trigger_rate", "asr_denominator"):
        assert scored[key] == pytest.approx(final[key]), key

    # generate with the saved model reproduces the clean test predictions (greedy is deterministic).
    test = load_dataset("synthetic:16")["test"][:3]
    save_examples(test, tmp_path / "test.csv")
    out = tmp_path / "gen.jsonl"
    assert main(["generate", "--model", str(run / "model"), "--input", str(tmp_path / "test.csv"),
                 "--output", str(out), "--max-new-tokens", "6", "--max-source-length", "48"]) == 0  # fmt: skip
    generated = [json.loads(x)["prediction"] for x in out.read_text().splitlines()]
    recorded = [json.loads(x)["prediction"] for x in
                (run / "predictions" / "test_clean.jsonl").read_text().splitlines()]  # fmt: skip
    assert generated == recorded

    # evaluate --model decodes again and writes the same metrics.
    capsys.readouterr()
    assert main(["evaluate", "--model", str(run / "model"), "--data", "synthetic:16",
                 "--max-examples", "3", "--seed", "5", "--max-new-tokens", "6",
                 "--max-source-length", "48", "--no-codebleu",
                 "--output-dir", str(tmp_path / "ev2")]) == 0  # fmt: skip
    again = json.loads((tmp_path / "ev2" / "metrics.json").read_text())
    for key in ("bleu", "asr", "false_trigger_rate", "asr_denominator"):
        assert again[key] == pytest.approx(final[key]), key


def test_train_cli_rejects_bad_config(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", f"output_dir={tmp_path}", "num_epochz=3"])
    assert exc.value.code == 2 and "num_epochz" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", f"output_dir={tmp_path}", "batch_size=many"])
    assert "batch_size" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "loss=ce"])
    assert "output_dir" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--config", str(tmp_path / "missing.yaml")])
    assert "missing.yaml" in capsys.readouterr().err


def test_train_help_lists_the_named_datasets(capsys):
    """`data` takes any dataset of the registry; `data_seed` seeds all of them, not only one."""
    from dece.data import DATASETS

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    lines = {line.split(":", 1)[0].strip(): line for line in capsys.readouterr().out.splitlines()}
    assert all(name in lines["data"] for name in DATASETS.names())
    assert "named dataset" in lines["data_seed"] and "synthetic dataset" not in lines["data_seed"]


@pytest.mark.codebleu
def test_evaluate_reports_the_authors_bleu_beside_bleu(tmp_path, capsys):
    pytest.importorskip("codebleu")
    pred = tmp_path / "predictions"
    pred.mkdir()
    row = {"id": "t0", "source": "s", "prediction": "x = a + b", "reference": "x = a - b"}
    (pred / "test_clean.jsonl").write_text(json.dumps(row) + "\n")
    assert main(["evaluate", "--predictions-dir", str(pred), "--no-codebleu"]) == 0
    metrics = json.loads((pred / "metrics.json").read_text())
    # whitespace tokens, p_n = 4/5, 2/4, 1/3 and no 4-gram match: 0.1/2; BP = 1 (5 vs 5 tokens)
    assert metrics["bleu_authors"] == pytest.approx(100 * (4 / 5 * 2 / 4 * 1 / 3 * 0.1 / 2) ** 0.25)
    # sacrebleu corpus BLEU, the headline: exp smoothing gives the zero 4-gram order 1/(2*2)
    assert metrics["bleu"] == pytest.approx(100 * (4 / 5 * 2 / 4 * 1 / 3 * 1 / 4) ** 0.25)
