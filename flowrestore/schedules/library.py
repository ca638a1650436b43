"""The schedules of :mod:`flowrestore.schedules`: geometric, linear, constant, piecewise-linear
(Dirac supplement B) and any callable (:class:`FunctionSchedule`, derivative by central
difference); :func:`as_schedule` turns a number or a callable into one.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence

import torch

from flowrestore.errors import ConfigError, ShapeError, describe
from flowrestore.schedules.base import (
    Scalar,
    Schedule,
    _out_dtype,
    _param,
    _to,
    _wide,
    check_fd_step,
    difference_points,
)

__all__ = [
    "Constant",
    "FunctionSchedule",
    "Geometric",
    "Linear",
    "PiecewiseLinear",
    "as_schedule",
]


def _positive_value(v: Scalar) -> bool:
    if isinstance(v, torch.Tensor):
        return bool((v.detach() > 0).all())
    return v > 0


class Geometric(Schedule):
    """Geometric schedule ``v(t) = start^{1-t} end^t`` (Dirac's ``σ_t = σ_min^{1-t} σ_max^t``).

    ``start`` and ``end`` must be positive. The value is computed in float64 (float32 on MPS, which
    has no float64) and rounded once to ``t``'s dtype: ``v(0)`` and ``v(1)`` are ``start`` and
    ``end`` exactly, a bfloat16/float16 ``t`` gets the nearest representable value (not one
    several units in the last place off), and an ``end`` above the dtype's range (float16's
    65504) leaves the values below it finite.
    """

    def __init__(self, start: Scalar, end: Scalar):
        self.start = _param(start, "start")
        self.end = _param(end, "end")
        for name, v in (("start", self.start), ("end", self.end)):
            if not _positive_value(v):
                raise ConfigError(f"Geometric schedule needs {name} > 0, got {describe(v)}")
        # log(end/start) on the host for float parameters (end/start itself may overflow)
        self._log_ratio = (
            math.log(self.end) - math.log(self.start)
            if not isinstance(self.start, torch.Tensor) and not isinstance(self.end, torch.Tensor)
            else None
        )

    def _wide_value(self, t):
        """``(v(t), log(end/start))`` in the wide dtype, and the dtype to return them in."""
        w = _wide(t)
        s, e = _to(self.start, w), _to(self.end, w)
        # s^(1-t) e^t, not exp((1-t) log s + t log e): pow(x, 1) = x and pow(x, 0) = 1 exactly,
        # so both ends are hit exactly
        v = s ** (1 - w) * e**w
        d = self._log_ratio if self._log_ratio is not None else torch.log(e) - torch.log(s)
        return v, d, _out_dtype(t, self.start, self.end)

    def value(self, t):
        v, _, dtype = self._wide_value(t)
        return v.to(dtype)

    def slope(self, t):
        v, d, dtype = self._wide_value(t)
        return (v * d).to(dtype)

    def variance_slope(self, t):
        v, d, dtype = self._wide_value(t)
        return (2 * d * v * v).to(dtype)

    def is_positive(self) -> bool:
        """Always true (validated at construction)."""
        return True

    def __repr__(self) -> str:
        return f"Geometric(start={self.start!r}, end={self.end!r})"


class Linear(Schedule):
    """Linear schedule ``v(t) = (1 - t) start + t end`` (``start`` and ``end`` exactly at the
    ends)."""

    def __init__(self, start: Scalar, end: Scalar):
        self.start = _param(start, "start")
        self.end = _param(end, "end")

    def value(self, t):
        s, e = _to(self.start, t), _to(self.end, t)
        dtype = torch.promote_types(torch.promote_types(s.dtype, e.dtype), t.dtype)
        # lerp, not s + t (e - s): exact at both ends (s + (e - s) need not be e in floating
        # point: Linear(0.7, 0.1)(1) was 0.09999999999999998)
        return torch.lerp(s.to(dtype), e.to(dtype), t.to(dtype))

    def slope(self, t):
        s, e = _to(self.start, t), _to(self.end, t)
        return (e - s) * torch.ones_like(t)

    def is_positive(self) -> bool:
        """True when both endpoints are positive."""
        return _positive_value(self.start) and _positive_value(self.end)

    def __repr__(self) -> str:
        return f"Linear(start={self.start!r}, end={self.end!r})"


class Constant(Schedule):
    """Constant schedule ``v(t) = value`` (derivative 0)."""

    def __init__(self, value: Scalar):
        self.constant = _param(value, "value")

    def value(self, t):
        return _to(self.constant, t) * torch.ones_like(t)

    def slope(self, t):
        return torch.zeros_like(t) * _to(self.constant, t)

    def is_positive(self) -> bool:
        """True when the constant is positive."""
        return _positive_value(self.constant)

    def __repr__(self) -> str:
        return f"Constant({self.constant!r})"


class PiecewiseLinear(Schedule):
    """Linear interpolation through ``(knots_t[i], values[i])``; knots strictly increasing, 0 → 1.

    ``derivative`` is the slope of the segment containing ``t``; at an interior knot it is the slope
    of the segment to the right (the left one at ``t = 1``).
    """

    def __init__(
        self, knots_t: Sequence[float] | torch.Tensor, values: Sequence[float] | torch.Tensor
    ):
        kt = torch.as_tensor(knots_t, dtype=torch.float64).detach()
        vals = (
            values
            if isinstance(values, torch.Tensor)
            else torch.as_tensor(values, dtype=torch.float64)
        )
        if kt.dim() != 1 or kt.numel() < 2:
            raise ConfigError(f"knots_t must be 1-D with at least 2 knots, got {describe(knots_t)}")
        if vals.shape != kt.shape:
            raise ConfigError(
                f"values must have the same shape as knots_t {tuple(kt.shape)}, "
                f"got {describe(values)}"
            )
        if not bool(torch.isfinite(kt).all()) or not bool(torch.isfinite(vals.detach()).all()):
            raise ConfigError(
                f"knots_t and values must be finite, got {describe(knots_t)}, {describe(values)}"
            )
        if not bool((kt[1:] > kt[:-1]).all()):
            raise ConfigError(f"knots_t must be strictly increasing, got {describe(knots_t)}")
        if float(kt[0]) != 0.0 or float(kt[-1]) != 1.0:
            raise ConfigError(f"knots_t must start at 0 and end at 1, got {describe(knots_t)}")
        self.knots_t = kt
        self.values = vals
        self._cache: dict = {}

    def _on(self, t: torch.Tensor):
        key = (t.device, t.dtype)
        if key not in self._cache or self.values.requires_grad:
            dtype = (
                torch.promote_types(self.values.dtype, t.dtype)
                if self.values.requires_grad
                else t.dtype
            )
            kv = (
                self.knots_t.to(device=t.device, dtype=t.dtype),
                self.values.to(device=t.device, dtype=dtype),
            )
            if self.values.requires_grad:
                return kv
            self._cache[key] = kv
        return self._cache[key]

    def _segment(self, t):
        kt, kv = self._on(t)
        n = kt.numel()
        idx = torch.searchsorted(kt, t.detach().contiguous(), right=True) - 1
        idx = idx.clamp(0, n - 2)
        t0, t1 = kt[idx], kt[idx + 1]
        v0, v1 = kv[idx], kv[idx + 1]
        return t0, t1, v0, v1

    def value(self, t):
        t0, t1, v0, v1 = self._segment(t)
        # lerp with the weight (t − t0)/(t1 − t0), exactly 1 at t = t1: every knot value, the last
        # one at t = 1 included, exactly (v0 + (t − t0)(v1 − v0)/(t1 − t0) missed it by round-off)
        dtype = torch.promote_types(v0.dtype, t.dtype)
        return torch.lerp(v0.to(dtype), v1.to(dtype), ((t - t0) / (t1 - t0)).to(dtype))

    def slope(self, t):
        t0, t1, v0, v1 = self._segment(t)
        return (v1 - v0) / (t1 - t0) + 0 * t

    def is_positive(self) -> bool:
        """True when every knot value is positive (then so is every interpolated value)."""
        return bool((self.values.detach() > 0).all())

    def is_monotone(self) -> bool:
        """True when the knot values are non-decreasing or non-increasing."""
        d = self.values.detach()[1:] - self.values.detach()[:-1]
        return bool((d >= 0).all()) or bool((d <= 0).all())

    def __repr__(self) -> str:
        v0, v1 = self.values[0].item(), self.values[-1].item()
        return f"PiecewiseLinear(<{self.knots_t.numel()} knots>, {v0:.4g} → {v1:.4g})"


class FunctionSchedule(Schedule):
    """A callable ``t -> value`` as a :class:`Schedule` (its derivative by central difference).

    ``fn`` receives a tensor of times and returns one value per time (or a 0-dim value for all);
    ``slope`` is ``(v(t + h) − v(t − h)) / (2h)`` in float64, error ``O(h²)`` with
    ``h = fd_step``; within ``h`` of an end it is one-sided inside ``[0, 1]`` (``v`` is never
    evaluated outside it), ``(v(min(t + h, 1)) − v(max(t − h, 0))) / (width)``, error ``O(h)``
    there; ``variance_slope`` differences ``v²`` the same way.
    ``name`` is what error messages call it (``"sigma"``, ``"width"``, ...).
    """

    def __init__(self, fn: Callable, *, name: str = "schedule", fd_step: float = 1e-4):
        if not callable(fn):
            raise ConfigError(
                f"{name} must be a Schedule or a callable t -> value, got {describe(fn)}"
            )
        self.fn, self.name, self.h = fn, name, check_fd_step(fd_step)

    def _eval(self, t: torch.Tensor) -> torch.Tensor:
        v = self.fn(t)
        if not isinstance(v, torch.Tensor):
            v = torch.as_tensor(v, dtype=t.dtype, device=t.device)
        if v.dim() == 0:
            v = v.expand(t.shape)
        if v.shape != t.shape:
            raise ShapeError(
                f"{self.name}(t) must return one value per sample {tuple(t.shape)}, "
                f"got {describe(v)}"
            )
        return v

    def value(self, t):
        v = self._eval(t)
        return v if v.dtype == t.dtype else v.to(t.dtype)

    def slope(self, t):
        lo, hi, dt = difference_points(t.detach().double(), self.h)
        return ((self._eval(hi) - self._eval(lo)) / dt).to(t.dtype)

    def variance_slope(self, t):
        lo, hi, dt = difference_points(t.detach().double(), self.h)
        return ((self.value(hi) ** 2 - self.value(lo) ** 2) / dt).to(t.dtype)

    def is_positive(self) -> bool:
        """Whether the values on a 101-point probe of ``[0, 1]`` are positive and finite."""
        with torch.no_grad():
            v = self.value(torch.linspace(0.0, 1.0, 101, dtype=torch.float64))
        return bool((torch.isfinite(v) & (v > 0)).all())

    def __repr__(self) -> str:
        return f"FunctionSchedule({self.name}={self.fn!r})"


def as_schedule(value, *, name: str, fd_step: float = 1e-4) -> Schedule:
    """``value`` as a :class:`Schedule`: a Schedule as it is, a number as a :class:`Constant`, a
    callable as a :class:`FunctionSchedule` (derivative by central difference, step ``fd_step``).
    """
    if isinstance(value, Schedule):
        return value
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ConfigError(f"{name} must be finite, got {describe(value)}")
        return Constant(float(value))  # numpy scalars too (np.float64 is a float, np.float32 not)
    if callable(value):
        return FunctionSchedule(value, name=name, fd_step=fd_step)
    raise ConfigError(
        f"{name} must be a Schedule, a callable t -> value or a number, got {describe(value)}"
    )
