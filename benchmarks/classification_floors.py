"""The clean models of the classification grids evaluated under every attack ("floors").

A 0% cell trains the same model whatever the attack (no row is poisoned; same data, labels and
seed), so the results script (``classification_results.py``) trains one clean model per loss
and evaluates it under every attack of the group's grids instead of training it again per
trigger. The evaluation is also the ASR floor of the poisoned rows: what an unpoisoned model
already shows on the triggered inputs (ordinary misclassification). Nothing is trained here.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from dece.experiments import expand_grid, load_grid_config

REPO = Path(__file__).resolve().parents[1]
FLOORS_FILE = "clean_floors.json"
logger = logging.getLogger(__name__)
# group -> (its grid configs, the trigger whose clean cells are trained, that trigger's label)
FLOOR_GROUPS = {
    "techdebt": (("techdebt_table8.yaml", "techdebt_badpre.yaml"), "badpre", "BadPre"),
    "defect": (("defect_table9.yaml",), "deadcode", "DeadCode"),
}
FLOOR_MARK = "†"


def attack_key(label: str, target: Any) -> str:
    return f"{label.split(' (')[0]} -> {target}"


def compute_floors(runs: Path, archive: Path, group: str) -> Path:
    """Evaluate each finished clean model (seed 42; CE, DeCE) under every attack of ``group``.

    Adds to (or creates) ``runs/clean_floors.json``: ``{loss label: {"model": hash,
    "attacks": {"<attack> -> <target>": test metrics}}}``; a loss whose clean cell has not run
    is skipped (logged).
    """
    from dece.pipeline import evaluate, prepare_data
    from dece.training import PoisonConfig, TrainConfig
    from dece.victim import Victim

    names, trigger, _ = FLOOR_GROUPS[group]
    cells = [c for n in names for c in expand_grid(load_grid_config(REPO / "configs" / n))]
    attacks = {json.dumps(c.attack.resolved(), sort_keys=True): c.attack for c in cells}
    out = load_floors(runs, archive)
    for clean in [c for c in cells if c.rate == 0 and c.seed == 42 and c.attack.trigger == trigger]:
        run_dir = runs / clean.hash
        if clean.labels()["loss"] in out:
            continue
        if not (run_dir / "config.yaml").is_file():
            logger.warning("clean cell %s (%s) has not run: skipped", clean.hash, clean.labels())
            continue
        config = TrainConfig.from_yaml(run_dir / "config.yaml")
        victim = Victim.load(run_dir)
        result: dict[str, Any] = {}
        for attack in attacks.values():
            spec = attack.resolved()
            config.eval_poison = PoisonConfig(
                trigger=spec["trigger"], trigger_args=spec["trigger_args"],
                payload=spec["payload"], payload_args=spec["payload_args"], seed=42,
            )  # fmt: skip
            metrics = evaluate(victim, prepare_data(config), split="test").metrics
            result[attack_key(attack.label, spec["payload_args"]["target_label"])] = metrics
        out[clean.labels()["loss"]] = {"model": clean.hash, "attacks": result}
    path = runs / FLOORS_FILE
    path.write_text(json.dumps(out, indent=1, sort_keys=True))
    return path


def read_floors(path: Path) -> dict[str, Any]:
    """``{loss label: {"model", "attacks"}}``; a file of the older one-model layout is CE's."""
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    return {"CE": data} if "attacks" in data else data


def load_floors(runs: Path, archive: Path) -> dict[str, Any]:
    return read_floors(runs / FLOORS_FILE) or read_floors(archive / FLOORS_FILE)
