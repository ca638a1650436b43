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
"""

from __future__ import annotations

import argparse
import time

import torch

import flowrestore as fr

from . import fewnfe_problems as P
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


def run_problem(problem) -> dict[str, dict[int, float]]:
    """Worst score per row and NFE."""
    nfes = MIX_NFES if problem.kind == "wrong" else NFES
    res = {}
    for name, make in ROWS.items():
        row = {}
        for n in nfes:
            worst = None
            for inst in problem.instances:
                with torch.no_grad():
                    sol = fr.solve(inst.flow, make(), inst.x, steps=n)
                if int(sol.stats.nfe.max()) != n:
                    raise AssertionError(f"{name}: {n} steps cost {int(sol.stats.nfe.max())}")
                s = P.score(problem, inst, sol.x)
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


def report(problem, res) -> str:
    """A markdown table: both rows, and the corrected row's gain (dB, or error ratio)."""
    kind = problem.kind
    nfes = list(next(iter(res.values())))
    lines = [
        f"| {problem.name} | " + " | ".join(f"{n} NFE" for n in nfes) + " |",
        "|---" * (len(nfes) + 1) + "|",
    ]
    for name, row in res.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(kind, row[n]) for n in nfes) + " |")
    on, off = res.values()
    if kind == "psnr":
        gain = [f"{on[n] - off[n]:+.2f} dB" for n in nfes]
    elif kind == "wrong":
        gain = [f"{int(on[n] - off[n]):+d}" for n in nfes]
    else:
        gain = [f"{off[n] / on[n]:.2f}×" for n in nfes]
    lines.append("| corrected vs not | " + " | ".join(gain) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.start_corrector", description=__doc__)
    p.add_argument("--split", choices=("val", "test", "both"), default="both")
    a = p.parse_args(argv)
    torch.set_grad_enabled(False)
    for split in ("val", "test") if a.split == "both" else (a.split,):
        print(f"## {split} split\n", flush=True)
        for problem in problems(split):
            t0 = time.perf_counter()
            res = run_problem(problem)
            print(report(problem, res), flush=True)
            print(f"\n({time.perf_counter() - t0:.0f} s)\n", flush=True)


if __name__ == "__main__":
    main()
