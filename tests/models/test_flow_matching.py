"""FlowMatchingFlow on the exact rectified-flow model of a Gaussian prior (docs/math.md §9).

Ground truth is closed form only: for ``x_0 ~ N(c, diag s_c²)`` the velocity and the flow map
``x_1 ↦ c + s_c x_1`` (:class:`flowrestore.oracles.GaussianFlowMatchingOracle`, checked here against
its defining expectations by Monte Carlo and against the ODE it must solve). Orders are fitted in
float64 with plain ``steps=N`` (the flow's default grid, ``Shifted(shift, rho=2)``), least-squares
slope over 5 levels: Euler 1, Heun 2, RK4 4 within ±0.2, Midpoint ≥ 2 − 0.2 (superconvergent, 3,
as on the other Gaussian flows), SemiLinearMultistep its declared order 3 − 0.2.
"""

from __future__ import annotations

import math

import pytest
import torch

import flowrestore as fr
from flowrestore.errors import ConfigError, PredictorOutputError
from flowrestore.oracles import GaussianFlowMatchingOracle

from .helpers import fit_order, prior

F64 = torch.float64
TOL = 0.2
LEVELS = [16, 32, 64, 128, 256]
SOLVERS = {"Euler": (fr.Euler, 1), "Midpoint": (fr.Midpoint, 2), "Heun": (fr.Heun, 2),
           "RK4": (fr.RK4, 4), "SemiLinearMultistep": (fr.SemiLinearMultistep, 3)}  # fmt: skip


def problem(dim=24, seed=0, shift=1.0, std=(0.1, 0.8)):
    c, sc = prior(dim, seed, std)
    oracle = GaussianFlowMatchingOracle(mean=c, std=sc)
    return oracle, fr.FlowMatchingFlow(oracle, shift=shift)


def test_oracle_is_the_conditional_expectation():
    """Monte Carlo: E[ε − x_0 | x_t] by regression on samples of the interpolation matches the
    closed-form velocity (one coordinate, a narrow bin of x_t)."""
    oracle = GaussianFlowMatchingOracle(mean=0.3, std=0.6, event_shape=(1,))
    g = torch.Generator().manual_seed(0)
    n, t = 2_000_000, 0.4
    x0, eps = oracle.sample(n, generator=g), torch.randn(n, 1, generator=g, dtype=F64)
    xt = (1 - t) * x0 + t * eps
    for centre in (-0.3, 0.2, 0.7):
        sel = (xt - centre).abs() < 0.01
        mc = float((eps - x0)[sel].mean())
        se = float((eps - x0)[sel].std()) / int(sel.sum()) ** 0.5
        exact = float(oracle(torch.tensor([[centre]], dtype=F64), 1000 * t))
        assert abs(mc - exact) < 4 * se + 2e-3, (centre, mc, exact)


def test_exact_map_solves_the_ode_and_transports_noise_to_the_prior():
    oracle, flow = problem()
    x1 = oracle.sample_latent(4, torch.Generator().manual_seed(1))
    tight = fr.solve(flow, fr.Dopri5(rtol=1e-10, atol=1e-10), x1, t_span=(1.0, 0.3)).x
    torch.testing.assert_close(tight, oracle.exact_map(x1, 1.0, 0.3), rtol=1e-8, atol=1e-9)
    torch.testing.assert_close(oracle.exact_map(x1), oracle.mean + oracle.std * x1)
    # from an interior time too, on a state off the marginal (the map is affine for every x)
    xa = 0.8 * oracle.sample_latent(4, torch.Generator().manual_seed(2)) + 0.3
    tight = fr.solve(flow, fr.Dopri5(rtol=1e-10, atol=1e-10), xa, t_span=(0.7, 0.2)).x
    torch.testing.assert_close(tight, oracle.exact_map(xa, 0.7, 0.2), rtol=1e-8, atol=1e-9)


