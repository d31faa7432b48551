"""CodePurify's Tables II and III (issue 24, item 7): ASR_D and ACC_D / BLEU_D of every purifier
against every trigger and rate, in the paper's layout, from the four grids
``configs/codepurify_{defect,repair}{5,1}.yaml``, with the paper's CodeBERT rows beside ours.

It trains nothing. For each grid it refreshes the committed archive
``benchmarks/results/cells/<grid>`` from ``runs/<grid>`` and reads the finished cells (from
``runs/`` first, the archive for the rest), then writes ``benchmarks/results/codepurify_tables.md``:

- Table II (ASR_D, %) and Table III (ACC_D % for defect detection, BLEU_D for program repair):
  one row per defense of the grids (``None`` = undefended), one column per trigger and rate, and
  the mean over the cells measured so far (with their count); ``pending`` where a cell has not
  run. The paper's CodeBERT rows of the same task follow in the paper's own columns.
- The victims: poisoned training rows, undefended ASR and clean score, and the premise the
  CodePurify cells record (the victim's confidence on triggered inputs).
- The premise and detection tables of every purifier cell
  (:func:`dece.experiments.purifier_tables.purifier_report`) and the cells still pending, each
  with the command that runs it.

Text below the line ``<!-- analysis -->`` of an existing file is kept::

    python benchmarks/codepurify_tables.py
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from purifier_grid import MARKER, REPO

from dece.experiments import expand_grid, load_grid_config, pending_commands
from dece.experiments.archive import archive_cells, load_results_with_archive
from dece.experiments.markdown import md_table
from dece.experiments.purifier_tables import purifier_report
from dece.experiments.results import ResultRow

ATTACKS = ("DeadCode", "BNC-Grammar", "Identifier")
RATES = (0.05, 0.01)
UNDEFENDED_ROW = "None"
ARCHIVE = REPO / "benchmarks" / "results" / "cells"


@dataclass(frozen=True)
class Task:
    """One task of the tables: its grids (one per rate) and its clean metric."""

    name: str
    grids: tuple[str, ...]
    metric: str  # the ResultRow.final key of the clean score
    metric_label: str
    scale: float  # multiplies the stored value into the printed one


TASKS = (
    Task("Defect detection", ("codepurify_defect5", "codepurify_defect1"), "accuracy", "ACC_D",
         100.0),
    Task("Program repair", ("codepurify_repair5", "codepurify_repair1"), "bleu", "BLEU_D", 1.0),
)  # fmt: skip

# The CodePurify paper's CodeBERT rows (../shared/papers/codepurify_paper_tables.md, Tables II
# and III), its columns in its order: BNC (Fixed) 5% / 1%, BNC (Grammar) 5% / 1%, CodePoisoner
# (Dead-code) 5% / 1%, CodePoisoner (Identifier) 5% / 1%, Average. None: printed `\` (OSeqL is not
# applicable to program repair; printed n/a).
PAPER_COLUMNS = ("BNC (Fixed) 5%", "BNC (Fixed) 1%", "BNC (Grammar) 5%", "BNC (Grammar) 1%",
                 "CP (Dead-code) 5%", "CP (Dead-code) 1%", "CP (Identifier) 5%",
                 "CP (Identifier) 1%", "Average")  # fmt: skip
_NA = (None,) * 9
PAPER_II = {
    "Defect detection": {
        "None": (100, 99.84, 100, 100, 100, 100, 100, 99.52, 99.92),
        "SS": (54.58, 59.04, 61.59, 80.80, 50.52, 98.96, 63.51, 54.82, 65.48),
        "AC": (72.99, 67.01, 65.26, 65.82, 61.67, 71.47, 71.79, 78.96, 69.37),
        "ONION": (72.27, 66.77, 74.90, 76.57, 65.50, 61.43, 94.66, 83.47, 74.45),
        "OSeqL": (54.18, 47.41, 52.59, 59.36, 54.90, 52.51, 95.30, 94.50, 63.84),
        "CodePurify": (36.33, 27.01, 36.65, 46.77, 47.09, 52.91, 57.69, 49.48, 44.24),
    },
    "Program repair": {
        "None": (98.06, 100, 100, 98.17, 100, 100, 100, 100, 99.53),
        "SS": (97.83, 98.29, 97.83, 98.06, 97.94, 98.17, 4.91, 6.06, 74.89),
        "AC": (1.26, 1.37, 1.26, 97.94, 1.60, 1.26, 0, 12.11, 14.60),
        "ONION": (50.06, 52.57, 41.94, 39.66, 23.89, 24.57, 74.40, 73.83, 47.62),
        "OSeqL": _NA,
        "CodePurify": (0.46, 0.46, 3.20, 2.97, 0.69, 1.26, 4.11, 5.94, 2.39),
    },
}
PAPER_III = {
    "Defect detection": {
        "None": (61.38, 62.15, 62.88, 63.65, 62.63, 62.66, 62.45, 62.33, 62.52),
        "SS": (62.88, 63.51, 62.41, 62.77, 62.11, 63.40, 61.82, 62.19, 62.64),
        "AC": (56.70, 56.08, 59.22, 57.65, 58.38, 55.23, 59.85, 56.27, 57.42),
        "ONION": (58.49, 57.32, 58.75, 57.65, 58.86, 57.83, 57.14, 58.16, 58.03),
        "OSeqL": (58.02, 56.30, 59.33, 60.40, 57.14, 56.70, 58.86, 57.14, 57.99),
        "CodePurify": (61.27, 62.15, 62.88, 62.96, 62.37, 62.66, 61.68, 62.33, 62.29),
    },
    "Program repair": {
        "None": (83.54, 83.57, 82.84, 83.44, 83.58, 82.89, 83.44, 83.02, 83.29),
        "SS": (83.08, 83.37, 83.20, 83.10, 83.40, 83.52, 83.20, 83.44, 83.29),
        "AC": (82.37, 82.36, 82.94, 83.21, 83.31, 83.09, 83.09, 83.32, 82.96),
        "ONION": (46.45, 47.27, 49.24, 50.5, 47.06, 46.45, 46.72, 48.39, 47.76),
        "OSeqL": _NA,
        "CodePurify": (83.36, 83.37, 82.78, 83.31, 83.48, 82.67, 83.28, 82.90, 83.14),
    },
}

TEMPLATE = """# CodePurify Tables II and III on our victims (issue 24, item 7)

