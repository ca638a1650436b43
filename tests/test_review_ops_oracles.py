"""Review tests of the closed-form oracles (demanding-user review)."""

import pytest
import torch

from flowrestore.errors import ConfigError, ShapeError
from flowrestore.oracles import GaussianMixtureOracle, LinearGaussianPosterior

D64 = torch.float64


def _posteriors():
    shape = (3, 4, 4)
    return [
        LinearGaussianPosterior.masked(
            mean=0.2, std=1.0, mask=torch.ones(1, 4, 4), noise_std=0.1, event_shape=shape
        ),
        LinearGaussianPosterior.block_average(
            mean=0.2, std=1.0, factor=2, noise_std=0.1, event_shape=shape
        ),
        LinearGaussianPosterior.circular_blur(
            mean=0.2, std=1.0, kernel=torch.ones(3, 3) / 9, noise_std=0.1, event_shape=shape
        ),
    ]


@pytest.mark.parametrize("post", _posteriors(), ids=lambda p: p.kind)
def test_linear_gaussian_posterior_refuses_a_measurement_of_the_wrong_shape(post):
    # a one-channel measurement was broadcast over the three channels (or, for block averaging,
    # a full-size image failed inside torch with an untyped RuntimeError)
    _, y = post.sample(2, generator=torch.Generator().manual_seed(0))
    assert tuple(y.shape[1:]) == post.measurement_shape
    assert post.posterior_mean(y).shape == (2, 3, 4, 4)
    for bad in (y[:, :1], y[0], torch.zeros(2, 3, 4, 4 + 1, dtype=D64)):
        with pytest.raises(ShapeError, match="y must have shape"):
            post.posterior_mean(bad)
    with pytest.raises(ConfigError, match="floating-point"):
        post.posterior_mean(y.long())


@pytest.mark.parametrize("n", [0, -1, 1.5, True])
def test_gaussian_mixture_sample_checks_its_count(n):
    # multinomial failed first with an untyped RuntimeError / TypeError
    oracle = GaussianMixtureOracle(means=torch.zeros(2, 3))
    with pytest.raises(ConfigError, match="n must be a positive int"):
        oracle.sample(n)


def test_gaussian_mixture_sample_checks_its_generator():
    oracle = GaussianMixtureOracle(means=torch.zeros(2, 3))
    with pytest.raises(ConfigError, match="generator"):
        oracle.sample(2, generator="seed")


def test_dirac_predictor_on_a_family_and_schedule_reads_no_time_on_the_host():
    # the README's exact Dirac predictor called the family and the schedule with their checked
    # entry points: 2 host synchronisations per evaluation, inside every step of a solve
    from syncs import SyncCounter

    import flowrestore as fr
    from flowrestore.oracles import DiracMixture

    A = fr.degradations.GaussianBlurFamily(kernel_size=5, width=fr.schedules.Linear(0.3, 3.0))
    sigma = fr.schedules.Geometric(0.01, 0.05)
    images = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    phi = DiracMixture(centers=images, noise_std=0.05).dirac_predictor(A=A, sigma=sigma)
    y = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    for t in (torch.tensor(0.5), torch.tensor([0.2, 0.9])):
        phi(y, t)  # warm-up: per-dtype constants
        with SyncCounter() as sc:
            out = phi(y, t)
        assert sc.count == 0, sc.ops
        # the same as the checked calls
        ref = DiracMixture(centers=images, noise_std=0.05).dirac_posterior_mean(
            y, t, A=lambda x, s: A(x, s), sigma=lambda s: sigma(s)
        )
        torch.testing.assert_close(out, ref)
    # a time outside [0, 1] makes its sample NaN, as in every oracle (no host read to refuse it)
    out = phi(y, torch.tensor([0.5, 1.5]))
    assert bool(torch.isfinite(out[0]).all()) and bool(out[1].isnan().all())


@pytest.mark.parametrize("bad", [{"sigma_from": float("nan")}, {"sigma_to": float("nan")}])
def test_denoiser_exact_map_refuses_a_nan_noise_level(bad):
    # a NaN noise level passed the "< 0" check and returned a NaN image
    from flowrestore.oracles import GaussianDenoiserOracle

    oracle = GaussianDenoiserOracle(mean=0.0, std=0.5, event_shape=(3,))
    kw = {"sigma_from": 80.0, **bad}
    with pytest.raises(ConfigError, match="noise levels must be >= 0"):
        oracle.exact_map(torch.zeros(2, 3), **kw)


def test_diffusion_oracle_takes_a_numpy_timestep():
    # a timestep read from a numpy array of timesteps (np.int64) was refused
    import numpy as np

    from flowrestore.oracles import GaussianDiffusionOracle
    from flowrestore.oracles.diffusion import linear_alphas_cumprod

    oracle = GaussianDiffusionOracle(alphas_cumprod=linear_alphas_cumprod(), event_shape=(3,))
    x = torch.rand(2, 3, generator=torch.Generator().manual_seed(0), dtype=D64)
    for k in (np.int64(500), np.float32(500.0)):
        torch.testing.assert_close(oracle(x, k), oracle(x, 500))


def test_masked_posterior_takes_the_boolean_mask_inpainting_takes():
    # Inpainting(mask) takes a bool mask; the oracle of the same problem refused it
    from flowrestore.degradations import Inpainting

    mask = torch.rand(1, 4, 4, generator=torch.Generator().manual_seed(0)) > 0.5
    post = LinearGaussianPosterior.masked(
        mean=0.2, std=1.0, mask=mask, noise_std=0.1, event_shape=(2, 4, 4)
    )
    x = torch.rand(3, 2, 4, 4, generator=torch.Generator().manual_seed(1), dtype=D64)
    torch.testing.assert_close(post.apply(x), Inpainting(mask)(x))
