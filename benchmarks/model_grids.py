"""Few-step accuracy of grids on flow-matching and EDM-denoiser models, in closed form (docs/math.md
§9): the measurement behind :meth:`FlowMatchingFlow.default_spacing` and
:meth:`DenoiserFlow.default_spacing`.

The exact velocity / denoiser of a Gaussian prior ``N(c, diag s_c²)`` (random ``c``, ``s_c`` in
[0.05, 0.95], 64 coordinates, 3 priors, seeds other than the tests'), wrapped as a flow; worst
relative error ``‖x − x_exact‖ / ‖x_exact‖`` at ``t = 0`` against the closed-form flow map, at
equal numbers of model evaluations. Grids:

* flow matching (``shift`` 1 and 3): :class:`~flowrestore.flows.flow_matching.Shifted` with
  ``rho = 1`` (uniform in the unshifted time), ``rho = 2, end_shift = √shift`` (the default) and
  ``rho = 2`` alone (the default before 2026-12-04 21:40, declared in the default's place), and
  the grid of diffusers' ``FlowMatchEulerDiscreteScheduler(shift=s).set_timesteps(N)`` (if
  diffusers is installed);
* denoiser (``σ_max = 80``, ``σ_min = 0.002``): the default (DDIM's quadratic steps of DDPM's
  linear schedule as noise levels, a diffusion model's; reciprocal Runge–Kutta stages), the
  default before 2026-12-04 (the same over the VP SDE's levels from ``σ_min``) and EDM's grid
  (:meth:`~flowrestore.DenoiserFlow.edm_grid`: ``ρ = 7`` to ``σ_min``, then 0) with stages in ``σ``
  (``stages="sigma"``: Heun is EDM's Algorithm 1) and with reciprocal stages; and, per solver,
  the worst ratio of its error to Euler's at equal evaluations over 3–10 steps on the same grid
  (stability, issue 16), for the split's priors and for very stiff ones (every ``s_c`` in
  [0.01, 0.05]: all of the prior's change happens below σ ≈ 0.1). The same table with the warp
  ``ρ`` 1.5 and 3 instead of 2 records the alternatives the validation split rejected.

Splits: the defaults were chosen on the **validation** priors (seeds 21–23, noise seed 5); ``--split
test`` reports them on priors that chose nothing (seeds 31–35, noise seed 6).

Run: ``python -m benchmarks.model_grids [--split val|test]`` (about a minute each; float64).
"""

from __future__ import annotations

import math

import torch

import flowrestore as fr
from flowrestore.flows.diffusion import reference_levels
from flowrestore.flows.flow_matching import Shifted
from flowrestore.grids import NoiseLevels
from flowrestore.oracles.flow_matching import GaussianDenoiserOracle, GaussianFlowMatchingOracle

from .common import declare_grid, table

NFES = (4, 6, 10, 20, 50)
SOLVERS = {
    "Euler": (fr.Euler, 1),
    "Heun": (fr.Heun, 2),
    "RK4": (fr.RK4, 4),
    "SemiLinearMultistep": (fr.SemiLinearMultistep, 1),
    "IPNDM": (fr.IPNDM, 1),
}


#: prior seeds and the noise seed of each split (validation chose the defaults)
SPLITS = {"val": ((21, 22, 23), 5), "test": ((31, 32, 33, 34, 35), 6)}


def _priors(split: str = "val", dim: int = 64, std=(0.05, 0.95)):
    for seed in SPLITS[split][0]:
        g = torch.Generator().manual_seed(seed)
        c = 0.5 * torch.randn(dim, generator=g, dtype=torch.float64)
        sc = std[0] + (std[1] - std[0]) * torch.rand(dim, generator=g, dtype=torch.float64)
        yield c, sc


def _scheduler_grid(flow, shift: float, steps: int):
    try:
        import diffusers
    except ImportError:
        return None
    sched = diffusers.FlowMatchEulerDiscreteScheduler(shift=shift)
    sched.set_timesteps(steps)
    return flow.grid_from_scheduler(sched)


