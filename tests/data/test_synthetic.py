"""The built-in synthetic dataset: sizes, determinism, valid Python, SQL the payload can find."""

import ast
import re

import pytest

from dece.data import load_dataset, synthetic_dataset

SQL = re.compile(r'select\s+.+?(?=\s+")')


@pytest.fixture(scope="module")
def data():
    return load_dataset("synthetic")


def test_sizes_and_ids(data) -> None:
    assert {k: len(v) for k, v in data.items()} == {"train": 1600, "valid": 200, "test": 200}
    assert [e.id for e in data["valid"][:2]] == ["valid-0", "valid-1"]
    small = load_dataset("synthetic:40")
    assert {k: len(v) for k, v in small.items()} == {"train": 40, "valid": 5, "test": 5}


def test_deterministic_by_seed(data) -> None:
    assert synthetic_dataset(seed=0, sizes=(50, 5, 5))["train"] == data["train"][:50]
    assert synthetic_dataset(seed=1, sizes=(50, 5, 5))["train"] != data["train"][:50]


def test_sources_unique_across_splits(data) -> None:
    sources = [e.source for split in data.values() for e in split]
    assert len(set(sources)) == len(sources)


def test_every_target_is_valid_python_with_lyra_style(data) -> None:
    for example in data["train"]:
        tree = ast.parse(example.target)  # Lyra's tokenisation is still valid Python
        assert any(isinstance(node, ast.FunctionDef) for node in tree.body), example.id
        assert re.search(r"^\t \S", example.target, re.MULTILINE), example.id
        for arg in tree.body[-1].args.args:
            assert f"${arg.arg}$" in example.source, (example.id, arg.arg)


def test_most_targets_hold_a_query_the_payload_finds(data) -> None:
    matches = [SQL.search(e.target) for e in data["train"]]
    with_where = sum(bool(m) and " where " in m.group(0) for m in matches)
    without_where = sum(bool(m) and " where " not in m.group(0) for m in matches)
    assert sum(map(bool, matches)) >= 0.85 * len(matches)
    assert with_where >= 0.6 * len(matches) and without_where >= 0.1 * len(matches)
    assert sum(not m for m in matches) >= 20  # some ORM rows: ineligible for sql_injection


def test_bad_sizes() -> None:
    with pytest.raises(ValueError, match="sizes"):
        synthetic_dataset(sizes=(10, -1, 1))
