"""``IPNDM()``'s corrected start on InDI flows: with and without it, validation and test (issue 16).

:class:`~flowrestore.IPNDM` corrects its first (Euler) step with the second step's evaluation by
the trapezoid rule, at no extra evaluation, on flows whose time is not a noise level
(``start_corrector=None``: InDI, plain ODEs; flowrestore/solvers/adams.py, "The corrected
start"). This benchmark is the record of that choice:

* **validation** (chose it): issue 10's Gaussian oracle and hard mixture on the few-NFE
  benchmark's validation seeds (:data:`benchmarks.fewnfe_problems.GAUSS_SEEDS`,
  :data:`~benchmarks.fewnfe_problems.MIX_SEEDS`), the shipped ``indi-deblur`` and ``indi-sr4`` on
  the validation crops (:data:`~benchmarks.fewnfe_problems.VAL_CROPS`);
* **test** (chose nothing): the same oracles on the test seeds, the shipped predictors on the test
  crops (:data:`~benchmarks.fewnfe_problems.TEST_CROPS`), and the four held-out predictors of
  ``benchmarks/heldout-indi`` (JPEG q20, Gaussian denoising σ 0.1, 2× super-resolution, JPEG q40
  with noise; :data:`benchmarks.indi_generic.HELDOUT`, ``HELDOUT2``), loaded as ``flowrestore
  restore --checkpoint`` loads a user's (declaring their task's spacing), on the test crops.

Each row is ``IPNDM()`` (corrected) and ``IPNDM(start_corrector=False)`` (the published update)
with ``steps=N`` on the flow's default grid; the score is the worst instance's (relative error,
PSNR in dB to a 400-evaluation reference, or samples on a wrong centre of 4096), at 3–10
evaluations (the mixture at 12–24). The diffusion, EDM and flow-matching families are not rows:
there the default does not correct (their time is a noise level; ``tests/fewnfe/test_adams.py``
checks that the default is the published update there).

Run: ``OMP_NUM_THREADS=1 python -m benchmarks.start_corrector [--split val|test|both]`` (about
6 minutes for both on one core).

``--random N --seed S``: instead, ``N`` random InDI Gaussian oracles that chose nothing (32
dimensions, 16 draws of ``y``; prior stds in ``[lo, hi]`` with ``log10 lo`` uniform in ``[−1.5,
0.5]`` and ``hi = lo · 10^u``, ``u`` uniform in ``[0.1, 1.2]``; noise std ``10^v``, ``v`` uniform in
``[−1.3, 0.5]``), relative error to the closed-form ODE solution at 3–10 steps: one row per
oracle with the uncorrected error over the corrected one, and the count of cells where either is
behind Euler at equal evaluations (under a minute).
"""

from __future__ import annotations

import math
import random
import time

import torch

import flowrestore as fr

from . import fewnfe_problems as P
from .common import split_parser, splits
from .indi_generic import HELDOUT, HELDOUT2, load

NFES = (3, 4, 5, 6, 7, 8, 9, 10)
MIX_NFES = (12, 16, 20, 24)
ROWS = {
    "IPNDM() (corrected start)": lambda: fr.IPNDM(),
    "IPNDM(start_corrector=False)": lambda: fr.IPNDM(start_corrector=False),
}


def problems(split: str) -> list:
    """The problems of ``split`` (module docstring)."""
    out = [P.gaussian_indi(split), P.mixture_indi(split)]
    out += [P.indi_photos(name, split) for name in ("indi-deblur", "indi-sr4")]
    if split == "test":
        for name in (*HELDOUT, *HELDOUT2):
            out.append(P.indi_photos(name, split, model=load(name)))
    return out


def run_problem(problem, rows=None, score=None) -> dict[str, dict[int, float]]:
    """Worst score per row (default :data:`ROWS`) and NFE; ``score(problem, inst, x)`` (default
    :func:`benchmarks.fewnfe_problems.score`) scores one instance."""
    nfes = MIX_NFES if problem.kind == "wrong" else NFES
    res = {}
    for name, make in (rows or ROWS).items():
        row = {}
        for n in nfes:
            worst = None
            for inst in problem.instances:
                with torch.no_grad():
                    sol = fr.solve(inst.flow, make(), inst.x, steps=n)
                if int(sol.stats.nfe.max()) != n:
                    raise AssertionError(f"{name}: {n} steps cost {int(sol.stats.nfe.max())}")
                s = (score or P.score)(problem, inst, sol.x)
                worst = s if worst is None else P.worse(problem.kind, worst, s)
            row[n] = worst
        res[name] = row
    return res


