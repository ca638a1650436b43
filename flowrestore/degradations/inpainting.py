"""Inpainting: masking ``A x = m ⊙ x`` and the smooth growing masks of Dirac's inpainting process.

Masks (docs/math.md §3 / Dirac §4): a Gaussian-edged hole ``m = (1 - exp(-r²/(2σ²)))^p`` with ``r``
the distance to the image centre ``((H-1)/2, (W-1)/2)`` and ``σ`` the hole size in pixels (the paper
uses ``1 - f_σ / max f_σ`` with ``f_σ`` a Gaussian density, raised to a power ``p`` for a sharper
edge; the reference code uses ``p = 4``); and a centred square box of side ``s`` pixels with
anti-aliased edges (each pixel masked by the fraction of its area the box covers). Both are exactly
1 (identity) at size 0, and come with their exact derivative in the size, used for ``∂_t A_t``
(for the box, the left derivative where an edge of the box lies on a pixel edge).
"""

from __future__ import annotations

import torch

from flowrestore.degradations.base import Diagonal

__all__ = ["Inpainting", "gaussian_hole_mask", "box_hole_mask"]


class Inpainting(Diagonal):
    """Masking ``A x = mask ⊙ x`` (self-adjoint); ``mask`` must broadcast to the batch shape.

    ``mask`` is e.g. ``[H, W]``, ``[1, H, W]``, ``[B, 1, H, W]``; a mask whose size does not match
    the image raises :class:`~flowrestore.errors.ShapeError`.
    """

    _name = "mask"

    def __init__(self, mask: torch.Tensor):
        super().__init__(mask)

    @property
    def mask(self) -> torch.Tensor:
        """The mask tensor."""
        return self.scale


def _grid(h: int, w: int, like: torch.Tensor):
    yy = torch.arange(h, dtype=like.dtype, device=like.device) - (h - 1) / 2
    xx = torch.arange(w, dtype=like.dtype, device=like.device) - (w - 1) / 2
    return yy, xx


def gaussian_hole_mask(
    size: torch.Tensor, h: int, w: int, *, power: float = 4.0, derivative: bool = False
):
    """``(1 - exp(-r²/(2σ²)))^p``, per-sample ``σ = size`` [B] → ``[B, 1, h, w]`` (or ``∂m/∂σ``).

    A half-precision ``size`` is evaluated in float32 (in float16 ``σ²`` of a small hole underflows
    to 0, and ``r² / σ²`` at the centre is ``0 / 0``) and returned in its dtype.
    """
    if size.dtype in (torch.float16, torch.bfloat16):
        wide = gaussian_hole_mask(size.float(), h, w, power=power, derivative=derivative)
        return wide.to(size.dtype)
    yy, xx = _grid(h, w, size)
    r2 = (yy[:, None] ** 2 + xx[None, :] ** 2)[None, None]
    s = size.reshape(-1, 1, 1, 1)
    sc = s.clamp_min(1e-12)
    g = torch.exp(-r2 / (2 * sc * sc))
    on = s > 0
    if not derivative:
        return torch.where(on, (1 - g) ** power, torch.ones_like(g))
    dm = -power * (1 - g) ** (power - 1) * g * r2 / sc**3
    return torch.where(on, dm, torch.zeros_like(dm))


def _coverage(u: torch.Tensor, half: torch.Tensor, derivative: bool):
    raw = torch.minimum(u + 0.5, half) - torch.maximum(u - 0.5, -half)
    if not derivative:
        return raw.clamp(0, 1)
    # the left derivative (size approached from below, the direction a reverse solve moves in):
    # where the box edge lies on a pixel edge (an integer size of the image's parity, e.g. the
    # size at t = 1) the two-sided derivative does not exist, and strict inequalities gave 0
    d = 0.5 * ((half <= u + 0.5).to(u.dtype) + (half <= 0.5 - u).to(u.dtype))
    return d * ((raw > 0) & (raw <= 1)).to(u.dtype)


def box_hole_mask(size: torch.Tensor, h: int, w: int, *, derivative: bool = False):
    """``1 - cov_y cov_x``, centred box of side ``size`` [B] → ``[B, 1, h, w]`` (or ``∂m/∂s``).

    A half-precision ``size`` is evaluated in float32 (bfloat16 holds integers exactly only up to
    256: the pixel grid of a larger image was rounded, a mask off-centre by up to a pixel) and
    returned in its dtype.
    """
    if size.dtype in (torch.float16, torch.bfloat16):
        return box_hole_mask(size.float(), h, w, derivative=derivative).to(size.dtype)
    yy, xx = _grid(h, w, size)
    half = (size / 2).reshape(-1, 1)
    cy, cx = _coverage(yy[None], half, False), _coverage(xx[None], half, False)
    if not derivative:
        return (1 - cy[:, :, None] * cx[:, None, :]).unsqueeze(1)
    dy, dx = _coverage(yy[None], half, True), _coverage(xx[None], half, True)
    return (-(dy[:, :, None] * cx[:, None, :] + cy[:, :, None] * dx[:, None, :])).unsqueeze(1)
