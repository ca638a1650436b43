"""DiffusionFlow: the residual form of a diffusion model (docs/math.md §8).

What it must compute, checked against closed forms derived here: the scaled state ``x̄ = x/√ᾱ``;
the continuous timestep of a noise level (the inverse of the log-SNR interpolation); the clean
estimate ``D`` of every prediction type (``c + σ_c² (x̄ − c)/(σ_c² + σ²)`` for the Gaussian
oracle); Euler on the flow is DDIM (a hand-written DDIM loop with a nonlinear model); nothing is
evaluated at ``t = 0``; the default grid is EDM's ρ = 7 spacing down to 0.
"""

from __future__ import annotations

import math

import pytest
import torch

import flowrestore as fr
from flowrestore.errors import ConfigError, PredictorOutputError
from flowrestore.oracles.diffusion import linear_alphas_cumprod

from .helpers import (
    F64,
    PREDICTION_TYPES,
    clean_estimate,
    cosine_alphas_cumprod,
    gaussian_problem,
    log_snr,
)

ABAR = linear_alphas_cumprod()


def test_scaled_state_and_time():
    flow = fr.DiffusionFlow(lambda x, k: x, alphas_cumprod=ABAR)
    sigma_max = math.sqrt((1 - ABAR[-1]) / ABAR[-1])
    assert flow.sigma_max == pytest.approx(float(sigma_max), rel=1e-12)
    x = torch.randn(2, 3, dtype=F64)
    for k in (999, 400, 0):
        t = float(((1 - ABAR[k]) / ABAR[k]).sqrt()) / flow.sigma_max
        xbar = flow.to_state(x, t)
        torch.testing.assert_close(xbar, x / ABAR[k].sqrt(), rtol=1e-12, atol=0)
        torch.testing.assert_close(flow.from_state(xbar, t), x, rtol=1e-12, atol=0)
    assert torch.equal(flow.to_state(x, 0.0), x) and torch.equal(flow.from_state(x, 0.0), x)


def test_timestep_inverts_the_log_snr_interpolation():
    """A noise level between trained ones maps to the timestep where λ = −2 log σ interpolates."""
    flow = fr.DiffusionFlow(lambda x, k: x, alphas_cumprod=ABAR)
    lam = log_snr(ABAR)
    g = torch.Generator().manual_seed(0)
    k = torch.randint(0, 999, (40,), generator=g)
    f = torch.rand(40, generator=g, dtype=F64)
    tau = torch.cat([k.to(F64) + f, torch.tensor([0.0, 999.0, -3.25, -0.5], dtype=F64)])
    kk = tau.floor().clamp(0, 998).long()
    lam_tau = lam[kk] + (tau - kk.to(F64)) * (lam[kk + 1] - lam[kk])  # beyond: end segments
    sigma = torch.exp(-lam_tau / 2)
    torch.testing.assert_close(flow.timestep(sigma), tau, rtol=0, atol=1e-8)
    torch.testing.assert_close(flow.sigma_at(tau), sigma, rtol=1e-10, atol=0)
    clamped = fr.DiffusionFlow(lambda x, k: x, alphas_cumprod=ABAR, clamp_timesteps=True)
    assert float(clamped.timestep(torch.tensor([1e-5], dtype=F64))) == 0.0
    above = clamped.timestep(torch.tensor([2.0 * float(flow.sigma_max)], dtype=F64))
    assert float(above) == 999.0  # the last trained timestep, not beyond it


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_timestep_is_the_float64_one_rounded(dtype):
    """A bf16/fp16 noise level's timestep is the float64 timestep of the same (rounded) level,
    rounded once (to one unit in the last place): the interpolation table is not rounded to the
    state's dtype (where its neighbouring levels coincide; the timesteps below σ_0 were 9 % off
    in bf16, 3 units in fp16)."""
    flow = fr.DiffusionFlow(lambda x, k: x, alphas_cumprod=ABAR)
    sigma = torch.tensor([flow.sigma_max, 10.0, 1.0, 0.1, 0.02, 0.005, 0.002], dtype=dtype)
    got = flow.timestep(sigma)
    assert got.dtype == dtype
    want = flow.timestep(sigma.double())
    torch.testing.assert_close(got.double(), want, rtol=torch.finfo(dtype).eps, atol=0)


