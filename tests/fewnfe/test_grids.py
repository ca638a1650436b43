"""Spacings a flow declares and the loop's rule for ``steps=N`` (issue 16; flowrestore/grids.py,
flowrestore/integrate/endpoint.py::default_spacing).

Expected grids are computed here from their definitions: DDIM's timesteps read through the
schedule's noise levels (log-linear between trained timesteps), closed-form profiles.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import flowrestore as fr
from flowrestore.errors import ConfigError
from flowrestore.integrate.endpoint import default_spacing

from .helpers import F64, cosine_abar, linear_abar

T = 1000


def _levels(abar):
    sig = ((1 - abar) / abar).sqrt()
    return sig / sig[-1]


def _sigma_of_timestep(abar, k: float) -> float:
    """σ/σ_max at a continuous timestep: log σ linear between integers (independent of the
    package)."""
    logs = np.log(_levels(abar).numpy())
    if k < 0:
        return float(np.exp(logs[0])) * (k + 1)  # linear from 0 at timestep −1
    j = min(int(math.floor(k)), len(logs) - 2)
    return float(np.exp(logs[j] + (k - j) * (logs[j + 1] - logs[j])))


@pytest.mark.parametrize("abar", [linear_abar(), cosine_abar()], ids=["linear", "cosine"])
def test_noise_levels_are_ddim_timesteps(abar):
    """ρ = 1: DDIM's "trailing" timesteps ``T − kT/N − 1``; ρ = 2: the quadratic ones
    ``T (1 − k/N)² − 1``; then the clean end 0."""
    levels = tuple(_levels(abar).tolist())
    for rho in (1.0, 2.0):
        sp = fr.NoiseLevels(levels=levels, rho=rho)
        for n in (3, 4, 5, 8, 10):
            want = [_sigma_of_timestep(abar, T * (1 - k / n) ** rho - 1) for k in range(n)]
            got = sp(n, 1.0, 0.0)
            torch.testing.assert_close(got, torch.tensor([*want, 0.0], dtype=F64))
            if rho == 1.0 and T % n == 0:  # integer timesteps: exactly table entries
                idx = [T - k * T // n - 1 for k in range(n)]
                torch.testing.assert_close(got[:-1], _levels(abar)[idx], rtol=1e-14, atol=0)


def test_noise_levels_span_inverse_and_last_point():
    sp = fr.NoiseLevels(levels=tuple(_levels(linear_abar()).tolist()), rho=2.0)
    u = np.linspace(0, 1, 37)
    np.testing.assert_allclose(sp.index_of(sp.time_of(u)), u, atol=1e-12)
    # the two end segments: linear below the first level, the last log-interpolated interval
    n = len(sp.levels)
    ends = np.concatenate([np.linspace(0, 2 / n, 9), np.linspace(1 - 2 / n, 1, 9)])
    np.testing.assert_allclose(sp.index_of(sp.time_of(ends)), ends, atol=1e-12)
    g = sp(6, 0.5, 0.01)  # a sub-span: exact ends, strictly decreasing
    assert float(g[0]) == 0.5 and float(g[-1]) == 0.01 and bool((g.diff() < 0).all())
    w = (sp.index_of([0.5, 0.01]) ** 0.5).tolist()  # uniform in u^{1/ρ}
    want = sp.time_of(np.linspace(w[0], w[1], 7) ** 2)
    np.testing.assert_allclose(g[1:-1].numpy(), want[1:-1], rtol=1e-12)
    # once N² > T the last positive point is on the linear first segment: τ_1 T N^{-2}
    for n in (40, 80):
        assert float(sp(n, 1.0, 0.0)[-2]) == pytest.approx(sp.levels[0] * T / n**2, rel=1e-12)
    assert sp.end_exponent == 2.0
    with pytest.raises(ConfigError, match="increase"):
        fr.NoiseLevels(levels=(0.2, 0.1, 1.0))
    with pytest.raises(ConfigError, match="rho"):
        fr.NoiseLevels(levels=(0.1, 1.0), rho=0.5)


def test_end_refined_reads_the_base_shape_at_u_to_the_rho():
    """On ``Uniform`` it is ``Power(ρ)``; on ``StartRefined(ρ₀)`` (``t(u) = 1 − (1 − u)^ρ₀``)
    it is ``1 − (1 − u^ρ)^ρ₀``; its last interval shrinks like ``N^{−ρ e}``."""
    for rho in (1.5, 2.0, 3.0):
        torch.testing.assert_close(
            fr.EndRefined(fr.Uniform(), rho)(7, 1.0, 0.0), fr.Power(rho)(7, 1.0, 0.0)
        )
    u = np.linspace(1, 0, 9) ** 2
    want = 1 - (1 - u) ** 2
    got = fr.EndRefined(fr.StartRefined(2.0, closing_pair=False), 2.0)(8, 1.0, 0.0)
    np.testing.assert_allclose(got.numpy(), want, atol=2e-6)
    sp = fr.EndRefined(fr.StartRefined(2.0, closing_pair=False), 2.0)
    lasts = [float(sp(n, 1.0, 0.0)[-2]) for n in (16, 32, 64, 128)]
    slope = np.polyfit(np.log([16, 32, 64, 128]), np.log(lasts), 1)[0]
    assert slope == pytest.approx(-sp.end_exponent, abs=0.05)
    assert fr.Uniform().end_exponent == 1.0 and fr.Power(3.0).end_exponent == 3.0


def test_end_refined_reads_a_steps_dependent_law_at_its_own_steps():
    """On a law that depends on N (``Shifted`` with ``end_shift``: ``u = w^{ρ_N}``) it reads the
    law of the N it lays, also inside the last sampled interval (many steps, a large ρ): there
    ``σ ≈ s w^{ρ_N}``, the end law of that shape, not of the base's own ``ρ``."""
    base = fr.Shifted(3.0, 2.0, end_shift=math.sqrt(3.0))
    for n, rho in ((8, 1.5), (64, 3.0)):  # 64^-3 < 1/1024: inside the last sampled interval
        r_n = base.rho_at(n, 1.0, 0.0)
        assert r_n > 2.05
        w = np.linspace(1, 0, n + 1) ** rho
        u = w**r_n
        want = 3 * u / (1 + 2 * u)
        got = fr.EndRefined(base, rho)(n, 1.0, 0.0).numpy()
        far = w >= 0.05  # away from the end, where the fine samples' linear interpolation holds
        np.testing.assert_allclose(got[far], want[far], rtol=1e-3, atol=0)
        assert got[-2] == pytest.approx(want[-2], rel=1e-3)  # n = 64: the end law itself


