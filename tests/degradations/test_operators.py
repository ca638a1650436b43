"""Linear operators: exact adjoints, Gaussian blur properties, kernel cache, gradients, errors."""

import math

import numpy as np
import pytest
import torch

import flowrestore.degradations.blur as blur_mod
from flowrestore.degradations import (
    JPEG,
    AdditiveGaussianNoise,
    Blur,
    Diagonal,
    Downsample,
    GaussianBlur,
    Identity,
    Inpainting,
    kernel_cache_info,
)
from flowrestore.errors import ConfigError, ShapeError

D64 = torch.float64


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def operators(b):
    g = _gen(1)
    return [
        Identity(),
        GaussianBlur(1.3),
        GaussianBlur(2.0, kernel_size=9, padding="circular"),
        GaussianBlur(0.8, padding="zeros"),
        GaussianBlur(torch.linspace(0.2, 2.5, b, dtype=D64)),  # per-sample widths
        Blur(torch.rand(5, 3, generator=g, dtype=D64)),
        Blur(torch.rand(b, 3, 7, generator=g, dtype=D64), padding="circular"),
        Blur(torch.rand(b, 5, 3, generator=g, dtype=D64)),  # per-sample kernels, reflect
        Blur(torch.rand(3, 3, generator=g, dtype=D64), padding="zeros"),
        Downsample(4),
        Downsample(2),
        Inpainting((torch.rand(16, 16, generator=g) > 0.5).to(D64)),
        Diagonal(torch.rand(b, 1, 16, 16, generator=g, dtype=D64)),
        Diagonal(0.3),
    ]


@pytest.mark.parametrize("shape", [(1, 1, 16, 16), (3, 2, 16, 16), (2, 3, 16, 16)])
def test_every_linear_operator_is_adjoint(shape):
    for op in operators(shape[0]):
        err = op.check_adjoint(shape, generator=_gen(2))
        assert err < 1e-10, (op, err)


def test_adjoint_on_non_square_and_bhw_batches():
    for op in (GaussianBlur(1.1, kernel_size=7), Blur(torch.rand(3, 5, dtype=D64)), Downsample(2)):
        assert op.check_adjoint((2, 8, 12), generator=_gen(3)) < 1e-10
        assert op.check_adjoint((2, 1, 2, 8, 12), generator=_gen(4)) < 1e-10


def test_check_adjoint_detects_a_wrong_adjoint():
    class Wrong(GaussianBlur):
        def A_adjoint(self, y):
            return y

    assert Wrong(1.5).check_adjoint((1, 1, 16, 16), generator=_gen()) > 1e-3

    class Doubled(GaussianBlur):
        def A_adjoint(self, y):
            return 2 * super().A_adjoint(y)

    # <x, 2Aᵀy> = 2<Ax, y>: the documented relative error |l − 2l| / |l| is exactly 1
    err = Doubled(1.5).check_adjoint((1, 1, 16, 16), generator=_gen())
    assert err == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("padding", ["reflect", "circular"])
def test_gaussian_blur_preserves_constants_and_kernel_sums_to_one(padding):
    op = GaussianBlur(2.3, kernel_size=11, padding=padding)
    k = op.kernel(dtype=D64)
    assert float(k.sum()) == pytest.approx(1.0, abs=1e-14)
    x = torch.full((2, 3, 12, 12), 0.37, dtype=D64)
    torch.testing.assert_close(op(x), x, rtol=0, atol=1e-14)


def test_gaussian_width_zero_is_identity():
    x = torch.rand(2, 3, 10, 10, generator=_gen(), dtype=D64)
    torch.testing.assert_close(GaussianBlur(0.0, kernel_size=5)(x), x, rtol=0, atol=0)
    torch.testing.assert_close(GaussianBlur(1e-3, kernel_size=5)(x), x, rtol=0, atol=1e-300)


def test_gaussian_matches_direct_2d_convolution():
    x = torch.rand(1, 1, 9, 9, generator=_gen(), dtype=D64)
    op = GaussianBlur(1.2, kernel_size=5, padding="zeros")
    k = op.kernel(dtype=D64)
    ref = torch.nn.functional.conv2d(x, torch.outer(k, k)[None, None], padding=2)
    torch.testing.assert_close(op(x), ref, rtol=1e-13, atol=1e-14)


