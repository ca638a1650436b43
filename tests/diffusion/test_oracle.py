"""The Gaussian diffusion oracle computes the closed forms of docs/math.md §8.

Checked against statements derived here, not read off the code: the log-SNR interpolation of the
schedule, ``E[ε | x]`` as the least-squares regression of the noise on the noisy image (Monte
Carlo), Tweedie's identity ``x = a E[x_0|x] + b E[ε|x]``, the ``v`` definition, and that the
probability-flow map solves ``dx̄/dσ = (x̄ − D)/σ``.
"""

from __future__ import annotations

import pytest
import torch

from flowrestore.errors import ConfigError, ShapeError
from flowrestore.oracles import GaussianDiffusionOracle
from flowrestore.oracles.diffusion import alpha_cumprod_at, linear_alphas_cumprod

from .helpers import F64, PREDICTION_TYPES, cosine_alphas_cumprod, gaussian_problem, log_snr


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_schedule_interpolates_log_snr_linearly(schedule):
    abar = linear_alphas_cumprod() if schedule == "linear" else cosine_alphas_cumprod()
    lam = log_snr(abar)
    T = abar.numel()
    # trained timesteps: the table itself
    k = torch.tensor([0, 1, 17, 500, T - 2, T - 1], dtype=F64)
    torch.testing.assert_close(alpha_cumprod_at(abar, k), abar[k.long()], rtol=1e-12, atol=0)
    # between them: λ(k + f) = (1 − f) λ_k + f λ_{k+1}
    g = torch.Generator().manual_seed(0)
    kk = torch.randint(0, T - 1, (50,), generator=g)
    f = torch.rand(50, generator=g, dtype=F64)
    want = (1 - f) * lam[kk] + f * lam[kk + 1]
    got = log_snr(alpha_cumprod_at(abar, kk.to(F64) + f))
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    # beyond the table: the end segments continued
    below = log_snr(alpha_cumprod_at(abar, torch.tensor([-2.5], dtype=F64)))
    above = log_snr(alpha_cumprod_at(abar, torch.tensor([T - 1 + 1.5], dtype=F64)))
    torch.testing.assert_close(below, lam[:1] - 2.5 * (lam[1] - lam[0]), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(above, lam[-1:] + 1.5 * (lam[-1] - lam[-2]), rtol=1e-10, atol=1e-10)


def test_linear_schedule_is_ddpm():
    abar = linear_alphas_cumprod(1000, 1e-4, 0.02)
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=F64)
    torch.testing.assert_close(abar[:3], torch.cumprod(1 - betas[:3], 0))
    assert abar.numel() == 1000 and bool((abar.diff() < 0).all())


@pytest.mark.parametrize("timestep", [40, 400, 900])
def test_epsilon_is_the_regression_of_the_noise_on_the_noisy_image(timestep):
    """Monte Carlo: regress ε on x per coordinate; the oracle's ε̂ is that (linear) conditional
    mean, within 5 standard errors."""
    oracle, _ = gaussian_problem(dim=3, std=(0.2, 1.0))
    n = 40000
    g = torch.Generator().manual_seed(timestep)
    x0 = oracle.sample(n, generator=g)
    eps = torch.randn(x0.shape, generator=g, dtype=F64)
    abar = oracle.alphas_cumprod[timestep]
    x = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
    pred = oracle.epsilon(x, timestep)
    # the residual of a conditional mean is uncorrelated with every function of x: 1 and x
    resid = eps - pred
    se = resid.std(0) / n**0.5
    assert (resid.mean(0).abs() < 5 * se).all(), resid.mean(0) / se
    xc = (x - x.mean(0)) / x.std(0)
    assert ((resid * xc).mean(0).abs() < 5 * se).all(), (resid * xc).mean(0) / se


