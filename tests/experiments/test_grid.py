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
    expand_grid,
    parse_shard,
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