def test_per_sample_blur_equals_blurring_each_sample_alone():
    widths = torch.tensor([0.4, 1.0, 2.5], dtype=D64)
    x = torch.rand(3, 2, 16, 16, generator=_gen(), dtype=D64)
    batched = GaussianBlur(widths, kernel_size=11)(x)
    for i, w in enumerate(widths.tolist()):
        alone = GaussianBlur(w, kernel_size=11)(x[i : i + 1])
        torch.testing.assert_close(batched[i : i + 1], alone, rtol=1e-13, atol=1e-14)


def test_kernel_cache_hit_and_no_rebuild_per_call(monkeypatch):
    calls = {"n": 0}
    real = blur_mod.gaussian_kernel

    def counting(*args, **kwargs):
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(blur_mod, "gaussian_kernel", counting)
    width = 1.23456789  # unlikely to be cached by another test
    op = GaussianBlur(width, kernel_size=9)
    misses0 = kernel_cache_info().misses
    x = torch.rand(2, 1, 12, 12, dtype=torch.float32)
    for _ in range(5):
        op(x)
        op.A_adjoint(x)
    assert calls["n"] == 1
    assert kernel_cache_info().misses == misses0 + 1
    assert op.kernel(dtype=torch.float32) is op.kernel(dtype=torch.float32)
    assert GaussianBlur(width, kernel_size=9).kernel(dtype=torch.float32) is op.kernel(
        dtype=torch.float32
    )
    assert op.kernel(dtype=D64) is not op.kernel(dtype=torch.float32)  # one entry per dtype
    assert calls["n"] == 2


def test_tensor_width_is_not_cached_and_gets_gradient():
    x = torch.rand(1, 1, 6, 6, generator=_gen(), dtype=D64)
    w = torch.tensor(0.9, dtype=D64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda w: GaussianBlur(w, kernel_size=5)(x), (w,))
    wb = torch.tensor([0.7, 1.4], dtype=D64, requires_grad=True)
    xb = torch.rand(2, 1, 6, 6, generator=_gen(1), dtype=D64)
    assert torch.autograd.gradcheck(lambda w: GaussianBlur(w, kernel_size=5).A_adjoint(xb), (wb,))


def test_free_kernel_gets_gradient():
    x = torch.rand(1, 2, 6, 6, generator=_gen(), dtype=D64)
    k = torch.rand(3, 3, generator=_gen(1), dtype=D64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda k: Blur(k)(x), (k,))


def test_downsample_values_and_upsample():
    x = torch.arange(16, dtype=D64).reshape(1, 1, 4, 4)
    y = Downsample(2)(x)
    torch.testing.assert_close(y, torch.tensor([[[[2.5, 4.5], [10.5, 12.5]]]], dtype=D64))
    torch.testing.assert_close(Downsample(2)(Downsample(2).upsample(y)), y)


def test_inpainting_masks_and_size_mismatch():
    mask = torch.zeros(8, 8)
    mask[2:5, 2:5] = 1
    x = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(Inpainting(mask)(x), x * mask)
    with pytest.raises(ShapeError, match="mask of shape \\(16, 16\\)"):
        Inpainting(torch.ones(16, 16))(x)


