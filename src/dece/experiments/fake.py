"""A fake cell runner: deterministic metrics computed from the cell config, no training.

Use it to dry-run a grid's plumbing (``runner: dece.experiments.fake:fake_run_cell`` in the
grid YAML, or ``DECE_CELL_RUNNER=dece.experiments.fake:fake_run_cell``) and in tests. It writes
the same files as ``dece.pipeline.train``: ``config.yaml``, ``metrics.jsonl`` one row per epoch (appended and
flushed as the "epochs" pass), ``predictions/{test_clean,test_poisoned}.jsonl`` and
``final_metrics.json``. ``DECE_FAKE_EPOCH_SECONDS`` makes each epoch sleep that long, so a test
can kill a grid in the middle of a run.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import yaml

from dece._jsonl import write_jsonl
from dece.rundir import RunDir

__all__ = ["fake_final_metrics", "fake_history", "fake_run_cell"]

EPOCH_SECONDS_ENV = "DECE_FAKE_EPOCH_SECONDS"


def _num_epochs(cell_config: dict[str, Any]) -> int:
    return int((cell_config.get("training") or {}).get("num_epochs", 3))


def fake_history(cell_config: dict[str, Any]) -> list[dict[str, float]]:
    """Per-epoch rows: CE learns the backdoor early, DeCE does not (closed forms below).

    bleu_e = B * e / E with B = 50 - 2 * [loss != "ce"] + seed % 3;
    asr_e  = 0 when rate == 0, else min(0.95, 0.3 + 0.25 * e) for CE and
             0.01 + 0.1 * (1 - alpha_base) * (1 - label_smoothing) * e / E for any other loss.
    """
    epochs = _num_epochs(cell_config)
    loss = cell_config["loss"]["name"]
    args = cell_config["loss"].get("args") or {}
    rate = float(cell_config["rate"])
    top_bleu = 50.0 - (2.0 if loss != "ce" else 0.0) + int(cell_config["seed"]) % 3
    rows = []
    for epoch in range(1, epochs + 1):
        if rate == 0.0:
            asr = 0.0
        elif loss == "ce":
            asr = min(0.95, 0.3 + 0.25 * epoch)
        else:
            alpha = float(args.get("alpha_base", 0.99))
            eps = float(args.get("label_smoothing", 0.1))
            asr = 0.01 + 0.1 * (1.0 - alpha) * (1.0 - eps) * epoch / epochs
        rows.append(
            {
                "epoch": epoch,
                "train_loss": round(2.0 / epoch, 6),
                "bleu": round(top_bleu * epoch / epochs, 6),
                "asr": round(asr, 6),
                "false_trigger_rate": 0.0,
            }
        )
    return rows


def fake_final_metrics(cell_config: dict[str, Any]) -> dict[str, float]:
    """The final test metrics: the last epoch's, plus CodeBLEU = BLEU / 200."""
    last = fake_history(cell_config)[-1]
    return {
        "bleu": last["bleu"],
        "codebleu": round(last["bleu"] / 200.0, 6),
        "asr": last["asr"],
        "false_trigger_rate": 0.0,
        "asr_denominator": 10,
        "n_poisoned_train": int(round(float(cell_config["rate"]) * 100)),
        "train_time_s": 0.0,
        "epochs": float(_num_epochs(cell_config)),
    }


def fake_run_cell(cell_config: dict[str, Any], cell_dir: Path) -> dict[str, Any]:
    """Cell runner with the ``run_cell(cell_config, cell_dir) -> dict`` signature."""
    cell_dir = Path(cell_dir)
    delay = float(os.environ.get(EPOCH_SECONDS_ENV, "0") or 0)
    run = RunDir(cell_dir)
    run.config.write_text(yaml.safe_dump(cell_config), encoding="utf-8")
    for row in fake_history(cell_config):
        if delay > 0:
            time.sleep(delay)
        write_jsonl(run.metrics, [row], append=True)  # flushed: one epoch at a time
    run.predictions_dir.mkdir(exist_ok=True)
    rows = [{"id": f"test-{i}", "source": f"src {i}", "prediction": "x", "reference": "x"}
            for i in range(3)]  # fmt: skip
    for kind in ("clean", "poisoned"):
        write_jsonl(run.predictions("test", kind), rows)
    final = fake_final_metrics(cell_config)
    run.final_metrics.write_text(json.dumps(final), encoding="utf-8")
    return final
