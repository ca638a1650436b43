"""Second review of the closed-form oracles and the image metrics, against independent references:
autograd of a mixture density built with ``torch.distributions``, SciPy solves of the probability
flows, Monte Carlo over the linear-Gaussian model, and scikit-image's metrics on its photographs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from flowrestore import metrics
from flowrestore.errors import ConfigError
from flowrestore.oracles import (
    DiracMixture,
    GaussianDiffusionOracle,
    GaussianFlowMatchingOracle,
    GaussianMixtureOracle,
    LinearGaussianPosterior,
)
from flowrestore.oracles.diffusion import linear_alphas_cumprod

F64 = torch.float64


def _mixture():
    means = torch.tensor([[-2.0, 1.0, 0.5], [2.0, 0.5, -1.0], [0.0, -1.5, 1.0]], dtype=F64)
    stds = torch.tensor([[0.5], [0.3], [0.8]], dtype=F64)
    weights = torch.tensor([0.3, 0.5, 0.2], dtype=F64)
    return GaussianMixtureOracle(means=means, stds=stds, weights=weights), means, stds, weights


def _score(x, a, b, means, stds, weights):
    """``∇ log p(x)`` of ``x = a x_0 + b ε`` by autograd of a ``torch.distributions`` mixture."""
    comp = torch.distributions.Independent(
        torch.distributions.Normal(a * means, torch.sqrt(a * a * stds**2 + b * b)), 1
    )
    law = torch.distributions.MixtureSameFamily(torch.distributions.Categorical(weights), comp)
    x = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(law.log_prob(x).sum(), x)
    return g


def _x(n=6, seed=0):
    return 1.5 * torch.randn(n, 3, generator=torch.Generator().manual_seed(seed), dtype=F64)


# --------------------------------------------------------------- Gaussian-mixture models
@pytest.mark.parametrize("timestep", [0.1, 1.0, 10.0, 500.0, 1000.0])
def test_mixture_flow_matching_velocity_is_the_score_identity_and_accurate_in_float32(timestep):
    """``v = E[ε − x_0 | x_t]`` with ``E[ε|x] = −b ∇log p`` and ``a E[x_0|x] = x + b² ∇log p``
    (``a = 1 − t``, ``b = t``). In float32 it must stay within float32 rounding of that reference
    at small ``t``: forming ``E[ε|x]`` as ``(x − (1 − t) x̂_0)/t`` lost 10⁻³ at ``t = 10⁻⁴``."""
    oracle, means, stds, weights = _mixture()
    model = oracle.flow_matching_model(num_train_timesteps=1000)
    x = _x()
    t = timestep / 1000
    a, b = 1 - t, t
    if a > 0:
        g = _score(x, a, b, means, stds, weights)
        ref = -b * g - (x + b * b * g) / a
    else:  # t = 1: x = ε, E[x_0 | x] = Σ π_i μ_i
        ref = x - (weights[:, None] * means).sum(0)
    torch.testing.assert_close(model(x, timestep), ref, rtol=1e-9, atol=1e-9)
    out32 = model(x.float(), timestep)
    assert out32.dtype == torch.float32
    torch.testing.assert_close(out32.double(), ref, rtol=0, atol=2e-6)


def test_mixture_flow_matching_velocity_at_t0_is_minus_the_state():
    """At ``t = 0`` the state is ``x_0``: ``E[ε | x_0] = 0`` and ``v = −x_0``."""
    oracle, *_ = _mixture()
    x = _x()
    torch.testing.assert_close(oracle.flow_matching_model()(x, 0.0), -x, rtol=0, atol=1e-15)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("timestep", [0.0, 0.5, 3.0, 250.0, 999.0])
def test_mixture_diffusion_model_is_the_score_identity_and_accurate_in_float32(
    prediction_type, timestep
):
    """``ε̂ = −b ∇log p`` and ``x̂_0 = (x + b² ∇log p)/a`` at the schedule's ``(a, b)``, checked in
    float64 and, to float32 rounding, in float32 (``(x − a x̂_0)/b`` lost 4·10⁻⁵ at ``b = 0.01``)."""
    oracle, means, stds, weights = _mixture()
    table = linear_alphas_cumprod()
    model = oracle.diffusion_model(alphas_cumprod=table, prediction_type=prediction_type)
    k = int(timestep)
    assert timestep in (k, k + 0.5)
    # ᾱ at a half timestep: the log-SNR midpoint (documented interpolation)
    lam = torch.log(table / (1 - table))
    lam_t = lam[k] if timestep == k else 0.5 * (lam[k] + lam[k + 1])
    abar = torch.sigmoid(lam_t).item()
    a, b = math.sqrt(abar), math.sqrt(1 - abar)
    x = _x()
    g = _score(x, a, b, means, stds, weights)
    eps, x0 = -b * g, (x + b * b * g) / a
    ref = {"epsilon": eps, "v_prediction": a * eps - b * x0, "sample": x0}[prediction_type]
    torch.testing.assert_close(model(x, timestep), ref, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(model(x.float(), timestep).double(), ref, rtol=0, atol=2e-6)


def test_mixture_models_stay_finite_in_large_dimensions_with_tiny_variances():
    """``D = 10⁵`` coordinates, ``s = 10⁻⁴``: the responsibilities are a log-sum-exp, no NaN."""
    g = torch.Generator().manual_seed(3)
    means = torch.randn(3, 100_000, generator=g)
    oracle = GaussianMixtureOracle(means=means, stds=1e-4)
    x = means[1:2] + 1e-4 * torch.randn(1, 100_000, generator=g)
    for t in (0.0, 1e-3, 0.5, 1000.0):
        v = oracle.flow_matching_model()(x, t)
        assert bool(torch.isfinite(v).all())
    for s in (0.0, 1e-6, 1.0, 1e3):
        assert bool(torch.isfinite(oracle(x, s)).all())
        assert bool(torch.isfinite(oracle.log_density(x, s)).all())
    # at σ = 0 the denoiser keeps a clean sample from the nearest component
    torch.testing.assert_close(oracle(x, 0.0), x)


# --------------------------------------------------------------- Dirac side in half precision
def _far_mixture():
    g = torch.Generator().manual_seed(5)
    mix = DiracMixture(centers=torch.randn(3, 100_000, generator=g), noise_std=1.0)
    idx = torch.tensor([0, 2])
    y = mix.centers[idx].float() + torch.randn(2, 100_000, generator=g)
    return mix, y, idx


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_dirac_posterior_weights_in_half_precision_do_not_overflow(dtype):
    """Squared distances of ~10⁵ overflow float16 (65504): inf − inf made every weight NaN,
    while the InDI side (widened) was finite. The weights follow the input's dtype."""
    mix, y, idx = _far_mixture()
    p = mix.dirac_posterior_weights(
        y.to(dtype), 0.5, A=lambda x, t: x, sigma=lambda t: torch.ones_like(t)
    )
    assert p.dtype == dtype
    assert bool(torch.isfinite(p).all())
    assert torch.equal(p.float().argmax(1), idx)
    m = mix.dirac_posterior_mean(
        y.to(dtype), 0.5, A=lambda x, t: x, sigma=lambda t: torch.ones_like(t)
    )
    assert bool(torch.isfinite(m).all())
    q = mix.denoising_posterior_weights(y.to(dtype), variance=1.0)
    assert q.dtype == dtype and bool(torch.isfinite(q).all())
    assert torch.equal(q.float().argmax(1), idx)


