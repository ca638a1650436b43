"""Rules a solver or controller must compute, checked against an independent computation.

Each test recomputes, from the method's definition, what one step or one controller decision must
be, and compares with what the library did (never numbers read off the code):

* InDI's sampler keeps the noise level of ``x_t = (1 − t) x + t y + t ε_t n``: with a predictor
  that does not depend on ``x``, ``Var x̂_t = t² ε_t²`` at every grid time (InDI, Alg. 1);
* Dirac's step with guidance is eq. 7 with the guidance score of eqs. 16–17;
* SRA1's step is Rößler's scheme (its stage uses ``g(t + h)``);
* the semi-linear weights integrate ``s ∫ τ^m / τ² dτ`` exactly for the interpolated monomials;
* the PI controller's starting step, accepted-step and rejected-step factors follow Hairer's
  formulas with ``k = min(p, q) + 1`` from the pair's orders.
"""

from __future__ import annotations

import math

import pytest
import torch

import flowrestore as fr
from flowrestore.integrate import BrownianIncrements
from flowrestore.solvers.semilinear import semilinear_weights

F64 = torch.float64


# ------------------------------------------------------------------ InDI's ε-noise sampler
@pytest.mark.parametrize("brownian", [False, True])
def test_indi_sampler_marginal_variance_is_t2_eps_t2(brownian):
    eps, n = 0.4, 40_000
    c = torch.tensor([0.5, -1.0], dtype=F64)
    predictor = lambda x, t: c.expand_as(x)  # noqa: E731  (independent of x: a linear recursion)
    y = torch.zeros(n, 2, dtype=F64) + torch.tensor([1.0, 2.0], dtype=F64)
    sol = fr.solve(
        fr.InDIFlow(predictor),
        fr.InDISampler(eps=eps, brownian=brownian),
        y,
        steps=6,
        spacing=fr.Power(1.5),
        save_at="steps",
        generator=torch.Generator().manual_seed(0),
    )
    for k, t in enumerate(sol.ts.tolist()):
        x = sol.trajectory[k]
        eps_t = eps / math.sqrt(t) if (brownian and t > 0) else eps
        var = (t * eps_t) ** 2 if t > 0 else 0.0
        mean = (1 - t) * c + t * y[0]  # E x̂_t = (1 − t) F + t y for a constant F
        torch.testing.assert_close(x.mean(0), mean, rtol=0, atol=5 * math.sqrt(var / n) + 1e-12)
        if t == 0:
            assert float(x.var(0).max()) == 0.0
            continue
        se = var * math.sqrt(2 / (n - 1))
        assert (x.var(0) - var).abs().max() < 5 * se, (t, x.var(0), var)


