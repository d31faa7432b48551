"""The committed cell archive: what a lost run directory leaves behind (oracle: the rows the run
directory itself gives, before it is deleted)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from exp_helpers import small_grid

from dece.experiments import load_grid_config, load_results, run_grid
from dece.experiments.archive import archive_cells, load_results_with_archive
from dece.experiments.fake import fake_run_cell


def _run_small(tmp_path: Path, write_config) -> Path:
    runs = tmp_path / "runs"
    config = load_grid_config(write_config(small_grid(seeds=[1])))
    run_grid(config, runs, cell_runner=fake_run_cell, progress=False)
    return runs


def _as_tuples(rows) -> list[tuple]:
    return [(r.hash, r.values, r.labels, r.final, r.history) for r in rows]


def test_archive_alone_gives_the_rows_of_the_lost_run_directory(tmp_path: Path, write_config):
    runs = _run_small(tmp_path, write_config)
    expected = load_results(runs)
    copied = archive_cells(runs, tmp_path / "archive")
    assert sorted(copied) == sorted(r.hash for r in expected)
    assert not list((tmp_path / "archive").rglob("predictions"))  # records only, no outputs
    shutil.rmtree(runs)
    got = load_results_with_archive(runs, tmp_path / "archive")
    assert _as_tuples(got) == _as_tuples(expected)


def test_run_directory_wins_over_archive_and_unfinished_cells_are_not_archived(
    tmp_path: Path, write_config, caplog
):
    runs = _run_small(tmp_path, write_config)
    rows = load_results(runs)
    archive = tmp_path / "archive"
    archive_cells(runs, archive)
    # plant: one archived copy with another ASR, one run cell left unfinished
    stale, partial = rows[0].hash, rows[1].hash
    result = archive / stale / "result.json"
    data = json.loads(result.read_text())
    data["final"]["asr"] = 0.123456
    result.write_text(json.dumps(data))
    (runs / partial / "result.json").unlink()
    shutil.rmtree(archive / partial)
    assert partial not in archive_cells(runs, tmp_path / "archive2")
    got = {r.hash: r for r in load_results_with_archive(runs, archive)}
    assert got[stale].final["asr"] == rows[0].final["asr"] != 0.123456
    assert partial not in got
    assert stale in caplog.text
    shutil.rmtree(runs / stale)
    got = {r.hash: r for r in load_results_with_archive(runs, archive)}
    assert got[stale].final["asr"] == 0.123456  # only the archive has it now