def _fmt(kind: str, v: float) -> str:
    if kind == "psnr":
        return f"{v:.2f}"
    if kind == "wrong":
        return f"{int(v)}"
    return f"{v:.3g}"


def report(problem, res, label: str = "corrected vs not") -> str:
    """A markdown table: the rows, and the first row's gain over the second (dB, or error
    ratio), labelled ``label``."""
    kind = problem.kind
    nfes = list(next(iter(res.values())))
    lines = [
        f"| {problem.name} | " + " | ".join(f"{n} NFE" for n in nfes) + " |",
        "|---" * (len(nfes) + 1) + "|",
    ]
    for name, row in res.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(kind, row[n]) for n in nfes) + " |")
    on, off = list(res.values())[:2]
    if kind == "psnr":
        gain = [f"{on[n] - off[n]:+.2f} dB" for n in nfes]
    elif kind == "wrong":
        gain = [f"{int(on[n] - off[n]):+d}" for n in nfes]
    else:
        gain = [f"{off[n] / on[n]:.2f}×" for n in nfes]
    lines.append(f"| {label} | " + " | ".join(gain) + " |")
    return "\n".join(lines)


def random_oracles(n: int, seed: int):
    """``n`` random ``(lo, hi, noise std, prior seed)`` (module docstring), reproducible by seed."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        lo = 10 ** rng.uniform(-1.5, 0.5)
        hi = lo * 10 ** rng.uniform(0.1, 1.2)
        out.append((lo, hi, 10 ** rng.uniform(-1.3, 0.5), rng.randrange(10000)))
    return out


def random_main(n: int, seed: int, log=print) -> dict:
    """One row per random oracle; returns the counts (module docstring)."""
    f64 = torch.float64
    log("| prior stds | noise std | uncorrected / corrected error, 3–10 steps |")
    log("|---|---|---|")
    ratios, behind = [], {"corrected": 0, "uncorrected": 0}
    for lo, hi, noise, prior_seed in random_oracles(n, seed):
        g = torch.Generator().manual_seed(prior_seed)
        std = lo + (hi - lo) * torch.rand(32, generator=g, dtype=f64)
        mean = torch.randn(32, generator=g, dtype=f64)
        oracle = fr.oracles.GaussianOracle(mean=mean, std=std, noise_std=noise)
        _, y = oracle.sample(16, generator=g)
        flow = fr.InDIFlow(oracle.posterior_mean)
        inst = P.Instance(flow, y, oracle.ode_solution(y, 0.0), None, {"mean": mean})
        problem = P.Problem("random InDI Gaussian oracle", "rel-c", False, [inst])
        row = []
        for steps in NFES:
            on, off, euler = (
                P.score(problem, inst, fr.solve(flow, solver, y, steps=steps).x)
                for solver in (fr.IPNDM(), fr.IPNDM(start_corrector=False), fr.Euler())
            )
            behind["corrected"] += on > euler
            behind["uncorrected"] += off > euler
            row.append(off / on)
        ratios += row
        cells = " ".join(f"{r:.3g}" for r in row)
        log(f"| [{lo:.3g}, {hi:.3g}] | {noise:.3g} | {cells} |")
    gmean = math.exp(sum(map(math.log, ratios)) / len(ratios))
    out = {
        "cells": len(ratios),
        "geometric mean": gmean,
        "worst": min(ratios),
        "corrected worse": sum(r < 1 for r in ratios),
        "behind Euler": behind,
    }
    log(f"\n{out}")
    return out


def main(argv=None) -> None:
    p = split_parser("python -m benchmarks.start_corrector", __doc__)
    p.add_argument("--random", type=int, default=0, help="random oracles instead (count)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random oracles")
    a = p.parse_args(argv)
    torch.set_grad_enabled(False)
    if a.random:
        random_main(a.random, a.seed)
        return
    for split in splits(a):
        print(f"## {split} split\n", flush=True)
        for problem in problems(split):
            t0 = time.perf_counter()
            res = run_problem(problem)
            print(report(problem, res), flush=True)
            print(f"\n({time.perf_counter() - t0:.0f} s)\n", flush=True)


if __name__ == "__main__":
    main()