@pytest.mark.parametrize("ptype", PREDICTION_TYPES)
def test_clean_estimate_of_each_prediction_type(ptype):
    oracle, flow = gaussian_problem(ptype)
    xbar = 3 * torch.randn(3, 48, generator=torch.Generator().manual_seed(1), dtype=F64)
    for t in (torch.tensor(0.9, dtype=F64), torch.tensor([0.5, 3e-3, 2e-6], dtype=F64)):
        sigma = t * flow.sigma_max
        want = clean_estimate(oracle, xbar, sigma)
        torch.testing.assert_close(flow.denoise(t, xbar), want, rtol=1e-9, atol=1e-9)
        # the residual drift, also where ε and v models give it without the division
        torch.testing.assert_close(
            flow.velocity(t, xbar), (xbar - want) / fr.flows.bcast(t, xbar), rtol=1e-7, atol=1e-7
        )


class _Nonlinear:
    """A deterministic nonlinear 'network' (not an oracle): output depends on x and timestep."""

    def __init__(self):
        g = torch.Generator().manual_seed(5)
        self.w = torch.randn(6, 6, generator=g, dtype=F64) / 3
        self.calls: list[torch.Tensor] = []

    def __call__(self, x, timestep):
        self.calls.append(timestep.detach().clone())
        s = (timestep / 1000)[:, None]
        return torch.tanh(x @ self.w) * (1 + s) + 0.1 * s * x


def _ddim(model, ptype, x, timesteps, abar):
    """DDIM (Song et al. 2021, eq. 12, η = 0) written out, with ᾱ_prev = 1 after the last step."""
    for i, k in enumerate(timesteps):
        a_t = abar[k]
        a_prev = abar[timesteps[i + 1]] if i + 1 < len(timesteps) else torch.tensor(1.0, dtype=F64)
        out = model(x, torch.full((x.shape[0],), float(k), dtype=F64))
        if ptype == "epsilon":
            x0, eps = (x - (1 - a_t).sqrt() * out) / a_t.sqrt(), out
        elif ptype == "sample":
            x0, eps = out, (x - a_t.sqrt() * out) / (1 - a_t).sqrt()
        else:
            x0 = a_t.sqrt() * x - (1 - a_t).sqrt() * out
            eps = a_t.sqrt() * out + (1 - a_t).sqrt() * x
        x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
    return x


@pytest.mark.parametrize("ptype", PREDICTION_TYPES)
def test_euler_on_the_flow_is_ddim(ptype):
    model = _Nonlinear()
    flow = fr.DiffusionFlow(model, alphas_cumprod=ABAR, prediction_type=ptype)
    x_T = torch.randn(4, 6, generator=torch.Generator().manual_seed(6), dtype=F64)
    timesteps = [999, 799, 599, 399, 199, 99, 20, 3]
    want = _ddim(model, ptype, x_T, timesteps, ABAR)
    grid = flow.grid_from_timesteps(timesteps)
    assert grid.numel() == len(timesteps) + 1 and float(grid[-1]) == 0.0
    model.calls.clear()
    got = fr.solve(flow, fr.Euler(), x_T, grid=grid).x
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    called = torch.cat(model.calls)
    torch.testing.assert_close(called, torch.tensor(timesteps, dtype=F64).repeat_interleave(4))


def test_nothing_is_evaluated_at_zero_and_heun_lands_by_extrapolation():
    oracle, flow = gaussian_problem()
    seen = []

    def spy(x, k):
        seen.append(k.detach().clone())
        return oracle(x, k)

    spied = fr.DiffusionFlow(spy, alphas_cumprod=ABAR)
    x_T = oracle.sample_latent(2, torch.Generator().manual_seed(7))
    for solver in (fr.Euler(), fr.Midpoint(), fr.Heun(), fr.RK4(), fr.SemiLinearMultistep()):
        seen.clear()
        sol = fr.solve(spied, solver, x_T, steps=6)
        assert torch.isfinite(torch.cat(seen)).all() and sol.stats.nfe.min() > 0
    # Heun (reciprocal stages, issue 16): the last step from t_{N−1} extrapolates the clean
    # estimates there and at t_{N−2} (the last step's first stage) linearly in σ to σ = 0
    grid = flow.default_spacing()(6, 1.0, 0.0)
    t1, t2 = float(grid[-2]), float(grid[-3])
    x1 = flow.to_state(fr.solve(flow, fr.Heun(), x_T, grid=grid[:-1]).x, t1)
    x2 = flow.to_state(fr.solve(flow, fr.Heun(), x_T, grid=grid[:-2]).x, t2)
    d1 = flow.denoise(torch.tensor(t1, dtype=F64), x1)
    d2 = flow.denoise(torch.tensor(t2, dtype=F64), x2)
    want = (d1 * t2 - d2 * t1) / (t2 - t1)
    torch.testing.assert_close(fr.solve(flow, fr.Heun(), x_T, grid=grid).x, want)