# --------------------------------------------------------------- probability-flow maps
def test_diffusion_exact_map_is_the_probability_flow_solved_numerically():
    """DDIM's ODE in ``σ = b/a``, ``x̄ = x/a``: ``dx̄/dσ = ε̂(a x̄)``, solved by DOP853 down to
    ``σ = 0`` (the clean image), against :meth:`GaussianDiffusionOracle.exact_map`."""
    c = torch.tensor([0.3, -1.0, 2.0], dtype=F64)
    s = torch.tensor([0.5, 0.3, 1.7], dtype=F64)
    table = linear_alphas_cumprod()
    oracle = GaussianDiffusionOracle(mean=c, std=s, alphas_cumprod=table)
    x = _x(2)

    def rhs(sig, xb):
        a = 1 / math.sqrt(1 + sig * sig)
        b = sig * a
        xx = torch.from_numpy(a * xb).reshape(2, 3)
        return (b * (xx - a * c) / (a * a * s**2 + b * b)).reshape(-1).numpy()

    for k in (999, 400, 5):
        abar = float(table[k])
        sig0 = math.sqrt((1 - abar) / abar)
        x_bar = (x / math.sqrt(abar)).reshape(-1).numpy()
        sol = solve_ivp(rhs, (sig0, 0.0), x_bar, method="DOP853", rtol=1e-12, atol=1e-12)
        ref = torch.from_numpy(sol.y[:, -1]).reshape(2, 3)
        torch.testing.assert_close(oracle.exact_map(x, k), ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("t_from", "t_to"), [(1.0, 0.0), (0.7, 0.2), (0.0, 1.0)])