@pytest.mark.parametrize("n", [3, 4, 7, 12])
def test_end_refined_of_a_steps_dependent_refinement_reads_it_at_the_solves_steps(n):
    """``EndRefined(EulerMatchedEnd(Uniform(), stages=2), ρ = 2)`` on ``[1, 0]`` is
    ``t_k = (1 − k/N)^{2 ρ_N}`` with ``ρ_N = ln(2N)/ln N`` (not ``ρ`` at the inner resolution's
    ``N``), and an end refinement of an end refinement multiplies the exponents."""
    k = torch.arange(n + 1, dtype=F64)
    rho_n = math.log(2 * n) / math.log(n)
    nested = fr.EndRefined(fr.EulerMatchedEnd(fr.Uniform(), stages=2), rho=2.0)(n, 1.0, 0.0)
    torch.testing.assert_close(nested, (1 - k / n) ** (2 * rho_n), rtol=0, atol=1e-6)
    twice = fr.EndRefined(fr.EndRefined(fr.Uniform(), rho=1.5), rho=2.0)(n, 1.0, 0.0)
    torch.testing.assert_close(twice, (1 - k / n) ** 3.0, rtol=0, atol=1e-6)
    inner = fr.EndRefined(fr.EulerMatchedEnd(fr.Uniform(), stages=2), rho=1.5)
    three = fr.EndRefined(inner, rho=2.0)(n, 1.0, 0.0)
    torch.testing.assert_close(three, (1 - k / n) ** (3 * rho_n), rtol=0, atol=1e-5)


def test_time_variable_validation():
    assert fr.TimeVariable() == fr.TimeVariable(power=2, reciprocal=False)
    with pytest.raises(ConfigError, match="power"):
        fr.TimeVariable(power=3)
    with pytest.raises(ConfigError, match="reciprocal"):
        fr.TimeVariable(reciprocal=1)