def test_euler_is_the_scheduler_update_and_lands_on_the_clean_estimate():
    """Euler's step is ``x + (σ_next − σ) v`` with ``v`` the model's raw output; its last step from
    ``σ`` onto 0 returns ``D = x − σ v``; ``denoise`` is that estimate at any time."""
    oracle, flow = problem(dim=6)
    x = oracle.sample_latent(3, torch.Generator().manual_seed(2))
    grid = torch.tensor([1.0, 0.6, 0.25, 0.0], dtype=F64)
    want = x.clone()
    for t, s in zip(grid[:-1], grid[1:], strict=True):
        want = want + (s - t) * oracle(want, 1000 * t)
    torch.testing.assert_close(
        fr.solve(flow, fr.Euler(), x, grid=grid).x, want, rtol=1e-14, atol=1e-14
    )
    t = torch.tensor(0.37, dtype=F64)
    torch.testing.assert_close(flow.denoise(t, x), oracle.clean(x, 370.0), rtol=1e-12, atol=1e-12)
    out = fr.solve(flow, fr.Heun(), x, steps=4, t_end=0.25, output="posterior_mean").x
    mid = fr.solve(flow, fr.Heun(), x, steps=4, t_end=0.25).x
    torch.testing.assert_close(out, oracle.clean(mid, 250.0))


@pytest.mark.parametrize("shift", [1.0, 3.0])
@pytest.mark.parametrize("name", list(SOLVERS))
def test_declared_order_at_zero_with_plain_steps(name, shift):
    oracle, flow = problem(shift=shift)
    make, declared = SOLVERS[name]
    x1 = oracle.sample_latent(3, torch.Generator().manual_seed(1))
    exact = oracle.exact_map(x1)
    # RK4's default grid has its end refined (ρ = 5/4 on top of the declared ρ = 2; the loop's
    # landing rule): its error ratios approach 16 from below (6.8, 12.5, 14.5, 15.1 from 16 to 256
    # steps at shift 1; at shift 3, whose default end is refined further by end_shift = √3, 6.7,
    # 11.7, 14.0, 15.3, 15.7 from 32 to 1024), so its order is fitted further out, on 7 levels
    # from 128 to 1024 steps (factors of √2; the last error ≈ 2e-12, above round-off)
    levels = [round(128 * 2 ** (k / 2)) for k in range(7)] if name == "RK4" else LEVELS
    errs = [float((fr.solve(flow, make(), x1, steps=n).x - exact).abs().max()) for n in levels]
    slope = fit_order(levels, errs, 1e3 * torch.finfo(F64).eps * float(exact.abs().max()))
    if name in ("Midpoint", "SemiLinearMultistep"):  # measured: 3.0 and 3.2-3.4
        assert slope >= declared - TOL, f"{name}: order {slope:.3f}, errors {errs}"
    else:
        assert abs(slope - declared) <= TOL, f"{name}: order {slope:.3f}, errors {errs}"


def test_shifted_spacing():
    """``σ_k = s u_k/(1 + (s − 1) u_k)`` with ``u_k = (1 − k/N)^ρ``, ends kept exactly."""
    grid = fr.Shifted(shift=3.0, rho=2.0)(4, 1.0, 0.0)
    u = torch.tensor([1.0, 0.5625, 0.25, 0.0625, 0.0], dtype=F64)
    torch.testing.assert_close(grid, 3 * u / (1 + 2 * u), rtol=1e-15, atol=0)
    torch.testing.assert_close(fr.Shifted()(5, 1.0, 0.0), torch.linspace(1, 0, 6, dtype=F64))
    part = fr.Shifted(shift=2.0)(3, 0.8, 0.2)  # a sub-span keeps its end points
    assert float(part[0]) == 0.8 and float(part[-1]) == 0.2
    flow = fr.FlowMatchingFlow(lambda x, k: x, shift=2.5)
    assert flow.default_spacing() == fr.Shifted(shift=2.5, rho=2.0, end_shift=math.sqrt(2.5))
    bads = ({"shift": 0.0}, {"shift": -1.0}, {"rho": 0.5}, {"shift": True}, {"end_shift": 0.0})
    for bad in (*bads, {"end_shift": float("inf")}, {"end_shift": "2"}):
        with pytest.raises(ConfigError):
            fr.Shifted(**bad)


