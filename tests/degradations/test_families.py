"""Families A_t: adjointness, A_0 ≈ I, per-sample t, time derivatives vs central differences."""

import pytest
import torch

from flowrestore.degradations import (
    DiagonalFamily,
    DownsampleFamily,
    FunctionFamily,
    GaussianBlur,
    GaussianBlurFamily,
    InpaintingFamily,
    as_family,
)
from flowrestore.errors import ConfigError, ShapeError
from flowrestore.schedules import Geometric, Linear

D64 = torch.float64


def _x(shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=D64)


def families():
    return [
        GaussianBlurFamily(width=Linear(0.3, 3.0), kernel_size=13),
        GaussianBlurFamily(width=lambda t: 0.3 + 2.7 * t**2, kernel_size=9, padding="circular"),
        GaussianBlurFamily(width=Geometric(0.3, 2.0), kernel_size=7, padding="zeros"),
        InpaintingFamily(size=Linear(0.0, 6.0)),
        InpaintingFamily(size=Linear(0.0, 10.0), shape="box"),
        InpaintingFamily(size=lambda t: 8.0 * t, shape="box"),
        DownsampleFamily(factor=4),
        DownsampleFamily(factor=2, amount=lambda t: t**2),
        DiagonalFamily(a=lambda t: 1 - t[:, None, None, None] * 0.7),
    ]


@pytest.mark.parametrize("shape", [(1, 1, 16, 16), (3, 2, 16, 16)])
@pytest.mark.parametrize("fam", families(), ids=lambda f: type(f).__name__)
def test_families_are_adjoint_for_per_sample_t(fam, shape):
    t = torch.linspace(0.1, 0.9, shape[0], dtype=D64)
    assert fam.check_adjoint(shape, t, generator=torch.Generator().manual_seed(1)) < 1e-10
    assert fam.check_adjoint(shape, 0.6, generator=torch.Generator().manual_seed(2)) < 1e-10


@pytest.mark.parametrize("fam", families(), ids=lambda f: type(f).__name__)
def test_per_sample_t_equals_each_sample_alone(fam):
    x = _x((3, 2, 16, 16))
    t = torch.tensor([0.15, 0.5, 0.85], dtype=D64)
    out, dt = fam(x, t), fam.time_derivative(x, t)
    for i in range(3):
        torch.testing.assert_close(
            out[i : i + 1], fam(x[i : i + 1], t[i : i + 1]), rtol=1e-12, atol=1e-13
        )
        torch.testing.assert_close(
            out[i : i + 1], fam(x[i : i + 1], float(t[i])), rtol=1e-12, atol=1e-13
        )
        torch.testing.assert_close(
            dt[i : i + 1], fam.time_derivative(x[i : i + 1], t[i : i + 1]), rtol=1e-10, atol=1e-12
        )


@pytest.mark.parametrize("fam", families(), ids=lambda f: type(f).__name__)
def test_time_derivative_matches_central_difference(fam):
    x = _x((2, 1, 16, 16))
    t = torch.tensor([0.23, 0.61], dtype=D64)
    h = 1e-6
    fd = (fam(x, t + h) - fam(x, t - h)) / (2 * h)
    torch.testing.assert_close(fam.time_derivative(x, t), fd, rtol=1e-5, atol=1e-6)


def test_blur_family_endpoints():
    fam = GaussianBlurFamily(width=Linear(0.0, 2.0), kernel_size=11)
    x = _x((2, 3, 16, 16))
    torch.testing.assert_close(fam(x, 0.0), x, rtol=0, atol=1e-300)
    torch.testing.assert_close(
        fam(x, 1.0), GaussianBlur(2.0, kernel_size=11)(x), rtol=1e-13, atol=1e-14
    )
    near_id = GaussianBlurFamily(width=Linear(0.3, 3.0), kernel_size=11)
    # Dirac's "imperceptible" width 0.3: the centre tap keeps > 99% of the mass
    assert float((near_id(x, 0.0) - x).abs().max()) < 0.02


def test_blur_family_gradient_reaches_schedule_parameter():
    end = torch.tensor(2.0, dtype=D64, requires_grad=True)
    x = _x((2, 1, 8, 8))
    fn = lambda e: GaussianBlurFamily(width=Linear(0.3, e), kernel_size=5)(x, 1.0)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (end,))


