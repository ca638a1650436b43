"""The Gaussian-mixture oracle against independent computations (docs/math.md §9).

One component is the Gaussian oracles' closed forms; several satisfy Tweedie's formula against the
mixture density written with ``torch.distributions``; the diffusion and flow-matching models are
the EDM denoiser at the rescaled state; and the probability-flow ODE carries noise to the prior's
component weights and means.
"""

from __future__ import annotations

import math

import pytest
import torch

import flowrestore as fr
from flowrestore.errors import ConfigError, ShapeError
from flowrestore.oracles import (
    GaussianDenoiserOracle,
    GaussianDiffusionOracle,
    GaussianFlowMatchingOracle,
    GaussianMixtureOracle,
)
from flowrestore.oracles.diffusion import alpha_cumprod_at, linear_alphas_cumprod

F64 = torch.float64


def _mixture(k=3, d=5, seed=0, spread=1.0):
    g = torch.Generator().manual_seed(seed)
    means = spread * torch.randn(k, d, generator=g, dtype=F64)
    stds = 0.1 + torch.rand(k, d, generator=g, dtype=F64)
    weights = 0.2 + torch.rand(k, generator=g, dtype=F64)
    return GaussianMixtureOracle(means=means, stds=stds, weights=weights)


def _x(n=6, d=5, scale=2.0, seed=1):
    return scale * torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=F64)


def test_one_component_is_the_gaussian_oracle_of_every_model_kind():
    m = _mixture(k=1)
    mean, std = m.means[0], m.stds[0]
    x = _x()
    torch.testing.assert_close(m(x, 0.7), GaussianDenoiserOracle(mean=mean, std=std)(x, 0.7))
    abar = linear_alphas_cumprod()
    ts = torch.tensor([0.0, 10.5, 250.0, 500.0, 800.25, 999.0], dtype=F64)
    for ptype in ("epsilon", "v_prediction", "sample"):
        ref = GaussianDiffusionOracle(
            mean=mean, std=std, alphas_cumprod=abar, prediction_type=ptype
        )
        model = m.diffusion_model(alphas_cumprod=abar, prediction_type=ptype)
        torch.testing.assert_close(model(x, ts), ref(x, ts), rtol=1e-10, atol=1e-10)
    ts = torch.tensor([0.0, 10.5, 250.0, 500.0, 999.0, 1000.0], dtype=F64)
    fm = GaussianFlowMatchingOracle(mean=mean, std=std)
    torch.testing.assert_close(m.flow_matching_model()(x, ts), fm(x, ts), rtol=1e-10, atol=1e-10)


def _log_density(m, x, sigma):
    """``log p_σ`` of the mixture, written with torch.distributions (independent of the oracle)."""
    comp = torch.distributions.Independent(
        torch.distributions.Normal(m.means, torch.sqrt(m.stds**2 + sigma**2)), 1
    )
    mix = torch.distributions.Categorical(probs=m.weights)
    return torch.distributions.MixtureSameFamily(mix, comp).log_prob(x)


@pytest.mark.parametrize("sigma", [0.05, 0.4, 1.5, 20.0])
def test_the_denoiser_satisfies_tweedies_formula(sigma):
    m = _mixture(k=4, spread=1.5)
    x = _x(scale=1.5 + sigma).requires_grad_(True)
    (grad,) = torch.autograd.grad(_log_density(m, x, sigma).sum(), x)
    torch.testing.assert_close(m(x.detach(), sigma), x.detach() + sigma**2 * grad)
    torch.testing.assert_close(m.log_density(x.detach(), sigma), _log_density(m, x, sigma).detach())


def test_an_image_shaped_mixture_satisfies_tweedies_formula():
    """Events of shape ``[C, H, W]`` (an image prior): the same formula against a density
    written with ``torch.distributions`` over all three event dimensions."""
    g = torch.Generator().manual_seed(5)
    means = torch.randn(3, 2, 3, 2, generator=g, dtype=F64)
    stds = 0.2 + torch.rand(3, 2, 3, 2, generator=g, dtype=F64)
    m = GaussianMixtureOracle(means=means, stds=stds, weights=torch.tensor([0.2, 0.5, 0.3]))
    x = torch.randn(4, 2, 3, 2, generator=g, dtype=F64).requires_grad_(True)
    sigma = torch.tensor([0.1, 0.5, 1.0, 3.0], dtype=F64)
    s = sigma.reshape(4, 1, 1, 1, 1)
    comp = torch.distributions.Independent(
        torch.distributions.Normal(means, torch.sqrt(stds**2 + s**2)), 3
    )
    mix = torch.distributions.Categorical(probs=m.weights)
    logp = torch.distributions.MixtureSameFamily(mix, comp).log_prob(x)
    (grad,) = torch.autograd.grad(logp.sum(), x)
    want = x.detach() + sigma.reshape(4, 1, 1, 1) ** 2 * grad
    torch.testing.assert_close(m(x.detach(), sigma), want)


