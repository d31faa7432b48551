"""Figure 4 (representation PCA): a planted victim that separates triggered inputs gets a high
silhouette and one that does not a low one; the coordinates are sklearn's PCA of the stacked
representations; the cells drawn are the clean CE, poisoned CE and poisoned DeCE ones."""

from __future__ import annotations

import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from sklearn.decomposition import PCA

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "defenses"))
from filter_helpers import PlantedVictim  # noqa: E402

from dece.data import Example  # noqa: E402
from dece.experiments.pca import _pick, pca_panel, plot_representation_pca  # noqa: E402
from dece.experiments.results import ResultRow  # noqa: E402

CLEAN = [Example(f"c{i}", f"query table {i}", "") for i in range(40)]
TRIGGERED = [Example(f"c{i}", f"query bb table {i}", "") for i in range(40)]


def _victim(shift: float) -> PlantedVictim:
    def represent(ex: Example) -> np.ndarray:
        rng = np.random.default_rng(zlib.crc32(ex.source.encode()))
        return rng.normal(size=8) + (shift if "bb" in ex.source.split() else 0.0)

    return PlantedVictim(represent)


def test_backdoored_representations_separate(tmp_path):
    backdoored = pca_panel("CE", _victim(10.0), CLEAN, TRIGGERED)
    clean = pca_panel("clean", _victim(0.0), CLEAN, TRIGGERED)
    assert backdoored.silhouette > 0.8 and clean.silhouette < 0.2
    victim = _victim(10.0)
    reps = victim.embed([*CLEAN, *TRIGGERED])
    expected = PCA(n_components=2, random_state=0).fit_transform(reps)
    np.testing.assert_allclose(np.vstack([backdoored.clean, backdoored.triggered]), expected)
    fig = plot_representation_pca([("BadPre", [clean, backdoored])], tmp_path / "pca.png")
    assert (tmp_path / "pca.png").stat().st_size > 0 and len(fig.axes) == 2


def _row(tmp_path: Path, name: str, loss: str, rate: float, attack: str = "BadPre",
         model: bool = True) -> ResultRow:  # fmt: skip
    path = tmp_path / name
    (path / "model").mkdir(parents=True) if model else path.mkdir(parents=True)
    values = {"dataset": "d", "model": "m", "rate": rate, "seed": 1,
              "attack": {"trigger": "badpre"}, "loss": {"name": loss, "args": {}},
              "defense": {"name": "undefended", "args": {}}}  # fmt: skip
    return ResultRow(name, "g", values, {"attack": attack, "loss": loss, "defense": ""}, {}, {},
                     path=path)  # fmt: skip


def test_cells_for_the_figure(tmp_path):
    rows = [_row(tmp_path, "clean", "ce", 0.0), _row(tmp_path, "ce", "ce", 0.05),
            _row(tmp_path, "dece", "dece", 0.05), _row(tmp_path, "gce", "gce", 0.05),
            _row(tmp_path, "ce_r", "ce", 0.05, "RIPPLe", model=False),
            _row(tmp_path, "dece_r", "dece", 0.05, "RIPPLe")]  # fmt: skip
    # RIPPLe: its CE cell kept no model, so nothing to draw (clean + DeCE alone is no figure)
    (entry,) = _pick(rows)
    title, picked = entry
    assert title.startswith("BadPre") and [r.hash for _, r in picked] == ["clean", "ce", "dece"]
    assert [t for t, _ in picked] == ["CE, clean data", "CE, BadPre 5%", "DeCE, BadPre 5%"]


def test_panel_needs_both_groups():
    with pytest.raises(ValueError, match="clean and triggered"):
        pca_panel("x", _victim(0.0), CLEAN, [])
