"""Operators with a known SVD ``A = U S Vᵀ``, the spectral form DDRM and DiffPIR's prox use.

DDRM (Kawar, Elad, Ermon & Song 2022, §3) runs the diffusion in the spectral space of the
degradation: ``x̄ = Vᵀ x``, ``ȳ = S⁺ Uᵀ y``. Three operator families of
:mod:`flowrestore.degradations` have that decomposition in closed form, with an orthonormal ``V``
that never needs a matrix:

* a diagonal (:class:`~flowrestore.degradations.Inpainting` masks,
  :class:`~flowrestore.degradations.Diagonal`, :class:`~flowrestore.degradations.Identity`):
  ``V = I``, ``s = |d|``, ``U = sign(d)``;
* ``f × f`` block averaging (:class:`~flowrestore.degradations.Downsample`): ``V`` the orthonormal
  2-D DCT-II of each block, whose first basis vector is the constant ``1/f``; ``A`` maps it to
  ``1/f`` (``s = 1/f`` on the block's DC coefficient, 0 on the other ``f² − 1``) and ``U = I``;
* circular blur (:class:`~flowrestore.degradations.GaussianBlur` or
  :class:`~flowrestore.degradations.Blur` with ``padding="circular"``): shift-invariant, so
  ``V`` is the unitary 2-D DFT, ``s = |Ĥ|`` and ``U = V diag(Ĥ/|Ĥ|)`` with ``Ĥ`` the DFT of the
  impulse response (computed by applying the operator to a unit impulse, so it follows the
  operator's own convention).

Spectral coefficients keep a real image's layout (the DFT ones are complex with Hermitian
symmetry; every operation here uses real coefficients per frequency, so the way back is real).
Any other operator is refused by :func:`spectral_form` with :class:`IncompatibleOperatorError`
naming it — before anything is evaluated.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flowrestore.degradations import Blur, Diagonal, Downsample, GaussianBlur, Identity
from flowrestore.errors import IncompatibleOperatorError, ShapeError
from flowrestore.tensors import repeat_blocks

__all__ = ["IncompatibleOperatorError", "SpectralForm", "nonzero", "spectral_form"]


def nonzero(v: Tensor) -> Tensor:
    """``v`` with its zeros replaced by 1: a divisor for terms that are 0 where ``v`` is (in any
    dtype, unlike a clamp to a tiny constant that underflows in float32)."""
    return torch.where(v > 0, v, torch.ones_like(v))


class SpectralForm:
    """``A = U S Vᵀ`` of one operator (module docstring). Subclasses implement the three maps."""

    def __init__(self, operator):
        self.operator = operator

    def __getstate__(self):
        """Pickled without its per-device tables (rebuilt on first use)."""
        state = dict(self.__dict__)
        state.pop("_dct", None)
        return state

    def to_spectral(self, x: Tensor) -> Tensor:
        """``Vᵀ x``."""
        raise NotImplementedError

    def from_spectral(self, c: Tensor) -> Tensor:
        """``V c`` (real), the inverse of :meth:`to_spectral`."""
        raise NotImplementedError

    def singular_values(self, x: Tensor) -> Tensor:
        """``s ≥ 0`` per spectral coefficient of an image shaped like ``x`` (broadcastable)."""
        raise NotImplementedError

    def project_measurement(self, y: Tensor, x: Tensor) -> Tensor:
        """``Uᵀ y`` laid out like ``Vᵀ x`` (0 where ``s = 0``), so ``Uᵀ A x = s ⊙ Vᵀ x``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.operator!r})"


class DiagonalForm(SpectralForm):
    """A diagonal ``A = diag(d)``: ``V = I``, ``s = |d|``, ``U = sign(d)``."""

    def _d(self, x: Tensor) -> Tensor:
        if isinstance(self.operator, Identity):
            return torch.ones((), dtype=x.dtype, device=x.device)
        return torch.as_tensor(self.operator._scale_for(x), dtype=x.dtype, device=x.device)

    def to_spectral(self, x):
        """``Vᵀ x = x``."""
        return x

    def from_spectral(self, c):
        """``V c = c``."""
        return c

    def singular_values(self, x):
        """``|d|``."""
        return self._d(x).abs()

    def project_measurement(self, y, x):
        """``sign(d) y``."""
        return torch.sign(self._d(x)) * y


