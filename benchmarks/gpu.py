"""GPU checks (issue 6, item 3); skipped without CUDA.

* the accuracy and overhead tables on CUDA (float32 states);
* the fixed-step Euler step time divided by the time of one device copy of the state
  (``x.clone()``), at 64x3x64x64 with a near-free predictor — goal ≤ 1.7;
* no host synchronisation inside fixed-step loops: solves of 10 and 20 steps run under
  ``torch.cuda.set_sync_debug_mode("warn")`` and their sync warnings are counted; the counts must
  be equal (the syncs before and after the loop do not grow with the steps).
"""

from __future__ import annotations

import torch

import flowrestore as fr
from flowrestore.solvers.semilinear import SemiLinearMultistep

from .common import table, time_interleaved


def available() -> bool:
    return torch.cuda.is_available()


def copy_ratio(steps: int = 100, repeats: int = 10):
    dev = "cuda"
    y = torch.randn(64, 3, 64, 64, device=dev)
    flow = fr.InDIFlow(lambda x, t: x)
    grid = torch.linspace(1.0, 0.01, steps + 1, dtype=torch.float64)
    t = time_interleaved(
        {
            "euler_solve": lambda: fr.solve(flow, fr.Euler(), y, grid=grid),
            "copy": lambda: [y.clone() for _ in range(steps)],
        },
        repeats,
        dev,
    )
    step, copy = t["euler_solve"] / steps, t["copy"] / steps
    return [["Euler step / state copy (64x3x64x64, fp32)", 1e6 * step, 1e6 * copy, step / copy]]


def _count_syncs(fn) -> int:
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode(0)
    return sum("synchroniz" in str(w.message).lower() for w in caught)


def sync_check():
    """Host syncs of fixed-step solves at 10 and 20 steps (sync debug mode 'warn').

    Syncs outside the loop (grid checks before it, the one status check after it) do not depend
    on the number of steps; a loop without per-step syncs gives the same count at 10 and 20 steps.
    """
    dev = "cuda"
    y = torch.randn(8, 3, 32, 32, device=dev)
    flow = fr.InDIFlow(lambda x, t: 0.9 * x)
    rows = []
    for solver in (fr.Euler(), fr.RK4(), fr.Heun(), fr.InDISampler(), SemiLinearMultistep(order=3)):
        fr.solve(flow, solver, y, steps=10)  # warm-up (lazy CUDA init may sync)
        torch.cuda.synchronize()
        c10 = _count_syncs(lambda s=solver: fr.solve(flow, s, y, steps=10))
        c20 = _count_syncs(lambda s=solver: fr.solve(flow, s, y, steps=20))
        rows.append([repr(solver), c10, c20, "yes" if c20 == c10 else "NO"])
    return rows


def report() -> str:
    if not available():
        return "No CUDA device on this machine: the GPU tables were skipped."
    from . import accuracy, overhead

    parts = [
        "### Euler step vs one device copy of the state",
        "",
        table(["case", "step µs", "copy µs", "ratio (goal ≤ 1.7)"], copy_ratio()),
        "",
        "### Host synchronisation in fixed-step loops (torch.cuda.set_sync_debug_mode)",
        "",
        table(["solver", "syncs, 10 steps", "syncs, 20 steps", "no per-step sync"], sync_check()),
        "",
        "### Loop overhead on CUDA",
        "",
        overhead.report(overhead.run(device="cuda")),
        "",
    ]
    g = accuracy.run_gaussian(dtype=torch.float32, device="cuda")
    parts += [
        "### Gaussian oracle on CUDA (float32 states)",
        "",
        table(
            ["library", "method", "NFE", "rel. error"],
            [[r["lib"], r["method"], r["nfe_max"], r["value"]] for r in g],
        ),
    ]
    return "\n".join(parts)