def test_flows_declare_their_grid_and_time_variable():
    indi = fr.InDIFlow(lambda x, t: x)
    assert indi.default_spacing() is None  # the multistep solvers' StartRefined, else uniform
    assert fr.SemiLinearMultistep().default_spacing(indi) == fr.StartRefined(
        rho=1.7, closing_pair=False
    )
    assert indi.time_variable() == fr.TimeVariable(power=2, reciprocal=False)
    abar = cosine_abar()
    diff = fr.DiffusionFlow(lambda x, k: x, alphas_cumprod=abar)
    sp = diff.default_spacing()
    assert isinstance(sp, fr.NoiseLevels) and sp.rho == 2.0
    # DDPM's linear schedule's noise levels, in this model's time σ/σ_max (not its own levels)
    ref = linear_abar()
    sigma_max = math.sqrt((1 - float(abar[-1])) / float(abar[-1]))
    want = ((1 - ref) / ref).sqrt().numpy() / sigma_max
    np.testing.assert_allclose(sp.levels, want, rtol=1e-12)
    assert diff.time_variable() == fr.TimeVariable(power=1, reciprocal=True, log_snr=True)
    # the reverse SDE: the same table, continued geometrically up to σ_max (no SDE step across
    # orders of magnitude of σ: tests/diffusion/test_sde_high_sigma.py)
    sde = diff.reverse_sde().default_spacing()
    assert isinstance(sde, fr.NoiseLevels) and sde.rho == 2.0 and sde.levels[-1] == 1.0
    assert sde.levels[: len(sp.levels)] == sp.levels
    top = np.log(np.asarray(sde.levels[len(sp.levels) - 2 :]))
    np.testing.assert_allclose(np.diff(top)[:-1], np.diff(top)[0], rtol=1e-9)
    ode = fr.ODEFlow(lambda t, x: -x)
    assert ode.default_spacing() is None and ode.time_variable() == fr.TimeVariable()


def test_the_loop_applies_the_flow_grid_refining_only_for_denoising_landings():
    """A method of order ``p`` landing by the denoising step gets a declared grid with its end
    refined by ``ρ = (p + 1)/(2e)`` when its end exponent ``e`` is below ``(p + 1)/2`` (landing
    error ``O(N^{−2eρ})`` below ``O(N^{−p})``, with a margin); with no declared grid,
    ``Power(p/2)`` for ``p > 2``."""
    indi = fr.InDIFlow(lambda x, t: x)
    diff = fr.DiffusionFlow(lambda x, k: x, alphas_cumprod=linear_abar())
    ode = fr.ODEFlow(lambda t, x: -x)
    sr, nl = fr.StartRefined(rho=2.0, closing_pair=True), diff.default_spacing()
    for solver in (fr.Euler(), fr.Midpoint(), fr.IPNDM(), fr.Heun()):
        assert default_spacing(indi, solver, 0.0) == fr.Uniform()
    for solver in (fr.Euler(), fr.Midpoint(), fr.RK4(), fr.IPNDM()):
        assert default_spacing(ode, solver, 1.0) == fr.Uniform()
    assert default_spacing(indi, fr.SemiLinearMultistep(), 0.0) == fr.StartRefined(1.7, False)
    assert default_spacing(indi, fr.RK4(), 0.0) == fr.Power(2.0)
    assert default_spacing(indi, fr.Dopri5(), 0.0) == fr.Power(2.5)
    assert default_spacing(indi, fr.RK4(), 0.05) == fr.Uniform()  # no singular end
    # a diffusion model's grid (e = 2): up to order 3 as it is, RK4's and Dopri5's end refined
    for solver in (fr.Heun(), fr.Euler(), fr.Bosh3(), fr.SemiLinearMultistep()):
        assert default_spacing(diff, solver, 0.0) == nl
    assert default_spacing(diff, fr.Midpoint(), 0.0) == fr.EulerMatchedEnd(nl, 2, landing=True)
    assert default_spacing(diff, fr.RK4(), 0.0) == fr.EndRefined(nl, 1.25)
    assert default_spacing(diff, fr.Dopri5(), 0.0) == fr.EndRefined(nl, 1.5)
    # a declared grid with e = 1 (StartRefined) under RK4: ρ = 5/2, under Heun 3/2
    start = fr.ODEFlow(lambda t, x: -x)
    start.singular_at_zero = True
    start.default_spacing = lambda: sr
    assert default_spacing(start, fr.RK4(), 0.0) == fr.EndRefined(sr, 2.5)
    assert default_spacing(start, fr.Heun(), 0.0) == fr.EndRefined(sr, 1.5)
    # EDM's floor (e = 0) is laid as declared
    edm = fr.Karras(rho=7.0, t_min=0.002)
    start.default_spacing = lambda: edm
    assert edm.end_exponent == 0 and default_spacing(start, fr.Dopri5(), 0.0) == edm
    sol = fr.solve(diff, fr.Dopri5(), torch.ones(1, 2, dtype=F64), steps=5, save_at="steps")
    torch.testing.assert_close(sol.ts, fr.EndRefined(nl, 1.5)(5, 1.0, 0.0))


