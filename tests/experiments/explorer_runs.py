"""A runs directory with two finished defense cells, written by the library's own writers.

The poisoning is real (``poison_test_set`` / ``poison_dataset`` on the synthetic data, BadPre
tokens, manifests with the trigger spans); the filter is the real ``keyword`` filter through
``apply_filter``; the purifier cell's outputs are a planted :class:`PurifyResult` (known detected,
missed and false-alarm inputs: the oracle), written by ``write_evaluation`` as a purifier cell's
are. Imported by module name from the explorer and browser tests.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from dece.attacks import poison_dataset, poison_test_set
from dece.data.synthetic import synthetic_dataset
from dece.defenses import Change, PurifyResult, get_defense
from dece.experiments import GridConfig, expand_grid
from dece.experiments.store import write_result
from dece.pipeline.data import DataBundle, EvalSet
from dece.pipeline.evaluation import EvalResult
from dece.pipeline.run import apply_filter, write_evaluation

GRID = {
    "name": "explorer", "datasets": ["synthetic:24"], "attacks": ["badpre"], "rates": [0.25],
    "models": ["tiny-seq2seq"], "losses": ["ce"], "seeds": [1],
    "defenses": ["undefended", {"name": "keyword", "args": {"tokens": ["bb"]}}, "onion"],
}  # fmt: skip
N_DETECTED = 2  # the first poisoned test inputs the planted purifier catches; the rest it misses


def _cell_dir(out: Path, cell: Any) -> tuple[Path, dict[str, Any]]:
    config = cell.to_config()
    d = out / cell.hash
    (d / "predictions").mkdir(parents=True)
    (d / "cell.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return d, config


def _finish(d: Path, h: str, config: dict[str, Any], final: dict[str, Any]) -> None:
    (d / "final_metrics.json").write_text(json.dumps(final))
    write_result(d, h, config, final, time.time())


def make_explorer_runs(out: Path) -> dict[str, Any]:
    """Write the runs directory; returns the cells' hashes and the oracle's facts."""
    cells = {c.defense.name: c for c in expand_grid(GridConfig.from_dict(GRID))}
    data = synthetic_dataset(seed=5, sizes=(24, 0, 6))
    test = poison_test_set(data["test"], "badpre", "sql_injection", seed=1)
    clean, poisoned = data["test"], test.examples
    poisoned_ids = list(test.manifest.poisoned_ids)
    poisoned = [ex for ex in poisoned if ex.id in set(poisoned_ids)]

    parent_dir, parent_cfg = _cell_dir(out, cells["undefended"])
    parent = EvalResult(metrics={}, clean_examples=clean, clean_predictions=["ok"] * len(clean),
                        poisoned_examples=poisoned,
                        poisoned_predictions=["DROP TABLE"] * len(poisoned),
                        inputs={"clean": clean, "poisoned": poisoned},
                        manifest=test.manifest)  # fmt: skip
    write_evaluation(parent_dir, parent)
    _finish(parent_dir, cells["undefended"].hash, parent_cfg,
            {"bleu": 41.25, "asr": 1.0, "false_trigger_rate": 0.0})  # fmt: skip

    onion_dir, onion_cfg = _cell_dir(out, cells["onion"])
    pois = _planted_purifier(poisoned, test.manifest.spans, detected=N_DETECTED)
    cln = _planted_purifier(clean, {}, detected=1)  # one false alarm
    evaluation = EvalResult(metrics={}, clean_examples=cln.examples,
                            clean_predictions=["ok"] * len(clean),
                            poisoned_examples=pois.examples,
                            poisoned_predictions=["ok"] * N_DETECTED
                            + ["DROP TABLE"] * (len(poisoned) - N_DETECTED),
                            purified={"clean": cln, "poisoned": pois},
                            inputs={"clean": clean, "poisoned": poisoned},
                            manifest=test.manifest)  # fmt: skip
    write_evaluation(onion_dir, evaluation)
    asr = (len(poisoned) - N_DETECTED) / len(poisoned)
    _finish(onion_dir, cells["onion"].hash, onion_cfg,
            {"bleu": 39.8765, "asr": asr, "detect_tpr": N_DETECTED / len(poisoned),
             "detect_fpr": 1 / len(clean)})  # fmt: skip

    keyword_dir, keyword_cfg = _cell_dir(out, cells["keyword"])
    train = poison_dataset(data["train"], "badpre", "sql_injection", rate=0.25, seed=1)
    train.manifest.save(keyword_dir / "poison_manifest.json")
    bundle = DataBundle(train=train.examples, valid=EvalSet([]), test=EvalSet([]),
                        train_manifest=train.manifest)  # fmt: skip
    result = apply_filter(get_defense("keyword", tokens=["bb"]), bundle, None, keyword_dir)
    _finish(keyword_dir, cells["keyword"].hash, keyword_cfg,
            {"bleu": 40.5, "asr": 0.125, "filter_removed": result.n_removed})  # fmt: skip
    return {
        "parent": cells["undefended"].hash, "onion": cells["onion"].hash,
        "keyword": cells["keyword"].hash, "poisoned": {ex.id: ex for ex in poisoned},
        "spans": test.manifest.spans, "missed": poisoned_ids[N_DETECTED:],
        "train_manifest": train.manifest, "filter": result,
    }  # fmt: skip


def _planted_purifier(rows: list, spans: dict, *, detected: int) -> PurifyResult:
    """The first ``detected`` rows are caught: the words of their trigger spans removed (each
    word scored 1.0, every other word 0.1); the others pass unchanged."""
    changes, elements = [], []
    for i, ex in enumerate(rows):
        trig = [s for s in spans.get(ex.id, []) if s["side"] == "source"]
        hit = i < detected
        changes.append([Change("source", s["start"], s["end"], ex.source[s["start"]:s["end"]], "")
                        for s in trig] if hit else [])  # fmt: skip
        elements.append(_words(ex.source, trig))
    flags = [i < detected for i in range(len(rows))]
    purified = [
        replace(ex, source=_removed(ex.source, ch)) for ex, ch in zip(rows, changes, strict=True)
    ]
    return PurifyResult(purified, flags, [float(f) for f in flags], changes, 0.01,
                        elements=elements)  # fmt: skip


def _removed(text: str, changes: list[Change]) -> str:
    for c in sorted(changes, key=lambda c: -c.start):
        text = text[: c.start] + text[c.end :]
    return text


def _words(text: str, trig: list[dict]) -> list[dict]:
    import re

    out = []
    for m in re.finditer(r"\S+", text):
        inside = any(s["start"] <= m.start() < s["end"] for s in trig)
        out.append({"side": "source", "start": m.start(), "end": m.end(),
                    "score": 1.0 if inside else 0.1})  # fmt: skip
    return out
