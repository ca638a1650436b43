"""Strong orders of the SDE steps on shared Brownian paths (docs/math.md §6).

Every level sees the same Brownian path: the fine increments (and space-time areas) of one
``BrownianIncrements`` summed over each coarse step. The error is the RMS over ≥ 100 paths of the
difference to a reference on the finest grid; the slope of ``log error`` against ``log h`` must lie
within ±0.3 of the declared strong order (EulerMaruyama: 1.0 on additive noise; SRA1: 1.5).
"""

from __future__ import annotations

import math

import pytest
import torch

import flowrestore as fr
from flowrestore.flows import DiracSDE, SDEFlow
from flowrestore.integrate import BrownianIncrements
from flowrestore.solvers import SRA1, EulerMaruyama

from .helpers import GaussianDirac, mixture_2d

PATHS = 200
FINE = 2**11
LEVELS = (2**3, 2**4, 2**5, 2**6, 2**7)


def _nonlinear_additive():
    """``dX = (−X + 2 sin 2X) dt + (1 + t) dW`` on [0, 1]: additive, time-dependent diffusion.

    The drift's curvature matters: for a linear drift (OU, the Dirac Gaussian case) or a weakly
    nonlinear one, SRA1's leading strong-error terms vanish and it shows order ≈ 2 instead of 1.5.
    """
    f = lambda t, x: -x + 2 * torch.sin(2 * x)  # noqa: E731
    g = lambda t, x: (1 + t)[:, None]  # noqa: E731
    return SDEFlow(f, g, noise_type="additive"), (0.0, 1.0)


def _dirac_gaussian():
    """Dirac's reverse SDE for a Gaussian prior, ``A_t = (1 − 0.6 t) I`` (linear drift), 1 → 0."""
    sigma = fr.schedules.Geometric(0.1, 0.6)
    prob = GaussianDirac(m=[0.5, -1.0], s=[1.0, 0.4], c=0.6, sigma=sigma)
    return DiracSDE(prob.phi, prob.family(), sigma), (1.0, 0.0)


def _dirac_mixture():
    """Dirac's reverse SDE with the exact posterior mean of the 2-D mixture (nonlinear drift),
    ``a_t = 1 − t(1 − diag(1, 0.3))``, ``σ_t`` geometric 0.5 → 1 (smooth enough for the fine
    reference), 1 → 0."""
    centers, weights = mixture_2d()
    d = torch.tensor([1.0, 0.3], dtype=torch.float64)
    family = fr.degradations.DiagonalFamily(
        a=lambda t: 1 - t[:, None] * (1 - d.to(t)),
        derivative=lambda t: -(1 - d.to(t)) + 0 * t[:, None],
    )
    sigma = fr.schedules.Geometric(0.5, 1.0)
    oracle = fr.oracles.DiracMixture(centers=centers, weights=weights, H=d, noise_std=1.0)
    return DiracSDE(oracle.dirac_predictor(A=family, sigma=sigma), family, sigma), (1.0, 0.0)


def measured_order(flow, span, solver, *, paths=PATHS, fine=FINE, levels=LEVELS, seed=0):
    grid = torch.linspace(span[0], span[1], fine + 1, dtype=torch.float64)
    x0 = torch.linspace(-1.0, 1.0, paths, dtype=torch.float64)[:, None].repeat(1, 2)
    path = BrownianIncrements.sample(grid, x0.shape, generator=torch.Generator().manual_seed(seed))
    ref = fr.solve(flow, SRA1(), x0, grid=grid, noise=path).x
    hs, errs = [], []
    for n in levels:
        coarse = grid[:: fine // n]
        x = fr.solve(flow, solver, x0, grid=coarse, noise=path).x
        errs.append(float((x - ref).pow(2).sum(1).mean().sqrt()))
        hs.append(1.0 / n)
    slope = torch.linalg.lstsq(
        torch.tensor([[math.log(h), 1.0] for h in hs], dtype=torch.float64),
        torch.tensor([[math.log(e)] for e in errs], dtype=torch.float64),
    ).solution[0, 0]
    return float(slope), errs


@pytest.mark.parametrize("solver", [EulerMaruyama(), SRA1()])
def test_strong_order_additive_noise(solver):
    flow, span = _nonlinear_additive()
    slope, errs = measured_order(flow, span, solver)
    assert abs(slope - solver.strong_order_for(flow)) < 0.3, (type(solver).__name__, slope, errs)


def test_strong_order_of_the_dirac_step():
    """Euler–Maruyama on a DiracSDE is eq. 7 (finite-difference R̂, exact-variance noise): still
    strong order 1 on Dirac's additive noise, backward in time."""
    flow, span = _dirac_gaussian()
    slope, errs = measured_order(flow, span, EulerMaruyama(), paths=128, fine=2**10)
    assert abs(slope - 1.0) < 0.3, (slope, errs)


@pytest.mark.slow
@pytest.mark.parametrize("solver", [EulerMaruyama(), SRA1()])
def test_strong_order_dirac_mixture(solver):
    flow, span = _dirac_mixture()
    slope, errs = measured_order(flow, span, solver)
    assert abs(slope - solver.strong_order_for(flow)) < 0.3, (type(solver).__name__, slope, errs)


def test_euler_maruyama_strong_order_half_on_multiplicative_noise():
    """Geometric Brownian motion ``dX = 0.5 X dt + X dW`` (diagonal): EM has strong order 0.5."""
    flow = SDEFlow(lambda t, x: 0.5 * x, lambda t, x: x, noise_type="diagonal")
    grid = torch.linspace(0.0, 1.0, FINE + 1, dtype=torch.float64)
    x0 = torch.ones(PATHS, 1, dtype=torch.float64)
    path = BrownianIncrements.sample(
        grid, x0.shape, areas=False, generator=torch.Generator().manual_seed(1)
    )
    w1 = path.increment(grid[0], grid[-1], x0)
    exact = x0 * torch.exp(w1)  # X_1 = exp((μ − ½) t + W_t) with μ = ½
    hs, errs = [], []
    for n in (2**4, 2**5, 2**6, 2**7, 2**8):
        x = fr.solve(flow, EulerMaruyama(), x0, grid=grid[:: FINE // n], noise=path).x
        errs.append(float((x - exact).pow(2).mean().sqrt()))
        hs.append(1.0 / n)
    slope = (math.log(errs[-1]) - math.log(errs[0])) / (math.log(hs[-1]) - math.log(hs[0]))
    assert abs(slope - EulerMaruyama().strong_order_for(flow)) < 0.3, (slope, errs)
