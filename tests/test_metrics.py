"""Metrics: PSNR, SSIM, data consistency, high-frequency energy, feature distances."""

import math

import pytest
import torch
from skimage.metrics import structural_similarity

from flowrestore.errors import ConfigError, ShapeError
from flowrestore.metrics import (
    data_consistency,
    feature_distance,
    feature_metric_names,
    get_feature_metric,
    high_frequency_energy,
    psnr,
    register_feature_metric,
    ssim,
)


def test_psnr_known_values():
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    p = psnr(x, x)
    assert p.shape == (3,) and bool(torch.isinf(p).all()) and bool((p > 0).all())
    assert torch.allclose(psnr(x + 0.1, x), torch.full((3,), 20.0, dtype=torch.float64))
    assert torch.allclose(
        psnr(x * 255 + 2.55, x * 255, data_range=255.0), torch.full((3,), 40.0, dtype=torch.float64)
    )
    half = torch.stack([x[0], x[1] + 0.01])
    assert psnr(half, x[:2]).tolist()[1] == pytest.approx(40.0)
    with pytest.raises(ShapeError, match="same shape"):
        psnr(x, x[:, :1])
    with pytest.raises(ConfigError, match="data_range"):
        psnr(x, x, data_range=0)


def test_ssim_identical_one_and_matches_skimage():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 16, 16, generator=g)
    assert torch.allclose(ssim(x, x), torch.ones(2, dtype=torch.float64))
    noisy = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    s = ssim(noisy, x)
    assert bool((s < 0.99).all())
    ref = structural_similarity(
        noisy[1].double().numpy(),
        x[1].double().numpy(),
        channel_axis=0,
        data_range=1.0,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )
    assert float(s[1]) == pytest.approx(ref, rel=1e-12)
    gray = ssim(noisy[:, :1], x[:, :1])
    assert gray.shape == (2,) and bool((gray < 1).all())


def test_data_consistency_and_high_frequency():
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(2))

    def A(z):
        return z[..., ::2, ::2]

    y = A(x) + 0.5
    assert torch.allclose(
        data_consistency(y, A, x), torch.full((2,), 0.5 * math.sqrt(16), dtype=torch.float64)
    )
    with pytest.raises(ShapeError, match="A\\(x\\)"):
        data_consistency(y, lambda z: z, x)
    assert torch.equal(
        high_frequency_energy(torch.full((2, 3, 8, 8), 0.7)), torch.zeros(2, dtype=torch.float64)
    )
    ramp = torch.arange(8.0).expand(1, 1, 8, 8).contiguous()
    assert float(high_frequency_energy(ramp)[0]) == pytest.approx(
        2 * 8 / 64
    )  # boundary columns only
    # the same ramp along the rows: the replicate boundary on all four sides (rows 0 and 7 only)
    assert float(high_frequency_energy(ramp.transpose(-1, -2).contiguous())[0]) == pytest.approx(
        2 * 8 / 64
    )
    smooth = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    assert bool((high_frequency_energy(smooth) < high_frequency_energy(x)).all())


def test_feature_distance_and_registry():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)

    def net(z):
        h = conv(z)
        return [h, torch.nn.functional.avg_pool2d(h, 2)]

    x = torch.rand(2, 3, 8, 8)
    assert torch.allclose(feature_distance(x, x, net), torch.zeros(2, dtype=torch.float64))
    d = feature_distance(x, x.flip(-1), net)
    assert d.shape == (2,) and bool((d > 0).all())
    register_feature_metric("toy", lambda a, b: feature_distance(a, b, net))
    assert "toy" in feature_metric_names()
    assert torch.equal(get_feature_metric("toy")(x, x.flip(-1)), d)
    with pytest.raises(ConfigError, match="no feature metric"):
        get_feature_metric("lpips-missing")


def test_feature_distance_is_the_layer_mean_of_normalised_squared_differences():
    """LPIPS without learned weights, computed here from its definition: per layer, unit-normalise
    each position's channel vector, square the difference, average over positions, sum over
    channels; then average the layers (two layers of different sizes)."""
    g = torch.Generator().manual_seed(3)
    w1, w2 = torch.randn(4, 3, generator=g), torch.randn(5, 4, generator=g)

    def net(z):
        h1 = torch.einsum("oc,bchw->bohw", w1, z)
        h2 = torch.einsum("oc,bchw->bohw", w2, torch.nn.functional.avg_pool2d(h1, 2)).tanh()
        return [h1, h2]

    x, y = torch.rand(3, 3, 6, 6, generator=g), torch.rand(3, 3, 6, 6, generator=g)
    layers = []
    for a, b in zip(net(x), net(y), strict=True):
        a = a / a.norm(dim=1, keepdim=True)
        b = b / b.norm(dim=1, keepdim=True)
        layers.append(((a - b) ** 2).sum(dim=1).mean(dim=(1, 2)))
    want = (layers[0] + layers[1]).double() / 2
    torch.testing.assert_close(feature_distance(x, y, net), want, rtol=1e-5, atol=1e-7)