@pytest.mark.parametrize("shift", [0.5, 1.0, 3.0, 7.0])
def test_default_grid_ends_where_the_shift_root_s_maps_n_to_the_minus_two(shift):
    """The default's last positive point is where the shift ``e = √s`` maps ``N^{−2}``, ``≈ √s
    N^{−2}`` (the geometric middle of the shifted grid's ``≈ s N^{−2}`` and the unshifted one's),
    every point on the shifted law ``σ = s u/(1 + (s − 1) u)`` with ``u_k = (1 − k/N)^{ρ_N}``;
    ``end_shift = shift`` is the plain grid."""
    flow = fr.FlowMatchingFlow(lambda x, k: x, shift=shift)
    e = math.sqrt(shift)
    for n in range(2, 13):
        grid = flow.default_spacing()(n, 1.0, 0.0)
        sig = grid[-2]
        w = n**-2.0
        torch.testing.assert_close(sig, torch.tensor(e * w / (1 + (e - 1) * w), dtype=F64))
        u_last = sig / (shift - (shift - 1) * sig)
        rho = math.log(1 / float(u_last)) / math.log(n)
        u = torch.linspace(1, 0, n + 1, dtype=F64) ** rho
        torch.testing.assert_close(grid, shift * u / (1 + (shift - 1) * u), rtol=1e-12, atol=0)
        plain = fr.Shifted(shift=shift, rho=2.0)(n, 1.0, 0.0)
        torch.testing.assert_close(fr.Shifted(shift, 2.0, end_shift=shift)(n, 1.0, 0.0), plain)
    start = fr.Shifted(3.0, 2.0, end_shift=math.sqrt(3.0))(5, 0.6, 0.0)  # a start part-way
    e, w = math.sqrt(3.0), 0.6 / (3 - 2 * 0.6) / 25  # w = u_0 N^{−2}
    want = e * w / (1 + (e - 1) * w)
    assert float(start[0]) == 0.6 and abs(float(start[-2]) - want) < 1e-12
    part = fr.Shifted(3.0, 2.0, end_shift=1.0)(4, 1.0, 0.2)  # not ending at 0: the plain law
    torch.testing.assert_close(part, fr.Shifted(3.0, 2.0)(4, 1.0, 0.2))


def test_configuration_and_outputs_are_checked():
    with pytest.raises(TypeError, match="callable"):
        fr.FlowMatchingFlow(3)
    with pytest.raises(ConfigError, match="num_train_timesteps"):
        fr.FlowMatchingFlow(lambda x, k: x, num_train_timesteps=0)
    # T = 1: the model takes t itself (timesteps in [0, 1]), as some flow-matching codebases do
    assert fr.FlowMatchingFlow(lambda x, k: x, num_train_timesteps=1).num_train_timesteps == 1
    with pytest.raises(ConfigError, match="cond"):
        fr.FlowMatchingFlow(lambda x, k: x, cond={"labels": 3})
    bad = fr.FlowMatchingFlow(lambda x, k: x[:, :1])
    with pytest.raises(PredictorOutputError, match="shape"):
        fr.solve(bad, fr.Euler(), torch.zeros(2, 3), steps=2)
    seen = {}

    def model(x, timestep, class_labels):
        seen["labels"], seen["timestep"] = class_labels, timestep
        return torch.zeros_like(x)

    labels = torch.tensor([3, 5])
    flow = fr.FlowMatchingFlow(model, cond={"class_labels": labels}, num_train_timesteps=500)
    fr.solve(flow, fr.Euler(), torch.zeros(2, 3), grid=[1.0, 0.5, 0.0])
    assert seen["labels"] is labels and torch.equal(seen["timestep"], torch.tensor([250.0, 250.0]))
    assert flow.network is model and "FlowMatchingFlow" in repr(flow)
