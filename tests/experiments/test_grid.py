"""Grid expansion, stable cell hashes and shards that partition the grid."""

from __future__ import annotations

import hashlib
import json

import pytest
from exp_helpers import small_grid
from hypothesis import given, settings
from hypothesis import strategies as st

from dece.experiments import (
    ConfigError,
    GridConfig,
    cell_hash,
    current_labels,
    expand_grid,
    parse_shard,
    pending_commands,
    shard_cells,
)


def test_expansion_is_the_product_in_order():
    config = GridConfig.from_dict(small_grid())
    cells = expand_grid(config)
    assert len(cells) == 1 * 2 * 2 * 1 * 2 * 2
    # seeds innermost, datasets outermost
    assert [(c.attack.trigger, c.rate, c.loss.name, c.seed) for c in cells[:4]] == [
        ("badpre", 0.0, "ce", 1), ("badpre", 0.0, "ce", 2),
        ("badpre", 0.0, "dece", 1), ("badpre", 0.0, "dece", 2),
    ]  # fmt: skip
    assert len({c.hash for c in cells}) == len(cells)


def test_hash_is_sha256_of_canonical_json():
    resolved = {"b": 1, "a": {"y": [1, 2.5], "x": "s"}}
    expected = hashlib.sha256(b'{"a":{"x":"s","y":[1,2.5]},"b":1}').hexdigest()[:12]
    assert cell_hash(resolved) == expected
    cell = expand_grid(GridConfig.from_dict(small_grid()))[0]
    canonical = json.dumps(cell.resolved(), sort_keys=True, separators=(",", ":"))
    assert cell.hash == hashlib.sha256(canonical.encode()).hexdigest()[:12]


def test_hash_ignores_labels_order_and_runner_but_not_config():
    base = {c.resolved()["seed"]: c.hash for c in expand_grid(GridConfig.from_dict(small_grid()))}
    relabelled = small_grid(
        losses=[
            {"name": "dece", "args": {"alpha_base": 0.99}, "label": "Ours"},
            {"name": "ce", "label": "Base"},
        ],
        seeds=[2, 1],
        runner="some.module:fn",
        name="other",
    )
    assert {c.hash for c in expand_grid(GridConfig.from_dict(relabelled))} == {
        c.hash for c in expand_grid(GridConfig.from_dict(small_grid()))
    }
    changed = small_grid(training={"num_epochs": 3})
    assert not {c.hash for c in expand_grid(GridConfig.from_dict(changed))} & set(base.values())


def test_duplicate_cells_are_rejected():
    dup = small_grid(losses=[{"name": "ce"}, {"name": "ce", "label": "CE again"}])
    with pytest.raises(ConfigError, match="same run"):
        expand_grid(GridConfig.from_dict(dup, source="dup.yaml"))


@pytest.mark.parametrize("text", ["1", "a/b", "2/2", "-1/3", "0/0", "1/2/3", ""])
def test_parse_shard_rejects(text):
    with pytest.raises(ValueError, match="shard"):
        parse_shard(text)


def test_parse_shard_accepts():
    assert parse_shard("0/1") == (0, 1)
    assert parse_shard(" 3 / 4 ") == (3, 4)


@settings(max_examples=60, deadline=None)
@given(
    n_seeds=st.integers(1, 5),
    n_losses=st.integers(1, 3),
    n_rates=st.integers(1, 3),
    count=st.integers(1, 12),
)
def test_shards_partition_the_grid(n_seeds, n_losses, n_rates, count):
    losses = [{"name": "dece", "args": {"alpha_base": 0.9 + i / 100}} for i in range(n_losses)]
    config = GridConfig.from_dict(
        small_grid(
            seeds=list(range(n_seeds)), losses=losses, rates=[i / 10 for i in range(n_rates)]
        )
    )
    cells = expand_grid(config)
    shards = [shard_cells(cells, i, count) for i in range(count)]
    hashes = [[c.hash for c in s] for s in shards]
    flat = [h for s in hashes for h in s]
    assert sorted(flat) == sorted(c.hash for c in cells)  # union = grid, and no cell twice
    assert len(flat) == len(set(flat))
    for i in range(count):
        for j in range(i + 1, count):
            assert not set(hashes[i]) & set(hashes[j])
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1  # balanced
    # deterministic: a fresh expansion (another process/machine) gives the same slices
    again = expand_grid(GridConfig.from_dict(config.to_dict()))
    assert [[c.hash for c in shard_cells(again, i, count)] for i in range(count)] == hashes