def dct_matrix(n: int, *, dtype=torch.float64, device=None) -> Tensor:
    """The orthonormal DCT-II matrix ``M[k, j] = c_k cos(π (2j + 1) k / (2n))`` (rows: basis)."""
    j = torch.arange(n, dtype=torch.float64, device=device)  # built where it is used: no copy
    k = j[:, None]
    m = torch.cos(math.pi * (2 * j[None, :] + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    m[0] = 1.0 / math.sqrt(n)
    return m.to(dtype=dtype)


class BlockAverageForm(SpectralForm):
    """``f × f`` block averaging: per-block orthonormal DCT, ``s = 1/f`` on each DC coefficient."""

    def _size(self, x: Tensor) -> tuple[int, int]:
        f = self.operator.factor
        h, w = x.shape[-2:]
        if h % f or w % f:
            raise ShapeError(f"image size {(h, w)} must be divisible by factor={f}")
        return h, w

    def _blocks(self, x: Tensor) -> Tensor:
        f = self.operator.factor
        h, w = self._size(x)
        return x.reshape(*x.shape[:-2], h // f, f, w // f, f)

    def _m(self, x: Tensor) -> Tensor:
        if torch.compiler.is_compiling():
            return dct_matrix(self.operator.factor, dtype=x.dtype, device=x.device)
        cache = self.__dict__.setdefault("_dct", {})  # one per device and dtype, built once
        key = (x.device, x.dtype)
        if key not in cache:
            cache[key] = dct_matrix(self.operator.factor, dtype=x.dtype, device=x.device)
        return cache[key]

    def to_spectral(self, x):
        """The 2-D DCT-II of each ``f × f`` block, in place."""
        m = self._m(x)
        c = torch.einsum("ka,...iajb,lb->...ikjl", m, self._blocks(x), m)
        return c.reshape(x.shape)

    def from_spectral(self, c):
        """The inverse DCT of each block."""
        m = self._m(c)
        x = torch.einsum("ka,...ikjl,lb->...iajb", m, self._blocks(c), m)
        return x.reshape(c.shape)

    def _dc(self, x: Tensor) -> Tensor:
        f = self.operator.factor
        h, w = self._size(x)
        mask = torch.zeros(h // f, f, w // f, f, dtype=x.dtype, device=x.device)
        mask[:, 0, :, 0] = 1.0
        return mask.reshape(h, w)

    def singular_values(self, x):
        """``1/f`` on each block's DC coefficient, 0 elsewhere."""
        return self._dc(x) / self.operator.factor

    def project_measurement(self, y, x):
        """Each block mean of ``y`` on its block's DC coefficient."""
        f = self.operator.factor
        up = repeat_blocks(y, f)
        return up * self._dc(x)


class CircularBlurForm(SpectralForm):
    """A circular (shift-invariant) blur: unitary DFT, ``s = |Ĥ|``, ``Uᵀ y = (Ĥ*/|Ĥ|) DFT(y)``.

    ``Ĥ`` is kept for the last image shape, dtype and device while the operator is unchanged
    (its kernel or width: the same objects, tensors not modified in place); it is computed at
    every call when one of them requires grad (the differentiable response stays in the graph of
    each solve) or under ``torch.compile``, and is not pickled.
    """

    def __getstate__(self):
        """Pickled without its transfer functions (per device; rebuilt on first use)."""
        state = super().__getstate__()
        state.pop("_cache", None)
        return state

    def _response(self, x: Tensor) -> Tensor:
        impulse = torch.zeros(x.shape, dtype=x.dtype, device=x.device)
        impulse[..., 0, 0] = 1.0
        return torch.fft.fft2(self.operator.A(impulse))

    def _transfer(self, x: Tensor) -> Tensor:
        if torch.compiler.is_compiling():
            return self._response(x)
        fields = sorted(vars(self.operator).items(), key=lambda kv: kv[0])
        tensors = [v for _, v in fields if isinstance(v, Tensor)]
        if torch.is_grad_enabled() and any(v.requires_grad for v in tensors):
            return self._response(x)
        # the operator's state: its plain fields by value, its tensors by identity and version
        # (the tensors are kept in the entry, so their ids are not reused while it lives)
        state = tuple(
            (k, id(v), v._version) if isinstance(v, Tensor) else (k, v)
            for k, v in fields
            if isinstance(v, (Tensor, bool, int, float, str))
        )
        key = (tuple(x.shape), x.dtype, x.device, state)
        hit = self.__dict__.get("_cache")  # one entry: the last shape, dtype and device
        if hit is None or hit[0] != key:
            hit = (key, tensors, self._response(x))
            self._cache = hit
        return hit[2]

    def to_spectral(self, x):
        """The unitary 2-D DFT."""
        return torch.fft.fft2(x, norm="ortho")

    def from_spectral(self, c):
        """The inverse unitary DFT (real part)."""
        return torch.fft.ifft2(c, norm="ortho").real

    def singular_values(self, x):
        """``|Ĥ|`` per frequency."""
        return self._transfer(x).abs()

    def project_measurement(self, y, x):
        """``(Ĥ*/|Ĥ|) DFT(y)``."""
        h = self._transfer(x)
        mag = h.abs()
        phase = torch.where(mag > 0, h.conj() / nonzero(mag), torch.zeros_like(h))
        return phase * torch.fft.fft2(y, norm="ortho")


def spectral_form(operator, method: str = "this method") -> SpectralForm:
    """The closed-form SVD of ``operator`` (module docstring), or
    :class:`IncompatibleOperatorError` naming the operator and ``method``."""
    if isinstance(operator, (Diagonal, Identity)):
        return DiagonalForm(operator)
    if isinstance(operator, Downsample):
        return BlockAverageForm(operator)
    if isinstance(operator, (GaussianBlur, Blur)):
        if operator.padding == "circular":
            return CircularBlurForm(operator)
        raise IncompatibleOperatorError(
            f"{method} needs an operator with a closed-form SVD; {operator!r} has "
            f"padding={operator.padding!r}, whose SVD is not known in closed form: build it with "
            "padding='circular' (diagonal in the Fourier basis)"
        )
    raise IncompatibleOperatorError(
        f"{method} needs an operator with a closed-form SVD (Inpainting/Diagonal/Identity, "
        f"Downsample, or GaussianBlur/Blur with padding='circular'), got {operator!r}"
    )