def test_inpainting_family_identity_at_zero_and_grows():
    x = _x((1, 3, 16, 16))
    for shape in ("gaussian", "box"):
        fam = InpaintingFamily(size=Linear(0.0, 8.0), shape=shape)
        torch.testing.assert_close(fam(x, 0.0), x, rtol=0, atol=0)
        masks = [fam.mask(t, x) for t in (0.2, 0.5, 0.9)]
        # the holes grow
        assert all(bool((a >= b - 1e-15).all()) for a, b in zip(masks, masks[1:], strict=False))
        assert float(masks[-1].min()) < 0.05 and float(masks[-1].max()) <= 1


def test_downsample_family_endpoints():
    fam = DownsampleFamily(factor=4)
    x = _x((2, 3, 16, 16))
    torch.testing.assert_close(fam(x, 0.0), x)
    y = fam(x, 1.0)
    torch.testing.assert_close(
        y, torch.nn.functional.avg_pool2d(x, 4).repeat_interleave(4, -1).repeat_interleave(4, -2)
    )


def test_diagonal_family_oracle_example():
    d = torch.tensor([1.0, 0.3], dtype=D64)
    fam = DiagonalFamily(
        a=lambda t: 1 - t[:, None] * (1 - d), derivative=lambda t: -(1 - d).expand(t.shape[0], 2)
    )
    x = _x((4, 2))
    t = torch.tensor([0.0, 0.3, 0.7, 1.0], dtype=D64)
    torch.testing.assert_close(fam(x, t)[-1], x[-1] * d)
    torch.testing.assert_close(fam.time_derivative(x, t), -(1 - d) * x)
    fd_fam = DiagonalFamily(a=lambda t: 1 - t[:, None] * (1 - d))
    torch.testing.assert_close(fd_fam.time_derivative(x, t), -(1 - d) * x, rtol=1e-7, atol=1e-9)


def test_any_callable_is_a_family():
    fam = as_family(lambda x, t: x * (1 + t[:, None, None, None]))
    x = _x((2, 1, 4, 4))
    t = torch.tensor([0.0, 1.0], dtype=D64)
    torch.testing.assert_close(
        fam.time_derivative(x, t), x, rtol=1e-9, atol=1e-9
    )  # one-sided at 0, 1
    assert as_family(fam) is fam
    ident = FunctionFamily(lambda x, t: x)
    torch.testing.assert_close(ident(x, 0.4), x)
    assert float(ident.time_derivative(x, 0.4).abs().max()) == 0
    with pytest.raises(ConfigError, match="no adjoint"):
        ident.adjoint(x, 0.4)


def test_family_typed_errors():
    fam = GaussianBlurFamily(width=Linear(0.3, 3.0), kernel_size=61)
    x = torch.rand(2, 1, 64, 64)
    with pytest.raises(ConfigError, match=r"t must lie in \[0, 1\]"):
        fam(x, 1.2)
    with pytest.raises(ConfigError, match=r"t must lie in \[0, 1\]"):
        fam(x, torch.tensor([0.5, -0.1]))
    with pytest.raises(ShapeError, match=r"\[B\]=\[2\]"):
        fam(x, torch.tensor([0.5, 0.1, 0.2]))
    with pytest.raises(ShapeError, match="too large"):
        fam(torch.rand(1, 1, 16, 16), 0.5)
    with pytest.raises(ConfigError, match="width"):
        GaussianBlurFamily(width=Linear(-1.0, 1.0), kernel_size=5)(x, 0.1)
    with pytest.raises(ConfigError, match="exactly one"):
        InpaintingFamily()
    with pytest.raises(ShapeError, match="mask_fn"):
        InpaintingFamily(mask_fn=lambda t, hw: torch.ones(32, 32))(x, 0.5)
    with pytest.raises(ShapeError, match="divisible"):
        DownsampleFamily(factor=3)(x, 0.5)
    with pytest.raises(ShapeError, match="a\\(t\\)"):
        DiagonalFamily(a=lambda t: torch.ones(5))(x, 0.5)
    with pytest.raises(ConfigError, match="power"):
        InpaintingFamily(size=Linear(0, 1), power=0.5)


def test_user_mask_fn_family():
    def mask_fn(t, hw):
        h, w = hw
        ramp = torch.linspace(0, 1, w, dtype=t.dtype)
        return (1 - t[:, None, None, None] * ramp).expand(-1, 1, h, w)

    fam = InpaintingFamily(mask_fn=mask_fn)
    x = _x((2, 3, 8, 8))
    t = torch.tensor([0.3, 0.8], dtype=D64)
    expect = -torch.linspace(0, 1, 8, dtype=D64) * x
    torch.testing.assert_close(fam.time_derivative(x, t), expect, rtol=1e-8, atol=1e-10)
