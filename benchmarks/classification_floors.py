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
import re
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
# A label's flip-direction suffix, e.g. "BadPre (to 1)": the target is part of the key already.
_TARGET_SUFFIX = re.compile(r"\s*\(to [^)]*\)$")
# Floors files written before issue 22 name the five-word RIPPLe (Kurita et al.'s cf, mn, bb,
# tq, mb; the only RIPPLe of these grids then) "RIPPLe"; that label now means `bb` once.
_LEGACY_KEYS = {"RIPPLe -> 0": "RIPPLe (Kurita words) -> 0"}


def base_label(label: str) -> str:
    """An attack label without its flip-direction suffix (``"BadPre (to 1)"`` -> ``"BadPre"``);
    other parentheses stay (``"RIPPLe (Kurita words)"`` is its own attack)."""
    return _TARGET_SUFFIX.sub("", label)


def attack_key(label: str, target: Any) -> str:
    return f"{base_label(label)} -> {target}"


def compute_floors(runs: Path, archive: Path, group: str) -> Path:
    """Evaluate each finished clean model (seed 42; CE, DeCE) under every attack of ``group``.

    Adds to (or creates) ``runs/clean_floors.json``: ``{loss label: {"model": hash,
    "attacks": {"<attack> -> <target>": test metrics}}}``, evaluating only the attacks a loss's
    entry lacks (e.g. one a grid gained later); a loss whose clean cell has not run is skipped
    (logged).
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
        result: dict[str, Any] = dict(out.get(clean.labels()["loss"], {}).get("attacks", {}))
        todo = [a for a in attacks.values() if _key(a) not in result]
        if not todo:
            continue
        if not (run_dir / "config.yaml").is_file():
            logger.warning("clean cell %s (%s) has not run: skipped", clean.hash, clean.labels())
            continue
        config = TrainConfig.from_yaml(run_dir / "config.yaml")
        victim = Victim.load(run_dir)
        for attack in todo:
            spec = attack.resolved()
            config.eval_poison = PoisonConfig(
                trigger=spec["trigger"], trigger_args=spec["trigger_args"],
                payload=spec["payload"], payload_args=spec["payload_args"], seed=42,
            )  # fmt: skip
            metrics = evaluate(victim, prepare_data(config), split="test").metrics
            metrics["attack"] = spec  # the trigger it was measured with (labels can change)
            result[_key(attack)] = metrics
        out[clean.labels()["loss"]] = {"model": clean.hash, "attacks": result}
    path = runs / FLOORS_FILE
    path.write_text(json.dumps(out, indent=1, sort_keys=True))
    return path


def _key(attack: Any) -> str:
    return attack_key(attack.label, attack.payload_args["target_label"])


def read_floors(path: Path) -> dict[str, Any]:
    """``{loss label: {"model", "attacks"}}``; a file of the older one-model layout is CE's.
    Entries written before the attack was recorded with them get today's key (``_LEGACY_KEYS``)."""
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    data = {"CE": data} if "attacks" in data else data
    for entry in data.values():
        attacks = entry.get("attacks", {})
        entry["attacks"] = {
            _LEGACY_KEYS.get(key, key) if "attack" not in metrics else key: metrics
            for key, metrics in attacks.items()
        }
    return data


def load_floors(runs: Path, archive: Path) -> dict[str, Any]:
    return read_floors(runs / FLOORS_FILE) or read_floors(archive / FLOORS_FILE)
