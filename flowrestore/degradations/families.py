"""Degradation families ``A_t``, ``t ∈ [0, 1]``, with ``A_0 ≈ I`` and their time derivatives.

The stochastic degradation process of Dirac (docs/math.md §3) is ``y_t = A_t(x_0) + σ_t z``; its
drift needs ``∂_t A_t(Φ)``. A family is called as ``family(x, t)`` with ``t`` a float, a 0-dim
tensor or one severity per sample ``[B]``; linear families also give ``family.adjoint(y, t)`` and
``family.time_derivative(x, t) = ∂_t A_t(x)``.

Most families are ``A_t = B_{p(t)}`` for an operator ``B_p`` with a scalar parameter ``p`` (blur
width, hole size, blend amount) given by a schedule ``p(t)``; then ``∂_t A_t x = (∂_p B_p x) p'(t)``
with ``∂_p B_p`` analytic and ``p'(t)`` exact for a :class:`~flowrestore.schedules.Schedule`. For a
plain callable ``p`` the derivative is the central difference ``(p(t+h) - p(t-h)) / (2h)`` in
float64 (one-sided, inside [0, 1], at the ends) with ``h = fd_step`` (default 1e-4, error O(h²)).
Any callable ``A(x, t)`` can be used through :func:`as_family` (derivative by central difference in
``x``'s dtype, default step 1e-3, at least that dtype's eps: 2⁻⁷ in bfloat16).

**Checks at build time, none in the hot path.** A family's parameter schedule is checked once, on a
CPU probe of ``[0, 1]``, when the family is built (a blur width or hole size finite and ``>= 0``);
``family(x, t)`` checks that ``t`` lies in ``[0, 1]`` (for a tensor by reading it), and
``family(x, t, check=False)`` — what a flow calls inside a solve, whose times were validated when it
was planned — reads no device value at all. A time shared by the batch (a float, a 0-dim tensor)
builds one blur kernel for all samples, from the width as a tensor (no value is read).
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable

import torch

from flowrestore.degradations._conv import as_planes, check_fits, check_padding, separable
from flowrestore.degradations.base import (
    LinearOperator,
    batch_time,
    per_sample,
    resident,
    shares_time,
)
from flowrestore.degradations.blur import (
    check_kernel_size,
    default_kernel_size,
    gaussian_kernel,
    gaussian_kernel_derivative,
)
from flowrestore.degradations.inpainting import box_hole_mask, gaussian_hole_mask
from flowrestore.degradations.resample import _check_factor, block_average
from flowrestore.errors import ConfigError, ShapeError, describe
from flowrestore.schedules import (
    Linear,
    as_schedule,
    as_time_tensor,
    check_fd_step,
    check_on_unit_interval,
    difference_points,
)
from flowrestore.schedules.base import _wide
from flowrestore.tensors import broadcasts_to

__all__ = [
    "Family",
    "LinearFamily",
    "FunctionFamily",
    "as_family",
    "GaussianBlurFamily",
    "InpaintingFamily",
    "DownsampleFamily",
    "DiagonalFamily",
]


class Family:
    """A degradation family ``A_t``: ``family(x, t)`` and ``family.time_derivative(x, t)``.

    ``t`` is a float, a 0-dim tensor or one severity per sample ``[B]``; ``check=False`` skips the
    ``t ∈ [0, 1]`` check of a tensor (module docstring).
    """

    linear = False

    def __call__(self, x: torch.Tensor, t, *, check: bool = True) -> torch.Tensor:
        tt, scalar = batch_time(t, x, check=check)
        return self._apply(x, tt, scalar)

    def time_derivative(self, x: torch.Tensor, t, *, check: bool = True) -> torch.Tensor:
        """``∂_t A_t(x)`` per sample."""
        tt, _ = batch_time(t, x, check=check)
        return self._dt(x, tt)

    def _apply(self, x, tt, scalar):  # pragma: no cover - abstract
        raise NotImplementedError

    def _dt(self, x, tt):  # pragma: no cover - abstract
        raise NotImplementedError


class _AtTime(LinearOperator):
    """``A_t`` at a fixed ``t``: the time is checked once, here, so that applying the operator
    (inside a solve's steps) reads no device value."""

    def __init__(self, family, t):
        as_time_tensor(t, name="t")  # in [0, 1] (a tensor: one host read, now)
        self.family, self.t = family, t

    def _time(self, like: torch.Tensor):
        """The time; a tensor time is copied to ``like``'s device once (:func:`resident`), not at
        every application (a host tensor copied to the GPU inside every step of a solve)."""
        t = self.t
        return resident(self, t, like) if isinstance(t, torch.Tensor) else t

    def A(self, x):
        return self.family(x, self._time(x), check=False)

    def A_adjoint(self, y):
        return self.family.adjoint(y, self._time(y), check=False)

    def select_rows(self, rows, ndim):
        """The rows ``rows`` of per-sample times ``[B]`` (a shared time returns this operator):
        a solve that steps a subset of its batch passes those rows' images only."""
        t = self.t
        if not isinstance(t, torch.Tensor) or t.dim() != 1 or t.shape[0] == 1:
            return self
        return self._with(t=t[rows.to(t.device)])

    def __repr__(self) -> str:
        return f"{type(self.family).__name__}.at({describe(self.t)})"


class LinearFamily(Family):
    """A family of linear operators: adds ``adjoint(y, t)``, ``at(t)`` and ``check_adjoint``."""

    linear = True

    def adjoint(self, y: torch.Tensor, t, *, check: bool = True) -> torch.Tensor:
        """``A_tᵀ y`` per sample."""
        tt, scalar = batch_time(t, y, check=check)
        return self._adjoint(y, tt, scalar)

    def at(self, t) -> LinearOperator:
        """The operator ``A_t`` at a fixed ``t`` (float or ``[B]`` tensor) as a LinearOperator."""
        return _AtTime(self, t)

    def check_adjoint(self, shape, t, *, generator=None, dtype=torch.float64, device=None) -> float:
        """Relative adjointness error of ``A_t`` (see :meth:`LinearOperator.check_adjoint`)."""
        if isinstance(t, torch.Tensor):
            t = t.to(dtype=dtype, device=device)
        return self.at(t).check_adjoint(shape, generator=generator, dtype=dtype, device=device)

    def _adjoint(self, y, tt, scalar):  # pragma: no cover - abstract
        raise NotImplementedError


def _check_takes_two(name: str, fn, form: str) -> None:
    """Refuse (:class:`ConfigError`, before any work) a callable that cannot be called with two
    arguments — e.g. a fixed operator ``A(x)`` (a GaussianBlur, a JPEG) given where a family
    ``A(x, t)`` is needed, which failed at the first step with an untyped TypeError."""
    if fn is None:
        return
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # no signature to read (a builtin): taken on trust
        return
    try:
        sig.bind(None, None)
    except TypeError:
        hint = (
            "; a fixed operator has no severity t: use a family such as GaussianBlurFamily, "
            "InpaintingFamily, DownsampleFamily, or FunctionFamily(lambda x, t: ...)"
            if name == "fn"
            else ""
        )
        raise ConfigError(
            f"{name} must be callable as {form} (two arguments), got {describe(fn)}{hint}"
        ) from None


class FunctionFamily(Family):
    """Wrap any callable ``fn(x, t)`` (``t`` a ``[B]`` tensor) as a family.

    ``time_derivative`` defaults to the central difference ``(A_{t+h}x - A_{t-h}x) / (2h)``
    (one-sided inside [0, 1] at the ends), ``h = fd_step`` — at least the eps of ``x``'s dtype
    (2⁻⁷ in bfloat16), so that ``t ± h`` rounded to that dtype are two times; the quotient divides
    by the distance between them. Give ``adjoint`` to make it linear (then ``at(t)`` and
    ``check_adjoint`` are offered, as for a :class:`LinearFamily`).
    """

    def __init__(
        self,
        fn: Callable,
        *,
        adjoint: Callable | None = None,
        time_derivative: Callable | None = None,
        fd_step: float = 1e-3,
    ):
        if not callable(fn):
            raise ConfigError(f"fn must be callable A(x, t), got {describe(fn)}")
        _check_takes_two("fn", fn, "A(x, t)")
        _check_takes_two("adjoint", adjoint, "Aᵀ(y, t)")
        _check_takes_two("time_derivative", time_derivative, "∂_t A_t(x, t)")
        self.fn, self._adj, self._deriv, self.h = (
            fn,
            adjoint,
            time_derivative,
            check_fd_step(fd_step),
        )
        self.linear = adjoint is not None

    def _apply(self, x, tt, scalar):
        return self.fn(x, tt)

    def adjoint(self, y, t, *, check: bool = True):
        """``A_tᵀ y`` when an adjoint callable was given."""
        if self._adj is None:
            raise ConfigError(
                "this family has no adjoint; pass adjoint=callable(y, t) to FunctionFamily"
            )
        tt, _ = batch_time(t, y, check=check)
        return self._adj(y, tt)

    def at(self, t) -> LinearOperator:
        """The operator at fixed ``t`` (needs an adjoint: refused up front without one)."""
        if self._adj is None:
            raise ConfigError(
                "at(t) builds a linear operator, which needs an adjoint; this family has none: "
                "pass adjoint=callable(y, t) to FunctionFamily"
            )
        return _AtTime(self, t)

    check_adjoint = LinearFamily.check_adjoint  # a family given an adjoint is checked alike

    def _dt(self, x, tt):
        if self._deriv is not None:
            return self._deriv(x, tt)
        lo, hi, dt = _rounded_points(tt, self.h)
        diff = self.fn(x, hi) - self.fn(x, lo)
        return (diff.to(dt.dtype) / per_sample(dt, diff)).to(diff.dtype)


def _rounded_points(tt: torch.Tensor, h: float):
    """``(lo, hi, hi − lo)`` of a central difference at ``tt``, the points in ``tt``'s dtype (the
    dtype a user's ``A(x, t)`` is called with) and their distance in float64.

    The points are placed in float64 and rounded once; the step is at least the eps of ``tt``'s
    dtype, so that the rounded points differ (in bfloat16 ``t ± 1e-3`` rounded to ``t`` itself for
    every ``t >= 0.5``: a 0 / 0 derivative), and the quotient divides by the distance between the
    points used, not by the nominal ``2h``.
    """
    if tt.is_floating_point():
        h = max(h, torch.finfo(tt.dtype).eps)
    lo, hi, _ = difference_points(_wide(tt), h)
    lo, hi = lo.to(tt.dtype), hi.to(tt.dtype)
    return lo, hi, _wide(hi) - _wide(lo)


def as_family(A) -> Family:
    """Return ``A`` if it is a :class:`Family`, else wrap the callable ``A(x, t)``."""
    if isinstance(A, Family):
        return A
    return FunctionFamily(A)


class GaussianBlurFamily(LinearFamily):
    """``A_t x = G_{w(t)} ⋆ P x``: Gaussian blur of width ``width(t)`` (Schedule or callable).

    ``width(0)`` small (≈ identity, e.g. 0.3 as in Dirac's code) and ``width(1)`` the observed
    width; e.g. ``width=schedule_degradation(...)`` or ``Linear(0.3, 3.0)``. ``kernel_size``
    (default: 61 taps, or ``2⌈3w⌉ + 1`` for the widest ``w`` on ``[0, 1]`` when that is more, so
    that ±3 standard deviations are always covered; a smaller kernel truncates the Gaussian).
    The width is checked once, when the family is built, to be finite and ``>= 0`` on ``[0, 1]``.
    Per-sample widths are applied in one grouped convolution; a time shared by the batch builds
    one kernel (in float64, then cast). ``∂_t A_t x = w'(t) (∂_w G ⋆ x)`` with the analytic
    kernel derivative.
    """

    def __init__(
        self,
        *,
        width,
        kernel_size: int | None = None,
        padding: str = "reflect",
        fd_step: float = 1e-4,
    ):
        self.width = as_schedule(width, name="width", fd_step=check_fd_step(fd_step))
        check_on_unit_interval(self.width, name="width", nonnegative=True)
        if kernel_size is None:  # 61 taps, more where the width exceeds 10 (±3 std covered)
            with torch.no_grad():
                grid = torch.linspace(0.0, 1.0, 101, dtype=torch.float64)
                widest = float(self.width.value(grid).max())
            kernel_size = max(61, default_kernel_size(widest))
        self.kernel_size = check_kernel_size(kernel_size)
        self.padding = check_padding(padding)

    def _kernels(self, x, tt, derivative=False):
        """One kernel ``[K]`` for a shared time, else per-sample kernels ``[B, K]``."""
        fn = gaussian_kernel_derivative if derivative else gaussian_kernel
        if shares_time(tt) and tt.shape[0] > 0:  # (an empty batch has no first time)
            w = self.width.value(tt[:1])
            if w.requires_grad:
                return fn(w.to(x.dtype), self.kernel_size)[0]
            return fn(w.double(), self.kernel_size)[0].to(x.dtype)
        return fn(self.width.value(tt).to(x.dtype), self.kernel_size)

    def _run(self, x, tt, adjoint):
        x4 = as_planes(x)
        check_fits(x4.shape[-2:], (self.kernel_size,) * 2, self.padding, name="kernel_size")
        k = self._kernels(x, tt)
        return separable(x4, k, k, self.padding, adjoint=adjoint).reshape(x.shape)

    def _apply(self, x, tt, scalar):
        return self._run(x, tt, False)

    def _adjoint(self, y, tt, scalar):
        return self._run(y, tt, True)

    def _dt(self, x, tt):
        x4 = as_planes(x)
        check_fits(x4.shape[-2:], (self.kernel_size,) * 2, self.padding, name="kernel_size")
        k, dk = self._kernels(x, tt), self._kernels(x, tt, derivative=True)
        d = separable(x4, dk, k, self.padding) + separable(x4, k, dk, self.padding)
        return (d * per_sample(self.width.slope(tt), d)).reshape(x.shape)


class InpaintingFamily(LinearFamily):
    """``A_t x = m_t ⊙ x``: a centred hole growing with ``t`` (``A_t`` is self-adjoint).

    Either ``size`` (Schedule or callable t → pixels, ``size(0) = 0`` gives exactly ``A_0 = I``)
    with ``shape="gaussian"`` (``m = (1 - exp(-r²/2σ²))^power``, σ = size, Dirac's mask) or
    ``shape="box"`` (anti-aliased square hole of side ``size``), or ``mask_fn(t, (H, W))`` returning
    a mask that broadcasts to ``[B, 1, H, W]`` (its time derivative by central difference).
    ``power`` applies to the Gaussian hole only: a ``power`` other than 4 with ``shape="box"``, or
    a ``shape``/``power`` given with ``mask_fn``, is refused (it would be ignored).
    """

    def __init__(
        self,
        *,
        size=None,
        shape: str = "gaussian",
        power: float = 4.0,
        mask_fn=None,
        fd_step: float = 1e-4,
    ):
        if (size is None) == (mask_fn is None):
            raise ConfigError(
                f"give exactly one of size= and mask_fn=, got size={describe(size)}, "
                f"mask_fn={describe(mask_fn)}"
            )
        if shape not in ("gaussian", "box"):
            raise ConfigError(f"shape must be 'gaussian' or 'box', got {describe(shape)}")
        if (
            isinstance(power, bool)
            or not isinstance(power, numbers.Real)  # numpy scalars too
            or not (math.isfinite(power) and power >= 1)
        ):  # an infinite power makes ∂_t A_t x NaN everywhere
            raise ConfigError(f"power must be a finite float >= 1, got {describe(power)}")
        if mask_fn is not None and (shape != "gaussian" or power != 4.0):
            raise ConfigError(
                f"shape= and power= describe the hole of size=; with mask_fn= they would be "
                f"ignored, got shape={shape!r}, power={describe(power)}"
            )
        if shape == "box" and power != 4.0:
            raise ConfigError(
                f"power= shapes the Gaussian hole's edge; shape='box' has none (it would be "
                f"ignored), got power={describe(power)}"
            )
        self.h = check_fd_step(fd_step)
        self.size = None if size is None else as_schedule(size, name="size", fd_step=self.h)
        if self.size is not None:
            check_on_unit_interval(self.size, name="size", nonnegative=True)
        if mask_fn is not None and not callable(mask_fn):
            raise ConfigError(
                f"mask_fn must be callable (t, (H, W)) -> mask, got {describe(mask_fn)}"
            )
        self.mask_fn, self.shape, self.power = mask_fn, shape, float(power)

    def _from_size(self, s, h, w, derivative):
        if self.shape == "gaussian":
            return gaussian_hole_mask(s, h, w, power=self.power, derivative=derivative)
        return box_hole_mask(s, h, w, derivative=derivative)

    def _user_mask(self, tt, h, w, b):
        m = self.mask_fn(tt, (h, w))
        if not isinstance(m, torch.Tensor):
            raise ShapeError(f"mask_fn must return a tensor, got {describe(m)}")
        try:
            ok = torch.broadcast_shapes(m.shape, (b, 1, h, w)) == (b, 1, h, w)
        except RuntimeError:
            ok = False
        if not ok:
            raise ShapeError(
                f"mask_fn(t, ({h}, {w})) must broadcast to [B, 1, H, W] = {[b, 1, h, w]}, "
                f"got {describe(m)}"
            )
        return m

    def mask(self, t, x: torch.Tensor, *, check: bool = True) -> torch.Tensor:
        """The mask ``m_t`` for the batch ``x`` [B, *, H, W], shape ``[B, 1, H, W]`` (a mask of
        ``size=`` in ``x``'s dtype)."""
        tt, _ = batch_time(t, x, check=check)
        return self._mask(tt, x)

    def _mask(self, tt, x, derivative=False):
        b, h, w = x.shape[0], x.shape[-2], x.shape[-1]
        if self.mask_fn is not None:
            if not derivative:
                return self._user_mask(tt, h, w, b).to(x.dtype)
            # the times in float64: the mask depends on t alone, and in half precision t ± h
            # rounded to one time (a 0 / 0 derivative at every pixel)
            # (each mask widened before the difference: two boolean masks cannot be subtracted)
            lo, hi, dt = difference_points(_wide(tt), self.h)
            m_hi, m_lo = (self._user_mask(s, h, w, b).to(dt.dtype) for s in (hi, lo))
            return ((m_hi - m_lo) / dt.reshape(-1, 1, 1, 1)).to(x.dtype)
        s = self.size.value(tt)
        m = self._from_size(s, h, w, derivative)
        if derivative:
            m = m * self.size.slope(tt).reshape(-1, 1, 1, 1)
        # in x's dtype: a schedule with a float64 tensor parameter made a float32 image float64
        return m.to(x.dtype) if x.is_floating_point() else m

    def _mul(self, x, m):
        return (as_planes(x) * m).reshape(x.shape)

    def _apply(self, x, tt, scalar):
        return self._mul(x, self._mask(tt, x))

    _adjoint = _apply

    def _dt(self, x, tt):
        return self._mul(x, self._mask(tt, x, derivative=True))


class DownsampleFamily(LinearFamily):
    """``A_t = (1 - a(t)) I + a(t) U D``: blend from identity to block-average-then-replicate.

    ``U D`` is the orthogonal projection onto ``f × f`` block-constant images (``D`` = ``f``-fold
    average pooling, ``U`` = nearest upsampling), so ``A_t`` is linear, self-adjoint, keeps the
    image size, and ``A_1 x = U D x`` carries exactly the low-resolution observation. ``amount``
    (Schedule or callable, checked once to be finite on ``[0, 1]``) defaults to ``a(t) = t``;
    ``∂_t A_t x = a'(t) (U D x - x)``.
    """

    def __init__(self, *, factor: int, amount=None, fd_step: float = 1e-4):
        self.factor = _check_factor(factor)
        self.amount = as_schedule(
            Linear(0.0, 1.0) if amount is None else amount,
            name="amount",
            fd_step=check_fd_step(fd_step),
        )
        check_on_unit_interval(self.amount, name="amount")  # finite on [0, 1]

    def _apply(self, x, tt, scalar):
        # the amount in x's dtype (a float64 tensor parameter made a float32 image float64)
        a = per_sample(self.amount.value(tt).to(x.dtype), x)
        return x + a * (block_average(x, self.factor) - x)

    _adjoint = _apply

    def _dt(self, x, tt):
        da = per_sample(self.amount.slope(tt).to(x.dtype), x)
        return da * (block_average(x, self.factor) - x)


class DiagonalFamily(LinearFamily):
    """``A_t x = a(t) ⊙ x`` for a callable ``a(t)`` (``t`` [B]).

    ``a(t)`` returns a per-sample ``[B]`` scale or a tensor broadcasting to ``x`` (per coordinate),
    e.g. ``a(t) = 1 - t[:, None] * (1 - d)``.

    ``derivative(t)`` (same shape as ``a(t)``) is optional; by default a central difference.
    """

    def __init__(self, *, a: Callable, derivative: Callable | None = None, fd_step: float = 1e-4):
        if not callable(a):
            raise ConfigError(f"a must be callable t -> scale, got {describe(a)}")
        if derivative is not None and not callable(derivative):
            raise ConfigError(
                f"derivative must be callable t -> d a/dt, got {describe(derivative)}"
            )
        self.a, self.da, self.h = a, derivative, check_fd_step(fd_step)

    def _shape(self, v, x, name):
        v = torch.as_tensor(v, dtype=x.dtype, device=x.device)
        if v.dim() == 1 and v.shape[0] == x.shape[0] and x.dim() > 1:
            v = per_sample(v, x)
        if not broadcasts_to(v.shape, x.shape):
            raise ShapeError(
                f"{name}(t) must broadcast to x of shape {tuple(x.shape)}, got {describe(v)}"
            )
        return v.to(x.dtype)

    def _apply(self, x, tt, scalar):
        return self._shape(self.a(tt), x, "a") * x

    _adjoint = _apply

    def _dt(self, x, tt):
        if self.da is not None:
            return self._shape(self.da(tt), x, "derivative") * x
        lo, hi, dt = difference_points(tt.double(), self.h)
        d = self._shape(self.a(hi), x.double(), "a") - self._shape(self.a(lo), x.double(), "a")
        return (d / per_sample(dt, x)).to(x.dtype) * x
