"""Dirac's reverse SDE against closed-form priors (docs/math.md §4).

With the exact posterior mean and a linear ``A_t`` the reverse SDE is the time reversal of a process
with the SDP's marginals, so: pure denoising from a fixed ``y`` lands on ``c_i`` with the posterior
probability ``∝ w_i N(y; c_i, σ_1²)``; from ``y_1 ~ p_1`` it lands with the prior weights; for a
Gaussian prior the output has the law of ``y_0``. Every test is a few-standard-error test that a
wrong score scale, sign, noise variance or incremental reconstruction fails.
"""

from __future__ import annotations

import pytest
import torch

import flowrestore as fr
from flowrestore.flows import DiracSDE
from flowrestore.solvers import SRA1, EulerMaruyama

from .helpers import GaussianDirac, binomial_z, landing_frequencies, mixture_2d, tiled_family

IDENT = lambda x, t: x  # noqa: E731  (pure denoising: A_t = I, a plain callable)


def _denoising_setup():
    centers, weights = mixture_2d()
    sigma = fr.schedules.Geometric(0.01, 0.5)
    oracle = fr.oracles.DiracMixture(centers=centers, weights=weights, noise_std=0.5)
    phi = oracle.dirac_predictor(A=IDENT, sigma=sigma)
    y = torch.tensor([[0.2, -0.1]], dtype=torch.float64)
    # landing weights: the component posterior given y_1 = y, with variance σ_1² (not σ_1² − σ_0²:
    # the SDP starts from y_0 = x_0 + σ_0 z, so y_1 − c_i has variance σ_1²)
    target = oracle.denoising_posterior_weights(y, variance=0.5**2)[0]
    return oracle, DiracSDE(phi, IDENT, sigma), y, target


@pytest.mark.parametrize("solver,steps", [(EulerMaruyama(), 400), (SRA1(), 100)])
def test_pure_denoising_lands_with_posterior_weights(solver, steps):
    oracle, sde, y, target = _denoising_setup()
    n = 5000
    sol = fr.solve(
        sde,
        solver,
        y.expand(n, 2).clone(),
        steps=steps,
        generator=torch.Generator().manual_seed(11),
    )
    freq = landing_frequencies(oracle, sol.x)
    z = binomial_z(freq, target, n)
    assert z.abs().max() < 4, (freq, target, z)
    # σ_0 = 0.01: the last iterate sits on a centre up to the residual noise
    _, dist = oracle.nearest_center(sol.x)
    assert float(dist.max()) < 0.08
    assert not torch.allclose(target, oracle.weights, atol=0.05)  # the target is not the prior


def _diagonal_setup():
    centers, weights = mixture_2d()
    d = torch.tensor([1.0, 0.3], dtype=torch.float64)
    family = fr.degradations.DiagonalFamily(
        a=lambda t: 1 - t[:, None] * (1 - d.to(t)),
        derivative=lambda t: -(1 - d.to(t)) + 0 * t[:, None],
    )
    sigma = fr.schedules.Geometric(0.01, 0.5)
    oracle = fr.oracles.DiracMixture(centers=centers, weights=weights, H=d, noise_std=0.5)
    return oracle, family, sigma


def test_linear_family_lands_with_prior_weights():
    """(For this family ``A_t`` is affine in ``t``, so every incremental-reconstruction option
    gives the same step; the blur test below exercises a family that is not.)"""
    oracle, family, sigma = _diagonal_setup()
    n = 5000
    g = torch.Generator().manual_seed(5)
    _, y1, _ = oracle.sample(n, generator=g)  # y_1 = A_1 x_0 + σ_1 n
    sde = DiracSDE(oracle.dirac_predictor(A=family, sigma=sigma), family, sigma)
    sol = fr.solve(sde, EulerMaruyama(), y1, steps=300, generator=g, output="posterior_mean")
    freq = landing_frequencies(oracle, sol.x)
    z = binomial_z(freq, oracle.weights, n)
    assert z.abs().max() < 4, (freq, z)


def test_blur_family_lands_with_prior_weights():
    """8×8 one-channel images, three centres, Gaussian blur of width 0.3 → 2.0 (float32: the
    depthwise blur is ~30× faster than in float64 on CPU)."""
    g = torch.Generator().manual_seed(3)
    k = 3
    centers = torch.rand(k, 1, 8, 8, generator=g)
    weights = torch.tensor([0.2, 0.3, 0.5])
    family = fr.degradations.GaussianBlurFamily(kernel_size=7, width=fr.schedules.Linear(0.3, 2.0))
    sigma = fr.schedules.Geometric(0.01, 1.0)
    oracle = fr.oracles.DiracMixture(centers=centers, weights=weights, noise_std=1.0)
    phi = oracle.dirac_predictor(A=tiled_family(family, k), sigma=sigma)
    n = 3000
    idx = torch.multinomial(weights, n, replacement=True, generator=g)
    x0 = centers[idx]
    y1 = family(x0, 1.0) + 1.0 * torch.randn(x0.shape, generator=g)
    post = oracle.dirac_posterior_weights(y1, 1.0, A=tiled_family(family, k), sigma=sigma)
    assert float(post.max(1).values.mean()) < 0.75  # y_1 alone does not decide the class
    sol = fr.solve(
        DiracSDE(phi, family, sigma),
        EulerMaruyama(),
        y1,
        steps=60,
        generator=g,
        output="posterior_mean",
    )
    freq = landing_frequencies(oracle, sol.x)
    z = binomial_z(freq, oracle.weights.double(), n)
    assert z.abs().max() < 4, (freq, z)


