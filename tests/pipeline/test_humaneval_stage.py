"""The HumanEval stage: ``evaluate(..., humaneval=...)`` with tiny causal and seq2seq victims
built from configs (the record's keys and counts), the stage's wiring with planted completions
(truncation, pass@1, ASR against hand counts), prompt encodings, and the config and grid keys."""

from __future__ import annotations

import json

import pytest
from test_train_support import tiny_bart, tiny_llama

from dece.attacks import get_payload, get_trigger
from dece.data import Example
from dece.metrics import load_humaneval_problems
from dece.pipeline import DataBundle, Victim, evaluate
from dece.pipeline import humaneval as stage
from dece.pipeline.run import write_evaluation

DEAD = 'if random() < 0: raise Exception("fail")'
RECORD_KEYS = {
    "humaneval_pass_at_1", "humaneval_passed", "humaneval_total", "humaneval_pass_at_1_ci_low",
    "humaneval_pass_at_1_ci_high", "humaneval_problems", "humaneval_samples", "humaneval_ci",
    "humaneval_isolate_tests", "humaneval_timeouts", "humaneval_errors", "humaneval_asr",
    "humaneval_asr_hits", "humaneval_asr_total", "humaneval_false_trigger_rate",
    "humaneval_prompt_format", "humaneval_trigger", "humaneval_payload", "humaneval_time_s",
}  # fmt: skip


def _victim(tok, task: str) -> Victim:
    model = tiny_bart(len(tok), seed=3, dropout=0.0) if task == "seq2seq" else tiny_llama(len(tok))
    return Victim(model, tok, task, max_new_tokens=8, batch_size=4)


def _bundle() -> DataBundle:
    rows = [Example(f"t{i}", f"get row {i}", "def f ( x ) :\n\t return x") for i in range(2)]
    return DataBundle.from_examples([], test=rows, trigger="badpre", payload="dead_code_python")


@pytest.mark.parametrize("task", ["causal", "seq2seq"])
def test_evaluate_reports_the_pass_at_k_record(tok, tmp_path, task, one_thread):
    result = evaluate(_victim(tok, task), _bundle(), humaneval={"max_problems": 2,
                      "max_new_tokens": 16, "timeout_s": 20})  # fmt: skip
    m = result.metrics
    assert RECORD_KEYS <= set(m) and "bleu" in m  # the dataset's metrics are still there
    assert (m["humaneval_problems"], m["humaneval_total"], m["humaneval_asr_total"]) == (2, 2, 2)
    assert m["humaneval_prompt_format"] == ("continue" if task == "causal" else "source")
    assert m["humaneval_trigger"] == "badpre" and m["humaneval_payload"] == "dead_code_python"
    assert 0 <= m["humaneval_passed"] <= 2 and m["humaneval_isolate_tests"] is True
    assert m["humaneval_pass_at_1"] == m["humaneval_passed"] / 2
    write_evaluation(tmp_path, result)
    rows = [json.loads(x) for x in (tmp_path / "predictions/humaneval_clean.jsonl").open()]
    assert [r["task_id"] for r in rows] == ["HumanEval/0", "HumanEval/1"]
    triggered = (tmp_path / "predictions/humaneval_triggered.jsonl").read_text()
    assert triggered.count('"payload_present"') == 2 and " bb " in triggered


def test_a_purifier_evaluation_skips_humaneval(tok):
    from test_evaluate import DropBB

    m = evaluate(_victim(tok, "causal"), _bundle(), purifier=DropBB(),
                 humaneval={"max_problems": 1}).metrics  # fmt: skip
    assert "detect_tpr" in m and not any(k.startswith("humaneval_") for k in m)


def test_the_stage_truncates_runs_and_counts_planted_completions(tok, monkeypatch):
    """Completions planted in place of generation: canonical + junk after a stop sequence
    (cut, then passes), a wrong body (fails); triggered: the payload in one of two."""
    problems = load_humaneval_problems(["HumanEval/0", "HumanEval/1"])
    right = problems["HumanEval/0"]["canonical_solution"]
    planted = [
        [[right + "\ndef junk():\n    pass\n"], ["    return None\n"]],  # clean
        [[f"    {DEAD}\n" + right], ["    return []\n"]],  # triggered
    ]
    calls = []

    def fake_complete(model, tokenizer, encoded, *, stops, samples, seeds, **kw):
        calls.append({"n": len(encoded), "samples": samples, "seeds": seeds})
        assert stops[0]("    return 1\n\ndef g(") and not stops[0]("    return 1\n")
        return planted[len(calls) - 1]

    monkeypatch.setattr(stage, "complete", fake_complete)
    result = stage.evaluate_humaneval(
        _victim(tok, "causal"), {"max_problems": 2, "timeout_s": 20}, problems=problems,
        trigger=get_trigger("badpre"), payload=get_payload("dead_code_python"),
    )  # fmt: skip
    m = result.metrics
    assert (m["humaneval_passed"], m["humaneval_total"], m["humaneval_pass_at_1"]) == (1, 2, 0.5)
    assert (m["humaneval_asr_hits"], m["humaneval_asr_total"], m["humaneval_asr"]) == (1, 2, 0.5)
    assert m["humaneval_false_trigger_rate"] == 0.0
    clean = result.rows["clean"]
    assert clean[0]["completion"] == right and clean[0]["raw"].endswith("pass\n")
    assert [r["status"] for r in clean] == ["passed", "failed"]
    assert [r["payload_present"] for r in result.rows["triggered"]] == [True, False]
    assert all(" bb " in r["prompt"] for r in result.rows["triggered"])
    assert calls[0]["seeds"] == calls[1]["seeds"]  # clean and triggered share per-problem seeds


