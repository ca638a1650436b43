"""Default solvers against Euler at equal evaluations on very stiff priors, every model family.

Issue 16 asks every default solver with ``steps=N`` (3 ≤ N ≤ 10) to be at least as accurate as
Euler at the same number of evaluations. This sweep measures the worst ratio ``error / Euler's``
over N = 3–10 for each default solver on exact models of a Gaussian prior (32 dimensions, 8
noises, prior seed 41) whose stds are drawn in a range: very stiff ``[0.01, 0.05]``, the benchmark's
``[0.05, 1]`` and a smooth ``[0.5, 2]`` — under DDPM's linear schedule (ε and x₀ models), the cosine
schedule (v), flow matching (shift 3 and 1) and an EDM denoiser (σ_max = 80). Errors are worst
per-sample relative errors against the closed-form maps. A row lists the solvers behind Euler
(ratio > 1) with their worst ratio and the step count where it occurs.

Run: ``OMP_NUM_THREADS=1 python -m benchmarks.stiff_stability`` (about 3 minutes on one core).

``--random N --seed S --log-std LO HI --max-std M``: instead of the fixed table, ``N`` random
configurations that chose nothing — a family, a prior seed and a std range ``[lo, hi]`` with
``log10 lo`` uniform in ``[LO, HI]`` and ``hi = min(lo · 10^u, M)``, ``u`` uniform in ``[0.1,
1.6]`` — one row each, and a count per solver of the rows behind Euler.
"""

from __future__ import annotations

import math
import random

import torch

import flowrestore as fr
from flowrestore.oracles import (
    GaussianDenoiserOracle,
    GaussianDiffusionOracle,
    GaussianFlowMatchingOracle,
)
from flowrestore.oracles.diffusion import linear_alphas_cumprod

from .fewnfe_problems import cosine_alphas_cumprod

F64 = torch.float64
#: the default-constructed solvers issue 16 asks to stay ahead of Euler (``tests/fewnfe/
#: test_stability.py`` checks the same table)
SOLVERS = {
    "Midpoint": fr.Midpoint,
    "Heun": fr.Heun,
    "RK4": fr.RK4,
    "SemiLinearMultistep": fr.SemiLinearMultistep,
    "IPNDM": fr.IPNDM,
    "DataIPNDM": fr.DataIPNDM,
    "UniPC": fr.UniPC,
    "Bosh3": fr.Bosh3,
    "Dopri5": fr.Dopri5,
}
FAMILIES = (
    "linear/epsilon",
    "cosine/v_prediction",
    "linear/sample",
    "fm-shift3",
    "fm-shift1",
    "edm",
)
RANGES = ((0.01, 0.05), (0.05, 1.0), (0.5, 2.0))


def _rel(x: torch.Tensor, ref: torch.Tensor) -> float:
    num = (x - ref).flatten(1).norm(dim=1)
    return float((num / ref.flatten(1).norm(dim=1)).max())


def problem(family: str, lo: float, hi: float, seed: int = 41):
    """``(flow, x_start, exact answer)`` for an exact model of a prior with stds in ``[lo, hi]``."""
    g = torch.Generator().manual_seed(seed)
    c = 0.5 * torch.randn(32, generator=g, dtype=F64)
    sc = lo + (hi - lo) * torch.rand(32, generator=g, dtype=F64)
    noise = torch.randn(8, 32, generator=torch.Generator().manual_seed(seed + 1), dtype=F64)
    if family.startswith("fm-"):
        oracle = GaussianFlowMatchingOracle(mean=c, std=sc)
        shift = float(family.removeprefix("fm-shift"))
        return fr.FlowMatchingFlow(oracle, shift=shift), noise, oracle.exact_map(noise)
    if family == "edm":
        oracle = GaussianDenoiserOracle(mean=c, std=sc)
        flow = fr.DenoiserFlow(oracle, sigma_max=80.0, sigma_min=0.002)
        return flow, 80.0 * noise, oracle.exact_map(80.0 * noise, 80.0)
    schedule, ptype = family.split("/")
    abar = linear_alphas_cumprod() if schedule == "linear" else cosine_alphas_cumprod().double()
    oracle = GaussianDiffusionOracle(mean=c, std=sc, alphas_cumprod=abar, prediction_type=ptype)
    flow = fr.DiffusionFlow(oracle, alphas_cumprod=abar, prediction_type=ptype)
    x_T = oracle.sample_latent(8, torch.Generator().manual_seed(seed + 1))
    return flow, x_T, oracle.exact_map(x_T)