def test_early_stop_returns_the_noisy_image_at_that_level():
    """``t_end > 0``: the model's ``x = √ᾱ x̄`` at ``σ = t_end σ_max`` (closed form)."""
    oracle, flow = gaussian_problem()
    x_T = oracle.sample_latent(3, torch.Generator().manual_seed(8))
    z = (flow.to_state(x_T, 1.0) - oracle.mean) / (oracle.std**2 + flow.sigma_max**2).sqrt()
    sol = fr.solve(flow, fr.RK4(), x_T, steps=200, t_end=0.02)
    sigma = 0.02 * flow.sigma_max
    want = (oracle.mean + (oracle.std**2 + sigma**2).sqrt() * z) / math.sqrt(1 + sigma**2)
    torch.testing.assert_close(sol.x, want, rtol=1e-8, atol=1e-8)


def test_posterior_mean_at_an_early_stop_is_the_clean_estimate():
    """``output='posterior_mean'`` at ``t_end > 0`` is ``D`` in data units, not rescaled by
    ``from_state`` like the state (the loop used to apply it to both)."""
    oracle, flow = gaussian_problem()
    x_T = oracle.sample_latent(2, torch.Generator().manual_seed(9))
    sol = fr.solve(flow, fr.RK4(), x_T, steps=100, t_end=0.05, output="posterior_mean")
    last = fr.solve(flow, fr.RK4(), x_T, steps=100, t_end=0.05).x
    want = flow.denoise(torch.tensor(0.05, dtype=F64), flow.to_state(last, 0.05))
    torch.testing.assert_close(sol.x, want)


def test_default_grid_is_quadratic_timesteps_and_karras_is_edms():
    """``steps=N`` lays DDIM's quadratic timesteps ``T(1 − k/N)² − 1`` (issue 16: the first step
    ends near the data's scale whatever σ_max is); ``Karras`` is EDM's ρ = 7 spacing."""
    flow = fr.DiffusionFlow(lambda x, k: x, alphas_cumprod=ABAR)
    n = 6
    T = ABAR.numel()
    grid = flow.default_spacing()(n, 1.0, 0.0)
    want = flow.grid_from_timesteps(T * (1 - torch.arange(n, dtype=F64) / n) ** 2 - 1)
    torch.testing.assert_close(grid, want)
    karras = fr.Karras(rho=7.0)(n, 1.0, 0.0)
    torch.testing.assert_close(karras, (1 - torch.arange(n + 1, dtype=F64) / n) ** 7)
    sig0 = float(flow.sigmas[0]) / flow.sigma_max
    edm = fr.Karras(rho=7.0, t_min=sig0)(n, 1.0, 0.0)
    r = 1 / 7
    inner = (1 + torch.arange(n, dtype=F64) / (n - 1) * (sig0**r - 1)) ** 7
    torch.testing.assert_close(edm, torch.cat([inner, torch.zeros(1, dtype=F64)]))
    with pytest.raises(ConfigError, match="rho"):
        fr.Karras(rho=0.5)


def _scaled_linear_abar(T=1000, b0=0.00085, b1=0.012):
    """Stable Diffusion's ``scaled_linear`` schedule (β linear in √β), ``σ_max ≈ 14.6``."""
    betas = torch.linspace(b0**0.5, b1**0.5, T, dtype=F64) ** 2
    return torch.cumprod(1 - betas, 0)


