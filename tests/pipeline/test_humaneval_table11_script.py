"""benchmarks/humaneval_table11.py: measured on a tiny config-built causal model over 3
problems, a row recorded from a finished run, the paper's rows and their implied counts, and
the pending rows with their commands (never the committed results file: tmp paths only)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from test_train_support import synthetic_texts, tiny_llama, tiny_tokenizer

from dece.experiments.markdown import md_unpadded

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "humaneval_table11.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("humaneval_table11", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_causal_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tiny_causal")
    tok = tiny_tokenizer(synthetic_texts(16))
    tiny_llama(len(tok)).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_the_paper_counts_round_to_the_printed_percentages(script):
    for _, _, pass1, asr in script.PAPER:
        for value in (pass1, asr):
            if value is not None:
                k = round(value * 164 / 100)
                assert round(100 * k / 164, 2) == value


def test_a_tiny_model_over_three_problems(script, tiny_causal_dir, tmp_path, one_thread):
    results, out = tmp_path / "t11.json", tmp_path / "t11.md"
    argv = ["--victim", str(tiny_causal_dir), "--label", "tiny", "--model-name", "tiny-llama",
            "--max-problems", "3", "--max-new-tokens", "16", "--task", "causal",
            "--results", str(results), "--out", str(out),
            "--predictions-dir", str(tmp_path / "preds")]  # fmt: skip
    assert script.main(argv) == 0
    row = json.loads(results.read_text())["rows"]["tiny"]
    m = row["metrics"]
    assert (m["humaneval_problems"], m["humaneval_total"], m["humaneval_asr_total"]) == (3, 3, 3)
    assert m["humaneval_payload"] == "dead_code_python" and m["humaneval_trigger"] == "badpre"
    text = md_unpadded(out.read_text())
    passed, hits = m["humaneval_passed"], m["humaneval_asr_hits"]
    assert f"| tiny-llama | tiny | {100 * passed / 3:.2f} ({passed}/3) [" in text
    assert f"({hits}/3)" in text and "3 problems only" in text
    assert "| CodeGen-350M | poisoned | 18.29 | 30/164 | 98.78 | 162/164 |" in text
    assert text.count(script.PENDING) == 2 * 3  # untouched, CE, DeCE: two columns each
    assert "--victim smollm2-135m --label untouched" in text
    assert (tmp_path / "preds" / "predictions" / "humaneval_triggered.jsonl").is_file()


def test_a_row_recorded_from_a_finished_run(script, tmp_path):
    run = tmp_path / "cell"
    run.mkdir()
    final = {"humaneval_pass_at_1": 22 / 164, "humaneval_passed": 22, "humaneval_total": 164,
             "humaneval_pass_at_1_ci_low": 0.09, "humaneval_pass_at_1_ci_high": 0.19,
             "humaneval_problems": 164, "humaneval_asr": 0.5, "humaneval_asr_hits": 82,
             "humaneval_asr_total": 164, "humaneval_false_trigger_rate": 0.0, "bleu": 40.0}  # fmt: skip
    (run / "result.json").write_text(json.dumps({"hash": "cell", "config": {}, "final": final}))
    results, out = tmp_path / "t11.json", tmp_path / "t11.md"
    argv = ["--run", str(run), "--label", "CE", "--results", str(results), "--out", str(out)]
    assert script.main(argv) == 0
    text = md_unpadded(out.read_text())
    assert "| SmolLM2-135M | poisoned, CE | 13.41 (22/164) [9.00, 19.00] | 50.00 (82/164)" in text
    assert "bleu" not in results.read_text() and text.count(script.PENDING) == 2 * 2
    (run / "result.json").write_text(json.dumps({"hash": "c", "config": {}, "final": {"bleu": 1}}))
    with pytest.raises(ValueError, match="no HumanEval metrics"):
        script.main(argv)