def test_typed_errors():
    with pytest.raises(ConfigError, match="width"):
        GaussianBlur(-1.0)
    with pytest.raises(ConfigError, match="kernel_size"):
        GaussianBlur(1.0, kernel_size=4)
    with pytest.raises(ConfigError, match="padding"):
        GaussianBlur(1.0, padding="mirror")
    with pytest.raises(ShapeError, match="too large.*reflect"):
        GaussianBlur(1.0, kernel_size=21)(torch.rand(1, 1, 8, 8))
    GaussianBlur(1.0, kernel_size=21, padding="circular")(torch.rand(1, 1, 8, 8))  # fine
    # reflect padding needs kernel_size // 2 <= side - 1: 9 fits a side of 5, not of 4
    GaussianBlur(1.0, kernel_size=9)(torch.rand(1, 1, 5, 5))
    with pytest.raises(ShapeError, match="too large.*reflect"):
        GaussianBlur(1.0, kernel_size=9)(torch.rand(1, 1, 4, 5))
    with pytest.raises(ShapeError, match="divisible by factor=4"):
        Downsample(4)(torch.rand(1, 1, 10, 12))
    with pytest.raises(ConfigError, match="odd"):
        Blur(torch.ones(2, 3))
    with pytest.raises(ShapeError, match="per-sample width has 2"):
        GaussianBlur(torch.tensor([1.0, 2.0]), kernel_size=5)(torch.rand(3, 1, 8, 8))
    with pytest.raises(ConfigError, match="quality"):
        JPEG(0)
    with pytest.raises(ConfigError, match="std"):
        AdditiveGaussianNoise(-0.1)


def test_jpeg_round_trip():
    g = _gen()
    smooth = torch.nn.functional.interpolate(
        torch.rand(2, 3, 4, 4, generator=g), size=32, mode="bilinear"
    )
    out = JPEG(95)(smooth.to(D64))
    assert out.shape == smooth.shape and out.dtype == D64
    assert float((out - smooth).abs().mean()) < 0.02
    low = JPEG(5)(smooth)
    assert float((low - smooth).abs().mean()) > float((JPEG(95)(smooth) - smooth).abs().mean())
    assert JPEG(50)(torch.rand(1, 1, 16, 16)).shape == (1, 1, 16, 16)
    with pytest.raises(ShapeError, match="C in \\(1, 3\\)"):
        JPEG(50)(torch.rand(1, 2, 8, 8))


def test_jpeg_keeps_8_bit_levels_of_flat_images():
    """A flat image is a lone DC coefficient per block, which JPEG at quality 95 keeps exactly:
    every one of the 256 levels goes to ``round(255 x)`` and comes back as itself (white stays
    white; measured: exact at quality 75 too, within one level at 50)."""
    levels = torch.arange(256, dtype=D64) / 255
    x = levels.reshape(-1, 1, 1, 1).expand(-1, 3, 16, 16).contiguous()
    out = JPEG(95)(x)
    assert float((out - x).abs().max()) < 0.25 / 255


def test_additive_noise_is_reproducible_and_has_the_right_std():
    x = torch.zeros(4, 1, 64, 64, dtype=D64)
    a = AdditiveGaussianNoise(0.05)(x, generator=_gen(7))
    b = AdditiveGaussianNoise(0.05)(x, generator=_gen(7))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert float(a.std()) == pytest.approx(0.05, rel=0.03)
    per = AdditiveGaussianNoise(torch.tensor([0.0, 0.1, 0.0, 0.2]))(x, generator=_gen(1))
    assert per.shape == x.shape
    assert float(per[0].abs().max()) == 0 and float(per[3].std()) == pytest.approx(0.2, rel=0.05)
    assert float(per[1].std()) == pytest.approx(0.1, rel=0.05)


@pytest.mark.parametrize("padding,mode", [("reflect", "reflect"), ("circular", "circular")])
def test_padding_matches_torch_pad(padding, mode):
    x = torch.rand(2, 3, 10, 13, generator=_gen(), dtype=D64)
    op = GaussianBlur(1.7, kernel_size=7, padding=padding)
    k = op.kernel(dtype=D64)
    ref = torch.nn.functional.conv2d(
        torch.nn.functional.pad(x, (3, 3, 3, 3), mode=mode).reshape(6, 1, 16, 19),
        torch.outer(k, k)[None, None],
    ).reshape(x.shape)
    torch.testing.assert_close(op(x), ref, rtol=1e-13, atol=1e-14)


