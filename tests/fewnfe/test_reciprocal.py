"""Runge–Kutta stages in a residual flow's reciprocal variables (flowrestore/solvers/reciprocal.py).

On a flow declaring ``TimeVariable(reciprocal=True)`` (a diffusion model) an explicit tableau
steps ``y = x/t`` in ``w = 1/t`` (``dy/dw = D``). Checked here: one Heun step is the exponential
trapezoid written out by hand, RK4's stages sit at ``t_i = ts/(s + c_i(t − s))``, the declared
orders hold (float64, before the singular end), embedded pairs keep ``t`` under error control
only, the landing extrapolates the last two clean estimates, and RK4's split landing.
"""

from __future__ import annotations

import pytest
import torch

import flowrestore as fr

from .helpers import F64, diffusion_problem, fit_slope, rel


def _t(v: float) -> torch.Tensor:
    return torch.tensor(v, dtype=F64)


def test_heun_step_is_the_exponential_trapezoid():
    _, flow, x_T, _ = diffusion_problem("cosine", "v_prediction", dim=6, batch=3)
    x = flow.to_state(x_T, 1.0)
    for t, s in ((1.0, 1e-3), (2e-4, 5e-5)):
        r = s / t
        d1 = flow.denoise(_t(t), x)
        d2 = flow.denoise(_t(s), r * x + (1 - r) * d1)
        want = r * x + (1 - r) * (d1 + d2) / 2
        got = fr.Heun().step(flow, _t(t), x, _t(s - t), None, None).x
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_rk4_stages_sit_at_the_reciprocal_midpoints():
    oracle, _, x_T, _ = diffusion_problem("linear", "epsilon", dim=4, batch=2)
    seen = []

    def spy(x, k):
        seen.append(k[0].item())
        return oracle(x, k)

    flow = fr.DiffusionFlow(spy, alphas_cumprod=oracle.alphas_cumprod)
    t, s = 0.3, 0.01
    fr.RK4().step(flow, _t(t), flow.to_state(x_T, t), _t(s - t), None, None)
    stages = [t * s / (s + c * (t - s)) for c in (0.0, 0.5, 0.5, 1.0)]
    want = [float(flow.timestep(_t(v * flow.sigma_max))) for v in stages]
    assert seen == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("schedule,ptype", [("linear", "epsilon"), ("cosine", "v_prediction")])
@pytest.mark.parametrize(
    "name,make,order",
    [
        ("Midpoint", fr.Midpoint, 2),
        ("Heun", fr.Heun, 2),
        ("RK4", fr.RK4, 4),
        ("Bosh3", fr.Bosh3, 3),
        ("Dopri5", fr.Dopri5, 5),
    ],
)
def test_declared_order_in_reciprocal_variables(schedule, ptype, name, make, order):
    """Stepping only (``t_end`` at σ = 0.05, no landing), the flow's own grid, float64."""
    oracle, flow, x_T, _ = diffusion_problem(schedule, ptype, dim=12, batch=3)
    t_end = 0.05 / flow.sigma_max
    sigma = 0.05
    z = (flow.to_state(x_T, 1.0) - oracle.mean) / (oracle.std**2 + flow.sigma_max**2).sqrt()
    exact = (oracle.mean + (oracle.std**2 + sigma**2).sqrt() * z) / (1 + sigma**2) ** 0.5
    solver = make()
    levels = [16, 32, 64, 128, 256]
    errs = [
        float((fr.solve(flow, solver, x_T, steps=n, t_end=t_end).x - exact).abs().max())
        for n in levels
    ]
    slope = fit_slope(levels, errs, 1e3 * torch.finfo(F64).eps)
    if name == "Midpoint":  # superconvergent on a Gaussian's flow, as in t (tests/core)
        assert slope >= order - 0.25, (name, slope, errs)
    elif name == "Dopri5":  # pre-asymptotic: local slopes 5.6, 5.7, 5.6, 5.5 at 16–256 steps
        assert order - 0.25 <= slope <= order + 0.75, (name, slope, errs)
    else:
        assert abs(slope - order) <= 0.25, (name, slope, errs)