@pytest.mark.parametrize("n", [3, 4, 6, 10])
def test_default_grid_is_the_same_noise_levels_on_every_schedule(n):
    """The default grid is DDPM's quadratic grid as noise levels (issue 16), not the model's own
    timesteps: a model whose σ_max is above DDPM's (cosine; linear with T = 2000) steps from
    σ_max onto DDPM's grid; one below it (``scaled_linear``, σ_max ≈ 14.6) lays DDIM's
    quadratic law ``(τ* + 1)(1 − k/N)² − 1`` over DDPM's timesteps below its σ_max (``τ*``:
    σ_max's continuous DDPM timestep)."""
    ref = fr.DiffusionFlow(lambda x, k: x, alphas_cumprod=ABAR)
    T = ABAR.numel()
    ref_sigmas = ref.grid_from_timesteps(T * (1 - torch.arange(n, dtype=F64) / n) ** 2 - 1)
    ref_sigmas = ref_sigmas * ref.sigma_max
    for abar in (cosine_alphas_cumprod(), linear_alphas_cumprod(2000)):
        flow = fr.DiffusionFlow(lambda x, k: x, alphas_cumprod=abar)
        assert flow.sigma_max > 1e4
        sig = flow.default_spacing()(n, 1.0, 0.0) * flow.sigma_max
        assert float(sig[0]) == pytest.approx(flow.sigma_max, rel=1e-12)
        torch.testing.assert_close(sig[1:], ref_sigmas[1:], rtol=1e-9, atol=0.0)
    flow = fr.DiffusionFlow(lambda x, k: x, alphas_cumprod=_scaled_linear_abar())
    sig = flow.default_spacing()(n, 1.0, 0.0) * flow.sigma_max
    tau_star = float(ref.timestep(torch.tensor(flow.sigma_max, dtype=F64)))
    tau = (tau_star + 1) * (1 - torch.arange(n, dtype=F64) / n) ** 2 - 1
    want = ref.grid_from_timesteps(tau) * ref.sigma_max
    torch.testing.assert_close(sig, want, rtol=1e-9, atol=0.0)
    # the model's own timesteps ended twice as coarse at 10 steps (σ ≈ 0.094, DDPM's 0.044)
    if n == 10:
        assert 0.03 < float(sig[-2]) < 0.04


def test_grid_from_timesteps_ends_at_the_final_noise_level():
    flow = fr.DiffusionFlow(lambda x, k: x, alphas_cumprod=ABAR)
    grid = flow.grid_from_timesteps([900, 500, 0])
    torch.testing.assert_close(grid[:3], flow.sigmas[[900, 500, 0]] / flow.sigma_max)
    assert float(grid[-1]) == 0.0
    kept = flow.grid_from_timesteps([900, 500, 10], final_alpha_cumprod=float(ABAR[0]))
    assert float(kept[-1]) == pytest.approx(float(flow.sigmas[0]) / flow.sigma_max, rel=1e-9)
    # a final level that is the last timestep's own is not laid twice (no zero-length step)
    same = flow.grid_from_timesteps([900, 500, 0], final_alpha_cumprod=float(ABAR[0]))
    torch.testing.assert_close(same, grid[:3])
    # the training timesteps are 0 .. T - 1: the last is the top of the grid, T is refused
    T = len(ABAR)
    top = flow.grid_from_timesteps([T - 1])
    assert float(top[0]) == pytest.approx(1.0, rel=1e-12)
    for bad in ([T], [-1], [float("nan")]):
        with pytest.raises(fr.ConfigError, match=rf"lie in \[0, {T - 1}\]"):
            flow.grid_from_timesteps(bad)


def test_model_outputs_and_typed_errors():
    x = torch.randn(2, 4, dtype=F64)
    t = torch.tensor(0.5, dtype=F64)

    class Out:
        def __init__(self, sample):
            self.sample = sample

    base = fr.DiffusionFlow(lambda x, k: 0.5 * x, alphas_cumprod=ABAR)
    for wrap in (lambda v: Out(v), lambda v: (v,)):
        flow = fr.DiffusionFlow(lambda x, k, w=wrap: w(0.5 * x), alphas_cumprod=ABAR)
        torch.testing.assert_close(flow.denoise(t, x), base.denoise(t, x))
    with pytest.raises(PredictorOutputError, match="model must return"):
        fr.DiffusionFlow(lambda x, k: "x", alphas_cumprod=ABAR).denoise(t, x)
    with pytest.raises(PredictorOutputError, match="shape"):
        fr.DiffusionFlow(lambda x, k: x[:, :2], alphas_cumprod=ABAR).denoise(t, x)
    with pytest.raises(ConfigError, match="prediction_type"):
        fr.DiffusionFlow(lambda x, k: x, alphas_cumprod=ABAR, prediction_type="v")
    with pytest.raises(ConfigError, match="zero-terminal"):
        fr.DiffusionFlow(lambda x, k: x, alphas_cumprod=torch.tensor([0.9, 0.0]))
    with pytest.raises(TypeError, match="model must be callable"):
        fr.DiffusionFlow(3, alphas_cumprod=ABAR)
    with pytest.raises(fr.IncompatibleSolverError):
        fr.solve(base, fr.InDISampler(), x, steps=2)
