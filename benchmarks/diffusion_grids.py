"""Few-step accuracy of solvers and grids on a diffusion model, in closed form (docs/math.md §8).

The exact ε / v / x₀ model of a Gaussian prior ``N(c, diag σ_c²)`` under DDPM's linear 1000-step
schedule (:class:`flowrestore.oracles.diffusion.GaussianDiffusionOracle`), wrapped as a
:class:`flowrestore.DiffusionFlow`; the error of ``fr.solve(flow, solver, x_T, ...)`` against the
closed-form probability-flow map, for

* the flow's default grid (``steps=N``: DDIM's quadratic timesteps ``T(1 − k/N)² − 1`` down to
  σ = 0, :class:`~flowrestore.NoiseLevels`; issue 16),
* DDIM's own timesteps (``"leading"`` spacing, ``t_k = k·T/N`` plus the final clean step — what
  ``DDIMScheduler.set_timesteps(N)`` gives; :meth:`~flowrestore.DiffusionFlow.grid_from_timesteps`),
  and
* EDM's ρ = 7 spacing in σ down to 0 (:class:`~flowrestore.Karras`, the default before issue 16),

at equal numbers of predictor evaluations. ``Euler`` on DDIM's grid *is* DDIM (``eta = 0``).
Worst relative error ``‖x − x_exact‖ / ‖x_exact‖`` over the samples of 3 random instances (other
seeds than the tests'). Run: ``python -m benchmarks.diffusion_grids`` (seconds; float64).
"""

from __future__ import annotations

import torch

import flowrestore as fr
from flowrestore.oracles.diffusion import GaussianDiffusionOracle, linear_alphas_cumprod

from .common import table

T = 1000
NFES = (5, 10, 20, 50)
SOLVERS = {  # name -> (constructor, evaluations per step)
    "Euler (= DDIM on DDIM's grid)": (fr.Euler, 1),
    "Heun": (fr.Heun, 2),
    "Midpoint": (fr.Midpoint, 2),
    "SemiLinearMultistep": (fr.SemiLinearMultistep, 1),
    "DataIPNDM": (fr.DataIPNDM, 1),
    "IPNDM": (fr.IPNDM, 1),
}
GRIDS = ("default (quadratic timesteps)", "DDIM timesteps", "Karras ρ=7")


def ddim_timesteps(n: int) -> torch.Tensor:
    """DDIM's ``"leading"`` timesteps for ``n`` steps of a ``T``-step schedule, decreasing."""
    return torch.arange(n, dtype=torch.float64).flip(0) * (T // n)


def instances(prediction_type: str, seeds=(11, 12, 13), dim: int = 64):
    """Random Gaussian priors (mean, per-coordinate std) and their exact models."""
    abar = linear_alphas_cumprod()
    for seed in seeds:
        g = torch.Generator().manual_seed(seed)
        c = 0.5 * torch.randn(dim, generator=g, dtype=torch.float64)
        sc = 0.05 + 0.9 * torch.rand(dim, generator=g, dtype=torch.float64)
        oracle = GaussianDiffusionOracle(
            mean=c, std=sc, alphas_cumprod=abar, prediction_type=prediction_type
        )
        yield oracle, fr.DiffusionFlow(oracle, alphas_cumprod=abar, prediction_type=prediction_type)


def run(prediction_types=("epsilon",)) -> list[list]:
    """Rows ``[prediction type, solver, grid, error at each NFE]``.

    The exact ε, v and x₀ models of one prior define one flow: they give the same errors to three
    digits (pass all three to see it), so the default runs ε only.
    """
    rows = []
    for ptype in prediction_types:
        for name, (make, per_step) in SOLVERS.items():
            for grid_name in GRIDS:
                errs = []
                for nfe in NFES:
                    steps = max(1, (nfe + 1) // per_step)  # the landing costs 1
                    worst = 0.0
                    for oracle, flow in instances(ptype):
                        x_T = oracle.sample_latent(64, torch.Generator().manual_seed(5))
                        exact = oracle.exact_map(x_T)
                        if grid_name.startswith("DDIM"):
                            kw = {"grid": flow.grid_from_timesteps(ddim_timesteps(steps))}
                        elif grid_name.startswith("Karras"):
                            kw = {"steps": steps, "spacing": fr.Karras(rho=7.0)}
                        else:
                            kw = {"steps": steps}
                        x = fr.solve(flow, make(), x_T, **kw).x
                        rel = (x - exact).flatten(1).norm(dim=1) / exact.flatten(1).norm(dim=1)
                        worst = max(worst, float(rel.max()))
                    errs.append(worst)
                rows.append([ptype, name, grid_name, *errs])
    return rows


def report(rows) -> str:
    """Markdown table: worst relative error per NFE (Heun and Midpoint: (NFE + 1) // 2 steps,
    their landing onto σ = 0 costing one evaluation)."""
    return table(["prediction", "solver", "grid", *[f"{n} NFE" for n in NFES]], rows)


if __name__ == "__main__":
    torch.set_num_threads(1)
    print(report(run()))