@pytest.mark.parametrize("solver,steps", [(EulerMaruyama(), 100), (SRA1(), 50)])
def test_gaussian_prior_output_has_law_of_y0(solver, steps):
    """Φ is linear for a Gaussian prior; started from y_1 ~ p_1 the output at t = 0 has the law of
    ``y_0 = a_0 x + σ_0 z``. Euler–Maruyama's eq. 7 is affine in y, so its exact discrete moments
    are known too; the sample moments match them and the continuous ones within a few SE."""
    sigma = fr.schedules.Geometric(0.05, 0.5)
    prob = GaussianDirac(m=[0.5, -1.0], s=[1.0, 0.3], c=0.6, sigma=sigma)
    n = 40_000
    g = torch.Generator().manual_seed(2)
    m1, v1 = prob.marginal(1.0)
    y1 = m1 + v1.sqrt() * torch.randn(n, 2, generator=g, dtype=torch.float64)
    sde = DiracSDE(prob.phi, prob.family(), sigma)
    sol = fr.solve(sde, solver, y1, steps=steps, generator=g)
    mean, var = sol.x.mean(0), sol.x.var(0)
    m0, v0 = prob.marginal(0.0)
    se_mean = (v0 / n).sqrt()
    se_var = v0 * (2 / (n - 1)) ** 0.5
    assert ((mean - m0).abs() / se_mean).max() < 4, (mean, m0)
    assert ((var - v0).abs() / se_var).max() < 4, (var, v0)
    if isinstance(solver, EulerMaruyama):
        grid = torch.linspace(1, 0, steps + 1, dtype=torch.float64)
        dm, dv = prob.eq7_moments(grid, m1, v1)
        assert ((mean - dm).abs() / se_mean).max() < 4
        assert ((var - dv).abs() / se_var).max() < 4
        # the scheme's variance bias is small and first order in the step (weak order 1)
        assert ((dm - m0).abs() < 1e-12).all()  # the mean is exact for this linear problem
        assert ((dv - v0).abs() / v0).max() < 0.03
        fine = torch.linspace(1, 0, 4 * steps + 1, dtype=torch.float64)
        _, dv4 = prob.eq7_moments(fine, m1, v1)
        ratio = (dv - v0).abs() / (dv4 - v0).abs()
        assert ((ratio > 3.2) & (ratio < 4.8)).all(), ratio


def test_gaussian_prior_from_fixed_observation_is_tighter():
    """From a fixed y the output is a posterior sample: its variance is below the prior's."""
    sigma = fr.schedules.Geometric(0.05, 0.5)
    prob = GaussianDirac(m=[0.0], s=[1.0], c=0.0, sigma=sigma)  # pure denoising
    n = 20_000
    y = torch.full((n, 1), 1.2, dtype=torch.float64)
    sol = fr.solve(
        DiracSDE(prob.phi, prob.family(), sigma),
        EulerMaruyama(),
        y,
        steps=100,
        generator=torch.Generator().manual_seed(4),
    )
    # y_0 | y_1: Gaussian with Var(y_0|y_1) = v0 (v1 − v0)/v1 … for the linear-Gaussian chain:
    # y_0 ~ N(0, 1 + σ_0²), y_1 = y_0 + N(0, σ_1² − σ_0²)
    v0 = 1 + 0.05**2
    dv = 0.5**2 - 0.05**2
    post_mean = v0 / (v0 + dv) * 1.2
    post_var = v0 * dv / (v0 + dv)
    se_mean, se_var = (post_var / n) ** 0.5, post_var * (2 / (n - 1)) ** 0.5
    assert abs(float(sol.x.mean()) - post_mean) < 4 * se_mean + 2e-3
    assert abs(float(sol.x.var()) - post_var) < 4 * se_var + 2e-3


@pytest.mark.slow
@pytest.mark.parametrize("solver,steps", [(EulerMaruyama(), 400), (SRA1(), 200)])
def test_linear_family_landing_large(solver, steps):
    """docs/math.md §4's numbers: 400 steps, 2·10⁵ samples match w to about 0.001 (slow)."""
    oracle, family, sigma = _diagonal_setup()
    n = 200_000
    g = torch.Generator().manual_seed(9)
    _, y1, _ = oracle.sample(n, generator=g)
    sde = DiracSDE(oracle.dirac_predictor(A=family, sigma=sigma), family, sigma)
    sol = fr.solve(sde, solver, y1, steps=steps, generator=g, output="posterior_mean")
    freq = landing_frequencies(oracle, sol.x)
    assert binomial_z(freq, oracle.weights, n).abs().max() < 4
    assert (freq - oracle.weights).abs().max() < 0.004


def test_a_dirac_flow_on_the_mixtures_predictor_pickles_and_solves_identically():
    """The README's Dirac example: ``DiracSDE(mix.dirac_predictor(A=A, sigma=s), A, sigma=s)``
    pickles (the predictor is a DiracPredictor object, not a local closure) and the unpickled
    flow's seeded solve is the original's, bit for bit."""
    import pickle

    g = torch.Generator().manual_seed(0)
    A = fr.degradations.GaussianBlurFamily(kernel_size=9, width=fr.schedules.Linear(0.3, 1.5))
    sigma = fr.schedules.Geometric(0.01, 0.05)
    images = torch.rand(3, 1, 12, 12, generator=g, dtype=torch.float64)
    mix = fr.oracles.DiracMixture(centers=images, noise_std=0.05)
    sde = fr.DiracSDE(mix.dirac_predictor(A=A, sigma=sigma), A, sigma=sigma)
    back = pickle.loads(pickle.dumps(sde))
    y = A(images[:2], 1.0) + 0.05 * torch.randn(2, 1, 12, 12, generator=g, dtype=torch.float64)
    runs = [fr.solve(f, fr.DiracStep(), y, steps=10, seeds=[0, 1]) for f in (sde, back)]
    assert torch.equal(runs[0].x, runs[1].x)
