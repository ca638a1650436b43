"""SemiLinearMultistep (flowrestore/solvers/semilinear.py).

Order, t = 0 never evaluated, InDI member.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import flowrestore as fr
from flowrestore.errors import ConfigError
from flowrestore.integrate import Fitted, fit_grid
from flowrestore.solvers.semilinear import SemiLinearMultistep, semilinear_weights


def _gaussian(batch=8, dim=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    std = 0.5 + torch.rand(dim, generator=g, dtype=torch.float64)
    orc = fr.oracles.GaussianOracle(std=std, noise_std=0.8)
    _, y = orc.sample(batch, generator=g)
    return orc, y


@pytest.mark.parametrize("order,nodes", [(1, None), (2, None), (3, None), (3, 3)])
def test_empirical_order_on_gaussian_oracle(order, nodes):
    orc, y = _gaussian()
    ref = orc.ode_solution(y, 0.0)
    flow = fr.InDIFlow(orc.posterior_mean)
    solver = SemiLinearMultistep(order=order, nodes=nodes)
    steps = [16, 32, 64, 128, 256]
    errs = []
    for n in steps:
        x = fr.solve(flow, solver, y, steps=n, spacing=fr.Power(2.0)).x
        errs.append(float((x - ref).norm() / ref.norm()))
    assert all(e > 1e-13 for e in errs), errs  # no level at round-off
    slope = -np.polyfit(np.log(steps), np.log(errs), 1)[0]
    assert abs(slope - order) <= 0.2, (order, slope, errs)


class _Spy:
    def __init__(self, f):
        self.f, self.times = f, []

    def __call__(self, x, t):
        self.times.append(t.detach().clone())
        return self.f(x, t)


@pytest.mark.parametrize("order,nodes", [(1, None), (2, None), (3, None), (3, 4)])
def test_never_evaluates_at_zero_and_one_nfe_per_step(order, nodes):
    orc, y = _gaussian(batch=3, dim=5)
    spy = _Spy(orc.posterior_mean)
    sol = fr.solve(fr.InDIFlow(spy), SemiLinearMultistep(order=order, nodes=nodes), y, steps=6)
    times = torch.cat(spy.times)
    assert bool((times > 0).all()), times
    assert len(spy.times) == 6 and int(sol.stats.nfe.max()) == 6
    assert bool(torch.isfinite(sol.x).all())


def test_first_order_member_is_indi_sampler():
    orc, y = _gaussian()
    flow = fr.InDIFlow(orc.posterior_mean)
    for spacing in (fr.Uniform(), fr.Power(2.0)):
        a = fr.solve(flow, SemiLinearMultistep(order=1), y, steps=9, spacing=spacing).x
        b = fr.solve(flow, fr.InDISampler(), y, steps=9, spacing=spacing).x
        torch.testing.assert_close(a, b, rtol=0, atol=1e-13)


def test_weights_reduce_to_indi_step_and_extrapolate_at_zero():
    t, s = torch.tensor(0.5, dtype=torch.float64), torch.tensor(0.3, dtype=torch.float64)
    w = semilinear_weights(t, s, [t], 2)
    torch.testing.assert_close(w, torch.tensor([1 - 0.6], dtype=torch.float64))
    # onto 0 the weights are the Lagrange extrapolation to τ = 0 in τ²: exact for G = a + b τ²
    nodes = [torch.tensor(v, dtype=torch.float64) for v in (0.2, 0.35, 0.5)]
    w0 = semilinear_weights(nodes[0], torch.tensor(0.0, dtype=torch.float64), nodes, 2)
    vals = torch.stack([1.5 + 0.7 * n**2 - 0.2 * n**4 for n in nodes])
    assert math.isclose(float((w0 * vals).sum()), 1.5, rel_tol=0, abs_tol=1e-12)


def test_quadrature_is_exact_for_polynomial_predictor_values():
    # s ∫_s^t P(τ)/τ² dτ for P(τ) = 2 - τ² + 3τ⁴ (a polynomial in τ² of degree 2, 3 nodes)
    t, s = 0.8, 0.3
    nodes = [torch.tensor(v, dtype=torch.float64) for v in (0.8, 0.9, 1.0)]
    w = semilinear_weights(
        torch.tensor(t, dtype=torch.float64), torch.tensor(s, dtype=torch.float64), nodes, 2
    )
    vals = torch.stack([2 - n**2 + 3 * n**4 for n in nodes])
    exact = s * (2 * (1 / s - 1 / t) - (t - s) + 3 * (t**3 - s**3) / 3)
    assert math.isclose(float((w * vals).sum()), exact, rel_tol=1e-12)


def test_config_errors():
    with pytest.raises(ConfigError, match="order"):
        SemiLinearMultistep(order=4)
    with pytest.raises(ConfigError, match="nodes"):
        SemiLinearMultistep(order=2, nodes=2)
    with pytest.raises(ConfigError, match="power"):
        SemiLinearMultistep(power=3)
    with pytest.raises(ConfigError, match="final_nodes must be None or 1 with power=0"):
        SemiLinearMultistep(power=0, final_nodes=3)
    for bad in (0, 7, 2.0, True):  # the landing extrapolates with 1..6 nodes
        with pytest.raises(ConfigError, match=r"final_nodes must be None or an int in 1\.\.6"):
            SemiLinearMultistep(final_nodes=bad)
    assert SemiLinearMultistep(final_nodes=6).final_nodes == 6
    for bad in (1, 6):  # order 3 predicts with 2 to 5 nodes (the docstring's range)
        with pytest.raises(ConfigError, match=r"nodes must be an int in 2\.\.5 for order=3"):
            SemiLinearMultistep(nodes=bad)
    assert SemiLinearMultistep(nodes=5).nodes == 5
    with pytest.raises(fr.IncompatibleSolverError):
        fr.solve(
            fr.ODEFlow(lambda t, x: -x),
            SemiLinearMultistep(),
            torch.ones(2, 3),
            t_span=(0.0, 1.0),
            steps=4,
        )


def test_fitted_spacing_and_fit_grid_improve_on_uniform():
    orc, y = _gaussian(batch=4, dim=16, seed=3)
    flow = fr.InDIFlow(orc.posterior_mean)
    solver = SemiLinearMultistep(order=3)
    ref = orc.ode_solution(y, 0.0)
    sp = fit_grid(flow, solver, y, 4)  # GITS-style (issue 16): no reference, no Nelder-Mead
    assert isinstance(sp, Fitted) and len(sp.times) == 5
    e_fit = float((fr.solve(flow, solver, y, steps=4, spacing=sp).x - ref).norm())
    e_uni = float((fr.solve(flow, solver, y, steps=4).x - ref).norm())
    assert e_fit < e_uni
    g8 = sp(8, 1.0, 0.0)  # reusable at other step counts (interpolated warp)
    assert g8.numel() == 9 and bool((g8.diff() < 0).all()) and g8[0] == 1 and g8[-1] == 0
    with pytest.raises(ConfigError):
        Fitted((1.0, 0.5, 0.6, 0.0))


def test_start_refined_grid_and_the_multistep_default():
    """StartRefined: t_k = 1 − (k/M)^ρ (steps shrink toward t = 1), and from 5 steps on the last
    interval split where (t − 0)² halves; the multistep solver uses it (ρ = 1.7, no pair) for
    steps=N."""
    g = fr.StartRefined(rho=2.0)(6, 1.0, 0.0)
    core = [1 - (k / 5) ** 2 for k in range(5)]
    torch.testing.assert_close(g[:5], torch.tensor(core, dtype=torch.float64))
    assert math.isclose(float(g[5]) ** 2, float(g[4]) ** 2 / 2, rel_tol=1e-12)
    assert float(g[-1]) == 0.0 and bool((g.diff() < 0).all())
    steps = g.diff().abs()
    assert float(steps[0]) < float(steps[1]) < float(steps[2])  # refined at the start
    small = fr.StartRefined(rho=1.5)(4, 1.0, 0.0)  # no closing pair below 5 steps
    torch.testing.assert_close(
        small, torch.tensor([1 - (k / 4) ** 1.5 for k in range(5)], dtype=torch.float64)
    )
    back = fr.StartRefined()(6, 0.0, 2.0)  # any span: refined at its start t0 = 0
    assert float(back[0]) == 0.0 and float(back[-1]) == 2.0 and float(back[1]) < 0.2
    orc, y = _gaussian(batch=2, dim=4)
    sol = fr.solve(
        fr.InDIFlow(orc.posterior_mean), SemiLinearMultistep(), y, steps=6, save_at="steps"
    )
    torch.testing.assert_close(sol.ts, fr.StartRefined(rho=1.7, closing_pair=False)(6, 1.0, 0.0))
    with pytest.raises(ConfigError, match="rho"):
        fr.StartRefined(rho=0.5)


# ---- issue 15 item 7 / issue 16: nodes and weights against Lagrange's formula -----------------


def _lagrange_step(t, s, x, nodes, values, power):
    """``(s/t) x + s ∫_s^t P(τ)/τ² dτ`` for the Lagrange interpolant ``P`` of ``values`` at
    ``nodes`` in ``(τ/t)^power`` (numerical quadrature); onto ``s = 0`` its limit ``P(0)``."""
    from scipy.integrate import quad

    var = (lambda tau: math.log(tau / t)) if power == 0 else (lambda tau: (tau / t) ** power)
    v = [var(n) for n in nodes]

    def basis(j, tau):
        out = 1.0
        for m, vm in enumerate(v):
            if m != j:
                out *= (var(tau) - vm) / (v[j] - vm)
        return out

    if s == 0.0:
        return sum(basis(j, 0.0) * g for j, g in enumerate(values))
    w = [
        s * quad(lambda tau, j=j: basis(j, tau) / tau**2, s, t, epsabs=1e-14)[0]
        for j in range(len(v))
    ]
    return (s / t) * x + sum(wj * g for wj, g in zip(w, values, strict=True))


def _reference_solve(grid, x, value, nodes, power, final_nodes):
    """SemiLinearMultistep's documented rule, step by step: evaluate at each grid time, correct
    the previous step with ``nodes + 1`` nodes (the new one first), predict with the newest
    ``nodes`` nodes, land on 0 with the newest ``final_nodes`` nodes."""
    ts, gs, x_prev = [], [], None
    for t, s in zip(grid[:-1], grid[1:], strict=True):
        g = value(t)
        if ts:
            m = min(nodes + 1, len(ts) + 1)
            x = _lagrange_step(ts[0], t, x_prev, [t, *ts[: m - 1]], [g, *gs[: m - 1]], power)
        ts, gs, x_prev = [t, *ts], [g, *gs], x
        k = min(final_nodes if s == 0.0 else nodes, len(ts))
        x = _lagrange_step(t, s, x, ts[:k], gs[:k], power)
    return x


@pytest.mark.parametrize(
    "nodes,power,final",
    [(2, 2, None), (3, 2, None), (2, 1, None), (3, 1, 2), (2, 0, None), (3, 0, None)],
)
def test_nodes_and_landing_weights_follow_lagrange(nodes, power, final):
    """With a clean estimate that depends on time only, ``D(x, t) = G(t)`` (not a polynomial),
    every predictor, corrector and the landing extrapolation are Lagrange interpolants of ``G``
    at the documented nodes: the solve matches the rule evaluated with quadrature to 1e-10. A wrong
    node time, a wrong number of nodes or a wrong weight changes the answer."""

    def value(t):
        return math.cos(3 * t) + t**3

    grid = [1.0, 0.8, 0.55, 0.4, 0.22, 0.12, 0.07, 0.0]
    x1 = torch.full((2, 1), 0.7, dtype=torch.float64)
    flow = fr.InDIFlow(
        lambda x, t: (
            torch.full_like(x, 1.0)
            * torch.tensor([value(float(v)) for v in t], dtype=x.dtype)[:, None]
        )
    )
    solver = SemiLinearMultistep(nodes=nodes, power=power, final_nodes=final)
    got = fr.solve(flow, solver, x1, grid=torch.tensor(grid, dtype=torch.float64)).x
    fin = 1 if power == 0 else final or nodes + 1  # the log variable lands first order
    want = _reference_solve(grid, 0.7, value, nodes, power, fin)
    assert float((got - want).abs().max()) < 1e-10, (float(got[0, 0]), want)


@pytest.mark.parametrize("final", [1, 2, 5])
def test_final_nodes_change_only_the_step_onto_zero(final):
    """``final_nodes`` sets the extrapolation onto ``t = 0`` and nothing else: a solve that stops
    short of 0 is the same whatever it is, and keeps its order 3 (the corrector's history is kept
    whatever the landing needs)."""
    orc, y = _gaussian()
    flow = fr.InDIFlow(orc.posterior_mean)
    grid = fr.Power(2.0)(24, 1.0, 0.1)
    base = fr.solve(flow, SemiLinearMultistep(), y, grid=grid).x
    x = fr.solve(flow, SemiLinearMultistep(final_nodes=final), y, grid=grid).x
    torch.testing.assert_close(x, base, rtol=0, atol=0)
    ref = orc.ode_solution(y, 0.1)
    errs = []
    for n in (16, 32, 64):
        xs = fr.solve(
            flow, SemiLinearMultistep(final_nodes=final), y, grid=fr.Power(1.0)(n, 1.0, 0.1)
        )
        errs.append(float((xs.x - ref).norm() / ref.norm()))
    slope = -np.polyfit(np.log([16, 32, 64]), np.log(errs), 1)[0]
    assert abs(slope - 3) <= 0.3, (final, slope, errs)


def test_the_log_variable_keeps_order_three_and_lands_with_finite_gradients():
    """``power=0`` (``P`` a polynomial in ``log(τ/t)``, DPM-Solver++'s and UniPC's variable): order
    3 on the Gaussian oracle short of ``t = 0`` (measured slope 2.91), and a solve onto ``t = 0``
    — whose k-node step has no weights there and is replaced on the device by the first-order
    landing — has a finite value and finite gradients."""
    orc, y = _gaussian()
    flow = fr.InDIFlow(orc.posterior_mean)
    ref = orc.ode_solution(y, 0.1)
    levels = [16, 32, 64, 128]
    errs = [
        float(
            (
                fr.solve(flow, SemiLinearMultistep(power=0), y, grid=fr.Power(1.0)(n, 1.0, 0.1)).x
                - ref
            )
            .norm()
            .div(ref.norm())
        )
        for n in levels
    ]
    slope = -np.polyfit(np.log(levels), np.log(errs), 1)[0]
    assert abs(slope - 3) <= 0.3, (slope, errs)
    y0 = y.clone().requires_grad_(True)
    out = fr.solve(flow, SemiLinearMultistep(power=0), y0, steps=6, differentiable=True).x
    (grad,) = torch.autograd.grad(out.square().sum(), y0)
    assert bool(torch.isfinite(out).all()) and bool(torch.isfinite(grad).all())
    assert float(grad.abs().max()) > 0


@pytest.mark.parametrize("power", [0, 1, 2])
@pytest.mark.parametrize("k", [2, 3])
def test_weights_with_a_shared_step_and_per_sample_nodes_are_each_samples_own(power, k):
    """``t`` and ``s`` shared (0-d) while the nodes differ per sample (``[B]``, B = 5): row ``b``
    of the weights is what sample ``b``'s nodes alone give."""
    t, s = torch.tensor(0.6, dtype=torch.float64), torch.tensor(0.35, dtype=torch.float64)
    g = torch.Generator().manual_seed(k + 10 * power)
    nodes = [t.expand(5).clone()] + [
        0.61 + 0.3 * torch.rand(5, generator=g, dtype=torch.float64) + 0.2 * j for j in range(k - 1)
    ]
    got = semilinear_weights(t, s, nodes, power)
    assert got.shape == (5, k)
    for b in range(5):
        want = semilinear_weights(t, s, [n[b] for n in nodes], power)
        torch.testing.assert_close(got[b], want, rtol=1e-10, atol=1e-12)
