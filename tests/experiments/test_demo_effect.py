"""End to end (slow, about 2 minutes): the demo's planted BadPre backdoor is learned by CE and
not by DeCE, at the same clean BLEU.

This is ``dece demo`` itself (``dece.experiments.demo.DEMO_GRID``): the built-in synthetic
Lyra-style data, 3,200 training rows of which 160 are poisoned (``bb`` x3 -> SQL injection), the
shipped starting point ``tiny-seq2seq-sql``, CE and DeCE (alpha_base 0.9) trained side by side
for 5 epochs. The thresholds are the issue's: CE ASR >= 80%, DeCE ASR <= 5% at every epoch, a
BLEU gap <= 3 points. The same setting's spread over seeds 0-4 and three thread modes is in
``benchmarks/results/demo_robustness.md``.
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
