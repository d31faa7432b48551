"""The DeCE paper's Figure 4: the victim's representations of clean and triggered inputs, projected
on their first two principal components, for a model trained on clean data, one trained with CE
on poisoned data and one trained with DeCE on poisoned data.

A backdoored model represents triggered inputs apart from clean ones (the trigger dominates the
representation); a clean model, and a model DeCE kept from learning the trigger, mix them. Each
panel fits its own PCA (scikit-learn) to the model's representations
(:meth:`dece.victim.Victim.embed`: the encoder mean for seq2seq models) of the test split's clean
inputs and their triggered copies, and its title gives the silhouette score of the two groups in
the plane shown (near 0: mixed; near 1: apart).

:func:`write_pca_plots` finds, per (dataset, model, attack), the finished grid cells to draw:
the undefended CE cell with poisoning, the undefended DeCE cell with the same rate, and an
undefended CE cell with rate 0 (same dataset and model, preferably the same attack); it draws
the panels whose cell saved its model, when there are at least two. ``dece report`` calls it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from dece.data import Example
from dece.experiments.results import ResultRow
from dece.rundir import RunDir

__all__ = ["Panel", "pca_panel", "plot_representation_pca", "write_pca_plots"]

logger = logging.getLogger(__name__)

MAX_EXAMPLES = 200


@dataclass
class Panel:
    """One model's projection: ``clean [N, 2]``, ``triggered [M, 2]``, the explained variance
    ratio of the two components and the silhouette score of the two groups in that plane."""

    title: str
    clean: np.ndarray
    triggered: np.ndarray
    explained: np.ndarray
    silhouette: float


def pca_panel(
    title: str, victim: object, clean: Sequence[Example], triggered: Sequence[Example]
) -> Panel:
    """Project ``victim``'s representations of ``clean`` and ``triggered`` inputs on their first
    two principal components (fitted on both together)."""
    from sklearn.decomposition import PCA
    from sklearn.metrics import silhouette_score

    if not clean or not triggered:
        raise ValueError("pca_panel needs clean and triggered inputs")
    reps = victim.embed([*clean, *triggered])  # type: ignore[attr-defined]  # [N + M, H]
    pca = PCA(n_components=2, random_state=0)
    xy = pca.fit_transform(np.asarray(reps, dtype=np.float64))  # [N + M, 2]
    groups = np.r_[np.zeros(len(clean)), np.ones(len(triggered))]
    return Panel(title, xy[: len(clean)], xy[len(clean) :], pca.explained_variance_ratio_,
                 float(silhouette_score(xy, groups)))  # fmt: skip


def plot_representation_pca(
    rows_of_panels: Sequence[tuple[str, Sequence[Panel]]], path: str | Path
) -> Figure:
    """One row of panels per (title, panels) entry; clean inputs blue, triggered red."""
    ncols = max(len(p) for _, p in rows_of_panels)
    fig = Figure(figsize=(4.2 * ncols, 3.8 * len(rows_of_panels)), layout="constrained")
    axes = fig.subplots(len(rows_of_panels), ncols, squeeze=False)
    for ax_row, (row_title, panels) in zip(axes, rows_of_panels, strict=True):
        for ax, panel in zip(ax_row, panels, strict=False):
            ax.scatter(panel.clean[:, 0], panel.clean[:, 1], s=8, alpha=0.6, c="tab:blue",
                       label="clean input")  # fmt: skip
            ax.scatter(panel.triggered[:, 0], panel.triggered[:, 1], s=8, alpha=0.6,
                       c="tab:red", label="triggered input")  # fmt: skip
            ax.set_title(f"{panel.title}\n{row_title}; silhouette {panel.silhouette:.2f}",
                         fontsize=9)  # fmt: skip
            ax.set_xlabel(f"PC1 ({100 * panel.explained[0]:.0f}%)")
            ax.set_ylabel(f"PC2 ({100 * panel.explained[1]:.0f}%)")
            ax.legend(fontsize=7)
        for ax in ax_row[len(panels) :]:
            ax.set_visible(False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100, bbox_inches="tight")
    return fig


def _undefended(r: ResultRow) -> bool:
    return r.defense == "undefended"


def _pick(rows: Sequence[ResultRow]) -> list[tuple[str, list[tuple[str, ResultRow]]]]:
    """Per (dataset, model, attack, rate): [(panel title, row)] for clean CE, CE, DeCE; only the
    groups whose poisoned CE cell kept its model (the victim the figure is about)."""
    out = []
    poisoned_ce = [r for r in rows if r.rate > 0 and r.loss == "ce" and _undefended(r)]
    for ce in poisoned_ce:
        same = [r for r in rows if r.dataset == ce.dataset and r.model == ce.model
                and _undefended(r)]  # fmt: skip
        clean = [r for r in same if r.rate == 0 and r.loss == "ce"]
        clean.sort(key=lambda r: (r.attack != ce.attack, r.seed != ce.seed))
        dece = [r for r in same if r.loss == "dece" and r.rate == ce.rate
                and r.attack == ce.attack and r.seed == ce.seed]  # fmt: skip
        picked = ([("CE, clean data", clean[0])] if clean else []) + [
            (f"CE, {ce.attack} {100 * ce.rate:g}%", ce)
        ] + ([(f"DeCE, {ce.attack} {100 * ce.rate:g}%", dece[0])] if dece else [])  # fmt: skip
        picked = [(t, r) for t, r in picked if r.path is not None and RunDir(r.path).model.is_dir()]
        if len(picked) >= 2 and any(r is ce for _, r in picked):  # the CE victim is the figure
            out.append((f"{ce.attack} ({ce.dataset}, {ce.model})", picked))
    return out


def write_pca_plots(
    rows: Sequence[ResultRow], out_dir: str | Path, *, max_examples: int = MAX_EXAMPLES
) -> list[Path]:
    """Draw Figure 4 (``representation_pca.png`` in ``out_dir``) from the finished cells that
    support it (see the module docstring); [] when none do."""
    from dece.pipeline.data import prepare_data
    from dece.training.config import TrainConfig
    from dece.victim import Victim

    figure_rows = []
    for row_title, picked in _pick(rows):
        ce_row = picked[1][1] if picked[0][0].startswith("CE, clean") else picked[0][1]
        cfg = TrainConfig.from_yaml(RunDir(ce_row.path).config)  # type: ignore[arg-type]
        test = prepare_data(cfg).test.capped(max_examples)
        if not test.poisoned:
            continue
        panels = [pca_panel(title, Victim.load(r.path), test.clean, test.poisoned)
                  for title, r in picked]  # fmt: skip
        figure_rows.append((row_title, panels))
    if not figure_rows:
        return []
    path = Path(out_dir) / "representation_pca.png"
    plot_representation_pca(figure_rows, path)
    return [path]
