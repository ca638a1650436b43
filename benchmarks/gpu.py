"""GPU readiness (issue 17): compiled and CUDA-graph-replayed solves, step cost, host syncs.

``python -m benchmarks gpu`` (CPU or CUDA) and ``python -m benchmarks.gpu`` (prints every goal of
issue 17 with its measured value; under 5 minutes on a GPU):

* the shipped U-Net (``fr.pretrained("indi-deblur")``), 10-step Euler, at 64² batch 1 and 256²
  batch 4: eager vs ``fr.solve(..., compile=...)`` (inductor, default mode) vs, on CUDA, the
  CUDA-graph replay (``compile=True`` → ``mode="reduce-overhead"``); compile time apart;
* an Euler step of a near-free pointwise flow at 16×3×256×256 vs one copy of the state;
* host syncs per step: a fixed-grid solve at 10 and 20 steps (CUDA: sync warnings of
  ``torch.cuda.set_sync_debug_mode``; CPU: ``tests/syncs.py``'s counter) and an error-controlled
  solve's syncs per accepted step;
* whole-solve capture: graph breaks of ``torch.compile(fullgraph=True)`` on a fixed-grid solve.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

import flowrestore as fr

from .common import machine, sync, table, time_interleaved

__all__ = ["available", "goals", "report", "unet_rows"]


def available() -> bool:
    return torch.cuda.is_available()


def _timed(fn, device, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def unet_rows(device: str, large: bool = True, modes: dict | None = None) -> list[dict]:
    """Eager / compiled / graph-replayed 10-step Euler solves of the shipped U-Net at 64² batch 1
    and (``large``) 256² batch 4 (``modes``: label → ``torch.compile`` mode)."""
    net = fr.pretrained("indi-deblur").to(device)
    flow = fr.InDIFlow(net)
    cases = [(64, 1), (256, 4)] if large else [(64, 1)]
    if modes is None:
        modes = {"compiled": "default"}
        if torch.device(device).type == "cuda":
            modes["graph replay"] = "reduce-overhead"
    rows = []
    for size, batch in cases:
        y = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
        y = y.to(device)
        repeats = 2 if size > 64 and device == "cpu" else 5

        def eager(y=y):
            return fr.solve(flow, fr.Euler(), y, steps=10, check_finite=False).x

        variants = {"eager": eager}
        with torch.no_grad():
            ref = eager()
            row = {"case": f"{size}² batch {batch}"}
            for label, mode in modes.items():

                def compiled(y=y, mode=mode):
                    return fr.solve(
                        flow, fr.Euler(), y, steps=10, check_finite=False, compile=mode
                    ).x

                sync(device)
                t0 = time.perf_counter()
                out = compiled()
                compiled()  # a CUDA-graph tree records on its second call
                sync(device)
                row[f"{label}_compile_s"] = time.perf_counter() - t0
                row[f"{label}_maxdiff"] = float((out - ref).abs().max())
                variants[label] = compiled
            # side by side: the variants interleaved, the minimum of each kept
            times = time_interleaved(variants, repeats, device, warmup=0)
        row["eager_s"] = times.pop("eager")
        row.update({f"{k}_s": v for k, v in times.items()})
        rows.append(row)
    return rows


def copy_ratio(device: str, steps: int = 20, repeats: int = 5) -> list[list]:
    """Euler step of a pointwise flow (eager, compiled) over one copy of the state: the whole
    ``steps``-step solve over ``steps`` (planning and the solution included), and the marginal
    step ``(T(2·steps) − T(steps)) / steps`` (what one more step costs)."""
    y = torch.randn(16, 3, 256, 256, device=device)
    flow = fr.InDIFlow(lambda x, t: 0.9 * x)
    mode = "reduce-overhead" if torch.device(device).type == "cuda" else "default"

    def solve(compile=False, n=steps):
        return fr.solve(flow, fr.Euler(), y, steps=n, check_finite=False, compile=compile)

    for n in (steps, 2 * steps):
        solve(mode, n)
        solve(mode, n)
    copy = _timed(lambda: [y.clone() for _ in range(steps)], device, repeats) / steps
    rows = []
    for label, comp in (("eager", False), (f"compiled ({mode})", mode)):
        one = _timed(lambda c=comp: solve(c), device, repeats)
        two = _timed(lambda c=comp: solve(c, 2 * steps), device, repeats)
        step, marginal = one / steps, (two - one) / steps
        rows.append(
            [f"Euler step, {label}", 1e6 * step, 1e6 * marginal, 1e6 * copy, step / copy,
             marginal / copy]
        )  # fmt: skip
    return rows


def _count_syncs(fn, device: str) -> tuple[int, int | None]:
    """Host syncs of ``fn()``: in all, and (CPU) the error controller's reads in the step loop."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from syncs import SyncCounter, cuda_syncs

    if torch.device(device).type == "cuda":
        return cuda_syncs(fn), None
    # CPU: the ops that read a device value (tests/syncs.py) plus the error controller's
    # decision reads (HostCopy.read, a .tolist() the counter cannot see on a CPU tensor)

    import flowrestore.integrate.loop as loop
    from flowrestore.controllers.base import HostCopy

    reads, inside = [0, 0], [False]
    read, steps = HostCopy.read, loop.steps

    def counted(self):
        reads[inside[0]] += 1
        return read(self)

    def in_loop(*a, **k):
        inside[0] = True
        try:
            return steps(*a, **k)
        finally:
            inside[0] = False

    HostCopy.read, loop.steps = counted, in_loop
    try:
        with SyncCounter() as sc:
            fn()
    finally:
        HostCopy.read, loop.steps = read, steps
    return sc.count + sum(reads), reads[1]