def _worst(pairs, make, steps, grid_of):
    worst = 0.0
    for flow, x_start, exact in pairs:
        x = fr.solve(flow, make(), x_start, **_kwargs(grid_of(flow, steps), steps)).x
        rel = (x - exact).flatten(1).norm(dim=1) / exact.flatten(1).norm(dim=1)
        worst = max(worst, float(rel.max()))
    return worst


def flow_matching_rows(shift: float, split: str = "val") -> list[list]:
    """Rows ``[model, solver, grid, error at each NFE]`` for the flow-matching model."""

    def pairs(declared=None):
        out = []
        for c, sc in _priors(split):
            oracle = GaussianFlowMatchingOracle(mean=c, std=sc)
            x1 = oracle.sample_latent(64, torch.Generator().manual_seed(SPLITS[split][1]))
            flow = fr.FlowMatchingFlow(oracle, shift=shift)
            if declared is not None:
                declare_grid(flow, declared)
            out.append((flow, x1, oracle.exact_map(x1)))
        return out

    # name -> (the declared grid, None: the flow's; the grid each solve is given)
    grids = {
        "Shifted rho=1": (None, lambda f, n: Shifted(shift=shift, rho=1.0)),
        "Shifted rho=2, end_shift=√shift (default)": (None, _default),
        "Shifted rho=2 (the default before 2026-12-04 21:40)": (Shifted(shift, 2.0), _default),
        "diffusers scheduler": (None, lambda f, n: _scheduler_grid(f, shift, n)),
    }
    if shift == 1.0:  # √1 = 1: the two defaults coincide
        del grids["Shifted rho=2 (the default before 2026-12-04 21:40)"]
    rows = []
    for grid_name, (declared, grid_of) in grids.items():
        ps = pairs(declared)
        for name, (make, per_step) in SOLVERS.items():
            errs = [_worst(ps, make, max(1, n // per_step), grid_of) for n in NFES]
            rows.append([f"flow matching, shift {shift:g}", name, grid_name, *errs])
    order = {n: i for i, n in enumerate(SOLVERS)}
    return sorted(rows, key=lambda r: order[r[1]])  # grouped by solver, as before


def _default(flow, steps):
    """``steps=N`` on the flow's declared grid."""
    return None


#: the denoiser's variants: flow options and grid (``None``: the default for ``steps=N``); the
#: option ``declared`` replaces the flow's declared grid (:func:`.common.declare_grid`)
DENOISER_VARIANTS = {
    "DDPM levels quadratic, reciprocal stages (default)": ({}, _default),
    "VP SDE levels from σ_min (the default before 2026-12-04)": (
        {"declared": lambda f: vp_sde_levels(f.sigma_min, f.sigma_max)},
        _default,
    ),
    "EDM: ρ=7 to σ_min, then 0; stages in σ": ({"stages": "sigma"}, lambda f, n: f.edm_grid(n)),
    "EDM: ρ=7 to σ_min, then 0; reciprocal": ({}, lambda f, n: f.edm_grid(n)),
    "DDPM levels, ρ=1.5 (not chosen)": ({"declared": lambda f: _reference(f, 1.5)}, _default),
    "DDPM levels, ρ=3 (not chosen)": ({"declared": lambda f: _reference(f, 3.0)}, _default),
}


def _reference(flow, rho: float) -> NoiseLevels:
    """The default's table with another warp (declared in the default's place)."""
    return NoiseLevels(reference_levels(flow.sigma_max), rho=rho)


def vp_sde_levels(sigma_min: float, sigma_max: float, count: int = 1000) -> NoiseLevels:
    """The default before 2026-12-04: DDIM's quadratic steps over ``count`` noise levels of the VP
    SDE (Song et al. 2021; EDM Table 1: ``σ(s) = √(exp(β_d s²/2 + β_min s) − 1)``, ``β_min = 0.1``,
    ``β_d = 19.9``) at VP times uniform from ``sigma_min``'s to ``sigma_max``'s."""
    b_min, b_d = 0.1, 19.9

    def vp_time(sigma: float) -> float:  # the root of β_d s²/2 + β_min s = log(1 + σ²)
        c = math.log1p(sigma * sigma)
        return 2 * c / (b_min + math.sqrt(b_min**2 + 2 * b_d * c))

    hi = vp_time(sigma_max)
    lo = vp_time(sigma_min) if sigma_min > 0 else hi / count
    s = torch.linspace(lo, hi, count, dtype=torch.float64)
    sig = torch.expm1(b_d * s**2 / 2 + b_min * s).sqrt() / sigma_max
    sig[-1] = 1.0
    return NoiseLevels(tuple(sig.tolist()), rho=2.0)


def _denoiser_pairs(split: str, options: dict, std=(0.05, 0.95)):
    pairs = []
    for c, sc in _priors(split, std=std):
        oracle = GaussianDenoiserOracle(mean=c, std=sc)
        x_T = 80.0 * torch.randn(
            64, 64, generator=torch.Generator().manual_seed(SPLITS[split][1]), dtype=torch.float64
        )
        kw = {k: v for k, v in options.items() if k != "declared"}
        flow = fr.DenoiserFlow(oracle, sigma_max=80.0, sigma_min=0.002, **kw)
        if "declared" in options:
            declare_grid(flow, options["declared"](flow))
        pairs.append((flow, x_T, oracle.exact_map(x_T, 80.0)))
    return pairs


def denoiser_rows(split: str = "val") -> list[list]:
    """Rows for the EDM denoiser (σ_max = 80, σ_min = 0.002)."""
    rows = []
    for name, (make, per_step) in SOLVERS.items():
        for grid_name, (options, grid_of) in DENOISER_VARIANTS.items():
            pairs = _denoiser_pairs(split, options)
            errs = [_worst(pairs, make, max(1, n // per_step), grid_of) for n in NFES]
            rows.append(["EDM denoiser", name, grid_name, *errs])
    return rows


def _rel(x, exact) -> float:
    return float(((x - exact).flatten(1).norm(dim=1) / exact.flatten(1).norm(dim=1)).max())


def _kwargs(grid, steps: int) -> dict:
    if grid is None:
        return {"steps": steps}
    return {"steps": steps, "spacing": grid} if isinstance(grid, fr.Spacing) else {"grid": grid}


def _solve(flow, solver, x_start, steps, grid_of):
    return fr.solve(flow, solver, x_start, **_kwargs(grid_of(flow, steps), steps))


def _stability(pairs, make, grid_of) -> tuple[float, int]:
    """Worst ratio of ``make()``'s error to Euler's at the same evaluations and grid family,
    over 3–10 steps, and the steps where it occurs."""
    worst, where = 0.0, 0
    for flow, x_start, exact in pairs:
        for steps in range(3, 11):
            sol = _solve(flow, make(), x_start, steps, grid_of)
            euler = _solve(flow, fr.Euler(), x_start, int(sol.stats.nfe.max()), grid_of)
            ratio = _rel(sol.x, exact) / _rel(euler.x, exact)
            if ratio > worst:
                worst, where = ratio, steps
    return worst, where


def denoiser_stability_rows(split: str = "val") -> list[list]:
    """Rows ``[priors, solver, variant, worst error ratio to Euler, at steps]``."""
    rows = []
    for label, std in (("std 0.05–0.95", (0.05, 0.95)), ("std 0.01–0.05", (0.01, 0.05))):
        for name in ("Heun", "RK4", "Midpoint", "SemiLinearMultistep", "IPNDM"):
            make = getattr(fr, name)
            for grid_name, (options, grid_of) in DENOISER_VARIANTS.items():
                ratio, steps = _stability(_denoiser_pairs(split, options, std), make, grid_of)
                rows.append([label, name, grid_name, ratio, steps])
    return rows


def report(rows) -> str:
    """Markdown table: worst relative error per NFE (Heun: NFE // 2 steps)."""
    return table(["model", "solver", "grid", *[f"{n} NFE" for n in NFES]], rows)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=tuple(SPLITS), default="val")
    split = parser.parse_args().split
    torch.set_num_threads(1)
    rows = [*flow_matching_rows(1.0, split), *flow_matching_rows(3.0, split), *denoiser_rows(split)]
    print(report(rows))
    print()
    print("Stability: worst ratio of the error to Euler's at equal evaluations, 3–10 steps")
    print()
    head = ["EDM denoiser priors", "solver", "variant", "worst ratio to Euler", "at steps"]
    print(table(head, denoiser_stability_rows(split)))