def test_motion_path_exposure_is_equal_per_unit_length():
    """A motion kernel's camera path is rasterised with equal exposure per unit length, splatted
    bilinearly: a horizontal segment from x = 1 to x = 6 on row 2 puts mass 1 on each whole pixel
    it crosses and 1/2 on each end pixel; a polyline's total mass is its length."""
    from flowrestore.degradations.motion import _rasterise

    img = _rasterise(np.array([1 + 2j, 6 + 2j]), 8)
    want = np.zeros((8, 8))
    want[2, 1:7] = [0.5, 1.0, 1.0, 1.0, 1.0, 0.5]
    np.testing.assert_allclose(img, want, atol=1e-12)
    path = np.array([1.5 + 1.5j, 5.0 + 4.0j, 2.0 + 6.5j])
    np.testing.assert_allclose(img.sum(), 5.0, rtol=1e-12)
    np.testing.assert_allclose(_rasterise(path, 8).sum(), np.abs(np.diff(path)).sum(), rtol=1e-12)


def test_hole_masks_are_centred_and_a_box_removes_its_area():
    """The inpainting families' holes sit at the image centre on even and odd sizes (each mask
    equals its flips; the Gaussian hole is 0 on an odd image's centre pixel) and a box of side
    ``s`` removes exactly ``s²`` of pixel area (its coverage is each cell's exact overlap)."""
    from flowrestore.degradations.inpainting import box_hole_mask, gaussian_hole_mask

    size = torch.tensor([1.3, 2.0, 3.7], dtype=torch.float64)
    for h, w in ((8, 8), (7, 9)):
        for mask in (box_hole_mask(size, h, w), gaussian_hole_mask(size, h, w)):
            torch.testing.assert_close(mask, mask.flip(-1), rtol=0, atol=1e-12)
            torch.testing.assert_close(mask, mask.flip(-2), rtol=0, atol=1e-12)
        removed = (1 - box_hole_mask(size, h, w)).sum(dim=(1, 2, 3))
        torch.testing.assert_close(removed, size**2, rtol=1e-12, atol=0)
    assert float(gaussian_hole_mask(size, 7, 9)[:, 0, 3, 4].abs().max()) == 0.0


def test_a_blind_blur_fixes_its_kernel_from_the_widths_upper_bound_when_finite():
    """``BlindOperator(GaussianBlur, width=Param(...))``: the kernel size is ``2⌈3·hi⌉ + 1`` of
    the width's upper bound ``hi`` (it must not change while the width is estimated); with no
    finite upper bound it is left to the operator."""
    from flowrestore.degradations import BlindOperator, GaussianBlur, Param

    assert BlindOperator(GaussianBlur, width=Param(1.0, bounds=(0.1, 2.2))).fixed == {
        "kernel_size": 15
    }
    assert (
        "kernel_size"
        not in BlindOperator(GaussianBlur, width=Param(1.0, bounds=(0.5, math.inf))).fixed
    )
    assert BlindOperator(
        GaussianBlur, width=Param(1.0, bounds=(0.1, 2.2)), kernel_size=5
    ).fixed == {"kernel_size": 5}


def test_select_rows_restricts_per_sample_parameters_only():
    """``op.select_rows(rows, ndim)`` (used when a solve steps a subset of its batch): per-sample
    masks, blur widths and kernels keep those rows; shared parameters return the operator."""
    from flowrestore.degradations import Blur, Downsample, GaussianBlur, Inpainting

    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 1, 8, 8, generator=g, dtype=torch.float64)
    rows = torch.tensor([1, 3])
    per_sample = [
        Inpainting((torch.rand(4, 1, 8, 8, generator=g) < 0.5).double()),
        GaussianBlur(torch.tensor([0.5, 0.8, 1.1, 1.4], dtype=torch.float64), kernel_size=5),
        Blur(torch.rand(4, 3, 3, generator=g, dtype=torch.float64)),
    ]
    for op in per_sample:
        sub = op.select_rows(rows, x.dim())
        assert sub is not op
        torch.testing.assert_close(sub.A(x[rows]), op.A(x)[rows], rtol=0, atol=0)
        torch.testing.assert_close(sub.A_adjoint(x[rows]), op.A_adjoint(x)[rows], rtol=0, atol=0)
    shared = [Inpainting(torch.ones(8, 8)), Inpainting(torch.ones(1, 1, 8, 8)), Downsample(2),
              GaussianBlur(1.0), Blur(torch.rand(3, 3, generator=g))]  # fmt: skip
    for op in shared:
        assert op.select_rows(rows, x.dim()) is op
