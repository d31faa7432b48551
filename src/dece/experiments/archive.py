"""A committed archive of finished grid cells, so measured results outlive their run directory.

A grid's cells live under ``runs/`` (ignored by git, gigabytes of models). When that directory is
lost — a fresh machine, a cleaned checkout — a results script regenerated from it would print
"pending" where numbers were measured. :func:`archive_cells` copies the small record files of
every finished cell (``result.json``, ``cell.json``, ``metrics.jsonl``, ``filter.json`` and the
detection records of :mod:`dece.experiments.detection_table`; never models, manifests or
per-example losses) into ``<archive>/<hash>/``, a directory meant to be committed beside the
results it backs. :func:`load_results_with_archive` reads the run directory first and takes from
the archive only the cells the run directory lacks, so a rerun cell always wins over its archived
copy (a warning names the cells whose archived final metrics differ from the rerun's).

The archive has the layout of a run directory, so :func:`dece.experiments.load_results` and
:func:`dece.experiments.detection_table.load_detection_rows` read it as they are.

Example::

    rows = load_results_with_archive("runs/techdebt", "benchmarks/results/cells/techdebt")
    archive_cells("runs/techdebt", "benchmarks/results/cells/techdebt")
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from dece.experiments.axes import AXES
from dece.experiments.detection_table import DETECTION_DIR, DETECTION_FILE
from dece.experiments.results import ResultRow, load_results
from dece.experiments.store import CELL_FILE, RESULT_FILE, cell_state
from dece.rundir import FILTER_FILE, METRICS_FILE

__all__ = ["ARCHIVED_FILES", "archive_cells", "load_results_with_archive"]

logger = logging.getLogger(__name__)

ARCHIVED_FILES = (RESULT_FILE, CELL_FILE, METRICS_FILE, FILTER_FILE)


def archive_cells(runs_dir: str | Path, archive_dir: str | Path) -> list[str]:
    """Copy the record files of every finished cell of ``runs_dir`` (and every detection record)
    into ``archive_dir``, replacing older copies of the same cells; returns the hashes copied.

    Cells that are not finished (no consistent ``result.json``) are not copied; cells already
    archived but absent from ``runs_dir`` are kept.
    """
    runs, archive = Path(runs_dir), Path(archive_dir)
    if not runs.is_dir():
        raise FileNotFoundError(f"runs directory {str(runs)!r} does not exist")
    copied: list[str] = []
    for result in sorted(runs.rglob(RESULT_FILE)):
        cell_dir = result.parent
        if DETECTION_DIR in cell_dir.relative_to(runs).parts or cell_state(cell_dir) != "done":
            continue
        _copy(cell_dir, archive / cell_dir.name, ARCHIVED_FILES)
        copied.append(cell_dir.name)
    for record in sorted(runs.rglob(f"{DETECTION_DIR}/*/{DETECTION_FILE}")):
        _copy(record.parent, archive / DETECTION_DIR / record.parent.name, (DETECTION_FILE,))
        copied.append(record.parent.name)
    return copied


def _copy(src: Path, dest: Path, names: tuple[str, ...]) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name in names:
        if (src / name).is_file():
            shutil.copy2(src / name, dest / name)


def load_results_with_archive(
    runs_dir: str | Path, archive_dir: str | Path | None
) -> list[ResultRow]:
    """The finished cells of ``runs_dir`` plus the archived cells it lacks (module docstring),
    in grid order; either directory may be missing."""
    rows = load_results(runs_dir) if Path(runs_dir).is_dir() else []
    if archive_dir is None or not Path(archive_dir).is_dir():
        return rows
    have = {r.hash: r for r in rows}
    for old in load_results(archive_dir):
        new = have.get(old.hash)
        if new is None:
            rows.append(old)
        elif _metrics(new) != _metrics(old):
            logger.warning("cell %s: the rerun's final metrics differ from the archived ones; "
                           "the rerun's are used", old.hash)  # fmt: skip
    rows.sort(key=lambda r: (r.grid, tuple(r.order.get(a.field, 0) for a in AXES), r.hash))
    return rows


def _metrics(row: ResultRow) -> dict[str, float]:
    return {
        k: round(float(v), 4) for k, v in row.final.items()
        if isinstance(v, (int, float)) and not k.endswith(("_s", "_time", "seconds"))
    }  # fmt: skip