@pytest.mark.parametrize("timestep", [0, 250.5, 999])
def test_tweedie_and_velocity_identities(timestep):
    oracle, _ = gaussian_problem()
    x = torch.randn(4, 48, generator=torch.Generator().manual_seed(1), dtype=F64)
    abar = alpha_cumprod_at(oracle.alphas_cumprod, torch.tensor(float(timestep), dtype=F64))
    a, b = abar.sqrt(), (1 - abar).sqrt()
    x0, eps = oracle.clean(x, timestep), oracle.epsilon(x, timestep)
    torch.testing.assert_close(a * x0 + b * eps, x, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(oracle.velocity(x, timestep), a * eps - b * x0)
    # the Gaussian conditional mean from the joint covariance of (x_0, x)
    c, var = oracle.mean, oracle.std**2
    torch.testing.assert_close(x0, c + a * var / (a * a * var + b * b) * (x - a * c))


@pytest.mark.parametrize("ptype", PREDICTION_TYPES)
def test_call_returns_the_prediction_of_its_type(ptype):
    oracle, _ = gaussian_problem(ptype)
    x = torch.randn(2, 48, generator=torch.Generator().manual_seed(2), dtype=F64)
    k = torch.tensor([10.0, 700.0], dtype=F64)
    want = {"epsilon": oracle.epsilon, "v_prediction": oracle.velocity, "sample": oracle.clean}
    torch.testing.assert_close(oracle(x, k), want[ptype](x, k))
    # per-sample timesteps: row i uses timestep k[i]
    torch.testing.assert_close(oracle(x, k)[1], oracle(x[1:], 700.0)[0])


def test_exact_map_solves_the_probability_flow_ode():
    """``x̄(σ) = c + √(σ_c² + σ²) z`` has ``dx̄/dσ = (x̄ − E[x_0|x̄])/σ``; the oracle's map sends
    ``x_k`` to ``x̄(0)``, and ``x_k = √ᾱ_k x̄(σ_k)``."""
    oracle, _ = gaussian_problem(dim=16)
    c, sc = oracle.mean, oracle.std
    z = torch.randn(3, 16, generator=torch.Generator().manual_seed(3), dtype=F64)
    for k in (999, 500, 20):
        abar = oracle.alphas_cumprod[k]
        sigma = ((1 - abar) / abar).sqrt()
        xbar = c + (sc**2 + sigma**2).sqrt() * z
        x_k = abar.sqrt() * xbar
        torch.testing.assert_close(oracle.exact_map(x_k, k), c + sc * z, rtol=1e-10, atol=1e-10)
        slope = sigma * z / (sc**2 + sigma**2).sqrt()  # d/dσ of the closed form
        residual = (xbar - oracle.clean(x_k, k)) / sigma
        torch.testing.assert_close(residual, slope, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(oracle.exact_map(z), oracle.exact_map(z, 999))  # default: T − 1


def test_sample_has_the_prior_moments():
    oracle, _ = gaussian_problem(dim=4)
    x = oracle.sample(20000, generator=torch.Generator().manual_seed(4))
    assert ((x.mean(0) - oracle.mean).abs() < 5 * oracle.std / 20000**0.5).all()
    torch.testing.assert_close(x.std(0), oracle.std, rtol=0.03, atol=0)


def test_typed_errors():
    abar = linear_alphas_cumprod(10)
    with pytest.raises(ConfigError, match="alphas_cumprod must decrease"):
        GaussianDiffusionOracle(mean=torch.zeros(2), alphas_cumprod=abar.flip(0))
    with pytest.raises(ConfigError, match=r"inside \(0, 1\)"):
        GaussianDiffusionOracle(mean=torch.zeros(2), alphas_cumprod=torch.tensor([1.0, 0.5]))
    with pytest.raises(ConfigError, match="prediction_type"):
        GaussianDiffusionOracle(mean=torch.zeros(2), alphas_cumprod=abar, prediction_type="eps")
    with pytest.raises(ConfigError, match="std must be positive"):
        GaussianDiffusionOracle(mean=torch.zeros(2), std=0.0, alphas_cumprod=abar)
    oracle = GaussianDiffusionOracle(mean=torch.zeros(2), alphas_cumprod=abar)
    with pytest.raises(ShapeError, match="timestep"):
        oracle(torch.zeros(3, 2), torch.zeros(2))
    with pytest.raises(ShapeError, match="x must have shape"):
        oracle(torch.zeros(3, 5), 1.0)
    with pytest.raises(ConfigError, match="num_train_timesteps"):
        linear_alphas_cumprod(1)


HALF = (torch.bfloat16, torch.float16)


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("ptype", PREDICTION_TYPES)
def test_half_precision_output_is_the_closed_form_rounded(dtype, ptype):
    """A bf16/fp16 call returns, in its dtype, the float64 closed form at the same (rounded) state
    and timesteps, to within one unit in the last place (the rounding of the result; the float32
    arithmetic underneath adds ~1e-7). Timestep 1.375 has ``ᾱ = 0.9998``, which is 1 in bf16
    (``√(1 − ᾱ) = 0``: NaN); 998 is 1000 in bf16, past the table's last segment start (an index
    out of bounds when the lookup ran in bf16)."""
    oracle, _ = gaussian_problem(ptype, dim=8)
    x = torch.randn(5, 8, generator=torch.Generator().manual_seed(5), dtype=F64).to(dtype)
    tau = torch.tensor([1.375, 0.0, 500.0, 998.0, 999.0], dtype=dtype)
    got = oracle(x, tau)
    assert got.dtype == dtype
    want = oracle(x.double(), tau.double())
    assert bool(torch.isfinite(want).all())
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(got.double(), want, rtol=eps, atol=1e-6)
    for name in ("exact_map", "clean", "epsilon", "velocity"):
        got = getattr(oracle, name)(x, tau)
        want = getattr(oracle, name)(x.double(), tau.double())
        torch.testing.assert_close(got.double(), want, rtol=eps, atol=1e-6, msg=name)


@pytest.mark.parametrize("dtype", HALF)
def test_half_precision_schedule_lookup_near_the_last_timestep(dtype):
    """``alpha_cumprod_at`` indexes the table in float64 whatever the timestep's dtype: timesteps
    998 and 999 (998 rounds to 1000 in bf16) give the float64 lookup at the rounded value."""
    abar = linear_alphas_cumprod()
    tau = torch.tensor([998.0, 999.0, 1.375], dtype=dtype)
    got = alpha_cumprod_at(abar, tau)
    assert got.dtype == dtype
    want = alpha_cumprod_at(abar, tau.double())
    torch.testing.assert_close(got.double(), want, rtol=torch.finfo(dtype).eps, atol=0)


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize(("solver", "steps"), [("Euler", 4), ("RK4", 6), ("Heun", 10)])
def test_half_precision_solve_of_the_oracle_is_finite_and_close(dtype, solver, steps):
    """A bf16/fp16 solve of DiffusionFlow over the oracle lands within bf16's tolerance of the
    float64 solve on the same grid. Tolerance 0.1 of the image's scale: a half-precision state
    carries 8 (bf16) or 11 (fp16) significant bits and x̄ starts at σ_max|z| ≈ 500, where one
    rounding is ≈ 2 (bf16) in the state's units; measured 1e-2–5e-2 in both dtypes (fp16's grid
    times near 6e-5 are subnormal). Before the oracle computed in float32 the bf16 solve raised
    (NaN outputs, an index out of bounds)."""
    import flowrestore as fr

    oracle, flow = gaussian_problem("epsilon", dim=16)
    z = oracle.sample_latent(4, torch.Generator().manual_seed(6))
    ref = fr.solve(flow, getattr(fr, solver)(), z, steps=steps).x
    x = fr.solve(flow, getattr(fr, solver)(), z.to(dtype), steps=steps).x
    assert x.dtype == dtype and bool(torch.isfinite(x).all())
    err = float((x.double() - ref).abs().max() / ref.abs().max())
    assert err < 0.1, err
