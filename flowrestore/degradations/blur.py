"""Blur operators: Gaussian blur (separable) and blur by an explicit kernel, with exact adjoints.

``A x = k ⋆ P x`` — padding ``P`` (reflect, circular or zeros) then a 'valid' cross-correlation with
the kernel (docs/math.md §3: the Dirac deblurring degradation, a Gaussian kernel whose width is the
degradation parameter). The Gaussian kernel of width ``w`` on ``K`` taps is ``k_u = exp(-u²/(2w²)) /
Σ_v exp(-v²/(2w²))``, ``u = -K//2 … K//2``; it sums to 1 so constants are preserved, and ``w → 0``
gives the identity (a unit impulse). Its width derivative, used for ``∂_t A_t``, is ``∂k_u/∂w = k_u
(u² - Σ_v k_v v²) / w³``.

Kernels for a float width are built once per (width, size, device, dtype) and cached
(:func:`kernel_cache_info`); a tensor width (``[]`` or per-sample ``[B]``, possibly requiring grad)
is built differentiably on every call so gradients reach it.
"""

from __future__ import annotations

import math
import numbers
from functools import lru_cache

import torch

from flowrestore.degradations._conv import as_planes, check_fits, check_padding, full2d, separable
from flowrestore.degradations.base import LinearOperator, resident
from flowrestore.degradations.blind import value_checks_enabled
from flowrestore.errors import ConfigError, ShapeError, describe

__all__ = [
    "GaussianBlur",
    "Blur",
    "gaussian_kernel",
    "gaussian_kernel_derivative",
    "kernel_cache_info",
    "default_kernel_size",
]

_MIN_WIDTH = 1e-8  # widths below this are treated as this (the kernel is a unit impulse anyway)


def default_kernel_size(width: float) -> int:
    """Odd kernel size ``2 ceil(3 w) + 1`` covering ±3 standard deviations."""
    return 2 * math.ceil(3 * float(width)) + 1


def _taps(kernel_size: int, like: torch.Tensor) -> torch.Tensor:
    return torch.arange(kernel_size, dtype=like.dtype, device=like.device) - kernel_size // 2


_HALF = (torch.float16, torch.bfloat16)


