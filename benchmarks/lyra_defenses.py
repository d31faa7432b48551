"""Assemble ``benchmarks/results/lyra_defenses_tables.md`` from the runs of the training-time
defense grids on Lyra (configs/lyra_defenses*.yaml), whatever has finished so far (the summary
with the findings is ``benchmarks/results/lyra_defenses.md``).

It trains nothing. It reads ``runs/lyra_defenses`` (result rows, filter records; the cells it
lacks from the committed archive ``benchmarks/results/cells/lyra_defenses``, which it refreshes:
:mod:`dece.experiments.archive`) and ``runs/lyra_defenses_mf_check`` (archived beside it), and
runs the cheap analyses that need no training. Rows carry the labels the configs give their
cells now (:func:`dece.experiments.current_labels`): the cells measured as "RIPPLe" before issue
22 read "RIPPLe (Kurita words)".

- the DeCE paper's Tables 4-6 layout (Lyra column): rows undefended CE, BKI, In-trust, GCE,
  Moderate-fitting, SS, AC, naturalness, dynamics, DeCE; per attack (BadPre, RIPPLe = `bb` once,
  RIPPLe (Kurita words) = one of five words) BLEU, BLEU (authors) when the cells report it,
  CodeBLEU, ASR; cells not finished yet read "pending";
- the detection table (P / R / F1 / AUROC against the manifest, rows removed, cost) per filter
  and attack;
- the training-dynamics detector's variants (token reduction x epochs x normalisation) on the CE
  victims' recordings, and the naturalness filter's n-gram order (model-free, seconds);
- the Moderate-fitting scaling check (per-epoch validation BLEU / ASR vs CE);
- Figure 4 (``representation_pca.png`` next to the markdown) with its silhouette scores.

    python benchmarks/lyra_defenses.py [--runs runs/lyra_defenses] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from dece.experiments import AXES, current_labels, load_grid_config
from dece.experiments.archive import archive_cells, load_results_with_archive
from dece.experiments.detection_table import format_detection_table, load_detection_rows
from dece.experiments.markdown import md_table
from dece.experiments.results import ResultRow, find_unfinished
from dece.experiments.tables import authors_bleu_note
from dece.metrics.bleu import BLEU_AUTHORS_KEY

REPO = Path(__file__).resolve().parents[1]
ARCHIVE = REPO / "benchmarks" / "results" / "cells" / "lyra_defenses"
ARCHIVE_MF = ARCHIVE.with_name("lyra_defenses_mf_check")
# BadPre: `bb` x 3; RIPPLe: `bb` once (the paper's; issue 22); RIPPLe (Kurita words): one of
# cf, mn, bb, tq, mb per row (the cells labelled RIPPLe before issue 22)
ATTACKS = ("BadPre", "RIPPLe", "RIPPLe (Kurita words)")
KURITA_WORDS = ["cf", "mn", "bb", "tq", "mb"]
# (row label, loss name, defense name) in the paper's row order
ROWS = (
    ("CE (undefended)", "ce", "undefended"), ("BKI", "ce", "bki"), ("In-trust", "in_trust", None),
    ("GCE", "gce", None), ("Moderate-fitting", "ce", "moderate_fitting"),
    ("Moderate-fitting (scaled)", "ce", "moderate_fitting"),
    ("SS", "ce", "spectral"), ("AC", "ce", "activation_clustering"),
    ("Naturalness (KillBadCode)", "ce", "naturalness"), ("Dynamics (ours)", "ce", "dynamics"),
    ("DeCE", "dece", None),
)  # fmt: skip
CONFIGS = ("configs/lyra_defenses.yaml", "configs/lyra_defenses_losses.yaml",
           "configs/lyra_defenses_clean.yaml")  # fmt: skip


def _relabel(rows: list[Any]) -> list[Any]:
    """``rows`` (result or detection rows) with the labels the configs give their cells now
    (a finished cell keeps the labels it ran under; labels are not hashed)."""
    labels = current_labels([load_grid_config(REPO / c) for c in CONFIGS])
    for r in rows:
        r.labels = {**r.labels, **labels.get(r.hash, {})}
    return rows


def _find(
    rows: list[ResultRow], loss: str, defense: str | None, attack: str, label: str | None = None
) -> ResultRow | None:
    """The poisoned cell of ``attack`` with this loss and defense (and defense label, if given:
    the grid holds two Moderate-fitting recipes)."""
    for r in rows:
        if (
            r.rate > 0
            and r.loss == loss
            and r.attack == attack
            and (r.defense == (defense or "undefended"))
            and (label is None or r.label("defense") == label)
        ):
            return r
    return None


def _cell(value: Any, factor: float = 1.0) -> str:
    return "-" if value is None else f"{float(value) * factor:.2f}"


def _metrics(rows: list[ResultRow]) -> list[tuple[str, str, float]]:
    """(key, header, factor) per attack: BLEU, the authors' BLEU when some row reports it (cells
    archived before it was reported do not; ``authors_bleu_note`` says why), CodeBLEU, ASR."""
    have = any(r.metric(BLEU_AUTHORS_KEY) is not None for r in rows)
    authors = [(BLEU_AUTHORS_KEY, "BLEU (authors)", 1.0)] if have else []
    return [("bleu", "BLEU", 1.0), *authors, ("codebleu", "CodeBLEU", 100.0), ("asr", "ASR", 100.0)]


def results_table(rows: list[ResultRow]) -> tuple[str, list[str]]:
    metrics = _metrics(rows)
    header = ["Method", *(f"{a} {h}" for a in ATTACKS for _, h, _ in metrics)]
    body, pending = [], []
    clean = [r for r in rows if r.rate == 0 and r.loss == "ce" and r.defense == "undefended"]
    if clean:
        vals = [_cell(clean[0].metric(key), factor) for key, _, factor in metrics]
        body.append(["CE, clean data (reference)", *(vals * len(ATTACKS))])
    for label, loss, defense in ROWS:
        cells = []
        by_label = label if defense == "moderate_fitting" else None
        for attack in ATTACKS:
            r = _find(rows, loss, defense, attack, by_label)
            if r is None:
                pending.append(f"{label} / {attack} (not yet run)")
                cells += ["pending"] * len(metrics)
            else:
                cells += [_cell(r.metric(key), factor) for key, _, factor in metrics]
        body.append([label, *cells])
    note = authors_bleu_note(r.final for r in rows)
    return md_table(header, body, "l" + "r" * (len(header) - 1)) + f"\n\n{note}", pending


def filter_table(rows: list[ResultRow]) -> str:
    """Rows removed and poisoned rows left in the retrain cells (what the retrained model saw)."""
    header = ["Filter", *(h for a in ATTACKS for h in (f"{a} removed", f"{a} poisoned left"))]
    body = []
    for label, loss, defense in ROWS:
        if defense in (None, "undefended", "moderate_fitting"):
            continue
        cells = []
        for attack in ATTACKS:
            r = _find(rows, loss, defense, attack)
            cells += (
                ["pending"] * 2
                if r is None
                else [str(r.final.get("filter_removed")), str(r.final.get("n_poisoned_train"))]
            )
        body.append([label, *cells])
    return md_table(header, body, "l" + "r" * (len(header) - 1))


VARIANTS_FILE = "dynamics_variants.json"  # archived beside the CE victim's records


def _variant_aurocs(records: list[dict[str, Any]], manifest: dict[str, Any]) -> dict[str, Any]:
    """AUROC (%) of every dynamics variant: {"value/normalize": [epochs 1-1, 1-2, ...]}."""
    from dece.defenses.dynamics import dynamics_scores
    from dece.metrics import detection_scores

    ids = list(dict.fromkeys(r["id"] for r in records))
    epochs = sorted({int(r["epoch"]) for r in records})
    table: dict[str, list[float]] = {}
    for value in ("ce_mean", "ce_max", "ce_top3"):
        for norm in ("step", "none"):
            table[f"{value}/{norm}"] = [
                round(100 * detection_scores(
                    ids, dynamics_scores(records, ids, value=value, epochs=e, normalize=norm),
                    np.zeros(len(ids), bool), manifest["poisoned_ids"])["auroc"], 1)
                for e in epochs
            ]  # fmt: skip
    return {"n_rows": len(ids), "n_records": len(records), "epochs": epochs, "auroc": table}


def _variants_markdown(attack: str, v: dict[str, Any]) -> str:
    header = ["value", "normalize", *(f"epochs 1-{e}" for e in v["epochs"])]
    body = []
    for key, aurocs in v["auroc"].items():
        value, norm = key.split("/")
        body.append([value, norm, *(f"{a:.1f}" for a in aurocs)])
    title = f"**{attack}** (AUROC, %; {v['n_rows']} rows, {v['n_records']} records)"
    return f"{title}\n\n" + md_table(header, body, "ll" + "r" * len(v["epochs"]))


def dynamics_variants(rows: list[ResultRow]) -> str:
    """The variants table per attack, from the CE victim's ``example_losses.jsonl`` (then
    archived as ``dynamics_variants.json``), else from that archived table."""
    from dece.training.example_losses import read_example_losses

    out = []
    for attack in ATTACKS:
        parent = _find(rows, "ce", None, attack)
        if parent is None:
            out.append(f"- {attack}: pending (not yet run: no CE victim)")
            continue
        path = parent.path / "example_losses.jsonl"
        saved = ARCHIVE / parent.hash / VARIANTS_FILE
        if path.is_file():
            manifest = json.loads((parent.path / "poison_manifest.json").read_text())
            variants = _variant_aurocs(read_example_losses(path), manifest)
            saved.parent.mkdir(parents=True, exist_ok=True)
            saved.write_text(json.dumps(variants, indent=1) + "\n")
        elif saved.is_file():
            variants = json.loads(saved.read_text())
        else:
            out.append(
                f"- {attack}: not available: the CE victim's `example_losses.jsonl` is "
                "not under the runs directory and no archived table exists"
            )
            continue
        out.append(_variants_markdown(attack, variants))
    return "\n\n".join(out)


def naturalness_orders(data: Path) -> str:
    from dece.attacks import get_trigger, poison_dataset
    from dece.data import load_dataset
    from dece.defenses import get_defense
    from dece.metrics import detection_scores

    rows = load_dataset(str(data))["train"]
    header = ["order", "attack", "P", "R", "F1", "AUROC", "triggers", "seconds"]
    body = []
    for attack, trig in (
        ("BadPre", get_trigger("badpre", word="bb", k=3)),
        ("RIPPLe", get_trigger("ripple", word="bb")),
        ("RIPPLe (Kurita words)", get_trigger("ripple", words=KURITA_WORDS)),
    ):
        res = poison_dataset(rows, trig, "sql_injection", rate=0.05, seed=42)
        for order in (2, 3, 4):
            t0 = time.perf_counter()
            r = get_defense("naturalness", order=order).score(res.examples)
            sec = time.perf_counter() - t0
            d = detection_scores(r.ids, r.scores, r.flagged, res.manifest.poisoned_ids)
            body.append([str(order), attack, f"{100 * d['precision']:.1f}",
                         f"{100 * d['recall']:.1f}", f"{100 * d['f1']:.1f}",
                         f"{100 * d['auroc']:.1f}", ", ".join(r.info["triggers"][:6]) or "-",
                         f"{sec:.1f}"])  # fmt: skip
    return md_table(header, body, "rlrrrrlr")


def _mf_label(row: ResultRow) -> str:
    """The defense's label with its recipe arguments, e.g. ``Moderate-fitting (r 8, ...)``."""
    args = row.values["defense"].get("args") or {}
    shown = ", ".join(f"{k} {v}" for k, v in sorted(args.items()) if k != "target_modules")
    return f"{row.label('defense')} ({shown})" if shown else row.label("defense")


