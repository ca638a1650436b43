"""Small tensor helpers that never read a device value on the host (GPU-ready by construction).

``repeat_each`` replaces ``Tensor.repeat_interleave`` with an int count: before torch 2.13 that
builds a tensor of counts and, on CUDA, reads its sum on the host (one synchronisation per call,
seen on an H200 with torch 2.11). ``expand`` + ``reshape`` gives the same values on any version.
``broadcasts_to`` checks a shape against a batch's before any work.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["broadcasts_to", "repeat_blocks", "repeat_each"]


def broadcasts_to(shape, target) -> bool:
    """Whether a tensor of ``shape`` broadcasts to exactly ``target`` (shapes only, no values)."""
    try:
        return torch.broadcast_shapes(tuple(shape), tuple(target)) == tuple(target)
    except RuntimeError:
        return False


def repeat_each(x: Tensor, repeats: int, dim: int = 0) -> Tensor:
    """``x.repeat_interleave(repeats, dim=dim)`` for an int ``repeats``, without a host read."""
    d = dim % x.dim()
    shape = list(x.shape)
    grown = x.unsqueeze(d + 1).expand(*shape[: d + 1], repeats, *shape[d + 1 :])
    shape[d] *= repeats
    return grown.reshape(shape)


def repeat_blocks(x: Tensor, factor: int) -> Tensor:
    """Nearest upsampling of the last two dims: each value repeated over a ``factor²`` block."""
    return repeat_each(repeat_each(x, factor, -2), factor, -1)
