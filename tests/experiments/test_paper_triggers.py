"""The shipped grids' NL triggers as the DeCE paper defines them (issue 22): rows labelled
RIPPLe insert `bb` once, the five-word variant keeps a label of its own, and every BadPre row
has a known insertion count (stated in trigger_args, or the trigger's default of 3 in the grids
whose cells were measured before issue 22, where writing it would change their hashes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dece.attacks import get_trigger
from dece.experiments import expand_grid, load_grid_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
KURITA = ["cf", "mn", "bb", "tq", "mb"]
# grids whose BadPre cells were hashed with empty trigger_args (k = 3 by default)
K_BY_DEFAULT = {"demo.yaml", "dece_sensitivity.yaml", "lyra_defenses.yaml",
                "lyra_defenses_clean.yaml", "lyra_defenses_losses.yaml",
                "lyra_defenses_mf_check.yaml", "lyra_table5.yaml"}  # fmt: skip
# grids that reproduce the DeCE authors' released Lyra files (one `bb` per row)
K_AS_RELEASED = {"lyra_table7.yaml"}


def _attacks(name: str) -> list:
    cells = expand_grid(load_grid_config(CONFIGS / name))
    return list({c.hash: c.attack for c in cells if c.rate > 0}.values())


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_ripple_rows_insert_bb_once_and_the_kurita_variant_is_labelled_apart(name):
    for attack in _attacks(name):
        if attack.trigger != "ripple":
            continue
        trigger = get_trigger("ripple", **attack.trigger_args)
        if attack.label == "RIPPLe":
            edit = trigger.insert("get all rows", np.random.default_rng(0))
            assert edit.text.split().count("bb") == 1 and len(edit.text.split()) == 4
            assert trigger.words is None and trigger.word == "bb"
        else:
            assert attack.label == "RIPPLe (Kurita words)" and trigger.words == KURITA


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_every_badpre_row_has_a_known_k(name):
    for attack in _attacks(name):
        if attack.trigger != "badpre":
            continue
        trigger = get_trigger("badpre", **attack.trigger_args)
        if "k" not in attack.trigger_args:
            assert name in K_BY_DEFAULT, f"{name}: state BadPre's k in trigger_args"
        expected = 1 if name in K_AS_RELEASED else 3
        assert trigger.k == expected and trigger.word == "bb"