def worst_ratios(flow, x, exact) -> dict[str, tuple[float, int]]:
    """Per default solver: the worst ``error / Euler's error`` over 3–10 steps, and its step."""
    out = {}
    for name, make in SOLVERS.items():
        try:
            make().check_flow(flow)
        except fr.IncompatibleSolverError:
            continue
        worst, at = 0.0, 0
        for n in range(3, 11):
            sol = fr.solve(flow, make(), x, steps=n)
            nfe = int(sol.stats.nfe.max())
            err = _rel(sol.x, exact)
            euler = _rel(fr.solve(flow, fr.Euler(), x, steps=nfe).x, exact)
            ratio = err / euler if math.isfinite(err) else math.inf
            if ratio > worst:
                worst, at = ratio, n
        out[name] = (worst, at)
    return out


def main(log=print) -> str:
    lines = ["| family | prior stds | behind Euler (worst ratio @ steps) |", "|---|---|---|"]
    for family in FAMILIES:
        for lo, hi in RANGES:
            ratios = worst_ratios(*problem(family, lo, hi))
            behind = [f"{n} {r:.2f} @ {k}" for n, (r, k) in ratios.items() if r > 1]
            lines.append(f"| {family} | [{lo}, {hi}] | {', '.join(behind) or 'none'} |")
            log(lines[-1])
    return "\n".join(lines)


def random_configs(n: int, seed: int, log_std=(-1.7, 0.3), max_std=math.inf):
    """``n`` random ``(family, lo, hi, prior seed)`` (module docstring), reproducible by seed."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        family = rng.choice(FAMILIES)
        lo = 10 ** rng.uniform(*log_std)
        hi = min(lo * 10 ** rng.uniform(0.1, 1.6), max_std)
        out.append((family, lo, hi, rng.randrange(10000)))
    return out


def random_main(n: int, seed: int, log_std, max_std, log=print) -> str:
    """One row per random configuration and the count of rows behind Euler per solver."""
    lines = [
        "| family | prior stds | seed | behind Euler (worst ratio @ steps) |",
        "|---|---|---|---|",
    ]
    count = dict.fromkeys(SOLVERS, 0)
    for family, lo, hi, prior_seed in random_configs(n, seed, log_std, max_std):
        ratios = worst_ratios(*problem(family, lo, hi, seed=prior_seed))
        behind = [f"{k} {r:.2f} @ {at}" for k, (r, at) in ratios.items() if r > 1]
        for k, (r, _) in ratios.items():
            count[k] += r > 1
        row = f"| {family} | [{lo:.3g}, {hi:.3g}] | {prior_seed} | {', '.join(behind) or 'none'} |"
        lines.append(row)
        log(row)
    lines.append("")
    lines.append(f"Rows behind Euler, of {n}: " + ", ".join(f"{k} {v}" for k, v in count.items()))
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--random", type=int, default=0, help="random configurations instead")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log-std", type=float, nargs=2, default=(-1.7, 0.3))
    ap.add_argument("--max-std", type=float, default=math.inf)
    a = ap.parse_args()
    torch.set_num_threads(1)
    if a.random:
        print(random_main(a.random, a.seed, tuple(a.log_std), a.max_std, log=lambda *_: None))
    else:
        print(main(log=lambda *_: None))