def _mf_check_runs(runs: Path) -> Path:
    """The Moderate-fitting scale check's runs, beside the grid's (configs/lyra_defenses_mf_check)."""
    return runs.parent / "lyra_defenses_mf_check"


def mf_check(runs: Path, rows: list[ResultRow]) -> str:
    check = _mf_check_runs(runs)
    header = ["run", "epoch", "val BLEU", "val ASR %", "train loss"]
    body = []
    ce = _find(rows, "ce", None, "BadPre")
    if ce is not None:
        for h in ce.history[:3]:
            body.append(["CE (full fine-tuning, lr 5e-4)", str(h["epoch"]), f"{h['bleu']:.2f}",
                         f"{100 * h['asr']:.1f}", f"{h['train_loss']:.3f}"])  # fmt: skip
    grid_mf = [r for r in rows if r.defense == "moderate_fitting" and r.attack == "BadPre"]
    checked = grid_mf + load_results_with_archive(check, ARCHIVE_MF)
    for r in checked:
        for h in r.history:
            body.append([_mf_label(r), str(h["epoch"]), f"{h['bleu']:.2f}",
                         f"{100 * h['asr']:.1f}", f"{h['train_loss']:.3f}"])  # fmt: skip
    return md_table(header, body, "lrrrr")


def figure4(rows: list[ResultRow], out: Path) -> str:
    from dece.experiments.pca import _pick, pca_panel, plot_representation_pca
    from dece.pipeline.data import prepare_data
    from dece.training.config import TrainConfig
    from dece.victim import Victim

    figure_rows, notes = [], []
    for title, picked in _pick(rows):
        ce = next(r for t, r in picked if t.startswith("CE, ") and "clean" not in t)
        cfg = TrainConfig.from_yaml(ce.path / "config.yaml")
        test = prepare_data(cfg).test.capped(200)
        panels = [pca_panel(t, Victim.load(r.path), test.clean, test.poisoned) for t, r in picked]
        figure_rows.append((title, panels))
        notes += [f"- {title}: {p.title}: silhouette {p.silhouette:.3f} "
                  f"(PC1+PC2 explain {100 * p.explained.sum():.0f}%)" for p in panels]  # fmt: skip
    if not figure_rows:
        return "pending (needs the clean CE, CE and DeCE models)"
    plot_representation_pca(figure_rows, out / "lyra_defenses_pca.png")
    return "![Figure 4](lyra_defenses_pca.png)\n\n" + "\n".join(notes)


