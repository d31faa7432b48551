"""Benchmark: does ``dece demo``'s verdict hold across seeds and thread counts, and how long does
the main job take?

Runs the demo's setting (``dece.experiments.demo.DEMO_GRID``) for each seed under each of three
launch modes, as a new user would type them:

- ``1 thread, -j 1``:  ``OMP_NUM_THREADS=1 dece demo -j 1``  (CE then DeCE, one thread everywhere);
- ``2 threads, -j 1``: ``dece demo -j 1``                    (CE then DeCE, each on both cores);
- ``default``:         ``dece demo``                         (CE and DeCE side by side, -j 2).

Every run is a subprocess with its own output directory and, by default, its own empty model
cache (``DECE_CACHE_DIR``), so its wall time is the *cold* time (a setting whose model is built
on first use builds it under that run's thread count; the shipped ``tiny-seq2seq-sql`` builds
nothing). ``--warm`` adds one more run
per mode on the first seed that reuses that mode's cache (the warm time). Each run's verdict is
read from its cells' ``result.json`` and checked against the demo's thresholds (CE ASR >= 80%,
DeCE ASR <= 5%, BLEU gap <= 3 points).

Writes ``benchmarks/results/demo_robustness.md`` (``--out``): one row per run (mode, seed, CE
and DeCE ASR and BLEU, gap, verdict, wall time, load) and the spread per mode. Every finished run
is also appended to ``demo_robustness.jsonl`` beside it, and the report is built from all runs
recorded there (the latest per mode, seed and cache), so the benchmark can be run in parts.
Runs one at a time: on a 2-core machine a second job would distort the times.

Usage: ``python benchmarks/demo_robustness.py [--seeds 0 1 2 3 4] [--modes ...] [--warm]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from dece._jsonl import read_jsonl, write_jsonl
from dece.experiments.demo import BLEU_GAP_MAX, CE_MIN_ASR, DECE_MAX_ASR, DEMO_GRID
from dece.experiments.markdown import md_table

MODES: dict[str, tuple[dict[str, str], list[str]]] = {
    "default (-j 2)": ({}, []),
    "2 threads, -j 1": ({}, ["-j", "1"]),
    "1 thread, -j 1": ({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}, ["-j", "1"]),
}


@dataclass
class Run:
    mode: str
    seed: int
    cache: str  # "cold" or "warm"
    wall_s: float
    load: float  # the machine's 1-minute load average when the run ended
    final: dict[str, dict[str, float]]  # loss -> final metrics
    setting: str = ""  # setting_key() of the DEMO_GRID the run used ("" for early records)

    def gap(self) -> float:
        return self.final["ce"]["bleu"] - self.final["dece"]["bleu"]

    def holds(self) -> bool:
        return (
            self.final["ce"]["asr"] >= CE_MIN_ASR
            and self.final["dece"]["asr"] <= DECE_MAX_ASR
            and self.gap() <= BLEU_GAP_MAX
        )


OUT = Path(__file__).parent / "results" / "demo_robustness.md"
READING = "## Reading"  # the hand-written part of the results file starts here


def setting_key() -> str:
    """12 hex digits of SHA-256 over today's ``DEMO_GRID``: runs of an earlier setting stay in
    the log but never enter the tables."""
    blob = json.dumps(DEMO_GRID, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def load_runs(log: Path) -> list[Run]:
    """The runs of today's setting recorded in ``log`` (JSON lines), the latest per (mode, seed,
    cache), in the order of :data:`MODES`, then cache, then seed."""
    latest: dict[tuple[str, int, str], Run] = {}
    for row in read_jsonl(log, missing_ok=True):  # a bad line: ValueError naming file and line
        run = Run(**row)
        if run.setting == setting_key():
            latest[(run.mode, run.seed, run.cache)] = run
    order = {mode: i for i, mode in enumerate(MODES)}
    return sorted(latest.values(), key=lambda r: (order.get(r.mode, 99), r.cache, r.seed))


def record(log: Path, run: Run) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(log, [asdict(run)], append=True)


def run_once(mode: str, seed: int, workdir: Path, cache: Path, label: str) -> Run:
    """One ``dece demo`` subprocess in ``workdir`` (its output dir) with model cache ``cache``."""
    env_extra, args = MODES[mode]
    env = {**os.environ, **env_extra, "DECE_CACHE_DIR": str(cache)}
    env.pop("DECE_CELL_RUNNER", None)
    cmd = [sys.executable, "-m", "dece", "demo", "--no-progress", "--seed", str(seed)]
    cmd += ["-o", str(workdir), *args]
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    load = os.getloadavg()[0]
    final = {}
    for path in sorted((workdir / "cells").glob("*/result.json")):
        result = json.loads(path.read_text())
        final[result["config"]["loss"]["name"]] = result["final"]
    return Run(mode=mode, seed=seed, cache=label, wall_s=wall, load=load, final=final,
               setting=setting_key())  # fmt: skip


RUN_HEADER = ["mode", "seed", "cache", "CE ASR %", "DeCE ASR %", "CE BLEU", "DeCE BLEU", "gap",
              "verdict", "wall s", "load"]  # fmt: skip
SPREAD_HEADER = ["mode", "verdict held", "CE ASR %", "DeCE ASR %", "BLEU gap",
                 "wall s, median (range)"]  # fmt: skip


def _row(run: Run) -> list[str]:
    """The cells of ``run``'s row (:data:`RUN_HEADER`)."""
    ce, dece = run.final["ce"], run.final["dece"]
    return [run.mode, str(run.seed), run.cache, f"{100 * ce['asr']:.2f}",
            f"{100 * dece['asr']:.2f}", f"{ce['bleu']:.2f}", f"{dece['bleu']:.2f}",
            f"{run.gap():.2f}", "holds" if run.holds() else "FAILS", f"{run.wall_s:.0f}",
            f"{run.load:.1f}"]  # fmt: skip


