"""``fr.Torchsde``: torchsde's methods on flowrestore SDE flows (reverse time, images, seeds)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import flowrestore as fr
from flowrestore.errors import ConfigError, IncompatibleSolverError
from flowrestore.flows import DiracSDE, SDEFlow
from flowrestore.integrate import BrownianIncrements
from flowrestore.solvers import SRA1, EulerMaruyama, Torchsde

pytest.importorskip("torchsde")

SIGMA = fr.schedules.Geometric(0.05, 0.5)


def _phi(y, t):
    tt = t.reshape(-1, *([1] * (y.dim() - 1)))
    return 0.8 * y + 0.1 * torch.tanh(3 * y) * (1 + tt)


def _blur():
    return fr.degradations.GaussianBlurFamily(kernel_size=5, width=fr.schedules.Linear(0.3, 1.5))


def _images(b=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 2, 6, 6, generator=g, dtype=torch.float64)


def _nonlinear_sde():
    f = lambda t, x: -x + 2 * torch.sin(2 * x)  # noqa: E731
    g = lambda t, x: (1 + t).reshape(-1, *([1] * (x.dim() - 1)))  # noqa: E731
    return SDEFlow(f, g, noise_type="additive")


@pytest.mark.parametrize("ours,theirs", [(EulerMaruyama(), "euler"), (SRA1(), "srk")])
def test_pathwise_agreement_on_a_shared_brownian_path(ours, theirs):
    """Same Brownian path (and space-time areas): torchsde's Euler/SRK equal our EM/SRA1."""
    flow = _nonlinear_sde()
    x0 = _images()
    grid = torch.linspace(0.0, 1.0, 9, dtype=torch.float64)
    path = BrownianIncrements.sample(grid, x0.shape, generator=torch.Generator().manual_seed(2))
    a = fr.solve(flow, ours, x0, grid=grid, noise=path).x
    b = fr.solve(flow, Torchsde(theirs), x0, grid=grid, noise=path).x
    torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10)


def test_reverse_time_dirac_agrees_with_sra1_and_stays_in_unit_interval():
    seen = []

    def phi(y, t):
        seen.append(t.detach().clone())
        return _phi(y, t)

    sde = DiracSDE(phi, _blur(), SIGMA)
    y = _images()
    grid = torch.tensor([1.0, 0.8, 0.5, 0.35, 0.1, 0.0], dtype=torch.float64)  # non-uniform
    path = BrownianIncrements.sample(grid, y.shape, generator=torch.Generator().manual_seed(3))
    ours = fr.solve(sde, SRA1(), y, grid=grid, noise=path, save_at="steps")
    seen.clear()
    theirs = fr.solve(sde, Torchsde("srk"), y, grid=grid, noise=path, save_at="steps")
    torch.testing.assert_close(theirs.trajectory, ours.trajectory, rtol=1e-10, atol=1e-10)
    allt = torch.cat([s.reshape(-1) for s in seen])
    assert float(allt.min()) >= 0.0 and float(allt.max()) <= 1.0
    assert theirs.x.shape == y.shape and theirs.stats.steps.tolist() == [5, 5, 5]


def test_euler_on_dirac_matches_tangent_step_in_distribution():
    """torchsde's Euler integrates the continuous drift; Dirac's eq. 7 step differs by O(h) per
    path but both sample the same law (pure denoising of a Gaussian: mean and variance)."""
    from .helpers import GaussianDirac

    prob = GaussianDirac(m=[0.3], s=[1.0], c=0.0, sigma=SIGMA)
    sde = DiracSDE(prob.phi, prob.family(), SIGMA)
    n = 20_000
    y = torch.full((n, 1), 0.9, dtype=torch.float64)
    a = fr.solve(sde, EulerMaruyama(), y, steps=60, generator=torch.Generator().manual_seed(0)).x
    b = fr.solve(sde, Torchsde("euler"), y, steps=60, generator=torch.Generator().manual_seed(1)).x
    se = (a.var() / n).sqrt()
    assert abs(float(a.mean() - b.mean())) < 4 * 2**0.5 * se
    assert abs(float(a.var() / b.var()) - 1) < 4 * 2**0.5 * (2 / n) ** 0.5


def test_seeds_and_stratonovich_methods():
    sde = DiracSDE(_phi, _blur(), SIGMA)
    y = _images(b=4)
    full = fr.solve(sde, Torchsde("euler"), y, steps=4, seeds=[1, 2, 3, 4]).x
    part = fr.solve(sde, Torchsde("euler"), y[[3, 1]], steps=4, seeds=[4, 2]).x
    torch.testing.assert_close(part, full[[3, 1]])
    # additive noise: Stratonovich Heun = Itô; it converges (strong order 1) to the SRA1 path
    grid = torch.linspace(1.0, 0.0, 257, dtype=torch.float64)
    path = BrownianIncrements.sample(grid, y.shape, generator=torch.Generator().manual_seed(5))
    ref = fr.solve(sde, SRA1(), y, grid=grid, noise=path).x
    errs = [
        float(
            (fr.solve(sde, Torchsde("heun"), y, grid=grid[::k], noise=path).x - ref)
            .pow(2)
            .mean()
            .sqrt()
        )
        for k in (16, 4)
    ]
    assert errs[0] / errs[1] > 2.5, errs
    with pytest.raises(IncompatibleSolverError):
        fr.solve(SDEFlow(lambda t, x: -x, lambda t, x: x), Torchsde("heun"), y, grid=[0.0, 1.0])
    with pytest.raises(ConfigError):
        Torchsde("dopri5")
    # the adapter saves through flowrestore's loop like any solver
    saved = fr.solve(
        sde,
        Torchsde("euler"),
        y,
        steps=4,
        save_at=[1.0, 0.5, 0.0],
        generator=torch.Generator().manual_seed(0),
    )
    assert saved.trajectory.shape == (3, *y.shape)
    assert torch.equal(saved.trajectory[0], y) and torch.equal(saved.trajectory[-1], saved.x)
    post = fr.solve(
        sde,
        Torchsde("euler"),
        y,
        steps=3,
        t_end=0.4,
        output="posterior_mean",
        generator=torch.Generator().manual_seed(0),
    )
    assert float(post.t_final[0]) == pytest.approx(0.4) and post.x.shape == y.shape


