"""Tests of the closed-form oracles against independent computations (docs/math.md §2, §4, §5).

Every check compares with something computed another way: Gaussian conditioning through the joint
covariance (NumPy), direct Bayes with explicit exponentials, finite differences of the closed-form
paths, a SciPy DOP853 integration, an explicit sampler loop, or Monte-Carlo statistics.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from flowrestore.errors import ConfigError, GridError, ShapeError
from flowrestore.oracles import DiracMixture, GaussianGenerativeOracle, GaussianOracle

F64 = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _gaussian(h=None, seed=0, noise_std=0.6) -> GaussianOracle:
    g = _gen(seed)
    d = 4
    mean = torch.randn(d, generator=g, dtype=F64)
    std = 0.3 + torch.rand(d, generator=g, dtype=F64)
    kwargs = {} if h is None else {"h": torch.as_tensor(h, dtype=F64)}
    return GaussianOracle(mean=mean, std=std, noise_std=noise_std, **kwargs)


def _joint_conditioning(c, sc, h, sigma, t, xt):
    """E[x | x_t] from the joint covariance of (x, x_t), full matrices, NumPy."""
    d = c.size
    ht = np.diag((1 - t) + t * h)
    sxx = np.diag(sc**2)
    stx = ht @ sxx
    stt = ht @ sxx @ ht.T + (t * sigma) ** 2 * np.eye(d)
    return c + stx.T @ np.linalg.solve(stt, xt - ht @ c)


# --------------------------------------------------------------------------- GaussianOracle
@pytest.mark.parametrize("h", [None, [1.0, 0.3, -0.5, 2.0]])
def test_gaussian_posterior_mean_matches_joint_conditioning(h):
    o = _gaussian(h)
    g = _gen(1)
    b = 6
    t = torch.rand(b, generator=g, dtype=F64)
    xt = torch.randn(b, 4, generator=g, dtype=F64)
    got = o.posterior_mean(xt, t)
    hv = np.ones(4) if h is None else np.array(h)
    for i in range(b):
        ref = _joint_conditioning(
            o.mean.numpy(), o.std.numpy(), hv, o.noise_std, float(t[i]), xt[i].numpy()
        )
        np.testing.assert_allclose(got[i].numpy(), ref, rtol=1e-12, atol=1e-12)


def test_gaussian_posterior_mean_monte_carlo_regression():
    # E[x | x_t] is the best predictor: the residual x - E[x|x_t] is uncorrelated with x_t.
    o = _gaussian([1.0, 0.5, 0.2, 1.5])
    t = 0.6
    x, _ = o.sample(200_000, generator=_gen(2))
    e = torch.randn(x.shape, generator=_gen(3), dtype=F64)
    xt = ((1 - t) + t * o.h) * x + t * o.noise_std * e
    res = x - o.posterior_mean(xt, t)
    corr = ((res - res.mean(0)) * (xt - xt.mean(0))).mean(0) / (res.std(0) * xt.std(0))
    assert res.mean(0).abs().max() < 5 * res.std(0).max() / math.sqrt(x.shape[0])
    assert corr.abs().max() < 5 / math.sqrt(x.shape[0])


def test_gaussian_posterior_mean_at_t0_is_identity_and_mmse_is_t1():
    o = _gaussian([1.0, 0.3, -0.5, 2.0])
    x = torch.randn(3, 4, generator=_gen(4), dtype=F64)
    torch.testing.assert_close(o.posterior_mean(x, 0.0), x, rtol=0, atol=1e-15)
    torch.testing.assert_close(o.mmse(x), o.posterior_mean(x, torch.ones(3, dtype=F64)))
    assert o.predictor(x, 0.5).shape == x.shape
    torch.testing.assert_close(o(x, 0.5), o.posterior_mean(x, 0.5))


@pytest.mark.parametrize("h", [None, [1.0, 0.3, -0.5, 2.0]])
def test_gaussian_ode_solution_satisfies_ode(h):
    o = _gaussian(h)
    y = torch.randn(5, 4, generator=_gen(5), dtype=F64) * 2
    torch.testing.assert_close(o.ode_solution(y, 1.0), y, rtol=0, atol=1e-14)
    eps = 1e-6
    for t in [0.05, 0.2, 0.5, 0.9]:
        x = o.ode_solution(y, t)
        fd = (o.ode_solution(y, t + eps) - o.ode_solution(y, t - eps)) / (2 * eps)
        drift = (x - o.posterior_mean(x, t)) / t
        torch.testing.assert_close(fd, drift, rtol=1e-7, atol=1e-8)
        torch.testing.assert_close(o.velocity(x, t), drift, rtol=1e-10, atol=1e-12)


def test_gaussian_ode_solution_denoising_matches_math_md_formula():
    o = _gaussian()
    y = torch.randn(5, 4, generator=_gen(6), dtype=F64)
    alpha = o.std / o.noise_std
    t = torch.tensor([0.0, 0.1, 0.4, 0.7, 1.0], dtype=F64)
    ref = o.mean + (y - o.mean) * torch.sqrt((t[:, None] ** 2 + alpha**2) / (1 + alpha**2))
    torch.testing.assert_close(o.ode_solution(y, t), ref, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("h", [None, [1.0, 0.3, -0.5, 2.0]])
def test_gaussian_ode_endpoint_has_prior_law(h):
    o = _gaussian(h)
    n = 200_000
    _, y = o.sample(n, generator=_gen(7))
    x0 = o.ode_solution(y, 0.0)
    se_mean = o.std / math.sqrt(n)
    se_var = o.std**2 * math.sqrt(2 / (n - 1))
    assert ((x0.mean(0) - o.mean).abs() < 5 * se_mean).all()
    assert ((x0.var(0) - o.std**2).abs() < 5 * se_var).all()
    # ... and it is not the MMSE estimate, whose variance is smaller
    assert (o.mmse(y).var(0) < o.std**2 - 10 * se_var).all()


@pytest.mark.parametrize("h", [None, [1.0, 0.3, -0.5, 2.0]])
def test_gaussian_indi_sampler_solution_matches_loop(h):
    o = _gaussian(h)
    y = torch.randn(5, 4, generator=_gen(8), dtype=F64)
    grid = torch.cat([torch.sort(torch.rand(9, generator=_gen(9), dtype=F64), descending=True)[0]])
    grid = torch.cat([torch.ones(1, dtype=F64), grid, torch.zeros(1, dtype=F64)])
    x = y.clone()
    for k in range(grid.numel() - 1):
        t, s = float(grid[k]), float(grid[k + 1])
        x = (s / t) * x + (1 - s / t) * o.posterior_mean(x, t)
    torch.testing.assert_close(o.indi_sampler_solution(y, grid), x, rtol=1e-12, atol=1e-12)
    one = o.indi_sampler_solution(y, torch.tensor([1.0, 0.0], dtype=F64))
    torch.testing.assert_close(one, o.mmse(y), rtol=1e-12, atol=1e-12)


def test_gaussian_indi_sampler_denoising_product_formula_and_convergence():
    o = _gaussian()
    y = torch.randn(3, 4, generator=_gen(10), dtype=F64)
    n = 50
    grid = torch.linspace(1, 0, n + 1, dtype=F64)
    fac = torch.ones(4, dtype=F64)
    s2, v = o.noise_std**2, o.std**2
    for k in range(n):
        t = float(grid[k])
        fac = fac * (1 - (1 / n) * t * s2 / (v + t * t * s2))
    torch.testing.assert_close(
        o.indi_sampler_solution(y, grid), o.mean + (y - o.mean) * fac, rtol=1e-12, atol=1e-12
    )
    # Euler on the ODE converges to the ODE solution at first order
    errs = []
    for n in (100, 200, 400):
        out = o.indi_sampler_solution(y, torch.linspace(1, 0, n + 1, dtype=F64))
        errs.append(float((out - o.ode_solution(y, 0.0)).abs().max()))
    assert 1.8 < errs[0] / errs[1] < 2.2 and 1.8 < errs[1] / errs[2] < 2.2


@pytest.mark.parametrize("h", [None, [1.0, 0.3, -0.5, 2.0]])
def test_gaussian_ode_reference_matches_closed_form(h):
    o = _gaussian(h)
    y = torch.randn(4, 4, generator=_gen(11), dtype=F64) * 2
    for t_end in (0.0, 0.37):
        torch.testing.assert_close(
            o.ode_reference(y, t_end), o.ode_solution(y, t_end), rtol=0, atol=1e-9
        )


def test_gaussian_float32_and_dtype_follow_input():
    o = _gaussian([1.0, 0.3, -0.5, 2.0])
    x, y = o.sample(8, generator=_gen(12), dtype=torch.float32)
    assert x.dtype == y.dtype == torch.float32
    out = o.posterior_mean(y, torch.rand(8))
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    a, _ = o.sample(3, generator=_gen(13))
    b, _ = o.sample(3, generator=_gen(13))
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_flow_matching_oracle_refuses_a_timestep_scale_below_one():
    """``num_train_timesteps`` (``t = timestep / T``) must be a positive int: 0, −1, 2.5 and
    ``True`` are refused by name; ``T = 1`` (timesteps in ``[0, 1]``) is accepted."""
    from flowrestore.oracles import GaussianFlowMatchingOracle

    for bad in (0, -1, 2.5, True):
        with pytest.raises(ConfigError, match="num_train_timesteps"):
            GaussianFlowMatchingOracle(mean=torch.zeros(2), std=1.0, num_train_timesteps=bad)
    one = GaussianFlowMatchingOracle(mean=torch.zeros(2), std=1.0, num_train_timesteps=1)
    assert one.num_train_timesteps == 1


def test_gaussian_errors():
    with pytest.raises(ConfigError, match="std"):
        GaussianOracle(mean=0.0, std=torch.tensor([1.0, -1.0]), noise_std=0.1)
    with pytest.raises(ConfigError, match="noise_std"):
        GaussianOracle(std=1.0, noise_std=0.0, event_shape=(2,))
    with pytest.raises(ConfigError, match="event_shape"):
        GaussianOracle(std=1.0, noise_std=0.1)
    with pytest.raises(ConfigError, match="mean"):
        GaussianOracle(mean=torch.zeros(3), std=torch.ones(2), noise_std=0.1)
    o = GaussianOracle(noise_std=0.1, event_shape=(2, 3))
    with pytest.raises(ShapeError, match="x_t"):
        o.posterior_mean(torch.zeros(4, 3, 2), 0.5)
    with pytest.raises(ShapeError, match=r"\[B\]"):
        o.posterior_mean(torch.zeros(4, 2, 3), torch.ones(3))
    for t in (1.0005, -1e-6, 1.5):  # the interval is closed and exact: just outside is refused
        with pytest.raises(ConfigError, match=r"\[0, 1\]"):
            o.posterior_mean(torch.zeros(4, 2, 3), t)
    o.posterior_mean(torch.zeros(4, 2, 3), 1.0)
    with pytest.raises(GridError, match="decreasing"):
        o.indi_sampler_solution(torch.zeros(1, 2, 3), torch.tensor([0.0, 1.0]))
    for grid in ([1.0005, 0.5, 0.0], [1.0, 0.5, -0.01]):  # either end, on a grid of 3 points
        with pytest.raises(GridError, match=r"\[0, 1\]"):
            o.indi_sampler_solution(torch.zeros(1, 2, 3), torch.tensor(grid))
    with pytest.raises(ConfigError, match="t_end"):
        o.ode_reference(torch.zeros(1, 2, 3), t_end=1.0)


@settings(max_examples=40, deadline=None)
@given(
    sc=st.floats(0.05, 5.0),
    sigma=st.floats(0.05, 5.0),
    h=st.floats(-2.0, 2.0),
    c=st.floats(-3.0, 3.0),
    t=st.floats(1e-3, 1.0),
    xt=st.floats(-10.0, 10.0),
)
def test_gaussian_posterior_mean_property(sc, sigma, h, c, t, xt):
    o = GaussianOracle(mean=c, std=sc, h=h, noise_std=sigma, event_shape=(1,))
    got = float(o.posterior_mean(torch.tensor([[xt]], dtype=F64), t))
    ref = _joint_conditioning(
        np.array([c]), np.array([sc]), np.array([h]), sigma, t, np.array([xt])
    )
    assert got == pytest.approx(float(ref[0]), rel=1e-10, abs=1e-10)
    # ode path: finite-difference derivative equals the drift
    y = torch.tensor([[xt]], dtype=F64)
    x = o.ode_solution(y, t)
    assert float(o.velocity(x, t)) == pytest.approx(
        float((x - o.posterior_mean(x, t)) / t), rel=1e-6, abs=1e-6
    )


# --------------------------------------------------------------------------- DiracMixture
CENTERS = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]], dtype=F64)
WEIGHTS = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=F64)


def _bayes(centers, weights, hmat, sigma, xt, t):
    """Direct Bayes with explicit exponentials (small, float64): E[x | x_t]."""
    d = centers.shape[1]
    ht = (1 - t) * np.eye(d) + t * hmat
    lik = np.array(
        [np.exp(-np.sum((xt - ht @ ci) ** 2) / (2 * t * t * sigma**2)) for ci in centers]
    )
    post = weights * lik / np.sum(weights * lik)
    return post @ centers, post


@pytest.mark.parametrize("kind", ["identity", "diagonal", "matrix"])
def test_mixture_posterior_matches_direct_bayes(kind):
    g = _gen(20)
    hmat = {
        "identity": np.eye(2),
        "diagonal": np.diag([1.0, 0.3]),
        "matrix": np.array([[0.8, 0.3], [-0.2, 0.5]]),
    }[kind]
    H = {
        "identity": None,
        "diagonal": torch.tensor([1.0, 0.3], dtype=F64),
        "matrix": torch.tensor(hmat),
    }[kind]
    m = DiracMixture(centers=CENTERS, weights=WEIGHTS * 7, H=H, noise_std=0.5)
    torch.testing.assert_close(m.weights, WEIGHTS)
    b = 8
    t = 0.3 + 0.7 * torch.rand(b, generator=g, dtype=F64)
    xt = torch.randn(b, 2, generator=g, dtype=F64)
    mean = m.posterior_mean(xt, t)
    w = m.posterior_weights(xt, t)
    torch.testing.assert_close(w.sum(-1), torch.ones(b, dtype=F64), rtol=0, atol=1e-14)
    for i in range(b):
        ref_mean, ref_w = _bayes(
            CENTERS.numpy(), WEIGHTS.numpy(), hmat, 0.5, xt[i].numpy(), float(t[i])
        )
        np.testing.assert_allclose(mean[i].numpy(), ref_mean, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(w[i].numpy(), ref_w, rtol=1e-12, atol=1e-12)
    # sampled y goes through H
    x, y, idx = m.sample(5, generator=_gen(21))
    torch.testing.assert_close(x, CENTERS[idx])
    assert y.shape == x.shape


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mixture_small_t_finite_and_tends_to_nearest_in_Ht_metric(dtype):
    hmat = torch.tensor([[0.8, 0.3], [-0.2, 0.5]], dtype=F64)
    m = DiracMixture(centers=CENTERS, weights=WEIGHTS, H=hmat, noise_std=0.5)
    xt = torch.randn(64, 2, generator=_gen(22), dtype=F64).to(dtype)
    for t in (1e-6, 0.0):
        out = m.posterior_mean(xt, t)
        assert out.dtype == dtype and torch.isfinite(out).all()
    t = 1e-3
    ht = (1 - t) * torch.eye(2, dtype=F64) + t * hmat
    d = ((xt.to(F64)[:, None, :] - CENTERS @ ht.T) ** 2).sum(-1)
    nearest = d.argmin(-1)
    out = m.posterior_mean(xt, t)
    torch.testing.assert_close(out.to(F64), CENTERS[nearest], rtol=0, atol=1e-6)
    torch.testing.assert_close(m.posterior_mean(xt, 0.0).to(F64), CENTERS[nearest], rtol=0, atol=0)
    # per-sample t mixing tiny and large times
    tv = torch.tensor([1e-6, 1.0] * 32, dtype=dtype)
    assert torch.isfinite(m.posterior_mean(xt, tv)).all()


def test_mixture_nearest_center_and_one_step_regression_to_mean():
    m = DiracMixture(centers=CENTERS, weights=WEIGHTS, noise_std=0.5)
    x = CENTERS[[2, 0, 3]] + 0.01
    idx, dist = m.nearest_center(x)
    assert idx.tolist() == [2, 0, 3]
    torch.testing.assert_close(dist, torch.full((3,), 0.01 * math.sqrt(2), dtype=F64))
    # at t = 1 with huge noise the posterior mean is the weighted average of centres
    big = DiracMixture(centers=CENTERS, weights=WEIGHTS, noise_std=1e4)
    torch.testing.assert_close(
        big.mmse(torch.zeros(1, 2, dtype=F64))[0], WEIGHTS @ CENTERS, rtol=0, atol=1e-6
    )


def test_mixture_indi_flow_landing_frequencies():
    # docs/math.md §2c: x_1 ~ p(y), Euler on the residual flow; landing frequencies tend to w.
    m = DiracMixture(centers=CENTERS, weights=WEIGHTS, H=torch.tensor([1.0, 0.3]), noise_std=0.5)
    n_samp, n_steps = 20_000, 200
    _, y, _ = m.sample(n_samp, generator=_gen(23))
    x = y
    grid = torch.linspace(1, 0, n_steps + 1, dtype=F64)
    for k in range(n_steps):
        t, s = float(grid[k]), float(grid[k + 1])
        x = (s / t) * x + (1 - s / t) * m.posterior_mean(x, t)
    idx, dist = m.nearest_center(x)
    assert dist.max() < 1e-6
    freq = torch.bincount(idx, minlength=4).to(F64) / n_samp
    se = torch.sqrt(WEIGHTS * (1 - WEIGHTS) / n_samp)
    assert ((freq - WEIGHTS).abs() < 5 * se + 0.005).all(), freq


def test_dirac_posterior_matches_indi_form_and_direct_bayes():
    hdiag = torch.tensor([1.0, 0.3], dtype=F64)
    m = DiracMixture(centers=CENTERS, weights=WEIGHTS, H=hdiag, noise_std=0.5)

    def A(x, t):
        return x * (1 - t[:, None] * (1 - hdiag))

    def sigma(t):
        return 0.01 ** (1 - t) * 0.5**t

    g = _gen(24)
    b = 6
    t = torch.rand(b, generator=g, dtype=F64)
    yt = torch.randn(b, 2, generator=g, dtype=F64)
    got = m.dirac_posterior_mean(yt, t, A=A, sigma=sigma)
    for i in range(b):
        ti = float(t[i])
        a = np.diag(1 - ti * (1 - hdiag.numpy()))
        s = 0.01 ** (1 - ti) * 0.5**ti
        # log-domain Bayes in NumPy (sigma_t can be tiny)
        logit = np.log(WEIGHTS.numpy()) - np.array(
            [np.sum((yt[i].numpy() - a @ c) ** 2) / (2 * s * s) for c in CENTERS.numpy()]
        )
        p = np.exp(logit - logit.max())
        p /= p.sum()
        np.testing.assert_allclose(got[i].numpy(), p @ CENTERS.numpy(), rtol=1e-10, atol=1e-12)
    # the InDI posterior is the Dirac one with A_t = H_t, sigma_t = t sigma
    phi = m.dirac_predictor(A=A, sigma=lambda tt: tt * 0.5)
    torch.testing.assert_close(phi(yt, t), m.posterior_mean(yt, t), rtol=1e-12, atol=1e-12)


def test_denoising_posterior_weights_are_the_landing_frequencies():
    # Reverse SDE (A_t = I, Euler-Maruyama of docs/math.md §3 eq. 7) from a fixed y: the landing
    # probability on c_i is  w_i exp(-||y - c_i||² / (2 σ_1²))  for the SDP y_t = x_0 + σ_t z.
    m = DiracMixture(
        centers=torch.tensor([[-1.0], [1.0]], dtype=F64),
        weights=torch.tensor([0.3, 0.7]),
        noise_std=1.0,
    )
    s0, s1 = 0.4, 1.0

    def sigma(t):
        return s0 ** (1 - t) * s1**t

    def A(x, t):
        return x

    n_samp, n_steps = 20_000, 200
    gen = _gen(25)
    y = torch.full((n_samp, 1), 0.4, dtype=F64)
    grid = torch.linspace(1, 0, n_steps + 1, dtype=F64)
    for k in range(n_steps):
        t, s = float(grid[k]), float(grid[k + 1])
        phi = m.dirac_posterior_mean(y, t, A=A, sigma=sigma)
        vt, vs = sigma(t) ** 2, sigma(s) ** 2
        z = torch.randn(y.shape, generator=gen, dtype=F64)
        y = y - (vs - vt) * (phi - y) / vt + math.sqrt(vt - vs) * z
    landed = m.dirac_posterior_weights(y, 0.0, A=A, sigma=sigma).mean(0)
    want = m.denoising_posterior_weights(torch.tensor([[0.4]], dtype=F64), variance=s1**2)[0]
    se = math.sqrt(float(want[0] * want[1]) / n_samp)
    assert (landed - want).abs().max() < 5 * se + 0.003, (landed, want)
    # the same weights are the Dirac posterior at t = 1
    torch.testing.assert_close(
        want, m.dirac_posterior_weights(torch.tensor([[0.4]], dtype=F64), 1.0, A=A, sigma=sigma)[0]
    )


def test_denoising_posterior_weights_take_one_variance_per_sample():
    """A ``[B]`` variance weighs each row by its own: ``∝ w_i exp(−‖y − c_i‖² / (2 v_b))``,
    the closed form per row (and the scalar call's row for each ``v_b``)."""
    m = DiracMixture(centers=CENTERS, weights=WEIGHTS, noise_std=0.5)
    y = torch.randn(3, 2, generator=_gen(41), dtype=F64)
    var = torch.tensor([0.05, 0.5, 3.0], dtype=F64)
    got = m.denoising_posterior_weights(y, variance=var)
    for b in range(3):
        logit = WEIGHTS.log() - ((y[b] - CENTERS) ** 2).sum(-1) / (2 * var[b])
        torch.testing.assert_close(got[b], torch.softmax(logit, 0), rtol=1e-12, atol=1e-14)
        one = m.denoising_posterior_weights(y[b : b + 1], variance=float(var[b]))[0]
        torch.testing.assert_close(got[b], one, rtol=1e-12, atol=1e-14)
    with pytest.raises(ShapeError, match="variance"):
        m.denoising_posterior_weights(y, variance=var[:2])
    with pytest.raises(ConfigError, match="variance"):
        m.denoising_posterior_weights(y, variance=torch.tensor([0.1, -1.0, 1.0], dtype=F64))


def test_mixture_errors():
    with pytest.raises(ConfigError, match="weights"):
        DiracMixture(centers=CENTERS, weights=torch.tensor([0.5, 0.5, 0.0, 1.0]), noise_std=0.5)
    with pytest.raises(ShapeError, match="weights"):
        DiracMixture(centers=CENTERS, weights=torch.tensor([0.5, 0.5]), noise_std=0.5)
    with pytest.raises(ShapeError, match="centers"):
        DiracMixture(centers=torch.ones(4), noise_std=0.5)
    with pytest.raises(ShapeError, match="H"):
        DiracMixture(centers=CENTERS, H=torch.ones(3, 3), noise_std=0.5)
    with pytest.raises(ConfigError, match="noise_std"):
        DiracMixture(centers=CENTERS, noise_std=-1.0)
    m = DiracMixture(centers=CENTERS, noise_std=0.5)
    with pytest.raises(ShapeError, match="x_t"):
        m.posterior_mean(torch.zeros(3, 3), 0.5)
    with pytest.raises(ShapeError, match="A"):
        m.dirac_posterior_mean(torch.zeros(3, 2), 0.5, A=lambda x, t: x[:1], sigma=lambda t: t)
    with pytest.raises(ConfigError, match="variance"):
        m.denoising_posterior_weights(torch.zeros(3, 2), variance=0.0)


# --------------------------------------------------------------------- generative (BIRD)
def _generative():
    g = _gen(30)
    return GaussianGenerativeOracle(
        mean=torch.randn(2, 3, generator=g, dtype=F64),
        std=0.2 + torch.rand(2, 3, generator=g, dtype=F64),
    )


def test_generative_posterior_mean_matches_joint_conditioning():
    o = _generative()
    g = _gen(31)
    b = 5
    t = torch.rand(b, generator=g, dtype=F64)
    xt = torch.randn(b, 2, 3, generator=g, dtype=F64)
    got = o.posterior_mean(xt, t)
    c, sc = o.mean.reshape(-1).numpy(), o.std.reshape(-1).numpy()
    for i in range(b):
        ti = float(t[i])
        # x_t = (1 - t) x + t z: the Gaussian oracle with h = 0 and sigma = 1 has the same joint law
        ref = _joint_conditioning(c, sc, np.zeros(6), 1.0, ti, xt[i].reshape(-1).numpy())
        np.testing.assert_allclose(got[i].reshape(-1).numpy(), ref, rtol=1e-12, atol=1e-12)


def test_generative_ode_solution_satisfies_ode_and_reaches_exact_map():
    o = _generative()
    z = o.sample_latent(4, _gen(32))
    torch.testing.assert_close(o.ode_solution(z, 1.0), z, rtol=0, atol=1e-15)
    torch.testing.assert_close(o.ode_solution(z, 0.0), o.exact_map(z), rtol=0, atol=1e-15)
    eps = 1e-6
    for t in (0.05, 0.3, 0.6, 0.95):
        x = o.ode_solution(z, t)
        fd = (o.ode_solution(z, t + eps) - o.ode_solution(z, t - eps)) / (2 * eps)
        torch.testing.assert_close(fd, (x - o.posterior_mean(x, t)) / t, rtol=1e-7, atol=1e-8)
    # Euler on the flow from z converges to exact_map
    x = z
    n = 2000
    grid = torch.linspace(1, 0, n + 1, dtype=F64)
    for k in range(n):
        t, s = float(grid[k]), float(grid[k + 1])
        x = (s / t) * x + (1 - s / t) * o.posterior_mean(x, t)
    torch.testing.assert_close(x, o.exact_map(z), rtol=0, atol=5e-3)
    a = o.sample(3, generator=_gen(33))
    torch.testing.assert_close(a, o.sample(3, generator=_gen(33)), rtol=0, atol=0)


def test_generative_errors():
    with pytest.raises(ConfigError, match="std"):
        GaussianGenerativeOracle(std=0.0, event_shape=(3,))
    with pytest.raises(ConfigError, match="event_shape"):
        GaussianGenerativeOracle()
    o = GaussianGenerativeOracle(event_shape=(3,))
    with pytest.raises(ShapeError, match="z"):
        o.exact_map(torch.zeros(3))
    with pytest.raises(ConfigError, match="n"):
        o.sample_latent(0)


def test_a_scalar_tensor_noise_std_is_its_number_and_a_vector_is_refused():
    """``noise_std`` (a number) may come as a one-element tensor, e.g. read off a model; two
    elements are not a noise level."""
    a = GaussianOracle(std=0.5, noise_std=torch.tensor(0.25), event_shape=(3,))
    assert a.noise_std == 0.25 and isinstance(a.noise_std, float)
    assert DiracMixture(centers=torch.zeros(2, 3), noise_std=torch.tensor([0.25])).noise_std == 0.25
    with pytest.raises(ConfigError, match="noise_std must be a scalar"):
        GaussianOracle(std=0.5, noise_std=torch.tensor([0.25, 0.5]), event_shape=(3,))


def test_gaussian_oracle_prior_mean_defaults_to_zero():
    """``mean`` defaults to 0 (``N(0, diag σ_c²)``): the ODE's end is ``y·σ_c/√(σ_c² + σ²)``."""
    std = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    orc = GaussianOracle(std=std, noise_std=0.8)
    assert torch.equal(orc.mean, torch.zeros(3, dtype=torch.float64))
    y = torch.tensor([[1.0, -2.0, 3.0]], dtype=torch.float64)
    torch.testing.assert_close(orc.ode_solution(y, 0.0), y * std / (std**2 + 0.64).sqrt())


def test_dirac_mixture_default_weights_are_uniform_probabilities():
    """``weights=None`` is the uniform prior, the same mixture as equal weights given."""
    centers = torch.tensor([[0.0, 1.0], [2.0, -1.0], [-1.0, 0.5]], dtype=torch.float64)
    plain = DiracMixture(centers=centers, noise_std=0.7)
    equal = DiracMixture(centers=centers, weights=torch.full((3,), 5.0), noise_std=0.7)
    torch.testing.assert_close(plain.weights, torch.full((3,), 1 / 3, dtype=torch.float64))
    torch.testing.assert_close(plain.weights, equal.weights)
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    t = torch.tensor(0.5, dtype=torch.float64)
    torch.testing.assert_close(plain.posterior_mean(x, t), equal.posterior_mean(x, t))


def _half_precision_cases():
    """``name -> (model(x, time), state scale, times)`` for every oracle a solve evaluates."""
    from flowrestore.oracles import (
        GaussianDenoiserOracle,
        GaussianFlowMatchingOracle,
        GaussianMixtureOracle,
    )
    from flowrestore.oracles.diffusion import linear_alphas_cumprod

    g = _gen(11)
    mean = 0.5 * torch.randn(8, generator=g, dtype=F64)
    std = 0.1 + torch.rand(8, generator=g, dtype=F64)
    mix = GaussianMixtureOracle(means=torch.randn(3, 8, generator=g, dtype=F64), stds=0.3)
    sigmas = torch.tensor([80.0, 1.0, 0.01, 0.002, 0.5])
    timesteps = torch.tensor([999.0, 500.0, 1.0, 10.0, 0.0])
    unit = torch.tensor([1.0, 0.5, 0.01, 1e-3, 0.0])
    abar = linear_alphas_cumprod()
    return {
        "edm": (GaussianDenoiserOracle(mean=mean, std=std), 80.0, sigmas),
        "flow_matching": (GaussianFlowMatchingOracle(mean=mean, std=std), 1.0, timesteps),
        "mixture_edm": (mix, 80.0, sigmas),
        "mixture_diffusion": (
            mix.diffusion_model(alphas_cumprod=abar),
            1.0,
            torch.tensor([1.375, 0.0, 500.0, 998.0, 999.0]),
        ),
        "mixture_flow_matching": (mix.flow_matching_model(), 1.0, timesteps),
        "indi": (GaussianOracle(mean=mean, std=std, noise_std=0.3), 1.0, unit),
        "generative": (GaussianGenerativeOracle(mean=mean, std=std), 1.0, unit),
        "dirac_mixture": (
            DiracMixture(centers=torch.randn(3, 8, generator=g, dtype=F64), noise_std=0.5),
            1.0,
            unit,
        ),
    }


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", list(_half_precision_cases()))
def test_half_precision_input_gets_the_closed_form_rounded(name, dtype):
    """A bf16/fp16 state gets, in its dtype, the float64 closed form at the same (rounded)
    inputs to one unit in the last place (rounding the result costs half of one; the float32
    arithmetic underneath ~1e-7). Computed in bf16 itself the EDM and flow-matching closed forms
    were off by 5 and 13 units, the mixture's responsibilities by hundreds, and the mixture's
    diffusion model indexed past its schedule at timestep 998 (1000 in bf16)."""
    model, scale, times = _half_precision_cases()[name]
    x = (scale * torch.randn(5, 8, generator=_gen(12), dtype=F64)).to(dtype)
    got = model(x, times.to(dtype))
    assert got.dtype == dtype
    want = model(x.double(), times.to(dtype).double())
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(got.double(), want, rtol=eps, atol=1e-5)