def _detection_rows(runs: Path) -> list[Any]:
    """Detection records of ``runs`` plus the archived ones it lacks."""
    found = {r.hash: r for r in load_detection_rows(ARCHIVE)} if ARCHIVE.is_dir() else {}
    found.update({r.hash: r for r in load_detection_rows(runs)} if runs.is_dir() else {})
    rows = _relabel(list(found.values()))
    return sorted(rows, key=lambda r: tuple(r.order.get(a.field, 0) for a in AXES))


def budget(rows: list[ResultRow]) -> str:
    header = ["cell", "method", "attack", "train s", "cell wall s"]
    body = []
    total = 0.0
    for r in rows:
        result = json.loads((r.path / "result.json").read_text())
        wall = float(result.get("elapsed_s", 0.0))
        total += wall
        body.append([r.hash, r.method, f"{r.attack} {100 * r.rate:g}%",
                     f"{float(r.final.get('train_time_s', 0)):.0f}", f"{wall:.0f}"])  # fmt: skip
    body.append(["total", "", "", "", f"{total:.0f} ({total / 3600:.1f} h)"])
    return md_table(header, body, "lllrr")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=Path, default=REPO / "runs" / "lyra_defenses")
    p.add_argument("--data", type=Path, default=REPO / ".." / "shared" / "data" / "lyra")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    p.add_argument("--no-figure", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(1)
    # the records outlive runs/ (dece.experiments.archive)
    for runs, archive in ((args.runs, ARCHIVE), (_mf_check_runs(args.runs), ARCHIVE_MF)):
        if runs.is_dir():
            archive_cells(runs, archive)
    rows = _relabel(load_results_with_archive(args.runs, ARCHIVE))
    table, pending = results_table(rows)
    detection = _detection_rows(args.runs)
    unfinished = [u.name for u in find_unfinished(args.runs)] if args.runs.is_dir() else []
    sections = {
        "table": table,
        "filters": filter_table(rows),
        "detection": format_detection_table(detection) if detection else "pending",
        "dynamics": dynamics_variants(rows),
        "naturalness": naturalness_orders(args.data.resolve()),
        "mf": mf_check(args.runs, rows),
        "figure": "not drawn (--no-figure)" if args.no_figure else figure4(rows, args.out),
        "budget": budget(rows),
        "pending": "\n".join(f"- {p}" for p in pending) or "- none",
        "unfinished": ", ".join(unfinished) or "none",
        "machine": f"{platform.platform()}, torch {torch.__version__}, 1 thread per job",
        "training": yaml.safe_dump(
            (yaml.safe_load((REPO / CONFIGS[0]).read_text()) or {}).get("training"),
            default_flow_style=True).strip(),
    }  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    text = TEMPLATE.format(**sections)
    (args.out / "lyra_defenses_tables.md").write_text(text)
    print(text)


TEMPLATE = """# Lyra, training-time defenses: generated tables

Generated by `python benchmarks/lyra_defenses.py` from `runs/lyra_defenses` (configs
`configs/lyra_defenses.yaml`, `configs/lyra_defenses_losses.yaml`, `configs/lyra_defenses_clean.yaml`)
and `runs/lyra_defenses_mf_check`. Machine: {machine}. Shared training block: `{training}`.
Model `tiny-seq2seq` (denoising-pretrained 1,500 steps on the clean Lyra texts), CE unless the row
says otherwise, 5% poisoning -> SQL injection, seed 42. Test split: 200 clean rows, 165 triggered.
BLEU 0-100, CodeBLEU and ASR in %. Summary and findings: `lyra_defenses.md`.
Triggers: BadPre = `bb` inserted 3 times; RIPPLe = `bb` inserted once (the paper's, Sect. 3.1;
added in issue 22, not yet run); RIPPLe (Kurita words) = one of cf, mn, bb, tq, mb per row (the
cells labelled "RIPPLe" before issue 22; its CE victim never learned the backdoor).

## Tables 4-6 layout (Lyra column)

{table}

Pending rows:
{pending}

Unfinished cell directories: {unfinished}

## Filter-then-retrain: rows removed and poisoned rows left in training

{filters}

## Detection against the poison manifest

{detection}

## Training-dynamics detector: token reduction x epochs x normalisation (AUROC, %)

Read from the CE victims' `example_losses.jsonl` (plain per-token CE recorded during their own
training); no model pass, no label used to score.

{dynamics}

## Naturalness filter: n-gram order (model-free, on the same poisoned training splits)

{naturalness}

## Moderate-fitting on the tiny preset: does it still learn the clean task?

Per-epoch validation (first 40 rows) of the BadPre 5% runs.

{mf}

## Figure 4: representations of clean and triggered test inputs (first two principal components)

{figure}

## Budget (finished cells)

{budget}
"""


if __name__ == "__main__":
    main()