def _flow_matching():
    from flowrestore.oracles import GaussianFlowMatchingOracle

    oracle = GaussianFlowMatchingOracle(
        mean=torch.zeros(3, dtype=F64), std=torch.ones(3, dtype=F64)
    )
    return fr.FlowMatchingFlow(oracle, shift=3.0)


@pytest.mark.parametrize("family", ["linear", "cosine", "flow-matching"])
def test_midpoint_lands_from_no_coarser_a_point_than_euler_at_equal_evaluations(family):
    """Midpoint's last positive point on a declared grid is Euler's at the same number of
    evaluations (read from the solve's ``stats.nfe``): ``2N − 1`` on a diffusion model (reciprocal
    stages, landing by the one-evaluation denoising step), ``2N`` on a flow-matching model (its own
    step lands); the rest of the grid is the declared one's shape, end-refined (issue 16). The
    flow-matching default's shape depends on ``N`` (``end_shift``: ``ρ_N`` falls as ``N`` grows),
    and Midpoint reads it at its own ``N``, so there its end is no coarser than Euler's, and
    finer."""
    if family == "flow-matching":
        flow = _flow_matching()
    else:
        abar = linear_abar() if family == "linear" else cosine_abar()
        flow = fr.DiffusionFlow(lambda x, k: torch.zeros_like(x), alphas_cumprod=abar)
    own = flow.default_spacing()
    x = torch.ones(1, 3, dtype=F64)
    for n in range(2, 11):
        sol = fr.solve(flow, fr.Midpoint(), x, steps=n, save_at="steps")
        nfe = int(sol.stats.nfe.max())
        assert nfe == (2 * n if family == "flow-matching" else 2 * n - 1)
        euler = own(nfe, 1.0, 0.0)
        assert sol.ts[-1] == 0 and len(sol.ts) == n + 1
        assert sol.ts[-2] <= euler[-2] * (1 + 1e-4), (n, float(sol.ts[-2]), float(euler[-2]))
        if family != "flow-matching":
            assert sol.ts[-2] >= euler[-2] * (1 - 1e-4), (n, float(sol.ts[-2]), float(euler[-2]))
        # the shape of the declared grid read at u_k = (1 − k/N)^ρ_N: monotone, starts at 1
        assert sol.ts[0] == 1 and bool((sol.ts[1:] < sol.ts[:-1]).all())
        rho = math.log(nfe) / math.log(n)
        torch.testing.assert_close(sol.ts, fr.EndRefined(own, rho)(n, 1.0, 0.0))
        shape = own.shape_for(n, 1.0, 0.0)  # the flow-matching default's law at N steps
        torch.testing.assert_close(sol.ts, fr.EndRefined(shape, rho)(n, 1.0, 0.0))


def test_euler_matched_end_checks_its_arguments():
    nl = fr.NoiseLevels((0.1, 0.5, 1.0))
    bad = [
        ({"base": "karras", "stages": 2}, "base"),
        ({"base": nl, "stages": 0}, "stages"),
        ({"base": nl, "stages": 2.0}, "stages"),
        ({"base": nl, "stages": 2, "rho_min": 0.5}, "rho_min"),
    ]
    for kwargs, name in bad:
        with pytest.raises(ConfigError, match=name):
            fr.EulerMatchedEnd(**kwargs)
    # the order rule's floor wins when it asks for more refinement than matching Euler's end
    sp = fr.EulerMatchedEnd(nl, 2, landing=True, rho_min=1.5)
    assert sp.rho(3) == pytest.approx(max(1.5, math.log(5) / math.log(3)))
    assert sp.rho(10) == 1.5 and sp.rho(1) == 1.5


