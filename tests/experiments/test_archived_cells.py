"""Golden test of cell identity (issue 23, item 2): every archived cell under
``benchmarks/results/cells/<grid>/<hash>/`` is a cell (or a parent of a cell) of today's
``configs/*.yaml``, and the config it recorded hashes to its directory name.

Layout (found, and checked below): ``cells/<grid dir>/`` holds cell directories, each named by
its 12-hex hash and holding ``result.json`` (and, for all but a few older cells, ``cell.yaml``),
plus plain files (``clean_floors.json``) and the directories of :data:`NOT_CELLS`.

Extends ``test_configs_dir.py``: its ``golden_cell_hashes.json`` pins the hashes each config
expands to; this file pins the archive against the configs and against the hash function, for
every archived directory (those with only ``result.json`` included), which replaces the former
``test_archived_cells_are_cells_of_the_shipped_configs`` (``cell.yaml`` directories only).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from dece.experiments import expand_grid, load_grid_config
from dece.experiments.grid import Cell, cell_hash, cell_identity

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
ARCHIVE = ROOT / "benchmarks" / "results" / "cells"
HASH_RE = re.compile(r"^[0-9a-f]{12}$")

#: Directories under ``cells/<grid>/`` that are not cells, with the reason for each.
NOT_CELLS: dict[str, str] = {
    "lyra_defenses/detection": "per-cell detection scores (one detection.json per scored cell, "
    "in a directory named by that cell's hash), written by dece.experiments.detection_table; "
    "not a run, so it has no result.json or cell.yaml",
}
N_ARCHIVED = 105  # today's archive; a new archived cell raises it (the oracle counts them)


@pytest.fixture(scope="module")
def expanded() -> dict[str, Cell]:
    """``{hash: cell}`` of every cell of every shipped config, and of every cell's parent."""
    out: dict[str, Cell] = {}
    for path in sorted(CONFIGS.glob("*.yaml")):
        for cell in expand_grid(load_grid_config(path)):
            out.setdefault(cell.hash, cell)
            parent = cell.parent()
            if parent is not None:
                out.setdefault(parent.hash, parent)
    return out


def _cell_dirs() -> list[Path]:
    return sorted(
        d for d in ARCHIVE.glob("*/*")
        if d.is_dir() and ((d / "result.json").is_file() or (d / "cell.yaml").is_file())
    )  # fmt: skip


def _recorded(cell_dir: Path) -> list[tuple[str, dict[str, Any]]]:
    """The configs a cell directory recorded: ``cell.yaml`` and ``result.json``'s ``config``."""
    out = []
    if (cell_dir / "cell.yaml").is_file():
        out.append(("cell.yaml", yaml.safe_load((cell_dir / "cell.yaml").read_text())))
    result = json.loads((cell_dir / "result.json").read_text())
    assert result["hash"] == cell_dir.name, f"{cell_dir}: result.json names {result['hash']}"
    out.append(("result.json", result["config"]))
    return out


def test_every_directory_under_the_archive_is_a_cell_or_a_named_exception():
    seen_exceptions = set()
    for d in sorted(p for p in ARCHIVE.glob("*/*") if p.is_dir()):
        rel = d.relative_to(ARCHIVE).as_posix()
        if rel in NOT_CELLS:
            seen_exceptions.add(rel)
            assert not (d / "result.json").exists() and not (d / "cell.yaml").exists(), rel
            continue
        assert HASH_RE.match(d.name), f"{rel}: not a cell hash and not in NOT_CELLS"
        assert (d / "result.json").is_file(), f"{rel}: a cell directory without result.json"
    assert seen_exceptions == set(NOT_CELLS), "NOT_CELLS names a directory that is gone"


def test_archived_cells_are_cells_of_the_shipped_configs(expanded):
    archived = _cell_dirs()
    assert len(archived) == N_ARCHIVED
    missing = [d.relative_to(ARCHIVE).as_posix() for d in archived if d.name not in expanded]
    assert not missing, f"archived cells no shipped config expands to: {missing}"


def test_detection_scores_are_keyed_by_cells_of_the_shipped_configs(expanded):
    scored = [d.name for d in (ARCHIVE / "lyra_defenses" / "detection").iterdir() if d.is_dir()]
    assert scored and set(scored) <= set(expanded)


def test_each_archived_config_hashes_to_its_directory_name(expanded):
    checked = 0
    for cell_dir in _cell_dirs():
        for source, config in _recorded(cell_dir):
            where = f"{cell_dir.relative_to(ARCHIVE)}/{source}"
            assert config.get("hash", cell_dir.name) == cell_dir.name, where
            identity = cell_identity(config)
            assert cell_hash(identity) == cell_dir.name, where
            assert identity == expanded[cell_dir.name].resolved(), where  # the same identity
            checked += 1
    assert checked >= 2 * N_ARCHIVED - 10  # 10 older techdebt cells have no cell.yaml


def test_cell_identity_of_to_config_is_the_cells_identity(expanded):
    """The reader and the writer agree on every shipped cell, not only the archived ones."""
    for h, cell in expanded.items():
        config = cell.to_config()
        assert cell_identity(config) == cell.resolved() and cell_hash(cell_identity(config)) == h
