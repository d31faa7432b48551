"""Plots of classification results: accuracy and F1 instead of BLEU, the raw ASR beside the
usual one; every plotted value is checked against the hand-made results (means over seeds)."""

from __future__ import annotations

import numpy as np
from exp_helpers import write_result

from dece.experiments import load_results
from dece.experiments.plots import plot_asr_vs_bleu, plot_early_learning, write_plots


def _history(acc: list[float], f1: list[float], asr: list[float], raw: list[float]) -> list[dict]:
    return [
        {"epoch": e + 1, "accuracy": a, "f1": f, "asr": s, "asr_raw": r}
        for e, (a, f, s, r) in enumerate(zip(acc, f1, asr, raw, strict=True))
    ]


def _results(root):
    # (method, seed, final acc, final f1, final asr, history)
    runs = [
        ("CE", 1, 0.97, 0.80, 0.90, _history([0.95, 0.97], [0.7, 0.8], [0.2, 0.9], [0.3, 0.92])),
        ("CE", 2, 0.96, 0.78, 0.70, _history([0.93, 0.96], [0.6, 0.78], [0.0, 0.7], [0.1, 0.72])),
        ("DeCE", 1, 0.97, 0.81, 0.85, _history([0.94, 0.97], [0.65, 0.81], [0.1, 0.85],
                                                [0.2, 0.86])),
    ]  # fmt: skip
    for method, seed, acc, f1, asr, hist in runs:
        final = {"accuracy": acc, "f1": f1, "asr": asr, "asr_raw": asr + 0.01}
        write_result(root, method, "BadPre", 0.01, seed, final, hist)
    return load_results(root)


def test_early_learning_plots_accuracy_f1_and_both_asrs(tmp_path):
    fig = plot_early_learning(_results(tmp_path / "runs"), tmp_path / "el.png")
    acc, f1, asr = fig.axes
    assert acc.get_ylabel() == "clean accuracy (%)" and f1.get_ylabel() == "clean F1 (%)"
    assert [line.get_label() for line in acc.get_lines()] == ["CE", "DeCE"]
    np.testing.assert_allclose(acc.get_lines()[0].get_ydata(), [94.0, 96.5])  # CE, 2 seeds
    np.testing.assert_allclose(f1.get_lines()[1].get_ydata(), [65.0, 81.0])  # DeCE
    labels = [line.get_label() for line in asr.get_lines()]
    assert labels == ["CE", "CE (raw)", "DeCE", "DeCE (raw)"]
    np.testing.assert_allclose(asr.get_lines()[0].get_ydata(), [10.0, 80.0])
    np.testing.assert_allclose(asr.get_lines()[1].get_ydata(), [20.0, 82.0])
    assert asr.get_lines()[1].get_linestyle() == "--"
    assert asr.get_lines()[0].get_color() == asr.get_lines()[1].get_color()


def test_asr_against_f1_and_the_files_written(tmp_path):
    rows = _results(tmp_path / "runs")
    (ax,) = plot_asr_vs_bleu(rows, tmp_path / "s.png").axes
    assert ax.get_xlabel() == "clean F1 (%)"
    offsets = {c.get_label(): c.get_offsets() for c in ax.collections}
    np.testing.assert_allclose(offsets["CE"], [(79.0, 80.0)])
    written = write_plots(rows, tmp_path / "out")
    assert [p.name for p in written] == ["early_learning.png", "asr_vs_f1.png"]