def sync_rows(device: str) -> list[list]:
    """Host syncs of fixed-grid solves at 10 and 20 steps; error control per accepted step."""
    w = torch.randn(64, device=device) * 0.1
    flow = fr.InDIFlow(lambda x, t: x * (1 - t[:, None]) * 0.9 + w)
    y = torch.randn(16, 64, device=device)
    rows = []
    for solver in (fr.Euler(), fr.Heun(), fr.RK4(), fr.InDISampler(), fr.SemiLinearMultistep()):
        fr.solve(flow, solver, y, steps=10)  # warm-up
        c10 = _count_syncs(lambda s=solver: fr.solve(flow, s, y, steps=10), device)[0]
        c20 = _count_syncs(lambda s=solver: fr.solve(flow, s, y, steps=20), device)[0]
        rows.append([repr(solver), c10, c20, (c20 - c10) / 10])
    fr.solve(flow, fr.Dopri5(rtol=1e-6), y, t_end=0.05)
    out = {}

    def controlled():
        out["sol"] = fr.solve(flow, fr.Dopri5(rtol=1e-6), y, t_end=0.05)

    n, in_loop = _count_syncs(controlled, device)
    st = out["sol"].stats
    iterations = int((st.steps + st.rejected).max())  # the loop steps every running sample once
    label = f"Dopri5(rtol=1e-6), {iterations} loop steps: all / in the loop"
    # per step: the step loop's reads (CPU), or all syncs (CUDA: start and end included)
    rows.append([label, n, in_loop, (in_loop if in_loop is not None else n) / iterations])
    return rows


def capture_breaks() -> int:
    """Graph breaks of the issue-17 whole-solve capture."""
    F = fr.pretrained("indi-deblur")

    def solve(y):
        return fr.solve(
            fr.InDIFlow(F), fr.Euler(), y, steps=8, check_finite=False, seeds=list(range(len(y)))
        ).x

    return torch._dynamo.explain(solve)(torch.rand(1, 3, 32, 32)).graph_break_count


