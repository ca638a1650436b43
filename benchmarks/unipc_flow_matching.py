"""``fr.UniPC()`` on flow matching (issue 16): which grid, and the start at ``σ = ∞``.

UniPC steps a :class:`~flowrestore.FlowMatchingFlow` in the log odds ``log(t/(1 − t))``
(``TimeVariable(odds=True)``; flowrestore/solvers/semilinear.py, "The odds"). Two choices are
measured, on exact Gaussian flow-matching models (``benchmarks.unseen``'s construction: 64
dimensions, mean ``0.5·N(0, 1)``, per-coordinate std uniform in a range, 64 noises per prior;
worst relative error to the closed-form map over the noises and the priors), NFE 3–10:

* **the grid**: the flow's declared grid (``Shifted(shift, rho=2, end_shift=√shift)``, what
  ``steps=N`` lays for every solver), against the plain shifted grid with ``rho = 1`` and ``1.5``
  and diffusers' own flow-σ grid (``linspace(1, 1/T, N + 1)[:-1]`` shifted, then 0): error
  relative to Euler's on the declared grid (geometric mean), cells behind Euler, and how often
  the error grows from one NFE to the next;
* **the start**: UniPC from ``t = 1`` (the weights' limits at ``σ = ∞``) against the same grid
  started where diffusers starts, ``1 − 10⁻⁶``.

**Splits.** Validation: ``benchmarks.grid_validation``'s flow-matching families (shift 1, 1.5, 3,
4, 7; stds [0.07, 0.7], [0.2, 2], [0.03, 0.3]; prior seeds 11–13); test: ``benchmarks.unseen``'s
(shift 2, 5; stds [0.05, 1], [0.1, 0.5], [0.3, 3], [0.02, 0.2]; seeds 777, 9001, 31337). Nothing
is fitted: the declared grid was chosen for every solver before UniPC stepped flow matching, and
the limit has no parameter.

Run: ``python -m benchmarks.unipc_flow_matching [--split val|test|both]`` (about a minute per
split on one thread).
"""

from __future__ import annotations

import argparse
import math
import sys

import torch

import flowrestore as fr
from flowrestore.grids import Shifted

from . import fewnfe_problems as P
from . import grid_validation as G
from . import unseen as U
from .common import machine, table

F64 = torch.float64
NFES = tuple(range(3, 11))
SPLITS = {
    "val": (G.FM, G.RANGES, G.SEEDS),
    "test": (U.FM, U.RANGES, U.SEEDS),
}


def diffusers_flow_grid(shift: float, n: int, T: int = 1000) -> torch.Tensor:
    """``UniPCMultistepScheduler(use_flow_sigmas=True, flow_shift=shift)``'s σ's (final 0)."""
    s = torch.linspace(1.0, 1.0 / T, n + 1, dtype=F64)[:-1]
    s = shift * s / (1 + (shift - 1) * s)
    return torch.cat([s, torch.zeros(1, dtype=F64)])


def grids(flow, shift: float, n: int) -> dict[str, torch.Tensor]:
    """The candidate grids (float64, from 1 to 0)."""
    return {
        "declared": flow.default_spacing()(n, 1.0, 0.0).to(F64),
        "rho 1": Shifted(shift=shift, rho=1.0)(n, 1.0, 0.0).to(F64),
        "rho 1.5": Shifted(shift=shift, rho=1.5)(n, 1.0, 0.0).to(F64),
        "diffusers' own": diffusers_flow_grid(shift, n),
    }


def run_split(split: str, log=print) -> dict:
    """Per (problem, NFE): the worst error of UniPC on each grid, from the limit and from
    ``1 − 10⁻⁶`` on the declared grid, and Euler's."""
    fams, ranges, seeds = SPLITS[split]
    cells = {}
    for fam, shift in fams.items():
        for lo, hi in ranges:
            prob = U.make_problem(fam, lo, hi, seeds=seeds, fm=fams)
            for n in NFES:
                worst: dict[str, float] = {}
                for inst in prob.instances:
                    runs = {}
                    for gname, g in grids(inst.flow, shift, n).items():
                        runs[gname] = (fr.UniPC(), g)
                    near = runs["declared"][1].clone()
                    near[0] = 1 - 1e-6
                    runs["declared, from 1 − 1e-6"] = (fr.UniPC(), near)
                    runs["Euler"] = (fr.Euler(), runs["declared"][1])
                    for name, (solver, g) in runs.items():
                        with torch.no_grad():
                            x = fr.solve(inst.flow, solver, inst.x, grid=g).x
                        s = P.score(prob, inst, x)
                        worst[name] = max(worst.get(name, 0.0), s)
                cells[(prob.name, n)] = worst
            log(f"  {prob.name} done")
    return cells


def summarize(cells: dict) -> tuple[list[list], list]:
    """Per grid: geometric mean / Euler, cells behind Euler, increases in NFE; and the start."""
    names = ["declared", "rho 1", "rho 1.5", "diffusers' own"]
    problems = sorted({p for p, _ in cells})
    rows = []
    for g in names:
        logs, behind, ups = [], 0, 0
        for p in problems:
            prev = None
            for n in NFES:
                c = cells[(p, n)]
                logs.append(math.log(c[g] / c["Euler"]))
                behind += c[g] > c["Euler"]
                ups += prev is not None and c[g] > prev
                prev = c[g]
        rows.append([g, math.exp(sum(logs) / len(logs)), f"{behind} of {len(logs)}", ups])
    ratios = [c["declared"] / c["declared, from 1 − 1e-6"] for c in cells.values()]
    start = [
        f"{math.exp(sum(map(math.log, ratios)) / len(ratios)):.4f}",
        f"{sum(r < 1 for r in ratios)} of {len(ratios)}",
        min(ratios),
        max(ratios),
    ]
    return rows, start


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.unipc_flow_matching")
    p.add_argument("--split", choices=["val", "test", "both"], default="both")
    a = p.parse_args(argv)
    print(f"Machine: {machine()}")
    for split in ("val", "test") if a.split == "both" else (a.split,):
        fams, ranges, seeds = SPLITS[split]
        print(f"\n## {split}: shifts {list(fams.values())}, stds {list(ranges)}, seeds {seeds}\n")
        rows, start = summarize(run_split(split, log=lambda m: print(m, file=sys.stderr)))
        print(table(["UniPC() on", "error / Euler's (geo. mean)", "behind Euler", "increases"],
                    rows))  # fmt: skip
        print()
        print(table(["from t = 1 / from 1 − 1e-6 (geo. mean)", "limit better in", "best",
                     "worst"], [start]))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
