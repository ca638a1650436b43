"""The refinement step of :func:`~flowrestore.integrate.fit_grid` (docs/math.md §11).

A fixed grid ``t_0 > t_1 > … > t_N`` over a span is written with its normalised times
``τ_i = (t_i − t_N)/(t_0 − t_N)`` as ``τ_i = τ_{i−1} · sigmoid(z_i)`` for the interior points
``i = 1 … N−1``: every ``z ∈ ℝ^{N−1}`` is a valid, strictly monotone grid with the span's ends,
so an unconstrained derivative-free search (Nelder–Mead, ``scipy.optimize``) can move the points.
The objective is the mean (:data:`POWER`) over the warm-up batch of the relative error
``‖x_N − x_ref‖ / ‖x_ref‖`` of a real solve on the grid to the teacher's answer; a solve that fails
or is non-finite scores ``+∞``. The search starts from the grid it is given, with an initial
simplex of ±:data:`SIMPLEX_STEP` in each ``z_i``, and returns the best grid it solved — never worse
on the warm-up batch than the start.
"""

from __future__ import annotations

import math

import torch
from scipy.optimize import minimize
from torch import Tensor

from flowrestore.errors import FlowRestoreError
from flowrestore.flows.base import Flow
from flowrestore.integrate.solve import solve
from flowrestore.solvers.base import Solver

__all__ = ["SIMPLEX_STEP", "grid_from_logits", "logits_from_grid", "refine_grid"]

#: size of the initial simplex in each logit ``z_i`` (a ratio ``t_i/t_{i−1}`` moved by ~10 %):
#: chosen on the few-NFE benchmark's validation priors (``python -m benchmarks.fit_options``, exact
#: linear/ε and cosine/v models, three multistep solvers at 5 and 6 NFE: geometric mean of the
#: worst errors 0.0084 / 0.0073 / 0.0076 for 0.25 / 0.5 / 1.0)
SIMPLEX_STEP = 0.5

#: the objective is this power mean of the per-sample relative errors (1: the mean). Chosen on the
#: few-NFE benchmark's validation split (``python -m benchmarks.fit_options --option power``): a
#: power of 4, which weighs the worst samples more, was within 1.5 % on the exact diffusion models
#: (geometric mean of the worst errors 0.00783 / 0.00772 for 1 / 4) and worse on the trained DDPM
#: (0.0827 / 0.0850; its best fitted solver at 5 / 6 NFE 0.0734 / 0.0577 vs 0.0884 / 0.0672)
POWER = 1.0


def logits_from_grid(grid: Tensor) -> Tensor:
    """The logits ``z`` of a grid's interior points (module docstring; float64)."""
    g = grid.double()
    tau = (g - g[-1]) / (g[0] - g[-1])
    r = tau[1:-1] / tau[:-2]
    return torch.log(r) - torch.log1p(-r)


def grid_from_logits(z: Tensor, t0: float, t1: float) -> Tensor:
    """The grid from ``t0`` to ``t1`` whose interior points have logits ``z`` (float64)."""
    ratios = torch.sigmoid(torch.as_tensor(z, dtype=torch.float64))
    tau = torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(ratios, 0)])
    tau = torch.cat([tau, torch.zeros(1, dtype=torch.float64)])
    return t1 + tau * (t0 - t1)


def _error(flow: Flow, solver: Solver, x: Tensor, reference: Tensor, grid: Tensor) -> float:
    """Mean relative error of the solve on ``grid`` to ``reference`` (``inf`` if it fails)."""
    try:
        with torch.no_grad():
            out = solve(flow, solver, x, grid=grid).x
    except FlowRestoreError:
        return math.inf
    ref = reference.flatten(1).double()
    err = (out.flatten(1).double() - ref).norm(dim=1) / ref.norm(dim=1).clamp_min(1e-30)
    value = float(err.pow(POWER).mean().pow(1 / POWER))
    return value if math.isfinite(value) else math.inf


def refine_grid(
    flow: Flow, solver: Solver, x: Tensor, reference: Tensor, grid: Tensor, *, budget: int
) -> Tensor:
    """Move ``grid``'s interior points to lower the warm-up error (module docstring), spending at
    most ``budget`` solves; returns the best grid solved (``grid`` itself if none beat it)."""
    t0, t1 = float(grid[0]), float(grid[-1])
    z0 = logits_from_grid(grid)
    best = {"err": _error(flow, solver, x, reference, grid), "grid": grid}

    def objective(z) -> float:
        g = grid_from_logits(torch.as_tensor(z), t0, t1)
        err = _error(flow, solver, x, reference, g)
        if err < best["err"]:
            best.update(err=err, grid=g)
        return err if math.isfinite(err) else 1e300

    if budget > 1 and z0.numel() > 0:  # a one-step grid has no interior point to move
        n = z0.numel()
        simplex = z0.numpy()[None, :].repeat(n + 1, 0)
        simplex[1:] += SIMPLEX_STEP * torch.eye(n, dtype=torch.float64).numpy()
        minimize(
            objective,
            z0.numpy(),
            method="Nelder-Mead",
            options={"maxfev": budget - 1, "initial_simplex": simplex, "xatol": 1e-4, "fatol": 0},
        )
    return best["grid"].to(grid.dtype)