def test_a_fitted_spacing_maps_its_normalised_times_onto_any_span():
    """``Fitted(times)`` holds times normalised to ``1 → 0``: on a span ``t0 → t1`` a point ``τ``
    lies at ``t1 + (t0 − t1) τ`` (at its own step count; other counts interpolate in the index)."""
    sp = fr.Fitted((1.0, 0.5, 0.2, 0.0))
    got = sp(3, 0.8, 0.2)
    want = torch.tensor([0.8, 0.2 + 0.6 * 0.5, 0.2 + 0.6 * 0.2, 0.2], dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-15)
    forward = torch.tensor([0.2, 0.8 - 0.6 * 0.5, 0.8 - 0.6 * 0.2, 0.8], dtype=torch.float64)
    torch.testing.assert_close(sp(3, 0.2, 0.8), forward, rtol=0, atol=1e-15)  # forward in time


def _end_exponent_cases():
    levels = tuple(_levels(linear_abar()).tolist())
    return [
        fr.Uniform(),
        fr.Power(rho=1.5),
        fr.StartRefined(rho=2),
        fr.Karras(rho=3.0),
        fr.Shifted(3.0, rho=2.0),
        fr.NoiseLevels(levels=levels, rho=2.0),
        fr.EndRefined(fr.Uniform(), rho=3.0),
        fr.EndRefined(fr.Power(rho=2.0), rho=1.25),
        fr.EndRefined(fr.NoiseLevels(levels=levels, rho=2.0), rho=1.25),  # RK4 on a diffusion model
        fr.EulerMatchedEnd(fr.Power(rho=2.0), stages=2, landing=False, rho_min=1.0),
        fr.EulerMatchedEnd(fr.Uniform(), stages=4, landing=True, rho_min=1.5),
        fr.Unrefined(fr.Power(rho=2.0)),
    ]


@pytest.mark.parametrize("spacing", _end_exponent_cases(), ids=lambda s: repr(s)[:48])
def test_each_spacing_ends_at_its_declared_rate(spacing):
    """``end_exponent`` is what the endpoint rule builds on (a landing error ``O(t_stop²)``): the
    last positive point falls like ``N^{−e}`` — measured as the least-squares slope over
    ``N = 64 … 1024`` steps, within 0.05. ``EndRefined`` used to interpolate a straight line in
    the base's first sampled interval and fell to ``N^{−ρ}`` beyond ``N^ρ > 1024``."""
    ns = np.array([64, 128, 256, 512, 1024])
    last = [float(spacing(int(n), 1.0, 0.0)[-2]) for n in ns]
    slope = -np.polyfit(np.log(ns), np.log(last), 1)[0]
    assert slope == pytest.approx(spacing.end_exponent, abs=0.05), last


@pytest.mark.parametrize("rho", [1.5, 2.0, 2.7])
def test_noise_levels_from_inside_the_table_stay_real_and_decreasing(rho):
    """A span starting inside the table (a model below the reference's σ_max): every count of
    steps gives a real, strictly decreasing grid from t0 to 0 (round-off once made the last base
    negative, and a fractional ρ of it complex)."""
    levels = tuple(float(v) for v in torch.logspace(-3, 0.7, 500, dtype=F64))  # up to ≈ 5
    sp = fr.NoiseLevels(levels=levels, rho=rho)
    for steps in range(1, 41):
        grid = sp(steps, 1.0, 0.0)
        assert grid.dtype == F64 and float(grid[0]) == 1.0 and float(grid[-1]) == 0.0
        assert bool((grid[1:] < grid[:-1]).all()), (steps, grid)


def test_start_refined_closing_pair_is_its_closed_form():
    """``StartRefined(ρ, closing_pair=True)`` with ``N ≥ min_pair_steps``: ``M = N − 1`` steps of
    ``t1 + (t0 − t1)(1 − (k/M)^ρ)``, the last split where the squared distance to ``t1`` halves;
    below ``min_pair_steps`` no pair."""
    t0, t1, rho = 1.0, 0.1, 2.0
    for n in (5, 7):
        m = n - 1
        base = [t1 + (t0 - t1) * (1 - (k / m) ** rho) for k in range(m + 1)]
        want = [*base[:-1], t1 + (base[-2] - t1) / math.sqrt(2), t1]
        got = fr.StartRefined(rho=rho, closing_pair=True)(n, t0, t1)
        torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64))
        assert (got[-2] - t1) ** 2 == pytest.approx((got[-3] - t1) ** 2 / 2)
    plain = [t1 + (t0 - t1) * (1 - (k / 4) ** rho) for k in range(5)]
    got = fr.StartRefined(rho=rho, closing_pair=True, min_pair_steps=6)(4, t0, t1)
    torch.testing.assert_close(got, torch.tensor(plain, dtype=torch.float64))
