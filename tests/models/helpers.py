"""Shared helpers for tests/models: float64 order fitting and small Gaussian problems."""

from __future__ import annotations

import numpy as np
import torch

F64 = torch.float64


def fit_order(levels, errs, floor: float) -> float:
    """Least-squares slope of log(err) vs log(1/N) over ≥ 5 levels above the round-off floor."""
    h = 1.0 / np.asarray(levels, dtype=float)
    e = np.asarray(errs, dtype=float)
    keep = e > floor
    if keep.sum() < 5:
        raise AssertionError(f"fewer than 5 levels above round-off {floor:.2e}: errors {e}")
    return float(np.polyfit(np.log(h[keep]), np.log(e[keep]), 1)[0])


def prior(dim: int = 24, seed: int = 0, std=(0.1, 0.8)):
    """A random per-coordinate Gaussian prior ``(c, s_c)`` in float64."""
    g = torch.Generator().manual_seed(seed)
    c = 0.5 * torch.randn(dim, generator=g, dtype=F64)
    sc = std[0] + (std[1] - std[0]) * torch.rand(dim, generator=g, dtype=F64)
    return c, sc


def tiny_unet(seed: int = 0, channels: int = 1, **options):
    """A tiny random diffusers ``UNet2DModel`` on 8×8 images (``options``: e.g.
    ``num_class_embeds``)."""
    import diffusers

    torch.manual_seed(seed)
    return diffusers.UNet2DModel(
        sample_size=8,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
        **options,
    )
