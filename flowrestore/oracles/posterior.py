"""The linear-Gaussian posterior: ground truth for guided restoration (docs/math.md §10).

Prior ``x ~ N(μ, Σ)`` on images ``[C, H, W]``, measurement ``y = A x + n``, ``n ~ N(0, σ_y² I)``:
the posterior is Gaussian, ``Σ_post = (Σ⁻¹ + AᵀA/σ_y²)⁻¹``, ``μ_post = Σ_post (Σ⁻¹ μ + Aᵀ y/σ_y²)``.
It is closed form per coordinate when ``A`` and ``Σ`` are diagonal in the same orthonormal basis:

* :meth:`LinearGaussianPosterior.masked` — ``A = diag(d)`` (inpainting masks, any real
  diagonal), ``Σ = diag(σ²)``: per pixel ``v = σ² σ_y²/(σ_y² + d² σ²)``,
  ``μ_post = μ + σ² d (y − d μ)/(σ_y² + d² σ²)``;
* :meth:`LinearGaussianPosterior.block_average` — ``f × f`` block averaging, ``σ`` constant on each
  block (``Σ`` is then ``σ_b² I`` there, diagonal in any per-block basis): only the block mean is
  measured, ``y_b = m_b + n`` with ``m_b ~ N(μ̄_b, σ_b²/f²)``, so the mean moves by
  ``σ_b² (y_b − μ̄_b)/(σ_b² + f² σ_y²)`` on every pixel of the block and the per-pixel variance
  drops by ``(σ_b²/f²) σ_b²/(σ_b² + f² σ_y²)``;
* :meth:`LinearGaussianPosterior.circular_blur` — ``A x = k ⋆ x`` with circular padding (the
  cross-correlation ``(A x)_{ij} = Σ_{uv} k_{uv} x_{i+u−⌊kh/2⌋, j+v−⌊kw/2⌋}``, indices mod the
  image size) and an isotropic ``Σ = σ² I``: in the unitary DFT basis ``A = diag(Ĥ)`` with ``Ĥ``
  the DFT of the impulse response, per frequency ``v_ω = σ² σ_y²/(σ_y² + |Ĥ_ω|² σ²)`` and
  ``μ̂_post = μ̂ + σ² Ĥ* (ŷ − Ĥ μ̂)/(σ_y² + |Ĥ|² σ²)``.

No operator class of :mod:`flowrestore.degradations` is used (oracles sit below them); tests
check that :meth:`~LinearGaussianPosterior.apply` equals the operator and that the closed forms
equal the dense formula above.
"""

from __future__ import annotations

import numbers

import torch
from torch import Tensor

from flowrestore.errors import ConfigError, ShapeError, describe
from flowrestore.oracles._common import (
    as_param,
    check_state,
    positive_float,
    standard_normal,
    widened,
)
from flowrestore.tensors import repeat_blocks

__all__ = ["LinearGaussianPosterior"]


