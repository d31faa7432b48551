"""Plots are valid PNGs whose content (lines, points, cells) matches the results."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from exp_helpers import write_result

from dece.experiments import load_results
from dece.experiments.plots import (
    plot_asr_vs_bleu,
    plot_early_learning,
    plot_sensitivity,
    sensitivity_grid,
    write_plots,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_MAGIC
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert image.std() > 0  # not a blank canvas


def test_early_learning_one_line_per_loss_with_mean_over_seeds(hand_results, tmp_path):
    fig = plot_early_learning(load_results(hand_results), tmp_path / "el.png")
    _assert_png(tmp_path / "el.png")
    axes = fig.axes
    assert len(axes) == 4  # (BadPre 5%, RIPPLe 5%) x (BLEU, ASR); the clean run is not a curve
    for ax in axes:
        assert [line.get_label() for line in ax.get_lines()] == ["CE", "DeCE"]
    ce_asr = axes[1].get_lines()[0]  # BadPre, ASR panel, CE: mean of seeds [0.5, 0.9], [0.3, 0.8]
    assert list(ce_asr.get_xdata()) == [1, 2]
    np.testing.assert_allclose(ce_asr.get_ydata(), [40.0, 85.0])
    dece_bleu = axes[2].get_lines()[1]  # RIPPLe, BLEU panel, DeCE: 38.5 * e / 2
    np.testing.assert_allclose(dece_bleu.get_ydata(), [19.25, 38.5])


def test_asr_vs_bleu_one_series_per_method(hand_results, tmp_path):
    fig = plot_asr_vs_bleu(load_results(hand_results), tmp_path / "s.png")
    _assert_png(tmp_path / "s.png")
    (ax,) = fig.axes
    offsets = {c.get_label(): c.get_offsets() for c in ax.collections}
    assert set(offsets) == {"CE", "DeCE"}
    np.testing.assert_allclose(sorted(map(tuple, offsets["CE"])), [(39.0, 75.0), (41.0, 85.0)])
    np.testing.assert_allclose(sorted(map(tuple, offsets["DeCE"])), [(38.5, 3.0), (40.5, 1.0)])


def test_sensitivity_heatmap_matrix(tmp_path):
    root = tmp_path / "runs"
    hist = [{"epoch": 1, "bleu": 1.0, "asr": 0.1}]
    asr = {(0.9, 0.1): 0.2, (0.9, 0.2): 0.1, (0.99, 0.1): 0.04}  # (0.99, 0.2) never ran
    for (alpha, eps), value in asr.items():
        for seed, delta in ((1, -0.01), (2, 0.01)):
            write_result(root, "DeCE", "BadPre", 0.05, seed, {"bleu": 40.0 + seed, "asr": value + delta},
                         hist, loss_args={"alpha_base": alpha, "label_smoothing": eps})  # fmt: skip
    write_result(root, "CE", "BadPre", 0.05, 1, {"bleu": 40.0, "asr": 0.9}, hist)
    rows = load_results(root)
    params, values, matrix = sensitivity_grid(rows, "asr")
    assert params == ["alpha_base", "label_smoothing"]
    assert values == {"alpha_base": [0.9, 0.99], "label_smoothing": [0.1, 0.2]}
    np.testing.assert_allclose(matrix[0], [0.2, 0.1])
    assert matrix[1, 0] == pytest.approx(0.04) and math.isnan(matrix[1, 1])
    fig = plot_sensitivity(rows, tmp_path / "sens.png")
    _assert_png(tmp_path / "sens.png")
    heatmaps = [ax for ax in fig.axes if ax.get_images()]
    assert len(heatmaps) == 2  # ASR and BLEU
    np.testing.assert_allclose(heatmaps[0].get_images()[0].get_array()[0], [20.0, 10.0])


def test_no_sensitivity_plot_without_a_sweep(hand_results, tmp_path):
    rows = load_results(hand_results)
    assert sensitivity_grid(rows, "asr") is None
    assert plot_sensitivity(rows, tmp_path / "sens.png") is None
    assert not (tmp_path / "sens.png").exists()
    assert [p.name for p in write_plots(rows, tmp_path)] == [
        "early_learning.png",
        "asr_vs_bleu.png",
    ]


def test_no_history_is_an_error(tmp_path):
    write_result(tmp_path / "r", "CE", "BadPre", 0.05, 1, {"bleu": 1.0, "asr": 0.5}, [])
    with pytest.raises(ValueError, match="no per-epoch history"):
        plot_early_learning(load_results(tmp_path / "r"), tmp_path / "x.png")
