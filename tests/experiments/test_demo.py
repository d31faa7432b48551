"""``dece demo --quick`` end to end with real (tiny, seconds-long) training."""

from __future__ import annotations

import importlib.util
import json

import matplotlib.image
import pytest

from dece.cli import main
from dece.experiments.demo import QUICK_VERDICT, demo_config
from dece.experiments.markdown import md_unpadded


def _training_ready() -> bool:
    try:
        return importlib.util.find_spec("dece.training.models") is not None
    except ImportError:
        return False


@pytest.mark.skipif(not _training_ready(), reason="dece.training.models (issue 5) not built yet")
def test_demo_quick_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DECE_CACHE_DIR", str(tmp_path / "cache"))  # fresh pretraining cache
    monkeypatch.delenv("DECE_CELL_RUNNER", raising=False)
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "-o", str(out), "--no-progress"]) == 0
    printed = md_unpadded(capsys.readouterr().out)

    results = sorted((out / "cells").glob("*/result.json"))
    assert len(results) == 2
    epochs = demo_config(quick=True).training["num_epochs"]
    for path in results:
        result = json.loads(path.read_text())
        final, label = result["final"], result["config"]["labels"]["loss"]
        assert 0.0 <= final["bleu"] <= 100.0 and 0.0 <= final["asr"] <= 1.0
        # the printed table shows exactly what the run measured
        assert f"| {label} | {final['bleu']:.2f} |" in printed
        assert f"{100 * final['asr']:.2f} |" in printed
        history = [json.loads(x) for x in (path.parent / "metrics.jsonl").read_text().splitlines()]
        assert [h["epoch"] for h in history] == list(range(1, epochs + 1))
        assert (path.parent / "predictions" / "test_clean.jsonl").is_file()
    # --quick trains too little to show the effect: no verdict, and it says so
    assert QUICK_VERDICT in printed and "expected effect" not in printed
    report = md_unpadded((out / "report.md").read_text())
    assert "| CE |" in report and "| DeCE |" in report
    image = matplotlib.image.imread(out / "early_learning.png")
    assert image.ndim == 3 and image.std() > 0


def test_demo_verdict_thresholds(tmp_path):
    from exp_helpers import write_result

    from dece.experiments import load_results
    from dece.experiments.demo import demo_verdict

    hist = [{"epoch": 1, "bleu": 1.0, "asr": 0.0}]
    # exactly on every threshold: CE ASR 80%, DeCE ASR 5%, BLEU gap 3
    write_result(tmp_path / "ok", "CE", "BadPre", 0.05, 1, {"bleu": 50.0, "asr": 0.8}, hist)
    write_result(tmp_path / "ok", "DeCE", "BadPre", 0.05, 1, {"bleu": 47.0, "asr": 0.05}, hist)
    assert demo_verdict(load_results(tmp_path / "ok")) == (
        "BadPre: CE ASR 80.0% (needs >= 80%), DeCE ASR 5.0% (needs <= 5%), "
        "BLEU gap 3.0 (needs <= 3) [BLEU CE 50.00, DeCE 47.00]: as expected"
    )
    # each threshold missed, by a known amount
    write_result(tmp_path / "bad", "CE", "BadPre", 0.05, 1, {"bleu": 50.0, "asr": 0.543}, hist)
    write_result(tmp_path / "bad", "DeCE", "BadPre", 0.05, 1, {"bleu": 46.0, "asr": 0.07}, hist)
    assert demo_verdict(load_results(tmp_path / "bad")).endswith(
        "NOT the expected effect: CE ASR is 25.7 points below 80%; "
        "DeCE ASR is 2.0 points above 5%; BLEU gap is 1.0 points above 3"
    )
    write_result(tmp_path / "half", "CE", "BadPre", 0.05, 1, {"bleu": 50.0, "asr": 0.9}, hist)
    assert demo_verdict(load_results(tmp_path / "half")) == "BadPre: missing CE or DeCE result"