def gaussian_kernel(width: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Normalised 1-D Gaussian kernels, ``[*width.shape, K]``; differentiable in ``width``.

    A half-precision ``width`` is evaluated in float32 and returned in its dtype (in float16 the
    floor ``1e-8`` of a zero width is 0, and the kernel ``0 / 0``).
    """
    if width.dtype in _HALF:
        return gaussian_kernel(width.float(), kernel_size).to(width.dtype)
    w = width.clamp_min(_MIN_WIDTH).unsqueeze(-1)
    u = _taps(kernel_size, w)
    logits = -(u * u) / (2 * w * w)
    return torch.softmax(logits, dim=-1)  # = exp / sum, stable for tiny widths


def gaussian_kernel_derivative(width: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """``∂k/∂w`` of :func:`gaussian_kernel`, ``[*width.shape, K]`` (half precision widened as
    there)."""
    if width.dtype in _HALF:
        return gaussian_kernel_derivative(width.float(), kernel_size).to(width.dtype)
    w = width.clamp_min(_MIN_WIDTH).unsqueeze(-1)
    k = gaussian_kernel(width, kernel_size)
    u2 = _taps(kernel_size, w) ** 2
    return k * (u2 - (k * u2).sum(-1, keepdim=True)) / w**3


@lru_cache(maxsize=512)
def _cached(width: float, kernel_size: int, derivative: bool, dtype, device) -> torch.Tensor:
    w = torch.tensor(width, dtype=torch.float64)
    fn = gaussian_kernel_derivative if derivative else gaussian_kernel
    return fn(w, kernel_size).to(device=device, dtype=dtype)


def cached_gaussian_kernel(width: float, kernel_size: int, *, dtype, device, derivative=False):
    """Cached 1-D Gaussian kernel (or its width derivative) for a float width; do not modify it."""
    return _cached(float(width), int(kernel_size), bool(derivative), dtype, torch.device(device))


def kernel_cache_info():
    """Statistics of the float-width kernel cache (``misses`` = number of kernels built)."""
    return _cached.cache_info()


def check_kernel_size(kernel_size, *, name: str = "kernel_size") -> int:
    """Validate an odd positive kernel size."""
    if (
        isinstance(kernel_size, bool)
        or not isinstance(kernel_size, numbers.Integral)
        or kernel_size < 1
    ):
        raise ConfigError(f"{name} must be a positive odd int, got {describe(kernel_size)}")
    if kernel_size % 2 == 0:
        raise ConfigError(f"{name} must be odd (centred kernel), got {describe(kernel_size)}")
    return int(kernel_size)


def check_width(width, *, name: str = "width"):
    """Validate a blur width: a float >= 0 or a tensor (0-dim or per-sample [B]) of values >= 0."""
    if isinstance(width, torch.Tensor):
        if width.dim() > 1 or width.numel() == 0:
            raise ConfigError(
                f"{name} must be a 0-dim or non-empty [B] tensor, got {describe(width)}"
            )
        if width.dtype == torch.bool or width.is_complex():  # a mask given for a width
            raise ConfigError(f"{name} must be a real tensor of widths, got {describe(width)}")
        d = width.detach()
        if value_checks_enabled() and bool((~torch.isfinite(d) | (d < 0)).any()):  # a host read
            raise ConfigError(f"{name} must be finite and >= 0, got {describe(width)}")
        if width.dim() == 0 and not width.requires_grad:
            return float(width)
        return width
    if isinstance(width, bool) or not isinstance(width, numbers.Real):  # numpy scalars too
        raise ConfigError(f"{name} must be a float or a tensor, got {describe(width)}")
    if not math.isfinite(width) or width < 0:
        raise ConfigError(f"{name} must be finite and >= 0, got {describe(width)}")
    return float(width)


class GaussianBlur(LinearOperator):
    """Separable Gaussian blur of standard deviation ``width`` (pixels).

    ``width`` is a float (kernel cached), or a tensor — 0-dim or per-sample ``[B]`` — possibly
    requiring grad (kernel rebuilt differentiably each call). ``kernel_size`` defaults to ``2 ceil(3
    width) + 1``. ``padding`` is ``"reflect"`` (default), ``"circular"`` or ``"zeros"``; the adjoint
    is exact for each.
    """

    def __init__(self, width, *, kernel_size: int | None = None, padding: str = "reflect"):
        self.width = check_width(width)
        if kernel_size is None:
            w = self.width if isinstance(self.width, float) else float(self.width.detach().max())
            kernel_size = default_kernel_size(w)
        self.kernel_size = check_kernel_size(kernel_size)
        self.padding = check_padding(padding)

    @classmethod
    def blind_defaults(cls, fixed: dict, params: dict) -> dict:
        """A blind width with a finite upper bound fixes ``kernel_size`` from it (``2⌈3·hi⌉ + 1``),
        so the kernel does not change size while the width is estimated."""
        p = params.get("width")
        if "kernel_size" in fixed or p is None or p.bounds is None:
            return {}
        if not math.isfinite(p.bounds[1]):
            return {}
        return {"kernel_size": default_kernel_size(p.bounds[1])}

    def kernel(self, *, dtype=torch.float32, device="cpu") -> torch.Tensor:
        """1-D kernel ``[K]`` (or ``[B, K]`` for per-sample widths) in ``dtype`` on ``device``."""
        if isinstance(self.width, float):
            return cached_gaussian_kernel(self.width, self.kernel_size, dtype=dtype, device=device)
        return gaussian_kernel(self.width.to(device=device, dtype=dtype), self.kernel_size)

    def _apply(self, x, adjoint):
        x4 = as_planes(x)
        check_fits(x4.shape[-2:], (self.kernel_size,) * 2, self.padding, name="kernel_size")
        if isinstance(self.width, float):
            k = self.kernel(dtype=x.dtype, device=x.device)
        else:  # a tensor width copied to x's device once, not at every call (:func:`resident`)
            k = gaussian_kernel(resident(self, self.width, x), self.kernel_size)
        if k.dim() == 2 and k.shape[0] != x.shape[0]:
            raise ShapeError(
                f"per-sample width has {k.shape[0]} entries but the batch has {x.shape[0]}"
            )
        return separable(x4, k, k, self.padding, adjoint=adjoint).reshape(x.shape)

    def select_rows(self, rows, ndim):
        """The rows ``rows`` of a per-sample ``[B]`` width (a shared width returns this)."""
        w = self.width
        if not isinstance(w, torch.Tensor) or w.dim() != 1:
            return self
        return self._with(width=w[rows.to(w.device)])

    def A(self, x):
        """Blur ``x`` [B, *, H, W]."""
        return self._apply(x, False)

    def A_adjoint(self, y):
        """Exact adjoint of the padded blur."""
        return self._apply(y, True)

    def __repr__(self) -> str:
        return (
            f"GaussianBlur(width={describe(self.width)}, kernel_size={self.kernel_size}, "
            f"padding={self.padding!r})"
        )


class Blur(LinearOperator):
    """Blur by an explicit 2-D kernel ``[kh, kw]`` (or per-sample ``[B, kh, kw]``), odd sizes.

    ``A x = k ⋆ P x`` is a cross-correlation (no kernel flip) after padding; the kernel is used as
    given (not normalised) and may require grad, e.g. a free kernel in blind inversion.
    """

    def __init__(self, kernel: torch.Tensor, *, padding: str = "reflect"):
        if not isinstance(kernel, torch.Tensor) or kernel.dim() not in (2, 3):
            raise ConfigError(
                f"kernel must be a [kh, kw] or [B, kh, kw] tensor, got {describe(kernel)}"
            )
        if kernel.is_complex():  # would be cast to real (imaginary part dropped) when applied
            raise ConfigError(f"kernel must be a real tensor, got {describe(kernel)}")
        if kernel.shape[-1] % 2 == 0 or kernel.shape[-2] % 2 == 0:
            raise ConfigError(f"kernel must have odd height and width, got {describe(kernel)}")
        if value_checks_enabled() and not bool(torch.isfinite(kernel.detach()).all()):
            raise ConfigError(f"kernel must be finite, got {describe(kernel)}")  # a host read
        self.kernel = kernel
        self.padding = check_padding(padding)

    def _apply(self, x, adjoint):
        x4 = as_planes(x)
        check_fits(
            x4.shape[-2:], tuple(self.kernel.shape[-2:]), self.padding, name="kernel of shape"
        )
        if self.kernel.dim() == 3 and self.kernel.shape[0] != x.shape[0]:
            raise ShapeError(
                f"per-sample kernel has {self.kernel.shape[0]} entries but the batch has "
                f"{x.shape[0]}"
            )
        k = resident(self, self.kernel, x)
        return full2d(x4, k, self.padding, adjoint=adjoint).reshape(x.shape)

    def select_rows(self, rows, ndim):
        """The rows ``rows`` of a per-sample ``[B, kh, kw]`` kernel (a shared one returns this)."""
        k = self.kernel
        if k.dim() != 3:
            return self
        return self._with(kernel=k[rows.to(k.device)])

    def A(self, x):
        """Blur ``x`` [B, *, H, W] with the kernel."""
        return self._apply(x, False)

    def A_adjoint(self, y):
        """Exact adjoint of the padded correlation."""
        return self._apply(y, True)

    def __repr__(self) -> str:
        return f"Blur(kernel={describe(self.kernel)}, padding={self.padding!r})"
