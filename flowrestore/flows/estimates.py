"""Clipped clean estimates of a diffusion model: ``clip_sample`` and dynamic thresholding.

Pixel-space diffusion checkpoints are sampled with the predicted clean image ``x₀`` kept in the
data range (docs/math.md §8; diffusers' ``DDIMScheduler.step`` step 4, the same in its DDPM
scheduler):

* :class:`ClipSample` — ``x₀ ← clamp(x₀, −r, r)`` (diffusers' ``clip_sample=True``,
  ``clip_sample_range=r``);
* :class:`DynamicThreshold` — Imagen's dynamic thresholding (Saharia et al. 2022, §2.3; diffusers'
  ``thresholding=True``): per sample ``s = clamp(quantile(|x₀|, ratio), 1, max_value)`` over all
  its pixels, then ``x₀ ← clamp(x₀, −s, s) / s``.

:class:`~flowrestore.DiffusionFlow` applies one to its clean estimate ``D`` (``clip=``). Both are
elementwise or per-sample tensor ops: no host reads, traceable by ``torch.compile``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch
from torch import Tensor

from flowrestore.errors import ConfigError, describe

__all__ = ["ClipSample", "DynamicThreshold", "clip_from_config", "row_quantile"]


def _number(value) -> bool:
    # numbers.Real: numpy scalars too (np.float32 is no Python float and was refused)
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class ClipSample:
    """Clamp the clean estimate to ``[−range, range]`` (diffusers' ``clip_sample``)."""

    range: float = 1.0

    def __post_init__(self):
        if not _number(self.range) or self.range <= 0:
            raise ConfigError(f"range must be a finite number > 0, got {describe(self.range)}")
        object.__setattr__(self, "range", float(self.range))

    def __call__(self, x0: Tensor) -> Tensor:
        """``clamp(x₀, −range, range)``."""
        return x0.clamp(-self.range, self.range)


@dataclass(frozen=True)
class DynamicThreshold:
    """Imagen's dynamic thresholding of the clean estimate (diffusers' ``thresholding``).

    Args:
        ratio: the quantile of ``|x₀|`` per sample (diffusers' ``dynamic_thresholding_ratio``).
        max_value: the largest threshold ``s`` (diffusers' ``sample_max_value``), ``>= 1``.
    """

    ratio: float = 0.995
    max_value: float = 1.0

    def __post_init__(self):
        if not _number(self.ratio) or not 0 < self.ratio <= 1:
            raise ConfigError(f"ratio must be a number in (0, 1], got {describe(self.ratio)}")
        if not _number(self.max_value) or self.max_value < 1:
            raise ConfigError(f"max_value must be a number >= 1, got {describe(self.max_value)}")
        object.__setattr__(self, "ratio", float(self.ratio))
        object.__setattr__(self, "max_value", float(self.max_value))

    def __call__(self, x0: Tensor) -> Tensor:
        """``clamp(x₀, −s, s) / s`` with ``s`` per sample (computed in float32 or wider)."""
        flat = x0.reshape(x0.shape[0], -1)
        if flat.dtype not in (torch.float32, torch.float64):
            flat = flat.float()
        s = row_quantile(flat.abs(), self.ratio).clamp(1.0, self.max_value)
        s = s.unsqueeze(1)
        return (torch.clamp(flat, -s, s) / s).reshape(x0.shape).to(x0.dtype)


def row_quantile(v: Tensor, q: float) -> Tensor:
    """``torch.quantile(v, q, dim=1)`` (linear interpolation) from one sort, with ``q`` a host
    float: nothing is read from the device (before torch 2.13 ``torch.quantile`` checks ``q`` on
    the device, a host synchronisation per call)."""
    n = v.shape[1]
    pos = q * (n - 1)
    lo = min(int(pos), n - 1)
    hi = min(lo + 1, n - 1)
    ordered = v.sort(dim=1).values
    return ordered[:, lo] + (pos - lo) * (ordered[:, hi] - ordered[:, lo])


def clip_from_config(config: dict) -> ClipSample | DynamicThreshold | None:
    """The clipping a diffusers scheduler config applies to ``x₀`` (``thresholding`` first, as
    ``DDIMScheduler.step`` checks it first), or ``None``."""
    if config.get("thresholding"):
        return DynamicThreshold(
            ratio=config.get("dynamic_thresholding_ratio", 0.995),
            max_value=config.get("sample_max_value", 1.0),
        )
    if config.get("clip_sample"):
        return ClipSample(config.get("clip_sample_range", 1.0))
    return None
