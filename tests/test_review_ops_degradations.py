"""Review tests of the degradation operators and families (demanding-user review)."""

import pytest
import torch

from flowrestore.degradations import InpaintingFamily
from flowrestore.schedules import Linear

D64 = torch.float64


@pytest.mark.parametrize(("side", "end"), [(12, 6.0), (13, 5.0), (16, 8.0)])
def test_box_hole_derivative_at_an_integer_size_is_the_left_derivative(side, end):
    # size(1) = end: every pixel edge of the box falls on a pixel edge (a kink of the coverage);
    # the derivative was 0 everywhere there, so Dirac's drift lost its degradation term at t = 1
    fam = InpaintingFamily(size=Linear(0.0, end), shape="box")
    x = torch.rand(2, 1, side, side, generator=torch.Generator().manual_seed(0), dtype=D64)
    h = 1e-7
    for t in (1.0, 0.5):
        d = fam.time_derivative(x, t)
        left = (fam(x, t) - fam(x, t - h)) / h
        torch.testing.assert_close(d, left, rtol=0, atol=1e-5)
    assert fam.time_derivative(x, 1.0).abs().amax() > 0.1


def test_motion_kernel_at_full_intensity_finishes():
    # intensity=1 made every step Beta(1, 30)·1e-6·L long: the path needed ~10⁷ steps and the
    # draw never returned
    import signal

    from flowrestore.degradations import motion_kernel

    def too_slow(*_):
        raise TimeoutError("motion_kernel(15, 1.0) did not finish in 20 s")

    old = signal.signal(signal.SIGALRM, too_slow)
    signal.alarm(20)
    try:
        k = motion_kernel(15, 1.0, generator=torch.Generator().manual_seed(0), batch=2)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert k.shape == (2, 15, 15) and bool((k >= 0).all())
    torch.testing.assert_close(k.sum((-1, -2)), torch.ones(2))


def test_jpeg_refuses_nan_images():
    # a NaN pixel became an arbitrary 8-bit value (0.51 after decoding): a silent wrong image
    from flowrestore.degradations import JPEG
    from flowrestore.errors import ConfigError

    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    x[1, 0, 3, 4] = float("nan")
    with pytest.raises(ConfigError, match="x must not contain NaN"):
        JPEG(90)(x)


def test_additive_noise_refuses_an_integer_image_with_a_typed_error():
    # torch.randn failed with an untyped NotImplementedError ("normal_kernel_cpu" for 'Long')
    from flowrestore.degradations import AdditiveGaussianNoise
    from flowrestore.errors import ConfigError

    with pytest.raises(ConfigError, match="x must be a floating-point tensor"):
        AdditiveGaussianNoise(0.1)(torch.zeros(2, 1, 4, 4, dtype=torch.long))