def test_embedded_pairs_keep_t_under_error_control_only():
    """An embedded pair steps in ``t`` under error control (its estimate must see what a step
    skips): under the flow's controller Dopri5 meets its tolerance at ``t = 0``, and a step told
    ``error_control`` is the plain tableau in ``t``. On a fixed grid (and in a hand-made context)
    it steps in the reciprocal variables, its first-same-as-last stage carried: a solve on a grid
    is those steps, and ``Dopri5()`` with ``steps=3`` is ahead of Euler at equal evaluations (in
    ``t`` it was 4·10³× behind on this cosine/v model)."""
    from flowrestore.solvers.base import Context
    from flowrestore.solvers.reciprocal import reciprocal_step

    _, flow, x_T, exact = diffusion_problem("cosine", "v_prediction", dim=8, batch=2)
    sol = fr.solve(flow, fr.Dopri5(), x_T, controller=fr.PIController(rtol=1e-7, atol=1e-7))
    assert float((sol.x - exact).abs().max()) < 1e-4
    x = flow.to_state(x_T, 1.0)
    want = fr.solvers.rk_step(fr.Bosh3.tableau, flow, _t(0.1), x, _t(-0.05))[0]
    controlled = Context(error_control=True)
    torch.testing.assert_close(
        fr.Bosh3().step(flow, _t(0.1), x, _t(-0.05), None, controlled).x, want
    )
    first = reciprocal_step(fr.Bosh3.tableau, flow, _t(1.0), x, _t(-0.5))
    second = reciprocal_step(fr.Bosh3.tableau, flow, _t(0.5), first.x, _t(-0.2), first.state.k1)
    got = fr.solve(flow, fr.Bosh3(), x_T, grid=[1.0, 0.5, 0.3])
    torch.testing.assert_close(flow.to_state(got.x, 0.3), second.x, rtol=1e-12, atol=1e-12)
    assert int(got.stats.nfe.max()) == 4 + 3
    torch.testing.assert_close(fr.Bosh3().step(flow, _t(1.0), x, _t(-0.5), None, None).x, first.x)
    for make in (fr.Bosh3, fr.Dopri5):
        sol = fr.solve(flow, make(), x_T, steps=3)
        euler = fr.solve(flow, fr.Euler(), x_T, steps=int(sol.stats.nfe.max()))
        assert rel(sol.x, exact) < rel(euler.x, exact), make


def test_landing_extrapolates_the_last_two_clean_estimates():
    """After the last reciprocal step ``t_k → t_stop``, ``x_0`` is the line through
    ``(t_k, D(x_k, t_k))`` and ``(t_stop, D(x_stop, t_stop))`` in ``τ^p`` (``p = 1`` here) at 0."""
    _, flow, x_T, _ = diffusion_problem("linear", "epsilon", dim=6, batch=2)
    grid = flow.default_spacing()(4, 1.0, 0.0)
    tk, ts = float(grid[-3]), float(grid[-2])
    xk = flow.to_state(fr.solve(flow, fr.Heun(), x_T, grid=grid[:-2]).x, tk)
    xs = flow.to_state(fr.solve(flow, fr.Heun(), x_T, grid=grid[:-1]).x, ts)
    dk, ds = flow.denoise(_t(tk), xk), flow.denoise(_t(ts), xs)
    want = (ds * tk - dk * ts) / (tk - ts)
    sol = fr.solve(flow, fr.Heun(), x_T, grid=grid)
    torch.testing.assert_close(sol.x, want, rtol=1e-10, atol=1e-10)
    assert int(sol.stats.nfe.max()) == 2 * 3 + 1  # three Heun steps, one landing evaluation


