"""RK4's split landing onto ``t = 0``: the fraction ``κ`` it lands through, and Heun's (issue 16).

A Runge–Kutta solver with a stage at the step's end lands on a singular end by the denoising step
``D(x, t_stop)``; one that declares ``landing_split = κ`` lands in two parts instead — an Euler step
to ``κ·t_stop`` with its last stage's drift, one evaluation there, and both clean estimates
extrapolated to 0 (:func:`flowrestore.integrate.endpoint.split_landing`). This is the record of
the choice of ``κ`` for RK4 (``1/3``) and of keeping Heun's denoising step:

* **validation** (chose it): exact models of a Gaussian prior (32 dimensions, 8 noises) under
  DDPM's linear schedule (ε and x₀ models), the cosine schedule (v), flow matching (shift 3 and 1)
  and an EDM denoiser (σ_max = 80), prior stds in ``[0.01, 0.05]``, ``[0.02, 0.3]``,
  ``[0.05, 1]``, ``[0.2, 2]``, ``[0.5, 2]``, prior seeds 11–12
  (:func:`benchmarks.stiff_stability.problem`); the trained DDPM (``benchmarks/ddpm-faces``) on its
  validation noises and the shipped ``indi-deblur`` / ``indi-sr4`` on the validation crops
  (:mod:`benchmarks.fewnfe_problems`);
* **test** (chose nothing): the same exact families on prior seeds 2101–2103, both trained DDPMs
  (``ddpm-faces``, and the ε-model ``ddpm-faces-eps`` that chose nothing anywhere) on their test
  noises, and the shipped predictors on the test crops.

Per solver and ``κ`` (``None``: the denoising step), ``steps = 3–10``: the worst ratio of its error
to Euler's at the same number of evaluations (exact models and DDPMs: worst sample's relative
error; photos: dB behind Euler, worst crop), and the geometric mean of its error over the
denoising step's (photos: mean dB gained).

Run: ``OMP_NUM_THREADS=1 python -m benchmarks.split_landing [--split val|test|both]`` (about 30
minutes for both on one core).
"""

from __future__ import annotations

import math
import time

import torch

import flowrestore as fr

from . import fewnfe_problems as P
from .common import split_parser, splits
from .stiff_stability import _rel
from .stiff_stability import problem as prior_problem

FAMILIES = (
    "linear/epsilon",
    "cosine/v_prediction",
    "linear/sample",
    "edm",
    "fm-shift3",
    "fm-shift1",
)
RANGES = ((0.01, 0.05), (0.02, 0.3), (0.05, 1.0), (0.2, 2.0), (0.5, 2.0))
PRIOR_SEEDS = {"val": (11, 12), "test": (2101, 2102, 2103)}
STEPS = range(3, 11)
#: (solver, κ) rows; ``None``: the denoising step
ROWS = {
    "RK4": (None, 1 / 4, 0.3, 1 / 3, 0.4, 1 / 2),
    "Heun": (None, 1 / 3, 0.4, 1 / 2),
    "Bosh3": (None, 1 / 3),
    "Dopri5": (None, 1 / 3),
}


def variant(base: type, kappa: float | None) -> fr.Solver:
    """``base()`` with ``landing_split = kappa`` (on the instance: a flow's spacing declared for
    ``base``, e.g. a shipped InDI predictor's, still applies)."""
    solver = base()
    solver.landing_split = kappa
    return solver


def instances(split: str):
    """``(group, kind, flow, x, score)``: ``score(x)`` of one instance (module docstring)."""
    for family in FAMILIES:
        for lo, hi in RANGES:
            for seed in PRIOR_SEEDS[split]:
                flow, x, exact = prior_problem(family, lo, hi, seed=seed)
                yield (f"exact {family}", "rel", flow, x, lambda y, e=exact: _rel(y, e))
    ddpms = [P.ddpm_faces(split)]
    if split == "test":
        ddpms.append(P.ddpm_faces(split, folder=P.DDPM_EPS))
    photos = [P.indi_photos(name, split) for name in ("indi-deblur", "indi-sr4")]
    for prob in ddpms + photos:
        for inst in prob.instances:
            score = lambda y, p=prob, i=inst: P.score(p, i, y)  # noqa: E731
            yield (prob.name, prob.kind, inst.flow, inst.x, score)


def measure(split: str, solvers=tuple(ROWS)) -> dict:
    """``{group: {(solver, κ): [(steps, score, euler's score)]}}`` for the ``solvers`` of
    :data:`ROWS`."""
    out: dict = {}
    euler_cache: dict = {}
    for k, (group, kind, flow, x, score) in enumerate(instances(split)):
        rows = out.setdefault(group, {"kind": kind})
        for name in solvers:
            kappas = ROWS[name]
            base = getattr(fr, name)
            for kappa in kappas:
                cells = rows.setdefault((name, kappa), [])
                for n in STEPS:
                    with torch.no_grad():
                        sol = fr.solve(flow, variant(base, kappa), x, steps=n)
                        nfe = int(sol.stats.nfe.max())
                        if (k, nfe) not in euler_cache:
                            y = fr.solve(flow, fr.Euler(), x, steps=nfe).x
                            euler_cache[(k, nfe)] = score(y)
                    cells.append((n, score(sol.x), euler_cache[(k, nfe)]))
    return out


def table(results: dict) -> str:
    """Markdown: per group, solver and κ the worst ratio to Euler (dB behind it on photos) with
    its steps, and the mean gain over the denoising step (:func:`measure`'s ``results``)."""
    lines = [
        "| group | solver | κ | worst vs Euler (@ steps) | vs the denoising step |",
        "|---|---|---|---|---|",
    ]
    for group, rows in results.items():
        kind = rows["kind"]
        for (name, kappa), cells in ((k, v) for k, v in rows.items() if k != "kind"):
            base = rows[(name, None)]
            # a diverged solve (non-finite score) is the worst, never skipped by max's NaN rule
            if kind == "psnr":
                worst = max((eu - s if math.isfinite(s) else math.inf, n) for n, s, eu in cells)
                gain = sum(s - b for (_, s, _), (_, b, _) in zip(cells, base, strict=True))
                w, g = f"{worst[0]:+.2f} dB @ {worst[1]}", f"{gain / len(cells):+.2f} dB"
            else:
                worst = max((s / eu if math.isfinite(s) else math.inf, n) for n, s, eu in cells)
                logs = [math.log(b / s) for (_, s, _), (_, b, _) in zip(cells, base, strict=True)]
                w, g = f"{worst[0]:.3f} @ {worst[1]}", f"{math.exp(sum(logs) / len(logs)):.3f}×"
            k = "denoising" if kappa is None else f"{kappa:.3g}"
            lines.append(f"| {group} | {name} | {k} | {w} | {g} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = split_parser("python -m benchmarks.split_landing", __doc__)
    ap.add_argument("--solvers", nargs="+", choices=tuple(ROWS), default=tuple(ROWS))
    a = ap.parse_args(argv)
    for split in splits(a):
        t0 = time.perf_counter()
        res = measure(split, a.solvers)
        print(f"## {split} split ({time.perf_counter() - t0:.0f} s)\n", flush=True)
        print(table(res) + "\n", flush=True)


if __name__ == "__main__":
    main()