def test_family_at_per_sample_times_selects_rows():
    # ``family.at(t)`` with one time per sample kept all B times when a solve stepped a subset of
    # its batch (GuidedFlow.restrict): the next evaluation raised a ShapeError mid-solve
    from flowrestore.degradations import GaussianBlurFamily

    fam = GaussianBlurFamily(width=Linear(0.3, 2.0), kernel_size=5)
    for t in (torch.tensor([0.1, 0.4, 0.7, 1.0]), 0.4, torch.tensor(0.4)):
        op = fam.at(t)
        x = torch.rand(4, 2, 9, 9, generator=torch.Generator().manual_seed(0))
        rows = torch.tensor([2, 0])
        sub = op.select_rows(rows, x.dim())
        torch.testing.assert_close(sub(x[rows]), op(x)[rows], rtol=0, atol=0)
        torch.testing.assert_close(sub.A_adjoint(x[rows]), op.A_adjoint(x)[rows], rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_gaussian_hole_family_is_finite_in_half_precision_near_t0(dtype):
    # in float16 σ² of a small hole underflowed to 0: A_t x and ∂_t A_t x were NaN at t = 1e-5
    fam = InpaintingFamily(size=Linear(0.0, 4.0))
    x = torch.rand(3, 1, 9, 9, generator=torch.Generator().manual_seed(0))
    for t in (torch.tensor([1e-5, 0.3, 1.0]), 1e-5):
        t64 = t.double() if isinstance(t, torch.Tensor) else t
        for f in (fam, fam.time_derivative):
            out = f(x.to(dtype), t.to(dtype) if isinstance(t, torch.Tensor) else t)
            ref = f(x.double(), t64)
            assert out.dtype == dtype
            assert bool(torch.isfinite(out).all())
            torch.testing.assert_close(out.double(), ref, rtol=0, atol=0.05 * ref.abs().max())


def test_gaussian_blur_with_a_zero_width_is_finite_in_float16():
    # the width floor 1e-8 is 0 in float16: the kernel of a zero (or tiny) width was 0/0 = NaN
    from flowrestore.degradations import GaussianBlur, GaussianBlurFamily, gaussian_kernel

    x = torch.rand(3, 1, 9, 9, generator=torch.Generator().manual_seed(0))
    k = gaussian_kernel(torch.tensor([0.0, 1e-5, 1.0], dtype=torch.float16), 5)
    assert k.dtype == torch.float16
    want = gaussian_kernel(torch.tensor([0.0, 1e-5, 1.0]), 5)
    torch.testing.assert_close(k.float(), want, rtol=0, atol=1e-3)
    op = GaussianBlur(torch.tensor([0.0, 1e-5, 1.0]), kernel_size=5)
    torch.testing.assert_close(op(x.half()).float(), op(x), rtol=0, atol=2e-3)
    fam = GaussianBlurFamily(width=Linear(0.0, 2.0), kernel_size=7)
    t = torch.tensor([0.0, 0.5, 1.0])
    for f in (fam, fam.time_derivative):
        out = f(x.half(), t.half())
        assert bool(torch.isfinite(out).all())
        torch.testing.assert_close(out.float(), f(x, t), rtol=0, atol=5e-3)


def _operators():
    from flowrestore.degradations import (
        Blur,
        Downsample,
        GaussianBlur,
        GaussianBlurFamily,
        Inpainting,
    )

    fam = GaussianBlurFamily(width=Linear(0.3, 1.0), kernel_size=3)
    return {
        "GaussianBlur": GaussianBlur(1.0),
        "GaussianBlur.A_adjoint": GaussianBlur(1.0).A_adjoint,
        "Blur": Blur(torch.ones(3, 3) / 9),
        "Downsample": Downsample(2),
        "Downsample.A_adjoint": Downsample(2).A_adjoint,
        "Inpainting": Inpainting(torch.ones(8, 8)),
        "GaussianBlurFamily": lambda x: fam(x, 0.5),
        "GaussianBlurFamily.time_derivative": lambda x: fam.time_derivative(x, 0.5),
        "InpaintingFamily": lambda x: InpaintingFamily(size=Linear(0.0, 2.0))(x, 0.5),
    }


@pytest.mark.parametrize("name", list(_operators()))
def test_operators_refuse_a_numpy_image_with_a_typed_error(name):
    # a numpy array failed with an untyped AttributeError ("has no attribute 'dim'")
    import numpy as np

    from flowrestore.errors import ArgumentTypeError

    with pytest.raises(ArgumentTypeError, match="must be a torch tensor, got array"):
        _operators()[name](np.zeros((1, 1, 8, 8), dtype=np.float32))


@pytest.mark.parametrize("power", [float("inf"), float("nan"), 0.5])
def test_inpainting_family_refuses_a_power_that_is_not_finite_and_at_least_1(power):
    # power=inf was accepted and ∂_t A_t x was NaN at every pixel
    from flowrestore.errors import ConfigError

    with pytest.raises(ConfigError, match="power must be a finite float >= 1"):
        InpaintingFamily(size=Linear(0.0, 4.0), power=power)


def test_family_at_a_tensor_time_reads_no_device_value_when_applied():
    # ``family.at(t)`` re-checked its tensor time (a host read) at every application: 2 host
    # synchronisations per A/Aᵀ pair inside a guided solve's steps; the time is now checked once
    from syncs import SyncCounter

    from flowrestore.degradations import GaussianBlurFamily
    from flowrestore.errors import ConfigError

    fam = GaussianBlurFamily(width=Linear(0.3, 2.0), kernel_size=5)
    op = fam.at(torch.tensor([0.2, 0.7]))
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    op(x), op.A_adjoint(x)  # warm-up
    with SyncCounter() as sc:
        y, z = op(x), op.A_adjoint(x)
    assert sc.count == 0, sc.ops
    torch.testing.assert_close(y, fam(x, torch.tensor([0.2, 0.7])))
    torch.testing.assert_close(z, fam.adjoint(x, torch.tensor([0.2, 0.7])))
    with pytest.raises(ConfigError, match=r"t must lie in \[0, 1\]"):
        fam.at(torch.tensor([0.2, 1.5]))


def test_downsample_family_refuses_an_amount_that_is_not_finite_on_the_unit_interval():
    # amount=lambda t: 1 / t was accepted and A_0 x was infinite
    from flowrestore.degradations import DownsampleFamily
    from flowrestore.errors import ConfigError

    with pytest.raises(ConfigError, match=r"amount must be finite on \[0, 1\]"):
        DownsampleFamily(factor=2, amount=lambda t: 1 / t)
