"""Downsampling by block averaging (super-resolution degradation) and its exact adjoint.

``D x`` averages each ``f × f`` block (``avg_pool2d`` with kernel = stride = f); ``Dᵀ y`` replicates
each value over its block divided by ``f²``. ``U = f² Dᵀ`` (nearest upsampling) gives the orthogonal
projection ``P = U D`` onto block-constant images, used by
:class:`~flowrestore.degradations.families.DownsampleFamily`.
"""

from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F

from flowrestore.degradations._conv import as_planes
from flowrestore.degradations.base import LinearOperator
from flowrestore.errors import ConfigError, ShapeError, describe
from flowrestore.tensors import repeat_blocks

__all__ = ["Downsample", "block_average"]


def _check_factor(factor) -> int:
    if isinstance(factor, bool) or not isinstance(factor, numbers.Integral) or factor < 1:
        raise ConfigError(f"factor must be a positive int, got {describe(factor)}")
    return int(factor)


def _check_divisible(x: torch.Tensor, f: int) -> None:
    h, w = x.shape[-2:]
    if h % f or w % f:
        raise ShapeError(
            f"image size {(h, w)} must be divisible by factor={f}, got x of shape {tuple(x.shape)}"
        )


def _pool(x4: torch.Tensor, f: int) -> torch.Tensor:
    """``f × f`` block means of ``x4`` [B, M, H, W] (avg_pool2d refuses a batch of no planes)."""
    if x4.numel() == 0:
        return x4.new_zeros(*x4.shape[:2], x4.shape[2] // f, x4.shape[3] // f)
    return F.avg_pool2d(x4, f)


def _upsample(y4: torch.Tensor, f: int) -> torch.Tensor:
    return repeat_blocks(y4, f)


def block_average(x: torch.Tensor, factor: int) -> torch.Tensor:
    """``P x = U D x``: replace each ``f × f`` block by its mean (same shape; self-adjoint)."""
    factor = _check_factor(factor)
    x4 = as_planes(x)
    _check_divisible(x4, factor)
    return _upsample(_pool(x4, factor), factor).reshape(x.shape)


class Downsample(LinearOperator):
    """``f``-fold downsampling by ``f × f`` block averaging: ``[B, *, H, W] → [B, *, H/f, W/f]``."""

    def __init__(self, factor: int):
        self.factor = _check_factor(factor)

    def A(self, x):
        """Average-pool ``x``."""
        x4 = as_planes(x)
        _check_divisible(x4, self.factor)
        y = _pool(x4, self.factor)
        return y.reshape(*x.shape[:-2], *y.shape[-2:])

    def A_adjoint(self, y):
        """Replicate each value over its block, divided by ``f²``."""
        y4 = as_planes(y, name="y")
        x = _upsample(y4, self.factor) / (self.factor**2)
        return x.reshape(*y.shape[:-2], *x.shape[-2:])

    def upsample(self, y):
        """Nearest-neighbour upsampling ``U = f² Dᵀ`` (a right inverse of ``A``)."""
        return self.A_adjoint(y) * (self.factor**2)

    def __repr__(self) -> str:
        return f"Downsample(factor={self.factor})"