def test_rk4_lands_in_two_parts_through_a_third_of_the_last_time():
    """RK4's split landing after a reciprocal step, written out in ``(w, y) = (1/t, x/t)``: the
    last step ``t_k → t`` with stages ``y_i = y + Δw Σ a_ij D_j`` at ``w_i = w_k + c_i Δw``; the
    last stage's drift at the result, ``D = D_4 + t (y_next − y_4)``; the Euler step to ``s = t/3``
    with it, ``x_s = x/3 + (2/3) D``; ``x_0 = (D(x_s, s) − D/3)/(2/3)`` (``p = 1``)."""
    _, flow, x_T, _ = diffusion_problem("linear", "epsilon", dim=6, batch=2)
    assert flow.time_variable().reciprocal and flow.time_variable().power == 1
    grid = flow.default_spacing()(4, 1.0, 0.0)
    tk, t = float(grid[-3]), float(grid[-2])
    xk = flow.to_state(fr.solve(flow, fr.RK4(), x_T, grid=grid[:-2]).x, tk)
    wk, dw = 1 / tk, 1 / t - 1 / tk
    y, ds = xk / tk, []
    for c, a in zip((0.0, 0.5, 0.5, 1.0), ((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)), strict=True):
        yi = y + dw * sum((aj * dj for aj, dj in zip(a, ds, strict=False)), torch.zeros_like(y))
        wi = wk + c * dw
        ds.append(flow.denoise(_t(1 / wi), yi / wi))
    y_next = y + dw * (ds[0] + 2 * ds[1] + 2 * ds[2] + ds[3]) / 6
    d = ds[3] + t * (y_next - yi)
    x_s = (t * y_next) / 3 + 2 / 3 * d
    want = flow.from_state((flow.denoise(_t(t / 3), x_s) - d / 3) / (2 / 3), 0.0)
    sol = fr.solve(flow, fr.RK4(), x_T, grid=grid)
    torch.testing.assert_close(sol.x, want, rtol=1e-10, atol=1e-10)
    assert int(sol.stats.nfe.max()) == 4 * 3 + 1  # three RK4 steps, one landing evaluation


def test_a_first_same_as_last_tableau_reuses_the_clean_estimate_at_the_step_end():
    """A user's FSAL tableau without an error estimate (Bogacki–Shampine's weights alone) steps in
    reciprocal variables and carries its last stage: the next step starts from the clean estimate
    at the previous step's result, as if evaluated afresh, and costs one evaluation less."""
    bosh3 = fr.solvers.tableau.BOSH3
    weights_only = fr.ButcherTableau(c=bosh3.c, a=bosh3.a, b=bosh3.b, order=3)
    assert weights_only.fsal and weights_only.b_error is None
    _, flow, x_T, _ = diffusion_problem("cosine", "v_prediction", dim=6, batch=3)
    x = flow.to_state(x_T, 1.0)

    class Bosh3Weights(fr.ExplicitRK):
        tableau = weights_only

    solver = Bosh3Weights()
    first = solver.step(flow, _t(1.0), x, _t(-0.4), None, None)
    carried = solver.step(flow, _t(0.6), first.x, _t(-0.3), first.state, None)
    fresh = solver.step(flow, _t(0.6), first.x, _t(-0.3), None, None)
    torch.testing.assert_close(carried.x, fresh.x, rtol=1e-12, atol=1e-12)
    assert (first.nfe, carried.nfe, fresh.nfe) == (4, 3, 4)


def test_an_embedded_tableau_stepped_in_reciprocal_variables_estimates_its_error():
    """``reciprocal_step`` (public) with an embedded pair: the error estimate is the difference
    between the step with the weights ``b`` and the same step with the embedded weights
    ``b̂ = b − b_error`` (the loop steps embedded pairs in ``t`` under error control; on a fixed
    grid it ignores the estimate)."""
    from flowrestore.solvers.reciprocal import reciprocal_step

    bosh3 = fr.solvers.tableau.BOSH3
    embedded = tuple(b - e for b, e in zip(bosh3.b, bosh3.b_error, strict=True))
    hat = fr.ButcherTableau(c=bosh3.c, a=bosh3.a, b=embedded, order=2)
    _, flow, x_T, _ = diffusion_problem("linear", "epsilon", dim=6, batch=3)
    x = flow.to_state(fr.solve(flow, fr.RK4(), x_T, grid=[1.0, 0.5, 0.3]).x, 0.3)
    full = reciprocal_step(bosh3, flow, _t(0.3), x, _t(-0.29))
    low = reciprocal_step(hat, flow, _t(0.3), x, _t(-0.29))
    assert low.error is None
    torch.testing.assert_close(full.error, full.x - low.x, rtol=1e-10, atol=1e-12)
    assert float(full.error.abs().max()) > 1e-4  # a real difference (1.0e-3 here), not two zeros