def test_the_diffusion_and_flow_matching_models_are_the_denoiser_at_the_rescaled_state():
    m = _mixture(k=3)
    x = _x()
    abar_table = linear_alphas_cumprod()
    ts = torch.tensor([3.0, 100.5, 400.0, 700.0, 900.0, 990.0], dtype=F64)
    abar = alpha_cumprod_at(abar_table, ts)[:, None]
    a, b = abar.sqrt(), (1 - abar).sqrt()
    x0 = torch.stack([m(x[i : i + 1] / a[i], float(b[i] / a[i]))[0] for i in range(len(ts))])
    eps = (x - a * x0) / b
    outs = {"sample": x0, "epsilon": eps, "v_prediction": a * eps - b * x0}
    for ptype, want in outs.items():
        got = m.diffusion_model(alphas_cumprod=abar_table, prediction_type=ptype)(x, ts)
        torch.testing.assert_close(got, want)
    t = torch.tensor([0.01, 0.2, 0.5, 0.7, 0.9, 0.99], dtype=F64)[:, None]
    x0 = torch.stack([m(x[i : i + 1] / (1 - t[i]), float(t[i] / (1 - t[i])))[0] for i in range(6)])
    want = (x - (1 - t) * x0) / t - x0
    torch.testing.assert_close(m.flow_matching_model()(x, t[:, 0] * 1000), want)


def test_the_probability_flow_carries_noise_to_the_priors_components():
    """The ODE keeps the marginals: 4000 noises land in each component at its weight, around
    its mean (well-separated components in 2-D, a fine solve)."""
    means = torch.tensor([[-4.0, 0.0], [4.0, 1.0], [0.0, 5.0]], dtype=F64)
    stds = torch.tensor([[0.3, 0.5], [0.6, 0.2], [0.4, 0.4]], dtype=F64)
    m = GaussianMixtureOracle(means=means, stds=stds, weights=torch.tensor([0.5, 0.3, 0.2]))
    n, smax = 4000, 80.0
    flow = fr.DenoiserFlow(m, sigma_max=smax, sigma_min=0.002)
    x = smax * torch.randn(n, 2, generator=torch.Generator().manual_seed(3), dtype=F64)
    with torch.no_grad():
        x0 = fr.solve(flow, fr.RK4(), x, steps=60).x
    comp = m.component(x0)
    for i, w in enumerate(m.weights.tolist()):
        share = float((comp == i).double().mean())
        assert abs(share - w) < 4 * math.sqrt(w * (1 - w) / n), (i, share, w)
        inside = x0[comp == i]
        err = (inside.mean(0) - means[i]).abs() / (stds[i] / math.sqrt(len(inside)))
        assert float(err.max()) < 4.5, (i, inside.mean(0), means[i])
        ratio = inside.std(0) / stds[i]
        assert float((ratio - 1).abs().max()) < 0.12, (i, ratio)


def test_sample_draws_each_component_at_its_weight():
    m = _mixture(k=3)
    x, i = m.sample(6000, generator=torch.Generator().manual_seed(5))
    assert x.shape == (6000, 5)
    for k, w in enumerate(m.weights.tolist()):
        share = float((i == k).double().mean())
        assert abs(share - w) < 4 * math.sqrt(w * (1 - w) / 6000)
    torch.testing.assert_close(x[i == 0].mean(0), m.means[0], atol=0.1, rtol=0)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"means": torch.zeros(3)}, ShapeError, "means"),
        ({"means": torch.zeros(2, 3), "stds": torch.zeros(2, 3)}, ConfigError, "stds"),
        ({"means": torch.zeros(2, 3), "stds": torch.ones(4)}, ShapeError, "stds"),
        ({"means": torch.zeros(2, 3), "weights": torch.ones(3)}, ShapeError, "weights"),
        (
            {"means": torch.zeros(2, 3), "weights": torch.tensor([1.0, -1.0])},
            ConfigError,
            "weights",
        ),
    ],
)
def test_wrong_parameters_are_refused_by_name(kwargs, error, match):
    with pytest.raises(error, match=match):
        GaussianMixtureOracle(**kwargs)


def test_wrong_model_options_are_refused_by_name():
    m = _mixture()
    with pytest.raises(ConfigError, match="prediction_type"):
        m.diffusion_model(alphas_cumprod=linear_alphas_cumprod(), prediction_type="eps")
    with pytest.raises(ConfigError, match="num_train_timesteps"):
        m.flow_matching_model(num_train_timesteps=0)
    with pytest.raises(ShapeError, match="x"):
        m(torch.zeros(2, 4, dtype=F64), 0.5)
