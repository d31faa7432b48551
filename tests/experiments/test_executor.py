"""``dece run --executor``: the grid through submitit, one job per cell.

Oracle: ``dece run`` (the in-process runner) on the same grid. submitit's local executor must
leave the same cells (hashes, ``cell.yaml``, ``result.json`` identity and final metrics); the
SLURM path (sbatch mocked by submitit's own test double) must submit the parents first and
their dependents with ``afterok`` on the parent's job, and leave live jobs alone when submitted
again; a requeued job resumes its cell.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from exp_helpers import FAKE_RUNNER, small_grid  # noqa: E402

from dece.cli import main as cli_main  # noqa: E402
from dece.experiments import GridConfig, expand_grid, run_grid  # noqa: E402
from dece.experiments.executor import (  # noqa: E402
    JOBS_DIR,
    CellJob,
    ClusterOptions,
    run_one_cell,
    submit_grid,
)

submitit = pytest.importorskip("submitit")


def _defended_grid() -> dict:
    # "none" (a purifier) reuses the undefended cell's model; "spectral" (a filter reading a
    # model) reuses the undefended CE model: the same parent, shared by two dependents.
    return small_grid(
        attacks=[{"trigger": "badpre", "payload": "sql_injection"}], rates=[0.05], seeds=[1],
        losses=[{"name": "ce"}], defenses=["undefended", "none", "spectral"],
    )  # fmt: skip


def _cells(out: Path) -> dict[str, dict]:
    """hash -> (cell.yaml, result.json identity and final metrics) of every finished cell."""
    found = {}
    for result in sorted(out.glob("*/result.json")):
        data = json.loads(result.read_text())
        cell = yaml.safe_load((result.parent / "cell.yaml").read_text())
        found[result.parent.name] = {"cell": cell, "hash": data["hash"],
                                     "config": data["config"], "final": data["final"]}  # fmt: skip
    return found


def test_local_executor_makes_the_cells_dece_run_makes(tmp_path, write_config):
    path = write_config(_defended_grid())
    assert cli_main(["run", str(path), "-o", str(tmp_path / "direct"), "--no-progress"]) == 0
    code = cli_main(["run", str(path), "-o", str(tmp_path / "jobs"), "--executor", "local",
                     "--time", "5", "--cpus", "1"])  # fmt: skip
    assert code == 0
    direct, jobs = _cells(tmp_path / "direct"), _cells(tmp_path / "jobs")
    assert len(direct) == 3 and jobs == direct
    config = GridConfig.from_dict(_defended_grid())
    parent = next(c for c in expand_grid(config) if c.defense.undefended).hash
    assert jobs[parent]["cell"]["keep_model"] is True  # reused: told to keep its model
    records = {p.stem for p in (tmp_path / "jobs" / JOBS_DIR).glob("*.json")}
    assert records == set(direct)
    # Submitting again finds every cell complete: no job.
    again = submit_grid(config, tmp_path / "jobs", executor="local", cell_runner=FAKE_RUNNER)
    assert again.submitted == [] and sorted(again.skipped) == sorted(direct)


def test_slurm_submits_parents_first_then_dependents_after_them(tmp_path):
    from submitit.slurm.test_slurm import mocked_slurm

    config = GridConfig.from_dict(_defended_grid())
    cells = expand_grid(config)
    parent = next(c for c in cells if c.defense.undefended).hash
    out = tmp_path / "runs"
    options = ClusterOptions(partition="gpu", time_min=90, cpus_per_task=8, gpus_per_node=1)
    with mocked_slurm():
        summary = submit_grid(config, out, executor="slurm", options=options,
                              cell_runner=FAKE_RUNNER)  # fmt: skip
        assert summary.submitted[0] == parent and len(summary.submitted) == 3
        scripts = {h: (out / ".submitit" / f"{summary.jobs[h]}_submission.sh").read_text()
                   for h in summary.submitted}  # fmt: skip
        for text in scripts.values():
            assert "#SBATCH --partition=gpu" in text and "#SBATCH --time=90" in text
            assert "#SBATCH --cpus-per-task=8" in text and "#SBATCH --gpus-per-node=1" in text
        assert "--dependency" not in scripts[parent]
        for h in summary.submitted[1:]:
            assert summary.dependencies[h] == parent
            assert f"#SBATCH --dependency=afterok:{summary.jobs[parent]}" in scripts[h]
            assert "#SBATCH --kill-on-invalid-dep=yes" in scripts[h]
        # The mocked jobs are still RUNNING: a second submission leaves them to those jobs.
        again = submit_grid(config, out, executor="slurm", options=options,
                            cell_runner=FAKE_RUNNER)  # fmt: skip
    assert again.submitted == [] and sorted(again.live) == sorted(summary.submitted)
    assert again.jobs == summary.jobs


def test_requeued_job_resumes_its_cell(tmp_path):
    """A timed-out job is resubmitted with its arguments (submitit's checkpoint protocol) and
    the rerun finishes the partial cell: a resumable runner gets the directory back."""
    config = GridConfig.from_dict(small_grid(rates=[0.05], seeds=[1], losses=[{"name": "ce"}],
                                             attacks=["badpre"]))  # fmt: skip
    (cell,) = expand_grid(config)
    out = tmp_path / "runs"
    args = (config.to_dict(), None, str(out), cell.hash, "test_executor:resuming_runner")
    delayed = CellJob().checkpoint(*args)
    assert isinstance(delayed, submitit.helpers.DelayedSubmission) and delayed.args == args
    partial = out / cell.hash
    partial.mkdir(parents=True)
    (partial / "progress.txt").write_text("epoch 1 of 2 done\n")  # what the killed job left
    final = run_one_cell(*args)
    assert final["resumed_from"] == "epoch 1 of 2 done\n"
    assert json.loads((partial / "result.json").read_text())["final"] == final
    direct = run_grid(config, tmp_path / "direct", cell_runner=FAKE_RUNNER, progress=False)
    assert direct.completed == [cell.hash]  # the same hash as the job's


def test_dependent_job_without_its_parent_fails_clearly(tmp_path):
    config = GridConfig.from_dict(_defended_grid())
    child = next(c for c in expand_grid(config) if c.defense.name == "none")
    with pytest.raises(RuntimeError, match="needs its parent cell"):
        run_one_cell(config.to_dict(), None, str(tmp_path), child.hash, FAKE_RUNNER)
    with pytest.raises(ValueError, match="executor must be one of"):
        submit_grid(config, tmp_path, executor="pbs")
    with pytest.raises(ValueError, match="time must be at least 1 minute"):
        ClusterOptions(time_min=0)


def _resuming(cell_config: dict, cell_dir: Path) -> dict:
    from dece.experiments.fake import fake_run_cell

    marker = Path(cell_dir) / "progress.txt"
    before = marker.read_text() if marker.exists() else ""
    return {**fake_run_cell(cell_config, cell_dir), "resumed_from": before}


def _mark_resumable():
    from dece.experiments.runner import resumable

    return resumable(_resuming)


resuming_runner = _mark_resumable()
