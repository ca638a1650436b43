"""Review tests of flowrestore.metrics against scikit-image (demanding-user review)."""

import numpy as np
import pytest
import torch

from flowrestore.errors import ConfigError, ShapeError
from flowrestore.metrics import psnr, ssim


@pytest.mark.parametrize("side", [8, 10])
def test_ssim_refuses_images_smaller_than_its_window_with_a_typed_error(side):
    # skimage's 11×11 Gaussian window: 8×8 to 10×10 images failed inside skimage with an untyped
    # ValueError telling the user images must be "at least 7x7"
    x = torch.rand(2, 3, side, 16)
    with pytest.raises(ShapeError, match=r"11×11.*\(2, 3, " + str(side) + ", 16\\)"):
        ssim(x, x)


def test_ssim_at_the_smallest_size_matches_skimage():
    from skimage.metrics import structural_similarity

    g = torch.Generator().manual_seed(0)
    x, r = torch.rand(1, 1, 11, 13, generator=g), torch.rand(1, 1, 11, 13, generator=g)
    want = structural_similarity(
        x[0, 0].double().numpy(),
        r[0, 0].double().numpy(),
        data_range=1.0,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )
    assert float(ssim(x, r)) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("bad", [True, float("inf"), float("nan"), 0, -1.0, "1"])
def test_data_range_must_be_a_finite_positive_number(bad):
    x = torch.rand(1, 1, 16, 16)
    for metric in (psnr, ssim):
        with pytest.raises(ConfigError, match="data_range"):
            metric(x, x * 0.5, data_range=bad)


def test_data_range_takes_numpy_scalars():
    x = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    want = psnr(x, x * 0.5, data_range=1.0)
    torch.testing.assert_close(psnr(x, x * 0.5, data_range=np.float32(1.0)), want)


def test_feature_distance_takes_pooled_features():
    # a feature net returning [B, C] (accepted: "a tensor [B, C, ...]") crashed in flatten(2)
    # with an IndexError
    from flowrestore.metrics import feature_distance

    g = torch.Generator().manual_seed(0)
    x, r = torch.rand(2, 3, 8, 8, generator=g), torch.rand(2, 3, 8, 8, generator=g)
    pooled = feature_distance(x, r, lambda z: z.mean((-1, -2)))
    a, b = x.mean((-1, -2)), r.mean((-1, -2))
    a, b = a / (a.norm(dim=1, keepdim=True) + 1e-10), b / (b.norm(dim=1, keepdim=True) + 1e-10)
    torch.testing.assert_close(pooled, (a - b).square().sum(1).double())
    # the same as one spatial position
    one = feature_distance(x, r, lambda z: z.mean((-1, -2))[..., None, None])
    torch.testing.assert_close(pooled, one)
