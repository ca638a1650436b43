"""What limits a fitted grid on the diffusers-trained DDPM (issue 16, group (b)): a diagnostic.

The few-NFE benchmark's fitted grids reach 0.61–0.63 of the best peer's worst error on the DDPM
at 5–6 NFE (goal: ½), against 0.11–0.20 on the exact diffusion models. Three causes are told
apart here, on the test split's 32 noises (seeds 100–103, 8 each) and their 500-step references:

* **the warm-up batch** — ``warm16``: the benchmark's recipe, ``fit_grid`` on 16 other noises;
* **the search budget** — ``warm16-r256``: the same with ``refine=256`` real solves (4×);
* **the grid family itself** — ``scored32``: ``fit_grid`` on the 32 scored noises themselves (a
  grid that saw its exam: an upper bound on what any grid fitted by this objective can do there,
  never a result to report as a fitted schedule).

Each row: worst and mean relative error over the 32 noises, and the fit's wall time. If the
``scored32`` row is no better than ``warm16``, neither more warm-up inputs nor a longer search
helps: the grid (with this solver) is the limit. The ``fit_weights`` rows do the same for
:func:`flowrestore.integrate.fit_weights` (grid and per-step weights): fitted on the 16 warm-up
noises, and on the 32 scored ones (an upper bound, never a result).

Run: ``OMP_NUM_THREADS=1 python -m benchmarks.fit_limit`` (about 10 minutes on one core).
"""

from __future__ import annotations

import time

import torch

import flowrestore as fr
from flowrestore.integrate import fit_grid, fit_weights

from . import fewnfe_problems as P

SOLVERS = {"DataIPNDM()": fr.DataIPNDM, "IPNDM()": fr.IPNDM}
NFES = (5, 6)


def _errors(x: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    num = (x.double() - ref.double()).flatten(1).norm(dim=1)
    rel = num / ref.double().flatten(1).norm(dim=1)
    return float(rel.max()), float(rel.mean())


def run(log=print) -> list[tuple]:
    """Rows ``(solver, nfe, setting, worst, mean, fit seconds)``."""
    problem = P.ddpm_faces("test")
    flow = problem.instances[0].flow
    xs = torch.cat([i.x for i in problem.instances])
    refs = torch.cat([i.ref for i in problem.instances])
    warm = torch.randn(16, *xs.shape[1:], generator=torch.Generator().manual_seed(90_000))
    rows = []
    for name, make in SOLVERS.items():
        for n in NFES:
            with torch.no_grad():
                rows.append(
                    (
                        name,
                        n,
                        "default grid",
                        *_errors(fr.solve(flow, make(), xs, steps=n).x, refs),
                        0.0,
                    )
                )
            for setting, inputs, kw in (
                ("warm16", warm, {}),
                ("warm16-r256", warm, {"refine": 256}),
                ("scored32", xs, {}),
            ):
                t = time.perf_counter()
                spacing = fit_grid(flow, make(), inputs, n, **kw)
                secs = time.perf_counter() - t
                with torch.no_grad():
                    x = fr.solve(flow, make(), xs, steps=n, spacing=spacing).x
                rows.append((name, n, setting, *_errors(x, refs), secs))
                log(f"  {rows[-1]}")
    for n in NFES:  # fit_weights: the DataIPNDM grid, then per-step weights
        for setting, inputs in (("warm16", warm), ("scored32", xs)):
            t = time.perf_counter()
            solver = fit_weights(flow, inputs, n)
            secs = time.perf_counter() - t
            with torch.no_grad():
                x = fr.solve(flow, solver, xs, steps=n).x
            rows.append(("fit_weights", n, setting, *_errors(x, refs), secs))
            log(f"  {rows[-1]}")
    return rows


def table(rows) -> str:
    lines = [
        "| solver | NFE | grid | worst | mean | fit (s) |",
        "|---|---|---|---|---|---|",
    ]
    for name, n, setting, worst, mean, secs in rows:
        lines.append(f"| {name} | {n} | {setting} | {worst:.3g} | {mean:.3g} | {secs:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    torch.set_num_threads(1)
    print(table(run()))
