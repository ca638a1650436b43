"""Random camera-shake kernels and the MotionBlur operator (BlindDPS/BIRD's motion blur).

A kernel is a blur kernel (non-negative, sums to 1, odd size, centred on the path's centre of
mass), reproducible from a generator, longer for a larger intensity; MotionBlur is an exact-adjoint
linear operator and a blind operator whose kernel is a simplex Param.
"""

from __future__ import annotations

import pytest
import torch

import flowrestore as fr
from flowrestore.degradations import MotionBlur, motion_kernel
from flowrestore.errors import ConfigError


def _centre_of_mass(k: torch.Tensor) -> torch.Tensor:
    n = k.shape[-1]
    u = torch.arange(n, dtype=k.dtype) - n // 2
    return torch.stack([(k.sum(-1) * u).sum(-1), (k.sum(-2) * u).sum(-1)], -1)


def test_kernels_are_centred_blur_kernels():
    ks = motion_kernel(21, 0.5, generator=torch.Generator().manual_seed(0), batch=16)
    assert ks.shape == (16, 21, 21) and ks.dtype == torch.float32
    assert bool((ks >= 0).all())
    torch.testing.assert_close(ks.sum((-1, -2)), torch.ones(16))
    # the path is centred on its centre of mass before rasterising: within one pixel
    assert bool((_centre_of_mass(ks.double()).abs() < 1.0).all()), _centre_of_mass(ks.double())
    # a trajectory, not a point and not a box: support between a few pixels and a fraction
    support = (ks > 1e-3).sum((-1, -2))
    assert bool((support >= 3).all()) and bool((support < 0.5 * 21 * 21).all()), support


def _elongation(ks: torch.Tensor) -> torch.Tensor:
    """Smaller / larger eigenvalue of each kernel's spatial covariance (0: a straight line)."""
    n = ks.shape[-1]
    u = torch.arange(n, dtype=ks.dtype) - n // 2
    X, Y = torch.meshgrid(u, u, indexing="ij")
    m = [(ks * v).sum((-1, -2))[:, None, None] for v in (X, Y)]
    d = (X - m[0], Y - m[1])
    cov = torch.stack(
        [torch.stack([(ks * d[i] * d[j]).sum((-1, -2)) for j in range(2)], -1) for i in range(2)],
        -2,
    )
    ev = torch.linalg.eigvalsh(cov)
    return ev[:, 0] / ev[:, 1]


def test_reproducible_and_intensity_bends_the_path():
    a = motion_kernel(15, 0.5, generator=torch.Generator().manual_seed(1))
    b = motion_kernel(15, 0.5, generator=torch.Generator().manual_seed(1))
    c = motion_kernel(15, 0.5, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)

    def kernels(intensity):
        g = torch.Generator().manual_seed(3)
        return motion_kernel(15, intensity, generator=g, batch=24, dtype=torch.float64)

    # intensity 0: no turns, a straight segment (up to rasterisation)
    straight = kernels(0.0)
    long = (straight > 1e-3).sum((-1, -2)) >= 5
    assert bool((_elongation(straight[long]) < 0.05).all())
    # the more intense, the more the path turns
    assert float(_elongation(kernels(0.9)).median()) > 2 * float(_elongation(kernels(0.1)).median())


def test_operator_adjoint_and_blind_template():
    op = MotionBlur.random(9, 0.7, generator=torch.Generator().manual_seed(4), batch=3)
    assert op.kernel.shape == (3, 9, 9)
    x = torch.randn(3, 2, 16, 16, generator=torch.Generator().manual_seed(5))
    y = torch.randn(3, 2, 16, 16, generator=torch.Generator().manual_seed(6))
    lhs, rhs = (op(x) * y).sum(), (x * op.A_adjoint(y)).sum()
    assert abs(float(lhs - rhs)) < 1e-4 * float(lhs.abs())
    torch.testing.assert_close(op(torch.ones(3, 2, 16, 16)), torch.ones(3, 2, 16, 16))
    blind = fr.BlindOperator(
        MotionBlur, kernel=fr.Param(init=torch.ones(9, 9), constraint="simplex")
    )
    made = blind.materialize(kernel=op.kernel)
    assert isinstance(made, MotionBlur)
    torch.testing.assert_close(made(x), op(x))


def test_typed_errors():
    with pytest.raises(ConfigError, match="size must be an odd int"):
        motion_kernel(8)
    with pytest.raises(ConfigError, match="intensity"):
        motion_kernel(9, 1.5)
    with pytest.raises(ConfigError, match="batch"):
        motion_kernel(9, batch=0)
    with pytest.raises(ConfigError, match="generator"):
        motion_kernel(9, generator=3)