def goals(device: str, unet: list[dict] | None = None, syncs: list[list] | None = None):
    """Every goal of issue 17 with its measured value (``unet``/``syncs``: rows already
    measured)."""
    cuda = torch.device(device).type == "cuda"
    only = {"graph replay": "reduce-overhead"} if cuda else {"compiled": "default"}
    u = (unet or unet_rows(device, large=False, modes=only))[0]
    syncs = syncs or sync_rows(device)
    fixed = max(r[3] for r in syncs[:-1])
    try:
        breaks = f"{capture_breaks()} breaks"
    except Exception as e:  # a tracer error is a measured failure of the goal, not a crash
        breaks = f"capture failed: {type(e).__name__}: {str(e).splitlines()[0][:120]}"
    rows = [
        ["0 host syncs per step, fixed grid (core pairings)", f"{fixed:g} per step", fixed == 0],
        ["≤ 1 sync per step, error control", f"{syncs[-1][3]:.2f}", syncs[-1][3] <= 1],
        ["fullgraph capture of a whole fixed-grid solve", breaks, breaks == "0 breaks"],
    ]
    if not cuda:
        speed = u["eager_s"] / u["compiled_s"]
        rows.append(
            ["CPU: compiled 10-step Euler, U-Net 64² b1, ≥ 1.4× eager", speed, speed >= 1.4]
        )
    else:
        graphed = copy_ratio(device)[-1]
        ratio, marginal = graphed[4], graphed[5]
        rows.append(["GPU: graph-replayed Euler step ≤ 1.7× a state copy", ratio, ratio <= 1.7])
        rows.append(["  the same, marginal step (one more step)", marginal, marginal <= 1.7])
        replay = u["eager_s"] / u["graph replay_s"]
        rows.append(["GPU: batch-1 U-Net solve ≥ 3× eager (graph replay)", replay, replay >= 3])
    return rows


def report(cpu: bool = False, quick: bool = False) -> str:
    """The tables; without CUDA only with ``cpu=True`` (``python -m benchmarks gpu``). On the CPU
    the 256² batch-4 case (minutes per eager solve) is left out."""
    if not available() and not cpu:
        return "No CUDA device on this machine: the GPU tables were skipped."
    device = "cuda" if available() else "cpu"
    u = unet_rows(device, large=device == "cuda" and not quick)
    syncs = sync_rows(device)
    heads = ["case", "eager s", "compiled s", "speed-up", "compile s", "max |diff|"]
    body = []
    for r in u:
        body.append(
            [
                r["case"],
                r["eager_s"],
                r["compiled_s"],
                r["eager_s"] / r["compiled_s"],
                r["compiled_compile_s"],
                r["compiled_maxdiff"],
            ]
        )
        if "graph replay_s" in r:
            body.append(
                [
                    r["case"] + ", graph replay",
                    r["eager_s"],
                    r["graph replay_s"],
                    r["eager_s"] / r["graph replay_s"],
                    r["graph replay_compile_s"],
                    r["graph replay_maxdiff"],
                ]
            )
    parts = [
        f"Device: {device}. 10-step Euler solves of the shipped U-Net (indi-deblur), "
        "min over repeats after warm-up; compile time (first two calls) apart.",
        "",
        table(heads, body),
        "",
        "### Euler step vs one copy of the state (pointwise flow, 16×3×256×256)",
        "",
        table(
            ["variant", "solve / steps µs", "marginal µs", "copy µs", "ratio", "marginal ratio"],
            copy_ratio(device),
        ),
        "",
        "### Host syncs",
        "",
        table(["solve", "10 steps", "20 steps", "per step"], syncs),
        "",
        "### Goals of issue 17",
        "",
        table(["goal", "measured", "met"], goals(device, u, syncs)),
    ]
    return "\n".join(parts)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="issue 17's GPU goals, measured (< 5 min on a GPU)")
    p.parse_args(argv)
    device = "cuda" if available() else "cpu"
    print(f"Machine: {machine()}\n")
    print(table(["goal", "measured", "met"], goals(device)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