@pytest.mark.parametrize("method", ["srk", "milstein", "euler"])
def test_diagonal_noise_methods_converge_at_their_declared_strong_order(method):
    """Multiplicative (diagonal) noise, one Brownian path: the RMS error to a 2048-step solution
    falls at ``strong_order_for(flow)`` over 32–256 steps (least-squares slope within 0.25):
    1.5 for torchsde's SRID2 (``"srk"``), 1 for Milstein, 1/2 for Euler–Maruyama."""
    f = lambda t, x: -x + torch.sin(x)  # noqa: E731
    g = lambda t, x: 0.5 * torch.cos(x) * (1 + t).reshape(-1, *([1] * (x.dim() - 1)))  # noqa: E731
    flow = SDEFlow(f, g, noise_type="diagonal")
    x0 = torch.rand(64, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    grid = torch.linspace(0.0, 1.0, 2049, dtype=torch.float64)
    path = BrownianIncrements.sample(grid, x0.shape, generator=torch.Generator().manual_seed(7))
    solver = Torchsde(method)
    ref = fr.solve(flow, solver, x0, grid=grid, noise=path).x
    steps = [32, 64, 128, 256]
    errs = [
        float(
            (fr.solve(flow, solver, x0, grid=grid[:: 2048 // n], noise=path).x - ref).pow(2).mean()
        )
        ** 0.5
        for n in steps
    ]
    slope = -np.polyfit(np.log(steps), np.log(errs), 1)[0]
    assert abs(slope - solver.strong_order_for(flow)) < 0.25, (slope, errs)


@pytest.mark.parametrize("method", ["euler", "srk", "milstein", "midpoint", "heun", "euler_heun"])
@pytest.mark.parametrize("noise_type", ["additive", "diagonal"])
def test_steps_read_no_device_value(method, noise_type):
    """The adapter hands torchsde the step's bounds as device scalars and checks the Brownian
    requests by identity, so a step never waits for the device (issue 17's rule)."""
    from tests.core.test_syncs import HostReads

    if noise_type == "diagonal" and method in ("midpoint", "heun", "euler_heun"):
        pytest.skip("Stratonovich methods are for additive noise only")
    g = (
        (lambda t, x: 0.3 * torch.ones_like(x))
        if noise_type == "additive"
        else (lambda t, x: 0.3 * torch.sin(x))
    )
    flow = SDEFlow(lambda t, x: -x, g, noise_type=noise_type)
    solver = Torchsde(method)
    state = {"n": 0}
    step = Torchsde.step

    def counted(self, *a, **k):
        with HostReads() as hr:
            out = step(self, *a, **k)
        state["n"] += hr.count
        return out

    Torchsde.step = counted
    try:
        x0 = torch.ones(4, 3, dtype=torch.float64)
        fr.solve(flow, solver, x0, t_span=(0.0, 1.0), steps=5, seeds=[0, 1, 2, 3])
    finally:
        Torchsde.step = step
    assert state["n"] == 0


@pytest.mark.parametrize("method", ["euler", "milstein", "euler_heun", "srk", "midpoint", "heun"])
def test_without_noise_each_method_has_its_declared_deterministic_order(method):
    """``g = 0``: the methods are Runge–Kutta schemes of ``x' = −(1 + t) x`` (exact ``e^{−3/2}``
    at ``t = 1``); the global error falls at the declared ``order`` over 16–128 steps."""
    import math

    flow = SDEFlow(lambda t, x: -(1 + t.reshape(-1, 1)) * x, lambda t, x: torch.zeros_like(x),
                   noise_type="additive")  # fmt: skip
    solver = Torchsde(method)
    x0 = torch.ones(2, 2, dtype=torch.float64)
    steps = [16, 32, 64, 128]
    errs = [
        float((fr.solve(flow, solver, x0, t_span=(0.0, 1.0), steps=n, seeds=[0, 1]).x
               - math.exp(-1.5)).abs().max())
        for n in steps
    ]  # fmt: skip
    slope = -np.polyfit(np.log(steps), np.log(errs), 1)[0]
    assert abs(slope - solver.order) < 0.15, (slope, errs)
    assert solver.order == round(slope)  # a declared order is the measured one, an integer