def test_flow_matching_exact_map_is_the_velocity_ode_solved_numerically(t_from, t_to):
    """The velocity is checked against the ODE's own solve, in both directions."""
    c = torch.tensor([0.3, -1.0, 2.0], dtype=F64)
    s = torch.tensor([0.5, 0.3, 1.7], dtype=F64)
    oracle = GaussianFlowMatchingOracle(mean=c, std=s)
    x = _x(2)

    def rhs(t, xx):
        # the velocity from its definition E[ε − x_0 | x_t], by joint-Gaussian conditioning
        V = (1 - t) ** 2 * s**2 + t * t
        dev = torch.from_numpy(xx).reshape(2, 3) - (1 - t) * c
        eps = t * dev / V
        x0 = c + (1 - t) * s**2 * dev / V
        return (eps - x0).reshape(-1).numpy()

    sol = solve_ivp(
        rhs, (t_from, t_to), x.reshape(-1).numpy(), method="DOP853", rtol=1e-12, atol=1e-12
    )
    ref = torch.from_numpy(sol.y[:, -1]).reshape(2, 3)
    torch.testing.assert_close(oracle.exact_map(x, t_from, t_to), ref, rtol=1e-9, atol=1e-9)
    t_mid = 0.5 * (t_from + t_to)
    torch.testing.assert_close(
        oracle(x, t_mid * 1000), torch.from_numpy(rhs(t_mid, x.numpy())).reshape(2, 3)
    )


# --------------------------------------------------------------- linear-Gaussian posterior
def _posteriors():
    g = torch.Generator().manual_seed(0)
    shape = (2, 4, 4)
    mean = torch.randn(shape, generator=g, dtype=F64)
    std = 0.5 + torch.rand(shape, generator=g, dtype=F64)
    mask = (
        (torch.rand(shape, generator=g) > 0.5).double()
        * 2
        * torch.rand(shape, generator=g, dtype=F64)
    )
    block_std = std.reshape(2, 2, 2, 2, 2).mean((-3, -1), keepdim=True)
    block_std = block_std.expand(2, 2, 2, 2, 2).reshape(shape)
    kernel = torch.tensor([[0.1, 0.5], [0.3, 0.1], [0.0, 0.2]], dtype=F64)
    return {
        "masked": LinearGaussianPosterior.masked(
            mean=mean, std=std, mask=mask, noise_std=0.3, event_shape=shape
        ),
        "masked_noiseless": LinearGaussianPosterior.masked(
            mean=mean, std=std, mask=mask, noise_std=0.0, event_shape=shape
        ),
        "block": LinearGaussianPosterior.block_average(
            mean=mean, std=block_std, factor=2, noise_std=0.2, event_shape=shape
        ),
        "blur": LinearGaussianPosterior.circular_blur(
            mean=mean, std=0.7, kernel=kernel, noise_std=0.1, event_shape=shape
        ),
    }


@pytest.mark.parametrize("name", list(_posteriors()))
def test_linear_gaussian_posterior_against_monte_carlo(name):
    """Over ``(x, y)`` drawn from the model, the error ``x − μ_post(y)`` has mean 0, is
    uncorrelated with ``y`` (the orthogonality that defines the conditional mean of a Gaussian)
    and has variance ``diag Σ_post``; the mean expected residual is ``m σ_y²``."""
    post = _posteriors()[name]
    n = 100_000
    x, y = post.sample(n, generator=torch.Generator().manual_seed(1))
    err = x - post.posterior_mean(y)
    se = 5 * post.std.max().item() / math.sqrt(n)
    assert err.mean(0).abs().max().item() < se
    yc = (y - y.mean(0)).flatten(1)
    cov = err.flatten(1).T @ yc / n
    scale = (err.flatten(1).std(0)[:, None] * yc.std(0)[None, :]).clamp_min(1e-12)
    assert (cov / scale).abs().max().item() < 5 / math.sqrt(n)
    var = post.posterior_var()
    torch.testing.assert_close(err.var(0), var, rtol=0.05, atol=1e-12)
    m = y[0].numel()
    resid = post.expected_residual(y).mean().item()
    assert abs(resid - m * post.noise_std**2) <= 0.02 * m * post.noise_std**2 + 1e-12


