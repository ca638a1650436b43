"""Exact identities of the InDI samplers (docs/math.md §1, §2a).

Explicit Euler on the residual flow *is* InDI's sampler with ε = 0, and the sampler's output on the
Gaussian oracle is a closed-form product of affine maps.
"""

import pytest
import torch

import flowrestore as fr

from .helpers import F64, gaussian_oracle, max_err, observations


@pytest.fixture(scope="module")
def oracle():
    return gaussian_oracle(seed=0, dim=50)


@pytest.fixture(scope="module")
def y(oracle):
    return observations(oracle, n=5)


def hand_loop(predictor, y, grid):
    """``x_s = (s/t) x + (1 − s/t) F(x, t)``, written out."""
    x = y.clone()
    for t, s in zip(grid[:-1].tolist(), grid[1:].tolist(), strict=False):
        tt = torch.full((x.shape[0],), t, dtype=x.dtype)
        x = (s / t) * x + (1 - s / t) * predictor(x, tt)
    return x


@pytest.mark.parametrize("steps", [1, 2, 7, 50])
@pytest.mark.parametrize("spacing", [None, fr.Power(rho=2.0)])
def test_euler_is_indi_sampler_eps0(oracle, y, steps, spacing):
    flow = fr.InDIFlow(oracle)
    a = fr.solve(flow, fr.Euler(), y, steps=steps, spacing=spacing)
    b = fr.solve(flow, fr.InDISampler(eps=0.0), y, steps=steps, spacing=spacing)
    grid = fr.integrate.make_grid(steps, 1.0, 0.0, spacing)
    c = hand_loop(oracle, y, grid)
    # the three differ only in the order of floating-point operations
    tol = 50 * torch.finfo(F64).eps * float(y.abs().max())
    assert max_err(a.x, b.x) <= tol
    assert max_err(a.x, c) <= tol
    assert max_err(b.x, c) <= tol
    assert a.stats.nfe.tolist() == b.stats.nfe.tolist() == [steps] * y.shape[0]


def test_euler_is_indi_sampler_can_fail(oracle, y):
    """The identity test can fail: Heun (a different method) is far from the hand loop."""
    heun = fr.solve(fr.InDIFlow(oracle), fr.Heun(), y, steps=7).x
    c = hand_loop(oracle, y, fr.integrate.make_grid(7, 1.0, 0.0))
    assert max_err(heun, c) > 1e-6


@pytest.mark.parametrize("steps", [1, 2, 3, 10, 64])
@pytest.mark.parametrize("diag_h", [False, True])
def test_indi_sampler_matches_closed_form_product(steps, diag_h):
    oracle = gaussian_oracle(seed=3, dim=40, h=(0.3, 1.0) if diag_h else None)
    y = observations(oracle, n=6, seed=4)
    for solver in (fr.InDISampler(), fr.Euler()):
        for spacing in (None, fr.Power(rho=1.7)):
            sol = fr.solve(fr.InDIFlow(oracle), solver, y, steps=steps, spacing=spacing)
            grid = fr.integrate.make_grid(steps, 1.0, 0.0, spacing)
            exact = oracle.indi_sampler_solution(y, grid)
            assert max_err(sol.x, exact) <= 1e-12


def test_one_step_is_mmse():
    """docs/math.md §2a: with N = 1 the InDI sampler (and every solver: its one step is the
    denoising step F(y, 1)) returns the MMSE estimate."""
    oracle = gaussian_oracle(seed=5, dim=30)
    y = observations(oracle, n=4)
    for solver in (
        fr.InDISampler(),
        fr.NaiveSampler(),
        fr.Euler(),
        fr.Heun(),
        fr.RK4(),
        fr.Torchdiffeq("euler"),
        fr.Torchdiffeq("rk4"),
    ):
        sol = fr.solve(fr.InDIFlow(oracle), solver, y, steps=1)
        assert max_err(sol.x, oracle.mmse(y)) <= 1e-14


def test_naive_and_cold_diffusion_hand_loops(oracle, y):
    grid = fr.integrate.make_grid(6, 1.0, 0.0)
    xn, xc = y.clone(), y.clone()
    for t, s in zip(grid[:-1].tolist(), grid[1:].tolist(), strict=False):
        tt = torch.full((y.shape[0],), t, dtype=F64)
        xn = (1 - s) * oracle(xn, tt) + s * y
        xc = xc + (t - s) * (oracle(xc, tt) - y)
    naive = fr.solve(fr.InDIFlow(oracle), fr.NaiveSampler(), y, grid=grid).x
    cold = fr.solve(fr.InDIFlow(oracle), fr.ColdDiffusionSampler(), y, grid=grid).x
    assert max_err(naive, xn) <= 1e-13
    assert max_err(cold, xc) <= 1e-13
