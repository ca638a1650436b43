"""The torch side of the task records: noisy degradations, sr re-upsampling and blend families.

:class:`BlendFamily` is the severity family ``A_t x = x + t (A x − x)`` of any operator ``A``
(``A_0 = I``, ``A_1 = A``) with its exact time derivative ``∂_t A_t x = A x − x`` — the path
DiracDiffusion (Fabian et al. 2023, §3) needs when ``A`` has no natural severity parameter (JPEG,
super-resolution with bicubic re-upsampling, the identity of pure denoising).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from flowrestore.degradations import Downsample, Family
from flowrestore.degradations.base import per_sample
from flowrestore.errors import ConfigError, ShapeError, describe

__all__ = ["BlendFamily", "DownUp", "NoisyDegradation", "identity", "upsample"]


def identity(x: Tensor) -> Tensor:
    """The identity operator (the denoising task's ``A``)."""
    return x


def upsample(low: Tensor, size: tuple[int, int], mode: str) -> Tensor:
    """``low`` ``[B, C, h, w]`` interpolated to ``size`` (bicubic/bilinear/nearest), in [0, 1]."""
    kw = {} if mode == "nearest" else {"align_corners": False}
    return F.interpolate(low, size=size, mode=mode, **kw).clamp(0.0, 1.0)


class DownUp:
    """``factor``-fold block averaging, then ``mode`` upsampling back to the input's size (as
    :func:`upsample`: clamped to [0, 1]); ``factor`` a positive int, ``mode`` ``'bicubic'``,
    ``'bilinear'`` or ``'nearest'``."""

    def __init__(self, factor: int, mode: str):
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
            raise ConfigError(f"DownUp: factor must be a positive int, got {describe(factor)}")
        if not isinstance(mode, str) or mode not in ("bicubic", "bilinear", "nearest"):
            raise ConfigError(
                f"DownUp: mode must be 'bicubic', 'bilinear' or 'nearest', got {describe(mode)}"
            )
        self.factor, self.mode = factor, mode

    def __call__(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        if h % self.factor or w % self.factor:
            raise ShapeError(f"sr: image size {h}x{w} must be divisible by factor={self.factor}")
        return upsample(Downsample(self.factor).A(x), (h, w), self.mode)

    def __repr__(self) -> str:
        return f"DownUp(factor={self.factor}, mode={self.mode!r})"


class NoisyDegradation:
    """``deg(x, generator=None) = A x + noise · z``, ``z`` drawn from ``generator`` on the CPU
    (so a seed gives the same noise on every device). ``task`` and ``params`` name its origin."""

    def __init__(self, operator, noise: float, *, task: str, params: dict):
        if (
            isinstance(noise, bool)
            or not isinstance(noise, (int, float))
            or not (math.isfinite(noise) and noise >= 0)
        ):  # a NaN std would pass `noise <= 0` and fill every image with NaN
            raise ConfigError(
                f"NoisyDegradation: noise must be a finite number >= 0, got {describe(noise)}"
            )
        self.operator, self.noise = operator, float(noise)
        self.task, self.params = task, params

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        y = self.operator(x)
        if self.noise <= 0:
            return y
        return y + self.noise * torch.randn(y.shape, generator=generator, dtype=y.dtype).to(
            y.device
        )

    def __repr__(self) -> str:
        return f"NoisyDegradation({self.task}, {self.params})"


class BlendFamily(Family):
    """``A_t x = x + t (A x − x)``: identity at ``t = 0``, ``A`` at ``t = 1``, exact ``∂_t``."""

    def __init__(self, operator):
        if not callable(operator):
            raise ConfigError(
                f"BlendFamily: operator must be a callable A(x) on [B, C, H, W], got "
                f"{describe(operator)}"
            )
        self.operator = operator

    def _apply(self, x, tt, scalar):
        if scalar == 0.0:
            return x
        return x + per_sample(tt, x) * (self.operator(x) - x)

    def _dt(self, x, tt):
        return (self.operator(x) - x).expand_as(x)

    def __repr__(self) -> str:
        return f"BlendFamily({self.operator!r})"
