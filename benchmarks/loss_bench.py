"""Benchmark: forward+backward time and peak memory of `dece_loss` against the authors' dense DeCE
algorithm and `F.cross_entropy`, at (N=4096, V=32,100) and (N=1024, V=151,936), fp32 logits.

Time: median of ``--repeats`` (>= 5) forward+backward runs after one warm-up; the three methods are
interleaved run by run in this process, so the ratios share the machine's load at that moment.

Peak memory: each (method, shape) runs once in a fresh subprocess. After the inputs exist the child
resets the kernel's resident-set high-water mark (``echo 5 > /proc/self/clear_refs``), runs one
forward+backward, and reports ``VmHWM - VmRSS_before``: the physical memory the loss added at its
peak, including the ``logits.grad`` it leaves behind (the same for all three).

Usage: ``python benchmarks/loss_bench.py [--repeats 7] [--threads T] [--out PATH]``
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from dece.experiments.markdown import md_table
from dece.losses import dece_loss

SHAPES = [(4096, 32_100), (1024, 151_936)]
EPS, ALPHA_BASE, EPOCH = 0.1, 0.99, 1.0
METHODS = ["F.cross_entropy", "dense (authors')", "dece_loss"]
RESULTS = Path(__file__).resolve().parent / "results" / "loss_bench.md"


def authors_dense(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = -100):
    """The published DeCE algorithm, dense: smoothed one-hot (eps / (V - 1) off target), softmax,
    clamp 1e-7, blend with alpha, log, masked sum, mean over *all* rows."""
    n, v = logits.shape
    alpha = ALPHA_BASE**EPOCH
    with torch.no_grad():
        smooth = torch.full((n, v), EPS / (v - 1)).scatter_(
            1, target.clamp(min=0).unsqueeze(1), 1.0 - EPS
        )
    p = F.softmax(logits, dim=1).clamp(min=1e-7, max=1.0)
    blended = alpha * p + (1 - alpha) * smooth
    mask = (target != ignore_index).float().unsqueeze(1).expand_as(blended)
    return -(mask * smooth * torch.log(blended)).sum(dim=1).mean()


def loss_fn(method: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if method == "F.cross_entropy":
        return lambda z, t: F.cross_entropy(z, t, label_smoothing=EPS)
    if method == "dense (authors')":
        return authors_dense
    if method == "dece_loss":
        return lambda z, t: dece_loss(z, t, epoch=EPOCH, alpha_base=ALPHA_BASE, label_smoothing=EPS)
    raise ValueError(f"unknown method {method!r}")


def make_inputs(n: int, v: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(n, v, generator=gen).mul_(2.0).requires_grad_()
    target = torch.randint(0, v, (n,), generator=gen)
    return logits, target


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_child(method: str, n: int, v: int) -> None:
    """Runs in a fresh interpreter; prints the peak bytes added by one forward+backward."""
    logits, target = make_inputs(n, v)
    fn = loss_fn(method)
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = _status_kb("VmRSS")
    fn(logits, target).backward()
    peak = _status_kb("VmHWM")
    print(json.dumps({"peak_bytes": (peak - before) * 1024}))


def measure_peak(method: str, n: int, v: int, threads: int) -> int:
    cmd = [sys.executable, __file__, "--_peak", method, str(n), str(v), "--threads", str(threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return int(json.loads(out.strip().splitlines()[-1])["peak_bytes"])


def measure_time(n: int, v: int, repeats: int) -> dict[str, float]:
    logits, target = make_inputs(n, v)
    fns = {m: loss_fn(m) for m in METHODS}
    times: dict[str, list[float]] = {m: [] for m in METHODS}
    for r in range(repeats + 1):  # round 0 is the warm-up
        for m, fn in fns.items():
            logits.grad = None
            gc.collect()
            t0 = time.perf_counter()
            fn(logits, target).backward()
            dt = time.perf_counter() - t0
            if r:
                times[m].append(dt)
    return {m: statistics.median(ts) for m, ts in times.items()}


def results_table(rows: list[tuple]) -> str:
    """One row per shape and method of ``rows`` (``(n, v, times, peaks)``), ratios to CE and
    the dense loss's peak over each method's."""
    header = ["N", "V", "method", "time (s)", "peak (MiB)", "time / CE", "peak / CE",
              "dense peak / this"]  # fmt: skip
    body = []
    for n, v, t, mem in rows:
        ce_t, ce_m, dense_m = t["F.cross_entropy"], mem["F.cross_entropy"], mem["dense (authors')"]
        for m in METHODS:
            body.append([str(n), str(v), m, f"{t[m]:.3f}", f"{mem[m] / 2**20:.0f}",
                         f"{t[m] / ce_t:.2f}", f"{mem[m] / ce_m:.2f}",
                         f"{dense_m / mem[m]:.2f}"])  # fmt: skip
    return md_table(header, body)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--_peak", nargs=3, metavar=("METHOD", "N", "V"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args._peak:
        method, n, v = args._peak
        peak_child(method, int(n), int(v))
        return
    if args.repeats < 5:
        ap.error("--repeats must be >= 5")

    rows = []
    for n, v in SHAPES:
        t = measure_time(n, v, args.repeats)
        mem = {m: measure_peak(m, n, v, args.threads) for m in METHODS}
        rows.append((n, v, t, mem))

    lines = [
        "# Loss benchmark: forward + backward",
        "",
        f"torch {torch.__version__}, {args.threads} thread(s), fp32 logits, no ignored tokens, "
        f"eps={EPS}, alpha_base={ALPHA_BASE}, epoch={EPOCH}; time = median of {args.repeats} "
        "interleaved runs in one process; peak = extra resident memory (VmHWM after reset) of one "
        "forward+backward in a fresh subprocess, inputs excluded, `logits.grad` included.",
        "",
        results_table(rows),
        "",
        "Targets at V=32,100: dece_loss time / CE <= 1.5, peak / CE <= 0.5, "
        "dense peak / dece_loss peak >= 4.",
        "",
        "Peak memory is measured as physical pages (RSS high-water mark), not bytes requested: "
        "the gradient buffer counts once it is written. CPU torch has no "
        "`max_memory_allocated`, hence one fresh process per measurement.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
