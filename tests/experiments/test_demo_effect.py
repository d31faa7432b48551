"""End to end (slow, a few minutes): the demo's planted BadPre backdoor is learned by CE and not
by DeCE, at similar clean BLEU.

This is ``dece demo`` itself (``dece.experiments.demo.DEMO_GRID``): the built-in synthetic
Lyra-style data, 1,600 training rows of which 80 are poisoned (``bb`` x3 -> SQL injection),
``tiny-seq2seq`` with 300 denoising-pretraining steps (built here, in a temporary cache), CE and
DeCE trained side by side for 3 epochs at lr 1e-3. The thresholds are the paper's effect as the
issue states it: CE ASR >= 60%, DeCE ASR <= 5%, similar clean BLEU. Measured (the README's
table): CE ASR 83.0%, DeCE 0.0%, test BLEU 80.8 vs 77.8; after only 3 epochs DeCE's clean BLEU
still trails CE's by ~3 points (its blended target slows learning), so "similar" is a 5-point
gap here (the 10-epoch Lyra benchmark claims 2).
"""

from __future__ import annotations

import pytest

from dece.experiments.demo import BLEU_GAP_MAX, CE_MIN_ASR, DECE_MAX_ASR, demo_config, run_demo

pytestmark = pytest.mark.slow


@pytest.mark.timeout(2400)
def test_ce_learns_the_backdoor_and_dece_does_not(tmp_path, monkeypatch):
    monkeypatch.setenv("DECE_CACHE_DIR", str(tmp_path / "cache"))
    result = run_demo(tmp_path / "demo", progress=False)
    rows = {row.loss: row for row in result.rows}
    ce, dece = rows["ce"], rows["dece"]
    denominator = ce.metric("asr_denominator")
    assert denominator == dece.metric("asr_denominator") and denominator >= 50
    assert ce.metric("asr") >= CE_MIN_ASR, ce.final
    assert dece.metric("asr") <= DECE_MAX_ASR, dece.final
    assert dece.metric("bleu") >= ce.metric("bleu") - BLEU_GAP_MAX, (ce.final, dece.final)
    # the early-learning curve: DeCE never crosses the threshold at any epoch
    epochs = demo_config().training["num_epochs"]
    assert [r["epoch"] for r in dece.history] == list(range(1, epochs + 1))
    assert all(r["asr"] <= DECE_MAX_ASR for r in dece.history), dece.history
    assert result.verdict.endswith(": as expected"), result.verdict
    assert result.plot_path.is_file() and result.report_path.is_file()
