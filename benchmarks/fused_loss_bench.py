"""Benchmark: forward+backward time and peak memory of the LM head + loss, four ways:

(a) ``hidden @ W.T`` then ``F.cross_entropy`` (label smoothing 0.1), (b) ``hidden @ W.T`` then
``dece_loss``, (c) ``fused_linear_dece_loss`` (no ``[N, V]`` logits), (d) liger-kernel's
``LigerFusedLinearCrossEntropyLoss`` (Triton: runs on a CUDA GPU only), at (N=4,096, H=576,
V=49,152: the SmolLM2 head) and (N=4,096, H=2,048, V=151,936), fp32, no ignored tokens.

Everything runs in one process, so the ratios share the machine's load at that moment.

Time: median of ``--repeats`` forward+backward runs after one warm-up run per method; the
methods are interleaved run by run.

Peak memory: glibc is told to serve every allocation >= 1 MiB by ``mmap`` (``mallopt``) and to
give freed heap back (``malloc_trim``), so the resident set tracks live tensors. Before each
method's run the kernel's high-water mark is reset (``echo 5 > /proc/self/clear_refs``); the
reported value is ``VmHWM - VmRSS_before - size(W.grad) - size(hidden.grad)``: the physical memory
beyond what every method must hold (the inputs, the weight and both gradients). On a GPU the same
quantity comes from ``torch.cuda.max_memory_allocated``.

Usage: ``python benchmarks/fused_loss_bench.py [--repeats 3] [--threads T] [--out PATH]``
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from dece.experiments.markdown import md_table
from dece.losses import dece_loss, fused_linear_dece_loss

SHAPES = [(4096, 576, 49_152), (4096, 2048, 151_936)]
EPS, ALPHA_BASE, EPOCH = 0.1, 0.99, 1.0
METHODS = ["(a) matmul + F.cross_entropy", "(b) matmul + dece_loss", "(c) fused linear DeCE"]
LIGER = "(d) liger fused linear CE"
RESULTS = Path(__file__).resolve().parent / "results" / "fused_loss_bench.md"
Step = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

_libc = ctypes.CDLL("libc.so.6") if os.path.exists("/proc/self/clear_refs") else None
_M_MMAP_THRESHOLD = -3


def liger_status(device: torch.device) -> str | None:
    """None when liger-kernel can run here, else why not."""
    if device.type != "cuda":
        return "not run: no GPU (liger-kernel's fused linear CE is a Triton kernel)"
    try:
        import liger_kernel.transformers  # noqa: F401
    except ImportError:
        return "not run: liger-kernel not installed (pip install liger-kernel)"
    return None


def loss_fn(method: str) -> Step:
    if method.startswith("(a)"):
        return lambda h, w, t: F.cross_entropy(h @ w.T, t, label_smoothing=EPS)
    if method.startswith("(b)"):
        return lambda h, w, t: dece_loss(
            h @ w.T, t, epoch=EPOCH, alpha_base=ALPHA_BASE, label_smoothing=EPS
        )
    if method.startswith("(c)"):
        return lambda h, w, t: fused_linear_dece_loss(
            h, w, t, epoch=EPOCH, alpha_base=ALPHA_BASE, label_smoothing=EPS
        )
    if method == LIGER:
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

        liger = LigerFusedLinearCrossEntropyLoss(label_smoothing=EPS)
        return lambda h, w, t: liger(w, h, t)
    raise ValueError(f"unknown method {method!r}")


def make_inputs(n: int, h: int, v: int, device: torch.device):
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(n, h, generator=gen).to(device).requires_grad_()
    weight = (torch.randn(v, h, generator=gen) * (2.0 / h**0.5)).to(device).requires_grad_()
    target = torch.randint(0, v, (n,), generator=gen).to(device)
    return hidden, weight, target


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _release(*tensors: torch.Tensor) -> None:
    for t in tensors:
        t.grad = None
    gc.collect()
    if _libc is not None:
        _libc.malloc_trim(0)


def run_once(fn: Step, hidden, weight, target) -> float:
    """Seconds of one forward+backward (gradients left in .grad)."""
    _release(hidden, weight)
    sync = torch.cuda.synchronize if hidden.is_cuda else (lambda: None)
    sync()
    t0 = time.perf_counter()
    fn(hidden, weight, target).backward()
    sync()
    return time.perf_counter() - t0


def peak_beyond_shared(fn: Step, hidden, weight, target) -> int:
    """Bytes at the peak of one forward+backward beyond the inputs, weight and gradients."""
    grads = (weight.numel() + hidden.numel()) * weight.element_size()
    _release(hidden, weight)
    if hidden.is_cuda:
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn(hidden, weight, target).backward()
        return torch.cuda.max_memory_allocated() - before - grads
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := current RSS
    before = _status_kb("VmRSS")
    fn(hidden, weight, target).backward()
    return (_status_kb("VmHWM") - before) * 1024 - grads


def bench_shape(n, h, v, methods, repeats, device):
    hidden, weight, target = make_inputs(n, h, v, device)
    fns = {m: loss_fn(m) for m in methods}
    peak = {}
    for m in methods:  # also the warm-up run
        peak[m] = peak_beyond_shared(fns[m], hidden, weight, target)
        print(f"N={n} H={h} V={v} {m}: peak {peak[m] / 2**20:.0f} MiB", file=sys.stderr)
    times: dict[str, list[float]] = {m: [] for m in methods}
    for r in range(repeats):
        for m in methods:
            times[m].append(run_once(fns[m], hidden, weight, target))
            print(f"  run {r + 1}/{repeats} {m}: {times[m][-1]:.3f} s", file=sys.stderr)
    _release(hidden, weight)
    return {m: statistics.median(ts) for m, ts in times.items()}, peak


def load_line() -> str:
    try:
        return "load average " + " / ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "load average unknown"


def results_table(rows: list[tuple], methods: list[str], liger_why: str | None) -> str:
    """One row per shape and method of ``rows`` (``(n, h, v, times, peaks)``), ratios to the
    first method; the liger row says why it did not run when ``liger_why`` is given."""
    header = ["N", "H", "V", "method", "time (s)", "peak beyond shared (MiB)", "time / (a)",
              "peak / (a)"]  # fmt: skip
    body = []
    for n, h, v, t, mem in rows:
        base_t, base_m = t[METHODS[0]], mem[METHODS[0]]
        for m in methods:
            body.append([str(n), str(h), str(v), m, f"{t[m]:.3f}", f"{mem[m] / 2**20:.0f}",
                         f"{t[m] / base_t:.2f}", f"{mem[m] / base_m:.3f}"])  # fmt: skip
        if liger_why is not None:
            body.append([str(n), str(h), str(v), LIGER, liger_why, "", "", ""])
    return md_table(header, body)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--shapes", default=None, help="N,H,V;N,H,V (default: the two above)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    if args.repeats < 1:
        ap.error("--repeats must be >= 1")
    torch.set_num_threads(args.threads)
    if _libc is not None:
        _libc.mallopt(_M_MMAP_THRESHOLD, 1 << 20)
    device = torch.device(args.device)
    shapes = SHAPES
    if args.shapes:
        shapes = [tuple(int(x) for x in s.split(",")) for s in args.shapes.split(";")]
    liger_why = liger_status(device)
    methods = METHODS + ([LIGER] if liger_why is None else [])
    load_before = load_line()
    rows = [(n, h, v, *bench_shape(n, h, v, methods, args.repeats, device)) for n, h, v in shapes]
    load_after = load_line()

    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    lines = [
        f"# Fused linear + loss benchmark: forward + backward ({dev})",
        "",
        f"torch {torch.__version__}, {dev}, {args.threads} thread(s), fp32, no ignored tokens, "
        f"eps={EPS}, alpha_base={ALPHA_BASE}, epoch={EPOCH}; time = median of {args.repeats} "
        "interleaved runs after a warm-up, in one process; peak = memory beyond the inputs, the "
        "weight and the gradients of hidden and weight (what every method must hold), at the "
        f"peak of one forward+backward, same process. {load_before} before, {load_after} after.",
        "",
        results_table(rows, methods, liger_why),
        "",
        "Target at V=151,936: (c) peak / (a) <= 0.1 and (c) time / (a) <= 1.0.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