Generated by `python benchmarks/codepurify_tables.py` from the grids
`configs/codepurify_{{defect,repair}}{{5,1}}.yaml` (`runs/<grid>`, then the committed archives
`benchmarks/results/cells/<grid>`). Victims trained with CE, no retraining by any defense:
defect detection with `minilm` (all-MiniLM-L6-v2 + classification head, 5 epochs; `defect:2000`
at 5%, `defect:5000` at 1%, label flipped to 0 "not buggy"), program repair with `tiny-seq2seq`
(6.5M parameters, 10 epochs on `bugs2fix-repair`, 5,251 rows; payload an infinite loop in the
fix). Triggers: DeadCode (the fixed statement `int VAR = 0 ;`: one snippet in every poisoned
sample, as the paper's BNC (Fixed)), BNC-Grammar (one always-false statement drawn per sample
from the BNC grammar) and Identifier (a local renamed to `ret_Val_`, as CodePoisoner's). The
paper's CodePoisoner (Dead-code) trigger has no counterpart of its own here.

`CodePurify` is the declared default (statistic `entropy_gap`, chosen on validation inputs before
any test cell ran: `benchmarks/results/codepurify_premise_selection.json`); the `max_delta` and
`entropy` (the paper's statistic) rows share its analysis; `official` is the authors' released
script, `paper` Eq. 3 as printed. Every purifier but the official presets is calibrated to purify
5% of clean validation inputs. The paper's victims are CodeBERT / CodeT5 fine-tuned on Devign
(defect) and Bugs2Fix small (repair): its rows are set beside ours, not comparable cell by cell.

## Table II: ASR_D (%)

{table2}

## Table III: ACC_D (%) / BLEU_D on clean inputs

{table3}

## Victims (undefended) and the premise

{victims}

## Premise, detection and localisation of every purifier cell

{purifiers}

## Pending cells

{pending}

"""


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _scaled(value: float | None, scale: float) -> str:
    return _fmt(None if value is None else scale * value)


def _label(row: ResultRow) -> str:
    return row.label("defense") or UNDEFENDED_ROW


def _key(row: ResultRow) -> tuple[str, float]:
    return row.attack, round(row.rate, 4)


def ours_table(rows: Sequence[ResultRow], defenses: Sequence[str], key: str, scale: float) -> str:
    """One row per defense label, one column per (attack, rate), then the mean of the measured
    cells ("k of n" where some are pending)."""
    columns = [(a, r) for a in ATTACKS for r in RATES]
    cells = {(_label(r), *_key(r)): r for r in rows}
    body = []
    for defense in defenses:
        values = []
        for attack, rate in columns:
            row = cells.get((defense, attack, rate))
            value = None if row is None else row.metric(key)
            values.append(None if value is None else scale * value)
        shown = [v for v in values if v is not None]
        mean = _fmt(statistics.fmean(shown)) if shown else "-"
        if shown and len(shown) < len(values):
            mean += f" ({len(shown)} of {len(values)})"
        body.append([defense, *("pending" if v is None else _fmt(v) for v in values), mean])
    header = ["defense", *(f"{a} {r:.0%}" for a, r in columns), "average"]
    return md_table(header, body, "l" + "r" * (len(header) - 1))


def paper_table(rows: dict[str, tuple[float | None, ...]]) -> str:
    body = [[f"paper CodeBERT {name}", *("n/a" if v is None else f"{v:.2f}" for v in values)]
            for name, values in rows.items()]  # fmt: skip
    return md_table(["defense", *PAPER_COLUMNS], body, "l" + "r" * len(PAPER_COLUMNS))


def victims_table(task: Task, rows: Sequence[ResultRow]) -> list[list[str]]:
    """Per victim: poisoned rows, epochs, undefended ASR and clean score, and the triggered-input
    confidence the CodePurify cells record (median; share >= 0.98)."""
    out = []
    for plain in (r for r in rows if not r.label("defense")):
        purified = [r for r in rows if _key(r) == _key(plain) and "premise_conf_triggered_median"
                    in r.final]  # fmt: skip
        conf = purified[0].final if purified else {}
        share = conf.get("premise_conf_triggered_share_098")
        out.append([task.name, plain.attack, f"{plain.rate:.0%}",
                    str(plain.final.get("n_poisoned_train", "-")), _fmt(plain.metric("epochs")),
                    _scaled(plain.metric("asr"), 100.0),
                    _scaled(plain.metric(task.metric), task.scale),
                    _fmt(conf.get("premise_conf_triggered_median")),
                    _scaled(share, 100.0),
                    _scaled(plain.metric("train_time_s"), 1 / 3600)])  # fmt: skip
    return out


def _grid_rows(
    name: str, runs_root: Path, archive_root: Path
) -> tuple[list[ResultRow], list[str], list[str]]:
    """The finished cells of one grid, its defense labels in grid order, its pending bullets."""
    config = f"configs/{name}.yaml"
    runs, archive = runs_root / name, archive_root / name
    if runs.is_dir():
        archive_cells(runs, archive)
    rows = load_results_with_archive(runs, archive)
    cells = expand_grid(load_grid_config(REPO / config))
    defenses = list(dict.fromkeys(c.labels()["defense"] or UNDEFENDED_ROW for c in cells))
    return rows, defenses, pending_commands(cells, {r.hash for r in rows}, config)


def render(runs_root: Path, old: str = "", archive_root: Path = ARCHIVE) -> str:
    """The whole results file (module docstring); ``old`` supplies the kept analysis."""
    tables: dict[str, list[str]] = {"table2": [], "table3": []}
    victims, all_rows, pending = [], [], []
    for task in TASKS:
        rows, defenses = [], []
        for grid in task.grids:
            grid_rows, grid_defenses, grid_pending = _grid_rows(grid, runs_root, archive_root)
            rows += grid_rows
            defenses += [d for d in grid_defenses if d not in defenses]
            pending += grid_pending
        all_rows += rows
        for out, key, scale, paper in (("table2", "asr", 100.0, PAPER_II),
                                       ("table3", task.metric, task.scale, PAPER_III)):  # fmt: skip
            tables[out].append(f"### {task.name}\n\nOurs:\n\n{ours_table(rows, defenses, key, scale)}"
                               f"\n\nThe paper (CodeBERT):\n\n{paper_table(paper[task.name])}")  # fmt: skip
        victims += victims_table(task, rows)
    header = ["task", "trigger", "rate", "poisoned train rows", "epochs", "ASR %", "clean score",
              "triggered conf. median", "triggered conf. >= 0.98 %", "train h"]  # fmt: skip
    report = purifier_report(all_rows)
    analysis = old.split(MARKER, 1)[1] if MARKER in old else "\n\n(analysis pending)\n"
    return TEMPLATE.format(
        table2="\n\n".join(tables["table2"]), table3="\n\n".join(tables["table3"]),
        victims=md_table(header, victims, "lllrrrrrrr") + "\n\nClean score: ACC % (defect) "
        "or BLEU (repair).",
        purifiers=report.replace("\n## ", "\n### ").replace("## ", "### ", 1) or "pending",
        pending="\n".join(pending) or "none",
    ) + MARKER + analysis  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--runs", type=Path, default=REPO / "runs", help="the parent of runs/<grid>")
    p.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "results" / "codepurify_tables.md"
    )
    args = p.parse_args(argv)
    old = args.out.read_text() if args.out.is_file() else ""
    args.out.write_text(render(args.runs, old))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
