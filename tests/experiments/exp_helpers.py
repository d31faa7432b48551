"""Helpers for the experiments tests: small grid configs and hand-made result directories.

Imported by module name (``exp_helpers``), never as ``conftest`` (several test dirs have one)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

FAKE_RUNNER = "dece.experiments.fake:fake_run_cell"


def small_grid(**overrides: Any) -> dict[str, Any]:
    grid: dict[str, Any] = {
        "name": "small",
        "datasets": ["synthetic:64"],
        "attacks": [
            {"trigger": "badpre", "payload": "sql_injection"},
            {"trigger": "ripple", "payload": "sql_injection"},
        ],
        "rates": [0.0, 0.05],
        "models": ["tiny-seq2seq"],
        "losses": [{"name": "ce"}, {"name": "dece", "args": {"alpha_base": 0.99}}],
        "seeds": [1, 2],
        "training": {"num_epochs": 2},
        "runner": FAKE_RUNNER,
    }
    grid.update(overrides)
    return grid


# --------------------------------------------------------------------------- hand-made results
ATTACKS = {"BadPre": ("badpre", 0), "RIPPLe": ("ripple", 1)}
METHODS = {"CE": ("ce", {}, 0), "DeCE": ("dece", {"alpha_base": 0.99}, 1)}

# (method, attack, rate, seed, bleu, codebleu, asr, asr history per epoch)
HAND_RESULTS = [
    ("CE", "BadPre", 0.0, 1, 43.0, 0.33, 0.00, [0.0, 0.0]),
    ("CE", "BadPre", 0.05, 1, 40.0, 0.30, 0.90, [0.5, 0.9]),
    ("CE", "BadPre", 0.05, 2, 42.0, 0.32, 0.80, [0.3, 0.8]),
    ("CE", "RIPPLe", 0.05, 1, 39.0, 0.29, 0.75, [0.6, 0.75]),
    ("DeCE", "BadPre", 0.05, 1, 40.5, 0.305, 0.01, [0.0, 0.01]),
    ("DeCE", "RIPPLe", 0.05, 1, 38.5, 0.285, 0.03, [0.02, 0.03]),
]


def write_result(
    root: Path,
    method: str,
    attack: str,
    rate: float,
    seed: int,
    final: dict,
    history: list[dict],
    *,
    loss_args: dict | None = None,
    label: str | None = None,
    dataset: str = "lyra",
) -> Path:
    """One finished cell written by hand (not by the runner), as the runner lays it out."""
    loss, default_args, loss_pos = METHODS[method]
    trigger, attack_pos = ATTACKS[attack]
    args = default_args if loss_args is None else loss_args
    config = {
        "dataset": dataset,
        "attack": {"trigger": trigger, "trigger_args": {}, "payload": "sql_injection", "payload_args": {}},
        "rate": rate,
        "model": "tiny-seq2seq",
        "loss": {"name": loss, "args": args},
        "seed": seed,
        "training": {},
        "grid": "hand",
        "labels": {"attack": attack, "method": label or method},
        "order": {"dataset": 0, "attack": attack_pos, "rate": 0 if rate == 0 else 1, "model": 0,
                  "loss": loss_pos, "seed": seed},
    }  # fmt: skip
    h = f"{method}-{attack}-{rate}-{seed}-{sorted(args.items())}".replace(" ", "")
    d = root / h
    d.mkdir(parents=True)
    (d / "cell.yaml").write_text(yaml.safe_dump(config))
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history))
    (d / "result.json").write_text(json.dumps({"hash": h, "config": config, "final": final}))
    return d


def make_hand_results(root: Path) -> Path:
    for method, attack, rate, seed, bleu, cb, asr, asr_hist in HAND_RESULTS:
        history = [
            {"epoch": e, "train_loss": 1.0, "bleu": bleu * e / len(asr_hist), "asr": a}
            for e, a in enumerate(asr_hist, start=1)
        ]
        write_result(root, method, attack, rate, seed,
                     {"bleu": bleu, "codebleu": cb, "asr": asr}, history)  # fmt: skip
    return root


# --------------------------------------------------------------------------- expected tables
# The tables of make_hand_results, written by hand. EXPECTED_MD_UNPADDED is the markdown table
# without padding (how the hand-joined renderer wrote it): the oracle that EXPECTED_MD, tabulate's
# padded rendering, holds the same cells (tests/experiments/test_markdown.py).
EXPECTED_MD_UNPADDED = """\
### dataset: lyra, model: tiny-seq2seq