class LinearGaussianPosterior:
    """The posterior of a Gaussian prior under a linear measurement diagonal in a known basis.

    Build it with :meth:`masked`, :meth:`block_average` or :meth:`circular_blur`. Images are
    ``[B, C, H, W]`` batches with ``event_shape = (C, H, W)``.
    """

    def __init__(self, kind: str, mean: Tensor, std: Tensor, noise_std: float, param) -> None:
        self.kind = kind
        self.event_shape: tuple[int, ...] = tuple(mean.shape)
        self.mean = mean
        self.std = std
        self.noise_std = noise_std
        self.param = param

    # ---------------------------------------------------------------- constructors
    @staticmethod
    def _prior(mean, std, event_shape) -> tuple[Tensor, Tensor]:
        try:
            shape = tuple(event_shape)
        except TypeError:
            shape = ()
        if not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in shape):
            raise ConfigError(f"event_shape must be (C, H, W) ints, got {describe(event_shape)}")
        shape = tuple(int(s) for s in shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ConfigError(f"event_shape must be (C, H, W), got {describe(event_shape)}")
        c, s = as_param(mean, "mean"), as_param(std, "std")
        if not bool((s > 0).all()):
            raise ConfigError(f"std must be positive, got {describe(std)}")
        try:
            return c.expand(shape).clone(), s.expand(shape).clone()
        except RuntimeError as exc:
            raise ConfigError(f"mean and std must broadcast to event_shape {shape}") from exc

    @classmethod
    def masked(cls, *, mean, std, mask, noise_std: float, event_shape) -> LinearGaussianPosterior:
        """``A = diag(mask)`` (any real diagonal broadcasting to ``event_shape``; a boolean mask,
        as :class:`~flowrestore.degradations.Inpainting` takes, is 1 where true)."""
        c, s = cls._prior(mean, std, event_shape)
        if isinstance(mask, torch.Tensor) and mask.dtype == torch.bool:
            mask = mask.to(torch.float64)
        d = as_param(mask, "mask")
        try:
            d = d.expand(c.shape).clone()
        except RuntimeError as exc:
            raise ConfigError(
                f"mask of shape {tuple(d.shape)} does not broadcast to event_shape {tuple(c.shape)}"
            ) from exc
        sy = positive_float(noise_std, "noise_std", allow_zero=True)
        return cls("masked", c, s, sy, d)

    @classmethod
    def block_average(
        cls, *, mean, std, factor: int, noise_std: float, event_shape
    ) -> LinearGaussianPosterior:
        """``f × f`` block averaging; ``std`` must be constant on each block."""
        c, s = cls._prior(mean, std, event_shape)
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
            raise ConfigError(f"factor must be a positive int, got {describe(factor)}")
        if c.shape[-1] % factor or c.shape[-2] % factor:
            raise ShapeError(f"image size {c.shape[-2:]} must be divisible by factor={factor}")
        sb = _block_mean(s, factor)
        if not torch.allclose(_up(sb, factor), s, rtol=1e-12, atol=0):
            raise ConfigError("block_average needs std constant on each block (Σ = σ_b² I there)")
        sy = positive_float(noise_std, "noise_std", allow_zero=True)
        return cls("block", c, s, sy, factor)

    @classmethod
    def circular_blur(
        cls, *, mean, std: float, kernel, noise_std: float, event_shape
    ) -> LinearGaussianPosterior:
        """Circular cross-correlation with a 2-D ``kernel`` ``[kh, kw]``; ``std`` a scalar."""
        c, s = cls._prior(mean, positive_float(std, "std"), event_shape)
        k = as_param(kernel, "kernel")
        if k.dim() != 2 or k.numel() == 0 or k.shape[0] > c.shape[-2] or k.shape[1] > c.shape[-1]:
            raise ConfigError(
                f"kernel must be 2-D, non-empty and fit the image, got {describe(kernel)}"
            )
        h, w = c.shape[-2:]
        response = torch.zeros(h, w, dtype=torch.float64)
        ph, pw = k.shape[0] // 2, k.shape[1] // 2
        for u in range(k.shape[0]):
            for v in range(k.shape[1]):
                response[(ph - u) % h, (pw - v) % w] += k[u, v]
        sy = positive_float(noise_std, "noise_std", allow_zero=True)
        return cls("blur", c, s, sy, torch.fft.fft2(response))

    # ---------------------------------------------------------------- the measurement
    @property
    def measurement_shape(self) -> tuple[int, ...]:
        """The shape of one measurement ``A x``: ``(C, H/f, W/f)`` for block averaging, else the
        event shape."""
        if self.kind == "block":
            c, h, w = self.event_shape
            return (c, h // self.param, w // self.param)
        return self.event_shape

    @widened
    def apply(self, x: Tensor) -> Tensor:
        """``A x`` for ``x`` ``[B, C, H, W]`` (the oracle's own implementation; a half-precision
        ``x`` is computed in float32, which CPU FFTs need)."""
        x = check_state(x, self.event_shape, "x")
        if self.kind == "masked":
            return self.param.to(x) * x
        if self.kind == "block":
            return _block_mean(x, self.param)
        return torch.fft.ifft2(self.param.to(x.device) * torch.fft.fft2(x)).real.to(x.dtype)

    def sample(self, n: int, *, generator: torch.Generator | None = None):
        """``(x, y)``: ``n`` draws of the prior and their measurements (float64)."""
        z = standard_normal(n, self.event_shape, generator, torch.float64, None)
        x = self.mean + self.std * z
        ax = self.apply(x)
        noise = torch.randn(ax.shape, generator=generator, dtype=torch.float64)
        return x, ax + self.noise_std * noise

    # ---------------------------------------------------------------- the posterior
    @widened
    def posterior_mean(self, y: Tensor) -> Tensor:
        """``μ_post`` for each measurement in ``y`` ``[B, *measurement_shape]`` (module
        docstring; a half-precision ``y`` is computed in float32 and returned in its dtype)."""
        y = check_state(y, self.measurement_shape, "y")
        c, var, sy2 = self.mean.to(y), self.std.to(y) ** 2, self.noise_std**2
        if self.kind == "masked":
            d = self.param.to(y)
            den = sy2 + d * d * var  # 0 only where nothing is measured without noise
            return c + var * d * (y - d * c) / torch.where(den > 0, den, torch.ones_like(den))
        if self.kind == "block":
            f = self.param
            vb = _block_mean(var, f)
            gain = vb / (vb + f * f * sy2)
            return c + _up(gain * (y - _block_mean(c, f)), f)
        h = self.param.to(y.device)
        var0 = float(self.std.flatten()[0]) ** 2
        den = sy2 + h.abs() ** 2 * var0
        den = torch.where(den > 0, den, torch.ones_like(den))
        c_hat = torch.fft.fft2(c)
        spec = c_hat + var0 * h.conj() * (torch.fft.fft2(y) - h * c_hat) / den
        return torch.fft.ifft2(spec).real.to(y.dtype)

    def posterior_var(self) -> Tensor:
        """The posterior's per-pixel marginal variance ``diag Σ_post`` ``[C, H, W]``."""
        var, sy2 = self.std**2, self.noise_std**2
        if self.kind == "masked":
            d = self.param
            return var * sy2 / (sy2 + d * d * var) if sy2 > 0 else var * (d == 0)
        if self.kind == "block":
            f = self.param
            vb = _block_mean(var, f)
            return var - _up(vb * vb / (f * f * (vb + f * f * sy2)), f)
        return torch.full(self.event_shape, float(self._freq_var().mean()), dtype=torch.float64)

    def _freq_var(self) -> Tensor:
        var0, sy2, h2 = float(self.std.flatten()[0]) ** 2, self.noise_std**2, self.param.abs() ** 2
        den = sy2 + h2 * var0
        return torch.where(den > 0, var0 * sy2 / torch.where(den > 0, den, 1.0), var0)

    def expected_residual(self, y: Tensor) -> Tensor:
        """``E[‖y − A x‖² | y]`` under the posterior, per sample ``[B]``: ``‖y − A μ_post‖² +
        tr(A Σ_post Aᵀ)``. Averaged over ``y ~ p(y)`` it is ``m σ_y²`` (``m`` = size of ``y``)."""
        r = y - self.apply(self.posterior_mean(y))
        fit = r.reshape(r.shape[0], -1).pow(2).sum(1)
        if self.kind == "masked":
            tr = (self.param**2 * self.posterior_var()).sum()
        elif self.kind == "block":
            f = self.param
            vb = _block_mean(self.std**2, f)
            tr = (vb * f * f * self.noise_std**2 / (f * f * (vb + f * f * self.noise_std**2))).sum()
        else:
            tr = self.event_shape[0] * (self.param.abs() ** 2 * self._freq_var()).sum()
        return fit + float(tr)

    def __repr__(self) -> str:
        return (
            f"LinearGaussianPosterior(kind={self.kind!r}, event_shape={self.event_shape}, "
            f"noise_std={self.noise_std:.4g})"
        )


def _block_mean(x: Tensor, f: int) -> Tensor:
    h, w = x.shape[-2:]
    return x.reshape(*x.shape[:-2], h // f, f, w // f, f).mean(dim=(-3, -1))


def _up(x: Tensor, f: int) -> Tensor:
    return repeat_blocks(x, f)
