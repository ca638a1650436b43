"""Additive Gaussian measurement noise ``y = x + std · z``, ``z ~ N(0, I)`` (docs/math.md §3, σ_1).

Used to make observations reproducibly: pass a ``torch.Generator``. The noise is drawn on the
generator's device and copied to ``x``'s when they differ, so one CPU generator gives the same
observation for images on the CPU and on a GPU.
"""

from __future__ import annotations

import math
import numbers

import torch

from flowrestore.degradations.blind import value_checks_enabled
from flowrestore.errors import ConfigError, ShapeError, describe

__all__ = ["AdditiveGaussianNoise"]


class AdditiveGaussianNoise:
    """``noise(x, generator=g) = x + std · z``; ``std`` a float >= 0 or a per-sample [B] tensor."""

    def __init__(self, std: float | torch.Tensor):
        if isinstance(std, torch.Tensor):
            if (
                std.dim() > 1
                or std.dtype == torch.bool
                or std.is_complex()
                or (
                    value_checks_enabled()
                    and (
                        bool((std.detach() < 0).any())
                        or not bool(torch.isfinite(std.detach()).all())
                    )
                )
            ):
                raise ConfigError(
                    f"std must be a 0-dim or [B] real tensor of finite values >= 0, "
                    f"got {describe(std)}"
                )
        elif (
            isinstance(std, bool)
            or not isinstance(std, numbers.Real)  # numpy scalars too
            or not math.isfinite(std)
            or std < 0
        ):
            raise ConfigError(f"std must be a finite float >= 0, got {describe(std)}")
        self.std = std if isinstance(std, (torch.Tensor, int, float)) else float(std)

    def __call__(
        self, x: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Return ``x`` (a floating-point tensor) plus fresh noise drawn from ``generator`` (a
        ``torch.Generator`` of any device, or None: torch's global RNG)."""
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise ConfigError(f"x must be a floating-point tensor, got {describe(x)}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise ConfigError(
                f"generator must be a torch.Generator or None, got {describe(generator)}"
            )
        where = x.device if generator is None else generator.device
        # drawn on the generator's device (a CPU generator cannot fill a CUDA tensor), then copied
        z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=where).to(x.device)
        std = self.std
        if isinstance(std, torch.Tensor):
            std = std.to(device=x.device, dtype=x.dtype)
            if std.dim() == 1:
                if std.shape[0] != x.shape[0]:
                    raise ShapeError(
                        f"std has {std.shape[0]} entries but the batch has {x.shape[0]}"
                    )
                std = std.reshape(-1, *([1] * (x.dim() - 1)))
        return x + std * z

    def __repr__(self) -> str:
        return f"AdditiveGaussianNoise(std={describe(self.std)})"