| Method | BadPre BLEU | BadPre CodeBLEU | BadPre ASR | RIPPLe BLEU | RIPPLe CodeBLEU | RIPPLe ASR | Avg. BLEU | Avg. CodeBLEU | Avg. ASR |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|
| CE (clean) | 43.00 | 33.00 | 0.00 | - | - | - | - | - | - |
| CE | 41.00 | 31.00 | 85.00 | 39.00 | 29.00 | 75.00 | 40.00 | 30.00 | 80.00 |
| DeCE | 40.50 | 30.50 | 1.00 | 38.50 | 28.50 | 3.00 | 39.50 | 29.50 | 2.00 |

BLEU 0-100; CodeBLEU in %; ASR in %; mean over seeds; Avg. = mean over attacks.
"""

EXPECTED_MD = """\
### dataset: lyra, model: tiny-seq2seq

| Method     |   BadPre BLEU |   BadPre CodeBLEU |   BadPre ASR |   RIPPLe BLEU |   RIPPLe CodeBLEU |   RIPPLe ASR |   Avg. BLEU |   Avg. CodeBLEU |   Avg. ASR |
|:-----------|--------------:|------------------:|-------------:|--------------:|------------------:|-------------:|------------:|----------------:|-----------:|
| CE (clean) |         43.00 |             33.00 |         0.00 |             - |                 - |            - |           - |               - |          - |
| CE         |         41.00 |             31.00 |        85.00 |         39.00 |             29.00 |        75.00 |       40.00 |           30.00 |      80.00 |
| DeCE       |         40.50 |             30.50 |         1.00 |         38.50 |             28.50 |         3.00 |       39.50 |           29.50 |       2.00 |

BLEU 0-100; CodeBLEU in %; ASR in %; mean over seeds; Avg. = mean over attacks.
"""

EXPECTED_LATEX = r"""\begin{table}[t]
\centering
\caption{dataset: lyra, model: tiny-seq2seq. BLEU 0-100; CodeBLEU in \%; ASR in \%; mean over seeds; Avg. = mean over attacks.}
\begin{tabular}{lrrr rrr rrr}
\toprule
 & \multicolumn{3}{c}{BadPre} & \multicolumn{3}{c}{RIPPLe} & \multicolumn{3}{c}{Avg.} \\
\cmidrule(lr){2-4} \cmidrule(lr){5-7} \cmidrule(lr){8-10}
Method & BLEU & CodeBLEU & ASR & BLEU & CodeBLEU & ASR & BLEU & CodeBLEU & ASR \\
\midrule
CE (clean) & 43.00 & 33.00 & 0.00 & - & - & - & - & - & - \\
CE & 41.00 & 31.00 & 85.00 & 39.00 & 29.00 & 75.00 & 40.00 & 30.00 & 80.00 \\
DeCE & 40.50 & 30.50 & 1.00 & 38.50 & 28.50 & 3.00 & 39.50 & 29.50 & 2.00 \\
\bottomrule
\end{tabular}
\end{table}
"""

EXPECTED_CSV = """\
dataset,model,method,BadPre BLEU,BadPre CodeBLEU,BadPre ASR,RIPPLe BLEU,RIPPLe CodeBLEU,RIPPLe ASR,Avg. BLEU,Avg. CodeBLEU,Avg. ASR
lyra,tiny-seq2seq,CE (clean),43.00,33.00,0.00,,,,,,
lyra,tiny-seq2seq,CE,41.00,31.00,85.00,39.00,29.00,75.00,40.00,30.00,80.00
lyra,tiny-seq2seq,DeCE,40.50,30.50,1.00,38.50,28.50,3.00,39.50,29.50,2.00
"""
