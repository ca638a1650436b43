"""The t = 0 endpoint (docs/math.md §1): no solver evaluates the predictor at t = 0.

A spy predictor raises if it sees any t == 0 and records every t. Solvers with a stage at a step's
end (Heun) finish with the denoising step ``F(x_{t_{N−1}}, t_{N−1})``; RK4 and fixed-step
Bosh3/Dopri5 with the split landing through ``t_{N−1}/3`` (closed forms below); adaptive ones
integrate to ``t_min`` and denoise there; Euler, Midpoint and the InDI samplers take their own last
step (their stages stay at t > 0).
"""

import pytest
import torch

import flowrestore as fr
from flowrestore.integrate.endpoint import default_spacing

from .helpers import Spy, gaussian_oracle, grid_only, max_err, observations

STEPS = 6
SOLVERS = {
    "Euler": fr.Euler,
    "Midpoint": fr.Midpoint,
    "Heun": fr.Heun,
    "RK4": fr.RK4,
    "Bosh3": lambda: fr.Bosh3(rtol=1e-5),
    "Dopri5": lambda: fr.Dopri5(rtol=1e-5),
    "Bosh3-fixed": lambda: grid_only(fr.Bosh3()),
    "Dopri5-fixed": lambda: grid_only(fr.Dopri5()),
    "InDISampler": fr.InDISampler,
    "InDISampler-eps": lambda: fr.InDISampler(eps=0.2, brownian=True),
    "NaiveSampler": fr.NaiveSampler,
    "ColdDiffusionSampler": fr.ColdDiffusionSampler,
    "Torchdiffeq-dopri5": lambda: fr.Torchdiffeq("dopri5", rtol=1e-6, atol=1e-8),
    "Torchdiffeq-rk4": lambda: fr.Torchdiffeq("rk4"),
    "Torchdiffeq-euler": lambda: fr.Torchdiffeq("euler"),
}


@pytest.fixture(scope="module")
def problem():
    oracle = gaussian_oracle(seed=7, dim=12)
    return oracle, observations(oracle, n=3, seed=8)


def _solve(flow, solver, y, **kw):
    if not solver.adaptive and "grid" not in kw:
        kw.setdefault("steps", STEPS)
    return fr.solve(flow, solver, y, generator=torch.Generator().manual_seed(0), **kw)


@pytest.mark.parametrize("name", list(SOLVERS))
@pytest.mark.parametrize("spacing", [None, fr.Power(rho=2.0)])
def test_no_evaluation_at_zero(problem, name, spacing):
    oracle, y = problem
    spy = Spy(oracle)
    solver = SOLVERS[name]()
    kw = {} if solver.adaptive else {"spacing": spacing}
    sol = _solve(fr.InDIFlow(spy), solver, y, **kw)
    seen = spy.all_times()
    assert seen.numel() > 0 and bool((seen > 0).all())
    assert torch.isfinite(sol.x).all()
    assert sol.t_final.shape == (y.shape[0],)  # per sample, as Solution documents
    assert torch.equal(sol.t_final, torch.zeros_like(sol.t_final))
    if solver.adaptive:
        assert float(seen.min()) >= solver.controller.resolved_t_min() * (1 - 1e-12)
    else:
        used = spacing or default_spacing(fr.InDIFlow(spy), solver, 0.0)
        grid = fr.integrate.make_grid(STEPS, 1.0, 0.0, used)
        # Midpoint's own last step evaluates at t_{N-1}/2, the split landing (RK4, fixed-step
        # Bosh3 and Dopri5) at t_{N-1}/3; every other solver at >= t_{N-1}
        third = dict.fromkeys(("RK4", "Bosh3-fixed", "Dopri5-fixed"), 1 / 3)
        lowest = float(grid[-2]) * {"Midpoint": 0.5, **third}.get(name, 1.0)
        assert float(seen.min()) >= lowest * (1 - 1e-12)


def test_spy_catches_a_solver_that_evaluates_at_zero(problem):
    """The spy test can fail: a plain RK4 on an ODEFlow of the same drift reaches t = 0."""
    oracle, y = problem
    spy = Spy(oracle)
    drift = fr.ODEFlow(lambda t, x: (x - spy(x, t)) / t[:, None])
    with pytest.raises(AssertionError, match="t == 0"):
        fr.solve(drift, fr.RK4(), y, grid=fr.integrate.make_grid(4, 1.0, 0.0))


@pytest.mark.parametrize(
    "name",
    [
        "Euler",
        "Heun",
        "InDISampler",
        "NaiveSampler",
        "Torchdiffeq-rk4",
        "Torchdiffeq-euler",
    ],
)
def test_fixed_step_result_is_denoised_last_state(problem, name):
    """x_0 = F(x_{t_{N−1}}, t_{N−1}) (Euler/InDI: up to round-off of x − (x − F))."""
    oracle, y = problem
    grid = fr.integrate.make_grid(STEPS, 1.0, 0.0, fr.Power(rho=1.5))
    full = _solve(fr.InDIFlow(oracle), SOLVERS[name](), y, grid=grid)
    before = _solve(fr.InDIFlow(oracle), SOLVERS[name](), y, grid=grid[:-1])
    expected = oracle(before.x, float(grid[-2]))
    assert max_err(full.x, expected) <= 1e-14
    nfe_last = full.stats.nfe - before.stats.nfe
    assert nfe_last.tolist() == [1] * y.shape[0], "the denoising step costs one evaluation"


def _rk4_stages(drift, t, x, h):
    k1 = drift(t, x)
    k2 = drift(t + h / 2, x + h / 2 * k1)
    k3 = drift(t + h / 2, x + h / 2 * k2)
    k4 = drift(t + h, x + h * k3)
    return x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4), k4