# --------------------------------------------------------------- metrics vs scikit-image
skimage = pytest.importorskip("skimage")
from skimage import data as skdata  # noqa: E402
from skimage.metrics import peak_signal_noise_ratio, structural_similarity  # noqa: E402


def _noisy(img, sigma, seed):
    rng = np.random.default_rng(seed)
    out = img.astype(np.float64) + rng.normal(0, sigma, img.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


def _t(img):
    """HWC or HW numpy image -> [C, H, W] tensor."""
    t = torch.from_numpy(np.ascontiguousarray(img))
    return t[None] if t.dim() == 2 else t.permute(2, 0, 1)


def test_psnr_and_ssim_of_uint8_photos_default_to_skimages_range_of_255():
    """A ``uint8`` photo scored with the default range: scikit-image infers 255; a range of 1
    (the previous default for every dtype) put PSNR 48 dB too low, silently."""
    cam = skdata.camera()[::2, ::2]
    noisy = _noisy(cam, 20, 0)
    x, r = _t(noisy)[None], _t(cam)[None]
    assert metrics.psnr(x, r).item() == pytest.approx(peak_signal_noise_ratio(cam, noisy), 1e-12)
    ref_ssim = structural_similarity(
        cam, noisy, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert metrics.ssim(x, r).item() == pytest.approx(ref_ssim, abs=1e-12)


def test_psnr_of_a_signed_integer_image_needs_a_data_range():
    a = torch.zeros(1, 1, 4, 4, dtype=torch.int16)
    with pytest.raises(ConfigError, match="data_range"):
        metrics.psnr(a + 1, a)
    assert metrics.psnr(a + 1, a, data_range=10).item() == pytest.approx(20.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_batched_colour_metrics_are_skimages_per_image_values(dtype):
    """A batch of two colour photos in [0, 1] and one in [0, 255]: each entry is scikit-image's
    value for that image (per-image MSE, not the batch's)."""
    photos = [skdata.astronaut()[::4, ::4], skdata.chelsea()[:128, :128:, :][::2, ::2]]
    photos[1] = np.ascontiguousarray(photos[1][:128, :128])
    h = min(p.shape[0] for p in photos)
    w = min(p.shape[1] for p in photos)
    photos = [p[:h, :w] for p in photos]
    noisy = [_noisy(p, s, i) for i, (p, s) in enumerate(zip(photos, (5, 30), strict=True))]
    ref = torch.stack([_t(p) for p in photos]).to(dtype) / 255
    x = torch.stack([_t(p) for p in noisy]).to(dtype) / 255
    got_p, got_s = metrics.psnr(x, ref), metrics.ssim(x, ref)
    got_p255 = metrics.psnr(x * 255, ref * 255, data_range=255.0)
    assert got_p.dtype == F64 and got_p.shape == (2,)
    for i in range(2):
        a = ref[i].permute(1, 2, 0).double().numpy()
        b = x[i].permute(1, 2, 0).double().numpy()
        want_p = peak_signal_noise_ratio(a, b, data_range=1.0)
        want_s = structural_similarity(
            a,
            b,
            data_range=1.0,
            channel_axis=2,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        tol = 1e-10 if dtype == F64 else 1e-4
        assert got_p[i].item() == pytest.approx(want_p, abs=tol)
        assert got_p255[i].item() == pytest.approx(want_p, abs=max(tol, 1e-9))
        assert got_s[i].item() == pytest.approx(want_s, abs=tol)
    assert got_p[0] > got_p[1]


def test_identical_images_have_infinite_psnr_and_unit_ssim_and_nan_propagates():
    cam = torch.from_numpy(skdata.camera()[:64, :64].copy())[None, None]
    assert metrics.psnr(cam, cam).item() == math.inf
    assert metrics.ssim(cam, cam).item() == pytest.approx(1.0)
    bad = cam.double() / 255
    bad[..., 3, 3] = math.nan
    assert math.isnan(metrics.psnr(bad, cam.double() / 255).item())


def test_feature_distance_of_half_precision_relu_features_is_finite():
    """All-zero feature vectors (a ReLU's) in float16: the 1e-10 guard underflowed to 0 and the
    normalisation was 0/0 = NaN; the distance must be the float32 one (0 for identical inputs)."""
    g = torch.Generator().manual_seed(2)
    x, r = torch.rand(2, 3, 8, 8, generator=g), torch.rand(2, 3, 8, 8, generator=g)

    def net(z):
        return torch.relu(z - 0.5)

    want = metrics.feature_distance(x, r, net)
    got = metrics.feature_distance(x.half(), r.half(), net)
    assert bool(torch.isfinite(got).all())
    torch.testing.assert_close(got, want, rtol=1e-2, atol=1e-3)
    assert torch.equal(metrics.feature_distance(x.half(), x.half(), net), torch.zeros(2, dtype=F64))


# --------------------------------------------------------------- refused input, half precision
def test_masked_posterior_refuses_a_mask_that_does_not_broadcast_by_name():
    with pytest.raises(ConfigError, match="mask"):
        LinearGaussianPosterior.masked(
            mean=0.0, std=1.0, mask=torch.ones(3, 3), noise_std=0.1, event_shape=(1, 4, 4)
        )


@pytest.mark.parametrize("bad", [(1, 4.5, 4), (1, True, 4), 5, "abc"])
def test_posterior_refuses_a_non_integer_event_shape(bad):
    """``(1, 4.5, 4)`` was silently truncated to ``(1, 4, 4)``."""
    with pytest.raises(ConfigError, match="event_shape"):
        LinearGaussianPosterior.masked(mean=0.0, std=1.0, mask=1.0, noise_std=0.1, event_shape=bad)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_blur_posterior_takes_a_half_precision_measurement(dtype):
    """CPU FFTs have no half precision: ``posterior_mean`` and ``apply`` raised a bare
    RuntimeError; they now compute in float32 and answer in the input's dtype."""
    post = _posteriors()["blur"]
    _, y = post.sample(3, generator=torch.Generator().manual_seed(4))
    want = post.posterior_mean(y)
    got = post.posterior_mean(y.to(dtype))
    assert got.dtype == dtype
    torch.testing.assert_close(got.double(), want, rtol=0.03, atol=0.03)
    assert post.apply(y.to(dtype)).dtype == dtype


def test_mixture_component_refuses_a_non_tensor_with_a_shape_error():
    from flowrestore.errors import ShapeError

    oracle, *_ = _mixture()
    with pytest.raises(ShapeError, match="x"):
        oracle.component([1.0, 2.0, 3.0])


def test_blur_posterior_refuses_an_empty_kernel():
    """A ``[0, 3]`` kernel was accepted as the zero operator (nothing measured), silently."""
    with pytest.raises(ConfigError, match="kernel"):
        LinearGaussianPosterior.circular_blur(
            mean=0.0, std=1.0, kernel=torch.zeros(0, 3), noise_std=0.1, event_shape=(1, 4, 4)
        )


def test_data_consistency_takes_one_number_per_sample():
    """``y_obs`` ``[B]`` (a scalar measurement per sample) crashed in ``flatten(1)``."""
    y = torch.tensor([1.0, -2.0, 3.0])
    out = metrics.data_consistency(y, lambda x: x.sum((1, 2, 3)), torch.zeros(3, 1, 2, 2))
    torch.testing.assert_close(out, torch.tensor([1.0, 2.0, 3.0], dtype=F64))


@pytest.mark.parametrize("sigma", [0.0, 0.05, 1.0, 30.0])
def test_mixture_log_density_is_the_distributions_log_prob(sigma):
    oracle, means, stds, weights = _mixture()
    x = _x()
    comp = torch.distributions.Independent(
        torch.distributions.Normal(means, torch.sqrt(stds**2 + sigma**2).expand_as(means)), 1
    )
    law = torch.distributions.MixtureSameFamily(torch.distributions.Categorical(weights), comp)
    torch.testing.assert_close(oracle.log_density(x, sigma), law.log_prob(x))