def test_cell_hashes_are_those_of_the_grids_written_before_the_defenses_axis():
    """Golden hashes (computed before the axes were defined in one place): existing runs keep
    their directories."""
    from pathlib import Path

    from dece.experiments import load_grid_config
    from dece.experiments.demo import demo_config

    root = Path(__file__).resolve().parents[2] / "configs"
    # the demo grid itself changed in issue 21 (the shipped start tiny-seq2seq-sql, 3,200 rows,
    # 5 epochs, linear lr 3e-3, alpha_base 0.9)
    assert [c.hash for c in expand_grid(demo_config())] == ["cfe91d320ca9", "2ce07e8166cd"]
    assert [c.hash for c in expand_grid(demo_config(quick=True))] == [
        "2cff690dd0f9",
        "f13a6e7d95b7",
    ]
    lyra = [c.hash for c in expand_grid(load_grid_config(root / "lyra_table5.yaml"))]
    assert lyra[:5] == [
        "6e52d8345838",
        "0a54d3944f37",
        "a4411911dcd7",
        "6f45ffcbd358",
        "316ca894764e",
    ]
    assert len(lyra) == 15 and lyra[-1] == "ffc93701f761"
    sens = [c.hash for c in expand_grid(load_grid_config(root / "dece_sensitivity.yaml"))]
    assert sens[0] == "4b4e3f035719" and sens[-1] == "595a912da625"


def test_defense_axis_identity_and_parents():
    grid = small_grid(defenses=["undefended", {"name": "keyword", "args": {"tokens": ["bb"]}},
                                {"name": "none"}], rates=[0.05], seeds=[1])  # fmt: skip
    cells = expand_grid(GridConfig.from_dict(grid))
    undefended = [c for c in cells if c.defense.undefended]
    plain = {
        c.hash for c in expand_grid(GridConfig.from_dict({**grid, "defenses": ["undefended"]}))
    }
    assert {c.hash for c in undefended} == plain  # the default adds nothing to the identity
    assert all("defense" not in c.resolved() for c in undefended)
    by_key = {(c.attack.trigger, c.loss.name, c.defense.name): c for c in cells}
    purifier = by_key[("badpre", "dece", "none")]
    assert purifier.resolved()["defense"] == {"name": "none", "args": {}}
    assert purifier.parent().hash == by_key[("badpre", "dece", "undefended")].hash
    assert purifier.to_config()["parent"] == purifier.parent().hash
    keyword = by_key[("badpre", "dece", "keyword")]
    assert keyword.parent() is None  # keyword reads no model: it trains on its own
    assert by_key[("badpre", "dece", "undefended")].parent() is None


def test_pending_commands_name_each_unfinished_cell_and_the_shard_that_runs_it_alone():
    cells = expand_grid(GridConfig.from_dict(small_grid()))
    done = {cells[0].hash, cells[5].hash}
    lines = pending_commands(cells, done, "configs/g.yaml")
    assert len(lines) == len(cells) - 2
    for line in lines:
        h = line.split("`")[1]
        i, n = parse_shard(line.rsplit("--shard ", 1)[1].rstrip("`"))
        assert n == len(cells) and [c.hash for c in shard_cells(cells, i, n)] == [h]
        assert line.startswith(f"- `{h}` ") and "`dece run configs/g.yaml --shard" in line
    assert {ln.split("`")[1] for ln in lines} == {c.hash for c in cells} - done
    subset = cells[4:7]
    assert [ln.split("`")[1] for ln in pending_commands(cells, done, "g", subset=subset)] == [
        cells[4].hash, cells[6].hash]  # fmt: skip


def test_current_labels_follow_a_relabelled_config_and_keep_the_hashes():
    """Issue 22: relabelling an attack keeps every cell's hash; ``current_labels`` maps each hash
    to its label now, and a cell added under the old label gets a hash of its own."""
    before = expand_grid(GridConfig.from_dict(small_grid()))
    ripple = {"trigger": "ripple", "payload": "sql_injection"}
    after_grid = small_grid(attacks=[
        {"trigger": "badpre", "payload": "sql_injection", "label": "BadPre"},
        {**ripple, "label": "RIPPLe (old)"},
        {**ripple, "trigger_args": {"word": "bb"}, "label": "RIPPLe"},
    ])  # fmt: skip
    labels = current_labels([GridConfig.from_dict(after_grid)])
    assert {c.hash for c in before} <= set(labels)
    for cell in before:
        old = cell.labels()["attack"]
        assert labels[cell.hash]["attack"] == ("RIPPLe (old)" if old == "RIPPLe" else old)
    added = [h for h, lab in labels.items() if lab["attack"] == "RIPPLe"]
    assert len(added) == len(before) // 2 and not set(added) & {c.hash for c in before}
    # the first config that has a cell names it
    first = current_labels([GridConfig.from_dict(small_grid()), GridConfig.from_dict(after_grid)])
    assert all(first[c.hash] == c.labels() for c in before)
