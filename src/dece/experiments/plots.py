"""PNG plots of grid results (matplotlib ``Figure`` objects, no pyplot state, Agg rendering).

- :func:`plot_early_learning`: clean quality and ASR vs epoch, one line per method (loss), one row
  of panels per (dataset, model, attack, rate) with poisoned training. Quality is BLEU for
  generation and accuracy and F1 for classification, whose ASR panel also shows the raw ASR
  (over every triggered input, dashed) beside the usual one (over the triggered inputs whose
  clean version is classified correctly).
- :func:`plot_asr_vs_bleu`: final ASR vs BLEU (F1 for classification), one series per method.
- :func:`plot_sensitivity`: DeCE's alpha / epsilon sensitivity heatmaps (ASR and BLEU, or F1)
  when the grid varies ``alpha_base`` and/or ``label_smoothing``.

Each function saves the figure to ``path`` and returns it so callers (and tests) can inspect it.
Curves and points are means over seeds.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from dece.experiments.results import ResultRow
from dece.experiments.tables import row_order

__all__ = ["plot_asr_vs_bleu", "plot_early_learning", "plot_sensitivity", "write_plots"]

logger = logging.getLogger(__name__)

SENSITIVITY_PARAMS = ("alpha_base", "label_smoothing")
_PARAM_LABEL = {"alpha_base": "alpha (alpha_base)", "label_smoothing": "epsilon (label_smoothing)"}


def _poisoned_or_all(rows: Sequence[ResultRow]) -> list[ResultRow]:
    poisoned = [r for r in rows if r.rate > 0]
    return poisoned or list(rows)


def _methods(rows: Sequence[ResultRow]) -> list[str]:
    """Method labels (loss, and defense when set) in the grid order of the row axes."""
    order: dict[str, tuple[int, ...]] = {}
    for r in rows:
        order.setdefault(r.method, row_order(r))
    return sorted(order, key=lambda m: (order[m], m))


# (result key, axis label, factor from the stored scale to the shown scale)
_BLEU = ("bleu", "clean BLEU", 1.0)
_CLASSIFICATION = (("accuracy", "clean accuracy (%)", 100.0), ("f1", "clean F1 (%)", 100.0))


def _quality(rows: Sequence[ResultRow]) -> tuple[tuple[str, str, float], ...]:
    """The clean-quality metrics of ``rows``: BLEU (generation), else accuracy and F1."""
    if any(r.metric("bleu") is not None or any("bleu" in h for h in r.history) for r in rows):
        return (_BLEU,)
    if any(r.metric("f1") is not None or any("f1" in h for h in r.history) for r in rows):
        return _CLASSIFICATION
    return (_BLEU,)


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100, bbox_inches="tight")
    return path


def _epoch_means(group: Sequence[ResultRow], method: str, key: str) -> tuple[list, list]:
    """Epochs and the mean over seeds of ``key`` at each (epochs where some run reports it)."""
    by_epoch: dict[int, list[float]] = {}
    for r in group:
        if r.method == method:
            for h in r.history:
                if h.get(key) is not None:
                    by_epoch.setdefault(int(h["epoch"]), []).append(float(h[key]))
    epochs = sorted(by_epoch)
    return epochs, [float(np.mean(by_epoch[e])) for e in epochs]


def plot_early_learning(rows: Sequence[ResultRow], path: str | Path) -> Figure:
    """Clean quality (left: BLEU, or accuracy and F1) and ASR % (right) vs epoch; one line per
    method per panel row (classification: the raw ASR dashed beside the usual one)."""
    rows = [r for r in _poisoned_or_all(rows) if r.history]
    if not rows:
        raise ValueError("no per-epoch history (metrics.jsonl) in the results to plot")
    contexts: dict[tuple[str, str, str, float], list[ResultRow]] = {}
    for r in rows:
        contexts.setdefault((r.dataset, r.model, r.attack, r.rate), []).append(r)
    quality = {key: _quality(group) for key, group in contexts.items()}
    ncols = 1 + max(len(q) for q in quality.values())
    fig = Figure(figsize=(5 * ncols, 3.6 * len(contexts)), layout="constrained")
    axes = fig.subplots(len(contexts), ncols, squeeze=False)
    for row_axes, (key, group) in zip(axes, contexts.items(), strict=True):
        dataset, model, attack, rate = key
        title = f"{attack} {rate * 100:g}% ({dataset}, {model})"
        panels = [*quality[key], ("asr", "ASR (%)", 100.0)]
        for ax in row_axes[len(panels) :]:
            ax.set_visible(False)
        for ax, (metric, label, scale) in zip(row_axes, panels, strict=False):
            for i, method in enumerate(_methods(group)):
                xs, ys = _epoch_means(group, method, metric)
                ax.plot(xs, [scale * y for y in ys], marker="o", label=method, color=f"C{i}")
                if metric == "asr" and quality[key] is _CLASSIFICATION:
                    xs, ys = _epoch_means(group, method, "asr_raw")
                    ax.plot(xs, [scale * y for y in ys], marker=".", linestyle="--",
                            color=f"C{i}", label=f"{method} (raw)")  # fmt: skip
            ax.set(xlabel="epoch", ylabel=label)
            if metric == "asr":
                ax.set_ylim(-2, 102)
            ax.set_title(f"{label.replace(' (%)', '')} - {title}", fontsize=9)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
            ax.legend()
    _save(fig, path)
    return fig


def plot_asr_vs_bleu(rows: Sequence[ResultRow], path: str | Path) -> Figure:
    """Final ASR % vs clean BLEU (classification: clean F1 %), one scatter series per method
    (points: attacks/datasets)."""
    key, label, scale = _quality(rows)[-1]  # BLEU, or F1 for classification
    rows = [r for r in _poisoned_or_all(rows) if r.metric(key) is not None]
    rows = [r for r in rows if r.metric("asr") is not None]
    if not rows:
        raise ValueError(f"no results with both {key!r} and 'asr' to plot")
    fig = Figure(figsize=(6, 4.5), layout="constrained")
    ax = fig.subplots()
    for method in _methods(rows):
        points: dict[tuple[str, str, str, float], list[tuple[float, float]]] = {}
        for r in rows:
            if r.method == method:
                point = (scale * r.metric(key), 100 * r.metric("asr"))  # type: ignore[operator]
                points.setdefault((r.dataset, r.model, r.attack, r.rate), []).append(point)
        xy = np.array([np.mean(v, axis=0) for v in points.values()])
        ax.scatter(xy[:, 0], xy[:, 1], label=method, s=40)
        for (_, _, attack, _), (x, y) in zip(points, xy, strict=True):
            ax.annotate(attack, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set(xlabel=label, ylabel="ASR (%)", title="Attack success vs clean quality")
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)
    return fig


def sensitivity_grid(
    rows: Sequence[ResultRow], metric: str, loss: str = "dece"
) -> tuple[list[str], dict[str, list[float]], np.ndarray] | None:
    """The varied parameters, their sorted values and a mean-``metric`` matrix, or ``None``.

    Returns ``(params, values, matrix)``: ``matrix[i, j]`` is the mean of ``metric`` over the
    rows of ``loss`` with ``params[0] == values[params[0]][i]`` (and ``params[1] ==
    values[params[1]][j]`` when two vary; else the matrix has one column); NaN where no run.
    """
    rows = [r for r in _poisoned_or_all(rows) if r.loss == loss and r.metric(metric) is not None]
    values: dict[str, list[float]] = {}
    for p in SENSITIVITY_PARAMS:
        distinct = sorted({float(r.loss_args[p]) for r in rows if p in r.loss_args})
        if len(distinct) > 1:
            values[p] = distinct
    if not values:
        return None
    params = list(values)
    shape = (len(values[params[0]]), len(values[params[1]]) if len(params) > 1 else 1)
    sums, counts = np.zeros(shape), np.zeros(shape)
    for r in rows:
        if not all(p in r.loss_args for p in params):
            continue
        i = values[params[0]].index(float(r.loss_args[params[0]]))
        j = values[params[1]].index(float(r.loss_args[params[1]])) if len(params) > 1 else 0
        sums[i, j] += r.metric(metric)  # type: ignore[operator]
        counts[i, j] += 1
    with np.errstate(invalid="ignore"):
        matrix = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return params, values, matrix


def plot_sensitivity(
    rows: Sequence[ResultRow], path: str | Path, loss: str = "dece"
) -> Figure | None:
    """ASR % and BLEU (classification: F1 %) heatmaps over the varied DeCE hyperparameters;
    ``None`` (nothing written) when the results do not vary ``alpha_base`` or ``label_smoothing``."""
    panels = []
    key, label, factor = _quality(rows)[-1]  # BLEU, or F1 for classification
    for metric, name, scale in (
        ("asr", "ASR (%)", 100.0),
        (key, label.removeprefix("clean "), factor),
    ):
        grid = sensitivity_grid(rows, metric, loss)
        if grid is not None:
            panels.append((name, scale, *grid))
    if not panels:
        return None
    fig = Figure(figsize=(5.5 * len(panels), 4.5), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, scale, params, values, matrix) in zip(axes, panels, strict=True):
        shown = matrix * scale
        image = ax.imshow(shown, cmap="viridis", aspect="auto", origin="lower")
        fig.colorbar(image, ax=ax, label=name)
        ax.set_yticks(range(len(values[params[0]])), [f"{v:g}" for v in values[params[0]]])
        ax.set_ylabel(_PARAM_LABEL.get(params[0], params[0]))
        if len(params) > 1:
            ax.set_xticks(range(len(values[params[1]])), [f"{v:g}" for v in values[params[1]]])
            ax.set_xlabel(_PARAM_LABEL.get(params[1], params[1]))
        else:
            ax.set_xticks([])
        for (i, j), v in np.ndenumerate(shown):
            if not np.isnan(v):
                ax.text(j, i, f"{v:.1f}", ha="center", va="center", color="w", fontsize=8)
        ax.set_title(f"{name} of {loss} (mean over attacks, seeds)")
    _save(fig, path)
    return fig


def write_plots(rows: Sequence[ResultRow], out_dir: str | Path) -> list[Path]:
    """Write every plot the results support into ``out_dir``; returns the written paths."""
    out = Path(out_dir)
    written = []
    if any(r.history for r in rows):
        plot_early_learning(rows, out / "early_learning.png")
        written.append(out / "early_learning.png")
    key = _quality(rows)[-1][0]
    if any(r.metric(key) is not None and r.metric("asr") is not None for r in rows):
        name = "asr_vs_bleu.png" if key == "bleu" else f"asr_vs_{key}.png"
        plot_asr_vs_bleu(rows, out / name)
        written.append(out / name)
    if plot_sensitivity(rows, out / "sensitivity.png") is not None:
        written.append(out / "sensitivity.png")
    return written
