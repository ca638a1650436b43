"""Few-step accuracy of grids on flow-matching and EDM-denoiser models, in closed form (docs/math.md
§9): the measurement behind :meth:`FlowMatchingFlow.default_spacing` and
:meth:`DenoiserFlow.default_spacing`.

The exact velocity / denoiser of a Gaussian prior ``N(c, diag s_c²)`` (random ``c``, ``s_c`` in
[0.05, 0.95], 64 coordinates, 3 priors, seeds other than the tests'), wrapped as a flow; worst
relative error ``‖x − x_exact‖ / ‖x_exact‖`` at ``t = 0`` against the closed-form flow map, at
equal numbers of model evaluations. Grids:

* flow matching (``shift`` 1 and 3): :class:`~flowrestore.flows.flow_matching.Shifted` with
  ``rho = 1`` (uniform in the unshifted time) and ``rho = 2`` (the default), and the grid of
  diffusers' ``FlowMatchEulerDiscreteScheduler(shift=s).set_timesteps(N)`` (if diffusers is
  installed);
* denoiser (``σ_max = 80``, ``σ_min = 0.002``): EDM's grid (the default,
  :meth:`~flowrestore.DenoiserFlow.edm_grid`) and the same ``ρ = 7`` formula down to ``σ = 0``.

Splits: the defaults were chosen on the **validation** priors (seeds 21–23, noise seed 5); ``--split
test`` reports them on priors that chose nothing (seeds 31–35, noise seed 6).

Run: ``python -m benchmarks.model_grids [--split val|test]`` (about a minute each; float64).
"""

from __future__ import annotations

import torch

import flowrestore as fr
from flowrestore.flows.flow_matching import Shifted
from flowrestore.oracles.flow_matching import GaussianDenoiserOracle, GaussianFlowMatchingOracle

from .common import table

NFES = (6, 10, 20, 50)
SOLVERS = {
    "Euler": (fr.Euler, 1),
    "Heun": (fr.Heun, 2),
    "SemiLinearMultistep": (fr.SemiLinearMultistep, 1),
}


#: prior seeds and the noise seed of each split (validation chose the defaults)
SPLITS = {"val": ((21, 22, 23), 5), "test": ((31, 32, 33, 34, 35), 6)}


def _priors(split: str = "val", dim: int = 64):
    for seed in SPLITS[split][0]:
        g = torch.Generator().manual_seed(seed)
        c = 0.5 * torch.randn(dim, generator=g, dtype=torch.float64)
        sc = 0.05 + 0.9 * torch.rand(dim, generator=g, dtype=torch.float64)
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
        grid = grid_of(flow, steps)
        kw = {"steps": steps} if grid is None else {"grid": grid}
        if isinstance(grid, fr.Spacing):
            kw = {"steps": steps, "spacing": grid}
        x = fr.solve(flow, make(), x_start, **kw).x
        rel = (x - exact).flatten(1).norm(dim=1) / exact.flatten(1).norm(dim=1)
        worst = max(worst, float(rel.max()))
    return worst


def flow_matching_rows(shift: float, split: str = "val") -> list[list]:
    """Rows ``[model, solver, grid, error at each NFE]`` for the flow-matching model."""
    pairs = []
    for c, sc in _priors(split):
        oracle = GaussianFlowMatchingOracle(mean=c, std=sc)
        x1 = oracle.sample_latent(64, torch.Generator().manual_seed(SPLITS[split][1]))
        pairs.append((fr.FlowMatchingFlow(oracle, shift=shift), x1, oracle.exact_map(x1)))
    grids = {
        "Shifted rho=1": lambda f, n: Shifted(shift=shift, rho=1.0),
        "Shifted rho=2 (default)": lambda f, n: None,
        "diffusers scheduler": lambda f, n: _scheduler_grid(f, shift, n),
    }
    rows = []
    for name, (make, per_step) in SOLVERS.items():
        for grid_name, grid_of in grids.items():
            errs = [_worst(pairs, make, max(1, n // per_step), grid_of) for n in NFES]
            rows.append([f"flow matching, shift {shift:g}", name, grid_name, *errs])
    return rows


def denoiser_rows(split: str = "val") -> list[list]:
    """Rows for the EDM denoiser (σ_max = 80, σ_min = 0.002)."""
    pairs = []
    for c, sc in _priors(split):
        oracle = GaussianDenoiserOracle(mean=c, std=sc)
        x_T = 80.0 * torch.randn(
            64, 64, generator=torch.Generator().manual_seed(SPLITS[split][1]), dtype=torch.float64
        )
        flow = fr.DenoiserFlow(oracle, sigma_max=80.0, sigma_min=0.002)
        pairs.append((flow, x_T, oracle.exact_map(x_T, 80.0)))
    grids = {
        "EDM: ρ=7 to σ_min, then 0 (default)": lambda f, n: None,
        "ρ=7 down to 0": lambda f, n: fr.Karras(rho=7.0),
    }
    rows = []
    for name, (make, per_step) in SOLVERS.items():
        for grid_name, grid_of in grids.items():
            errs = [_worst(pairs, make, max(1, n // per_step), grid_of) for n in NFES]
            rows.append(["EDM denoiser", name, grid_name, *errs])
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
