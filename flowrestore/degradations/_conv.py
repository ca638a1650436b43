"""Padded correlations and their exact adjoints, shared by the blur operators and families.

A blur here is ``A x = corr(k, P x)``: pad ``P`` (reflect, circular or zeros) then a 'valid'
cross-correlation with ``k``. Its adjoint is ``Pᵀ corrᵀ(k, y)`` where ``corrᵀ`` is the transposed
convolution and ``Pᵀ`` the adjoint of the padding: for reflect/circular padding ``P`` is a gather
``x[idx]``, so ``Pᵀ`` is the scatter-add ``index_add(idx, y)``; for zero padding it is a crop. Both
are exact, so the adjointness error is round-off only.

Kernels are either shared (1-D ``[K]`` / 2-D ``[kh, kw]``) or per-sample (``[B, K]`` / ``[B, kh,
kw]``); both run as one depthwise convolution with ``B·C`` groups, so a batch with a different
kernel per sample is still a single batched op.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F

from flowrestore.errors import ArgumentTypeError, ConfigError, ShapeError, describe
from flowrestore.tensors import repeat_each

PADDINGS = ("reflect", "circular", "zeros")


def check_padding(padding) -> str:
    """Validate a padding mode name."""
    if padding not in PADDINGS:
        raise ConfigError(f"padding must be one of {PADDINGS}, got {describe(padding)}")
    return padding


@lru_cache(maxsize=256)
def _pad_index(n: int, p: int, mode: str, device: torch.device) -> torch.Tensor:
    i = torch.arange(-p, n + p)
    if mode == "reflect":
        i = i.abs()
        i = torch.where(i >= n, 2 * (n - 1) - i, i)
    else:  # circular
        i = i % n
    return i.to(device)


def check_fits(
    size: tuple[int, int], kernel_hw: tuple[int, int], padding: str, *, name: str
) -> None:
    """Raise ShapeError when a kernel is too large for reflect padding of an image of ``size``."""
    if padding != "reflect":
        return
    for n, k in zip(size, kernel_hw, strict=True):
        if k // 2 > n - 1:
            raise ShapeError(
                f"{name} {tuple(kernel_hw)} is too large for an image of spatial size "
                f"{tuple(size)} "
                f"with padding='reflect' (needs kernel_size // 2 <= side - 1); use a smaller "
                f"kernel or padding='circular'/'zeros'"
            )


def pad_axis(x: torch.Tensor, dim: int, p: int, mode: str) -> torch.Tensor:
    """Pad ``x`` by ``p`` on both sides of ``dim``."""
    if p == 0:
        return x
    if mode == "zeros":
        pads = [0, 0] * (x.dim() - 1 - dim % x.dim()) + [p, p]
        return F.pad(x, pads)
    index = _pad_index.__wrapped__ if torch.compiler.is_compiling() else _pad_index
    return x.index_select(dim, index(x.shape[dim], p, mode, x.device))


def pad_axis_adjoint(y: torch.Tensor, dim: int, p: int, mode: str) -> torch.Tensor:
    """Exact adjoint of :func:`pad_axis`."""
    if p == 0:
        return y
    n = y.shape[dim] - 2 * p
    if mode == "zeros":
        return y.narrow(dim, p, n)
    shape = list(y.shape)
    shape[dim] = n
    index = _pad_index.__wrapped__ if torch.compiler.is_compiling() else _pad_index
    return y.new_zeros(shape).index_add(dim, index(n, p, mode, y.device), y)


def check_tensor(x, *, name: str = "x") -> torch.Tensor:
    """``x`` if it is a torch tensor, else an :class:`ArgumentTypeError` naming ``name`` (a numpy
    array fails otherwise with an untyped AttributeError deep inside an operator)."""
    if not isinstance(x, torch.Tensor):
        raise ArgumentTypeError(f"{name} must be a torch tensor, got {describe(x)}")
    return x


def as_planes(x: torch.Tensor, *, name: str = "x") -> torch.Tensor:
    """View ``[B, *, H, W]`` as ``[B, M, H, W]`` (``M`` = product of the middle dims).

    ``x`` must be a floating-point tensor: an integer image would be blurred with a kernel cast to
    its integer dtype (all zeros) or averaged with a floor, a silently wrong result.
    """
    if check_tensor(x, name=name).dim() < 3:
        raise ShapeError(
            f"{name} must be an image batch [B, C, H, W] (or [B, H, W]), got {describe(x)}"
        )
    if not x.is_floating_point():
        raise ArgumentTypeError(
            f"{name} must be a floating-point tensor (convert an integer image first, e.g. "
            f"x.float() / 255), got {describe(x)}"
        )
    m = math.prod(x.shape[1:-2])  # not -1: a reshape cannot infer it for an empty batch
    return x.reshape(x.shape[0], m, x.shape[-2], x.shape[-1])


def _conv(x4: torch.Tensor, w2d: torch.Tensor, transpose: bool) -> torch.Tensor:
    """Correlate every plane of ``x4`` [B, M, h, w] with ``w2d`` ([kh, kw] or [B, kh, kw]).

    Always one depthwise (grouped) convolution over the ``B·M`` planes: on CPU it is several times
    faster than a single-channel convolution over a ``B·M`` batch, and a shared kernel is only
    ``expand``-ed (no copy).
    """
    b, m, h, w = x4.shape
    if b * m == 0:  # no plane: a convolution of 0 groups is refused by torch
        sign = 1 if transpose else -1
        kh, kw = w2d.shape[-2:]
        return x4.new_zeros(b, m, h + sign * (kh - 1), w + sign * (kw - 1))
    op = F.conv_transpose2d if transpose else F.conv2d
    if w2d.dim() == 2:
        weight = w2d[None, None].expand(b * m, 1, *w2d.shape)
    else:
        weight = repeat_each(w2d, m, 0).unsqueeze(1)
    out = op(x4.reshape(1, b * m, h, w), weight, groups=b * m)
    return out.reshape(b, m, out.shape[-2], out.shape[-1])


def separable(x4, kh, kw, padding: str, *, adjoint: bool = False):
    """``corr_W(kw) P_W corr_H(kh) P_H x`` (or its adjoint); 1-D kernels ``[K]`` or ``[B, K]``."""
    ph, pw = kh.shape[-1] // 2, kw.shape[-1] // 2
    kh2, kw2 = kh.unsqueeze(-1), kw.unsqueeze(-2)  # [..., K, 1] and [..., 1, K]
    if not adjoint:
        y = _conv(pad_axis(x4, 2, ph, padding), kh2, False)
        return _conv(pad_axis(y, 3, pw, padding), kw2, False)
    y = pad_axis_adjoint(_conv(x4, kw2, True), 3, pw, padding)
    return pad_axis_adjoint(_conv(y, kh2, True), 2, ph, padding)


def full2d(x4, k, padding: str, *, adjoint: bool = False):
    """``corr(k, P x)`` (or its adjoint); 2-D kernel ``[kh, kw]`` or per-sample ``[B, kh, kw]``."""
    ph, pw = k.shape[-2] // 2, k.shape[-1] // 2
    if not adjoint:
        return _conv(pad_axis(pad_axis(x4, 2, ph, padding), 3, pw, padding), k, False)
    y = _conv(x4, k, True)
    return pad_axis_adjoint(pad_axis_adjoint(y, 3, pw, padding), 2, ph, padding)