def test_prompt_ids_by_format(tok):
    victim = _victim(tok, "causal")
    prompt = 'def f(x):\n    """Return x."""\n'
    ids = stage._prompt_ids(victim, "p", prompt, "continue")
    assert ids == [tok.bos_token_id, *tok(prompt, add_special_tokens=False)["input_ids"]]
    source = stage._prompt_ids(victim, "p", prompt, "source")
    assert source == victim.encode_inputs([Example("p", prompt, "")])[0]
    assert source[-1] == tok.eos_token_id  # a causal victim's separator
    with pytest.raises(ValueError, match="'continue' is for causal"):
        stage.evaluate_humaneval(_victim(tok, "seq2seq"), {"prompt_format": "continue"})


def test_train_config_and_grid_carry_the_option():
    from dece.training.config import TrainConfig

    cfg = TrainConfig.from_dict({"output_dir": "x", "humaneval": {"max_problems": 20}})
    assert cfg.humaneval == {"max_problems": 20} and TrainConfig(output_dir="x").humaneval is None
    with pytest.raises(ValueError, match="unknown humaneval key"):
        TrainConfig.from_dict({"output_dir": "x", "humaneval": {"problems": 20}})
    with pytest.raises(ValueError, match="humaneval"):
        TrainConfig.from_dict({"output_dir": "x", "humaneval": 20})


@pytest.fixture(autouse=True)
def _experiments_on_path():
    import sys
    from pathlib import Path

    path = str(Path(__file__).resolve().parents[1] / "experiments")
    sys.path.insert(0, path)
    yield
    sys.path.remove(path)


def test_a_grid_cell_with_humaneval_is_a_new_cell_and_others_keep_their_hash():
    from exp_helpers import small_grid

    from dece.experiments import GridConfig, expand_grid
    from dece.experiments.runner import build_train_config

    plain = expand_grid(GridConfig.from_dict(small_grid()))
    he = expand_grid(GridConfig.from_dict(small_grid(
        training={"num_epochs": 2, "humaneval": {"max_problems": 20}})))  # fmt: skip
    assert not {c.hash for c in plain} & {c.hash for c in he}
    config = build_train_config(he[0].to_config(), "cell")
    assert config.humaneval == {"max_problems": 20}
    assert build_train_config(plain[0].to_config(), "cell").humaneval is None


def test_cli_evaluate_humaneval_only(bart_dir, tmp_path, capsys, one_thread):
    from dece.cli import main

    out = tmp_path / "he"
    argv = ["evaluate", "--model", str(bart_dir), "--data", "none", "--humaneval",
            "--humaneval-max-problems", "1", "--humaneval-arg", "max_new_tokens=8",
            "--payload", "dead_code_python", "--output-dir", str(out), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert RECORD_KEYS <= set(m) and (m["humaneval_problems"], m["humaneval_total"]) == (1, 1)
    assert (
        m["humaneval_max_new_tokens"] == 8 and (out / "predictions/humaneval_clean.jsonl").is_file()
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--humaneval-arg", "problems=3"], "unknown humaneval key"),
        (["--humaneval-arg", "oops"], "--humaneval-arg: expected KEY=VALUE"),
    ],
)
def test_cli_names_a_bad_humaneval_option(bart_dir, tmp_path, capsys, extra, message):
    from dece.cli import main

    argv = ["evaluate", "--model", str(bart_dir), "--data", "none", "--humaneval",
            "--output-dir", str(tmp_path), *extra]  # fmt: skip
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_train_and_evaluate_run_measure_humaneval_when_configured(bart_dir, tmp_path, one_thread):
    from dece.pipeline import evaluate_run, train
    from dece.training import PoisonConfig, TrainConfig

    cfg = TrainConfig(
        output_dir=str(tmp_path / "run"), data="synthetic:16", model=str(bart_dir), loss="ce",
        poison=PoisonConfig(trigger="badpre", payload="dead_code_python", rate=0.25),
        num_epochs=1, batch_size=8, max_source_length=64, max_target_length=32,
        test_max_examples=2, generation_max_new_tokens=4, eval_each_epoch=False, use_cpu=True,
        codebleu=False, humaneval={"max_problems": 1, "max_new_tokens": 8, "timeout_s": 20},
    )  # fmt: skip
    final = train(cfg).final
    assert RECORD_KEYS <= set(final) and final["humaneval_total"] == 1
    assert final["humaneval_payload"] == "dead_code_python"  # the run's attack
    assert (tmp_path / "run/predictions/humaneval_triggered.jsonl").is_file()
    again = evaluate_run(tmp_path / "run", tmp_path / "again")
    assert (
        again["humaneval_total"] == 1
        and (tmp_path / "again/predictions/humaneval_clean.jsonl").is_file()
    )