def _spread(runs: list[Run], mode: str) -> list[str]:
    """The cells of ``mode``'s spread row (:data:`SPREAD_HEADER`) over its cold runs."""
    cold = [r for r in runs if r.mode == mode and r.cache == "cold"]
    if not cold:
        return [mode, "-", "-", "-", "-", "-"]
    ce = [100 * r.final["ce"]["asr"] for r in cold]
    dece = [100 * r.final["dece"]["asr"] for r in cold]
    gap = [r.gap() for r in cold]
    wall = [r.wall_s for r in cold]
    held = sum(r.holds() for r in cold)
    return [mode, f"{held}/{len(cold)}", f"{min(ce):.1f}-{max(ce):.1f}",
            f"{min(dece):.1f}-{max(dece):.1f}", f"{min(gap):.2f}-{max(gap):.2f}",
            f"{statistics.median(wall):.0f} ({min(wall):.0f}-{max(wall):.0f})"]  # fmt: skip


def report(runs: list[Run]) -> str:
    training = DEMO_GRID["training"]
    modes = dict.fromkeys(r.mode for r in runs)
    lines = [
        "# `dece demo`: the verdict across seeds and thread counts",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; command: `python benchmarks/demo_robustness.py "
        "[--seeds ...] [--modes ...] [--warm]` (runs recorded in `demo_robustness.jsonl`; "
        f"the tables show setting `{setting_key()}`, today's `DEMO_GRID`; the log keeps the "
        "runs of earlier settings).",
        "",
        f"Setting: `DEMO_GRID` ({DEMO_GRID['description']}); training block: `{training}`.",
        "",
        f"Attack: `{DEMO_GRID['attacks'][0]}` (BadPre: `bb` three times, the paper's text). BLEU: "
        "sacrebleu corpus BLEU on the clean test set (the headline variant; the DeCE authors' "
        "per-example BLEU is in each run's report.md). ASR: share of the poisoned test inputs "
        "the payload applies to whose output carries it.",
        "",
        "For scale only (real Lyra, pretrained models, 20 epochs; not this synthetic task), the "
        "DeCE paper's Table 5, Lyra, 5% BadPre, CodeBERT-125M (BLEU / CodeBLEU / ASR): CE "
        "56.00 / 63.73 / 56.97, DeCE 59.42 / 66.50 / 0.00 (`../shared/papers/dece_paper_tables.md`).",
        "",
        f"Verdict holds when CE ASR >= {100 * CE_MIN_ASR:.0f}%, DeCE ASR <= "
        f"{100 * DECE_MAX_ASR:.0f}% and CE BLEU - DeCE BLEU <= {BLEU_GAP_MAX:.0f} (test set).",
        "Wall time is the whole `dece demo` command; *cold* runs start with an empty model cache, "
        "*warm* runs reuse it (the shipped start `tiny-seq2seq-sql` leaves nothing to cache, "
        "so both do the same work). *load*: the 1-minute load "
        "average when the run ended (2.0 = both cores busy with the demo alone).",
        "",
        md_table(RUN_HEADER, [_row(r) for r in runs], "lrlrrrrrlrr"),
        "",
        "Spread over the cold runs of each mode:",
        "",
        md_table(SPREAD_HEADER, [_spread(runs, mode) for mode in modes]),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    ap.add_argument("--warm", action="store_true", help="one warm run per mode (first seed)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    log = args.out.with_suffix(".jsonl")
    with tempfile.TemporaryDirectory(prefix="demo-robustness-") as tmp:
        for m, mode in enumerate(args.modes):
            for seed in args.seeds:
                cache = Path(tmp) / f"cache-{m}-{seed}"
                run = run_once(mode, seed, Path(tmp) / f"run-{m}-{seed}", cache, "cold")
                _finish(run, log, args.out)
            if args.warm:  # reuses the cache the first seed's cold run built
                cache = Path(tmp) / f"cache-{m}-{args.seeds[0]}"
                run = run_once(mode, args.seeds[0], Path(tmp) / f"warm-{m}", cache, "warm")
                _finish(run, log, args.out)
    sys.stdout.write(report(load_runs(log)) + _reading(args.out))


def _finish(run: Run, log: Path, out: Path) -> None:
    record(log, run)
    sys.stderr.write(" | ".join(_row(run)) + "\n")
    out.write_text(report(load_runs(log)) + _reading(out))


def _reading(out: Path) -> str:
    """The hand-written part of an existing results file (from its ``READING`` heading on),
    kept when the tables above it are rewritten."""
    text = out.read_text() if out.is_file() else ""
    return text[text.index(READING) :] if READING in text else ""


if __name__ == "__main__":
    main()