# ------------------------------------------------------------------ Dirac's step with guidance
def test_dirac_step_with_guidance_is_eq7():
    A = fr.degradations.GaussianBlurFamily(kernel_size=5, width=fr.schedules.Linear(0.3, 1.5))
    sigma = fr.schedules.Geometric(0.01, 0.05)
    g = torch.Generator().manual_seed(0)
    y = torch.rand(2, 1, 6, 6, generator=g, dtype=F64)
    obs = torch.rand(2, 1, 6, 6, generator=g, dtype=F64)

    def phi(v, t):
        return 0.8 * v + 0.1 * torch.tanh(3 * v) * (1 + t.reshape(-1, 1, 1, 1))

    eta = 0.3
    sde = fr.DiracSDE(phi, A, sigma, observation=obs, guidance=eta)
    grid = torch.tensor([0.6, 0.45], dtype=F64)
    dw = 0.2 * torch.randn(1, *y.shape, generator=g, dtype=F64)
    out = fr.solve(sde, fr.DiracStep(), y, grid=grid, noise=BrownianIncrements(grid, dw)).x
    t, s = 0.6, 0.45
    var_t, var_s = (
        float(sigma(torch.tensor(t, dtype=F64))) ** 2,
        float(sigma(torch.tensor(s, dtype=F64))) ** 2,
    )
    yl = y.clone().requires_grad_(True)
    p = phi(yl, torch.full((2,), t, dtype=F64))
    (grad,) = torch.autograd.grad(0.5 * (obs - A(p, 1.0)).pow(2).sum(), yl)
    p = p.detach()
    score = (A(p, t) - y) / var_t - eta / float(sigma(torch.tensor(1.0, dtype=F64))) ** 2 * grad
    expect = y + (A(p, s) - A(p, t)) - (var_s - var_t) * score
    expect = expect + math.sqrt(var_t - var_s) * dw[0] / math.sqrt(t - s)
    torch.testing.assert_close(out, expect, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------ SRA1 (Rößler 2010)
def test_sra1_step_is_roesslers_scheme():
    f = lambda t, x: -x + 2 * torch.sin(2 * x)  # noqa: E731
    g = lambda t, x: (1 + t * t)[:, None]  # noqa: E731  (time-dependent: g(t) ≠ g(t + h))
    flow = fr.SDEFlow(f, g, noise_type="additive")
    x0 = torch.tensor([[0.3], [-1.2]], dtype=F64)
    grid = torch.tensor([0.2, 0.7], dtype=F64)
    path = BrownianIncrements.sample(grid, x0.shape, generator=torch.Generator().manual_seed(2))
    out = fr.solve(flow, fr.SRA1(), x0, grid=grid, noise=path).x
    h = 0.5
    dw, dz = path.increment_and_area(grid[0], grid[1], x0)
    t = torch.full((2,), 0.2, dtype=F64)
    g0, g1 = (1 + 0.2**2), (1 + 0.7**2)
    f1 = f(t, x0)
    stage = x0 + 0.75 * h * f1 + 1.5 * g1 * dz / h
    f2 = f(t + 0.75 * h, stage)
    expect = x0 + h * (f1 / 3 + 2 * f2 / 3) + g1 * (dw - dz / h) + g0 * dz / h
    torch.testing.assert_close(out, expect, rtol=1e-13, atol=1e-13)


# ------------------------------------------------------------------ semi-linear weights
@pytest.mark.parametrize("power", [1, 2])
@pytest.mark.parametrize("s", [0.45, 0.0])
def test_semilinear_weights_integrate_the_monomials_exactly(power, s):
    """``Σ_j w_j (τ_j)^{pm} = s ∫_s^t τ^{pm} / τ² dτ`` for every monomial the nodes interpolate."""
    t = 0.7
    nodes = [torch.tensor(v, dtype=F64) for v in (0.7, 0.85, 1.0)]
    w = semilinear_weights(torch.tensor(t, dtype=F64), torch.tensor(s, dtype=F64), nodes, power)
    for m in range(3):
        q = power * m
        if s == 0:
            exact = 1.0 if q == 0 else 0.0  # s ∫ ... → P(0): only the constant survives
        elif q == 0:
            exact = s * (1 / s - 1 / t)
        elif q == 1:
            exact = s * math.log(t / s)
        else:
            exact = s * (t ** (q - 1) - s ** (q - 1)) / (q - 1)
        got = float(sum(wj * float(nj) ** q for wj, nj in zip(w, nodes, strict=True)))
        assert math.isclose(got, exact, rel_tol=1e-11, abs_tol=1e-13), (power, m, got, exact)


def test_semilinear_weights_per_sample_are_each_samples_own():
    """``[B]`` times (per-sample steps) give row ``b`` the weights of the 0-d call at row ``b``."""
    t = torch.tensor([0.7, 0.5, 0.9], dtype=F64)
    s = torch.tensor([0.45, 0.0, 0.2], dtype=F64)
    nodes = [t, t + torch.tensor([0.1, 0.2, 0.05], dtype=F64), t + 0.3]
    for power in (1, 2):
        w = semilinear_weights(t, s, nodes, power)
        assert w.shape == (3, 3)
        for b in range(3):
            one = semilinear_weights(t[b], s[b], [n[b] for n in nodes], power)
            torch.testing.assert_close(w[b], one, rtol=1e-12, atol=1e-14)


# ------------------------------------------------------------------ PI step-size control
class _Recorder(fr.Bosh3):
    """Bosh3 recording every attempted step ``(t, h, x, x_new, err)``."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.attempts = []

    def step(self, flow, t, x, h, state, ctx):
        res = super().step(flow, t, x, h, state, ctx)
        self.attempts.append((float(t), float(h), x.clone(), res.x.clone(), res.error.clone()))
        return res


def _norm(x, x_new, err, rtol, atol):
    scale = atol + rtol * torch.maximum(x.abs(), x_new.abs())
    return float((err / scale).pow(2).mean().sqrt())


def _linear_problem():
    A = torch.tensor([[-0.5, 2.0], [-2.0, -0.5]], dtype=F64)
    return fr.ODEFlow(lambda t, x: x @ A.T), torch.tensor([[1.0, -2.0]], dtype=F64)


def test_pi_controller_accepts_rejects_and_resizes_by_hairers_formulas():
    rtol, atol = 1e-6, 1e-9
    flow, x0 = _linear_problem()
    solver = _Recorder(rtol=rtol, atol=atol, dt0=0.5)  # 0.5 is far too big: rejections first
    fr.solve(flow, solver, x0, t_span=(0.0, 3.0))
    # Bosh3 is order 3 with an order-2 error estimate: the estimate is O(h³), so k = 3
    k, safety, ifac, dfac = 3.0, 0.9, 10.0, 0.2
    e_prev, rejected, accepted = 1.0, 0, 0
    steps = solver.attempts
    for (t, h, x, xn, err), (t_next, h_next, *_) in zip(steps, steps[1:], strict=False):
        e = _norm(x, xn, err, rtol, atol)
        if e <= 1:
            assert t_next == pytest.approx(t + h, abs=1e-15)
            if abs(t + h_next - 3.0) < 1e-12 or abs(h_next) >= 3.0 - (t + h) - 1e-12:
                break  # the next step is clipped onto the end: its size says nothing
            fac = min(max(safety * e ** (-0.7 / k) * e_prev ** (0.4 / k), dfac), ifac)
            assert h_next == pytest.approx(h * fac, rel=1e-10), (t, h, e)
            e_prev, accepted = max(e, 1e-4), accepted + 1
        else:
            assert t_next == t, "a rejected step is retried from the same time"
            fac = min(max(safety * e ** (-1.0 / k), dfac), 1.0)
            assert h_next == pytest.approx(h * fac, rel=1e-10), (t, h, e)
            rejected += 1
    assert rejected >= 1 and accepted >= 5


def test_pi_controller_starting_step_is_hairers():
    rtol, atol = 1e-5, 1e-8
    flow, x0 = _linear_problem()
    solver = _Recorder(rtol=rtol, atol=atol)
    fr.solve(flow, solver, x0, t_span=(0.0, 3.0))
    t0 = torch.tensor(0.0, dtype=F64)
    f0 = flow.drift(t0, x0)
    scale = atol + rtol * x0.abs()
    rms = lambda v: float(v.pow(2).mean().sqrt())  # noqa: E731
    d0, d1 = rms(x0 / scale), rms(f0 / scale)
    h0 = 0.01 * d0 / d1
    d2 = rms((flow.drift(t0 + h0, x0 + h0 * f0) - f0) / scale) / h0
    h1 = (0.01 / max(d1, d2)) ** (1.0 / 3.0)  # 1/k with k = min(3, 2) + 1
    assert solver.attempts[0][1] == pytest.approx(min(100 * h0, h1), rel=1e-12)