def test_rk4_split_landing_closed_form(problem):
    """RK4 lands through ``s = t/3`` (``t = t_{N−1}``): with ``k4`` its last stage's drift (at
    ``t``), ``x_s = x − (t − s) k4`` and ``x_0 = (F(x_s, s) − (1/3)² D)/(1 − (1/3)²)``,
    ``D = x − t·k4`` — InDI's interpolation power 2; one evaluation."""
    oracle, y = problem
    grid = fr.integrate.make_grid(STEPS, 1.0, 0.0, fr.Power(rho=1.5))
    full = _solve(fr.InDIFlow(oracle), fr.RK4(), y, grid=grid)
    before = _solve(fr.InDIFlow(oracle), fr.RK4(), y, grid=grid[:-2])

    def drift(t, x):
        return (x - oracle(x, t)) / t

    t_prev, t = float(grid[-3]), float(grid[-2])
    x, k4 = _rk4_stages(drift, t_prev, before.x, t - t_prev)
    d = x - t * k4
    x_s = x - (t - t / 3) * k4
    expected = (oracle(x_s, t / 3) - d / 9) / (1 - 1 / 9)
    assert max_err(full.x, expected) <= 1e-13
    last = _solve(fr.InDIFlow(oracle), fr.RK4(), y, grid=grid[:-1])
    assert (full.stats.nfe - last.stats.nfe).tolist() == [1] * y.shape[0]


def test_rk4_keeps_its_last_stage_estimate_only_before_the_landing(problem):
    """The split landing's ``d_end`` costs a state-sized op; RK4 computes it only on the step
    before the landing (``steps_left <= 1``) or where the loop does not know (``None``)."""
    from flowrestore.solvers.base import Context

    oracle, y = problem
    flow, t, h = fr.InDIFlow(oracle), torch.tensor(0.5), torch.tensor(-0.25)
    for left, kept in ((3, False), (2, False), (1, True), (None, True)):
        state = fr.RK4().step(flow, t, y, h, None, Context(steps_left=left)).state
        assert (getattr(state, "d_end", None) is not None) is kept, left


@pytest.mark.parametrize("name", ["Bosh3", "Dopri5"])
def test_adaptive_result_is_denoised_state_at_t_min(problem, name):
    oracle, y = problem
    solver = SOLVERS[name]()
    t_min = solver.controller.resolved_t_min()
    full = fr.solve(fr.InDIFlow(oracle), solver, y)
    before = fr.solve(fr.InDIFlow(oracle), solver, y, t_end=t_min)
    assert torch.equal(full.x, oracle(before.x, t_min))
    assert torch.equal(full.stats.nfe, before.stats.nfe + 1)


def test_explicit_t_min(problem):
    oracle, y = problem
    spy = Spy(oracle)
    fr.solve(fr.InDIFlow(spy), fr.Dopri5(rtol=1e-4, t_min=0.02), y)
    assert abs(float(spy.all_times().min()) - 0.02) < 1e-12


def test_denoising_step_error_is_second_order_in_last_time(problem):
    """docs/math.md §1: the final denoising step's error is O(t_{N−1}²) (adaptive: O(t_min²))."""
    oracle, y = problem
    exact = oracle.ode_solution(y, 0.0)
    errs = []
    for t_min in (0.04, 0.02, 0.01):
        sol = fr.solve(fr.InDIFlow(oracle), fr.Dopri5(rtol=1e-10, atol=1e-12, t_min=t_min), y)
        errs.append(max_err(sol.x, exact))
    ratios = [errs[i] / errs[i + 1] for i in range(2)]
    assert all(3.5 < r < 4.5 for r in ratios), (errs, ratios)


@pytest.mark.parametrize("rtol", [0.0, 1e-8, 1e-6, 1e-3, 0.5])
def test_adaptive_solvers_and_torchdiffeq_share_the_t_min_default(rtol):
    expected = min(1e-2, max(rtol, 1e-16) ** 0.5 / 10)
    for solver in (
        fr.Dopri5(rtol=rtol, atol=1e-6),
        fr.Bosh3(rtol=rtol, atol=1e-6),
        fr.Torchdiffeq("dopri5", rtol=rtol, atol=1e-6),
    ):
        assert solver.controller.resolved_t_min() == expected
    assert fr.PIController(rtol=rtol, atol=1e-6).resolved_t_min() == expected
    assert fr.Dopri5(rtol=rtol, atol=1e-6, t_min=3e-3).controller.resolved_t_min() == 3e-3


@pytest.mark.parametrize("name", ["Bosh3-fixed", "Dopri5-fixed"])
def test_embedded_pair_split_landing_closed_form(problem, name):
    """A first-same-as-last pair on a fixed grid lands as RK4 does, through ``s = t/3``: its last
    stage sits at the result, so the clean estimate its drift gives there is ``D = F(x, t)``
    itself, ``x_s = D + (x − D)/3`` and ``x_0 = (F(x_s, s) − D/9)/(8/9)`` (InDI's power 2); one
    evaluation. Under error control the pair denoises at ``t_min`` instead
    (:func:`test_no_evaluation_at_zero`)."""
    oracle, y = problem
    grid = fr.integrate.make_grid(STEPS, 1.0, 0.0, fr.Power(rho=1.5))
    full = _solve(fr.InDIFlow(oracle), SOLVERS[name](), y, grid=grid)
    before = _solve(fr.InDIFlow(oracle), SOLVERS[name](), y, grid=grid[:-1])
    t = float(grid[-2])
    d = oracle(before.x, t)
    x_s = d + (before.x - d) / 3
    expected = (oracle(x_s, t / 3) - d / 9) / (8 / 9)
    assert max_err(full.x, expected) <= 1e-12
    assert (full.stats.nfe - before.stats.nfe).tolist() == [1] * y.shape[0]
