"""Scalar schedules of the severity ``t ∈ [0, 1]``: noise levels σ_t and degradation parameters.

Implements the schedules of docs/math.md §3: the geometric noise schedule
``σ_t = σ_min^{1-t} σ_max^t``
used by Dirac's stochastic degradation process, linear and constant schedules, and the
piecewise-linear schedule returned by degradation scheduling (Dirac supplement B).

Every schedule is callable on ``t`` (a float or a tensor of any shape, typically ``[B]``) and
returns a tensor of the same shape as ``t`` (a 0-dim tensor of the default dtype for a float ``t``).
Each has an exact ``derivative(t)`` and ``variance_derivative(t) = d(v_t²)/dt`` (the diffusion
coefficient squared of the forward SDE ``dy = ∂_t A_t(x) dt + sqrt(dσ_t²/dt) dw`` when the schedule
is σ_t).

``start``/``end``/``value`` may be floats or tensors (also tensors requiring grad); everything is
computed with torch operations so gradients flow to tensor parameters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from flowrestore.errors import ConfigError, describe

__all__ = [
    "Schedule",
    "Geometric",
    "Linear",
    "Constant",
    "PiecewiseLinear",
    "as_time_tensor",
]

Scalar = float | int | torch.Tensor


def as_time_tensor(t, *, name: str = "t", like: torch.Tensor | None = None) -> torch.Tensor:
    """Return ``t`` as a tensor (``like``'s dtype/device for python numbers), checked in [0, 1].

    Raises :class:`~flowrestore.errors.ConfigError` naming ``name`` when any entry is outside [0, 1]
    or not finite.
    """
    if isinstance(t, torch.Tensor):
        tt = t
    elif isinstance(t, (int, float)) and not isinstance(t, bool):
        if like is not None and like.is_floating_point():
            tt = torch.tensor(float(t), dtype=like.dtype, device=like.device)
        else:
            tt = torch.tensor(float(t), dtype=torch.get_default_dtype())
    else:
        raise ConfigError(f"{name} must be a float or a tensor, got {describe(t)}")
    if not tt.is_floating_point():
        tt = tt.to(torch.get_default_dtype() if like is None else like.dtype)
    bad = ~((tt >= 0) & (tt <= 1))
    if bool(bad.any()):
        raise ConfigError(f"{name} must lie in [0, 1], got {describe(t)}")
    return tt


def _param(value, name: str) -> Scalar:
    """Validate a schedule parameter: a finite real number or a tensor."""
    if isinstance(
        value, torch.Tensor
    ):  # may require grad; may be per-coordinate (broadcasts with t)
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a real number or a tensor, got {describe(value)}")
    if not math.isfinite(float(value)):
        raise ConfigError(f"{name} must be finite, got {describe(value)}")
    return float(value)


def _to(value: Scalar, t: torch.Tensor) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.to(device=t.device, dtype=torch.promote_types(value.dtype, t.dtype))
    return torch.tensor(value, dtype=t.dtype, device=t.device)


class Schedule:
    """Base class: a scalar function ``v(t)`` of the severity with its exact derivative."""

    def __call__(self, t) -> torch.Tensor:
        """Value ``v(t)``, same shape as ``t``."""
        return self.value(as_time_tensor(t))

    def derivative(self, t) -> torch.Tensor:
        """Exact ``dv/dt`` at ``t``, same shape as ``t``."""
        return self.slope(as_time_tensor(t))

    def variance_derivative(self, t) -> torch.Tensor:
        """``d(v_t²)/dt = 2 v_t v'_t``; for a noise schedule σ_t this is the forward SDE's g(t)²."""
        tt = as_time_tensor(t)
        return 2.0 * self.value(tt) * self.slope(tt)

    def is_positive(self) -> bool:
        """Whether ``v(t) > 0`` for every ``t ∈ [0, 1]`` (required of a noise schedule σ_t)."""
        raise NotImplementedError

    # subclasses implement these on an already validated tensor t
    def value(self, t: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Value on a validated tensor ``t``."""
        raise NotImplementedError

    def slope(self, t: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Derivative on a validated tensor ``t``."""
        raise NotImplementedError


def _positive_value(v: Scalar) -> bool:
    if isinstance(v, torch.Tensor):
        return bool((v.detach() > 0).all())
    return v > 0


class Geometric(Schedule):
    """Geometric schedule ``v(t) = start^{1-t} end^t`` (Dirac's ``σ_t = σ_min^{1-t} σ_max^t``).

    ``start`` and ``end`` must be positive.
    """

    def __init__(self, start: Scalar, end: Scalar):
        self.start = _param(start, "start")
        self.end = _param(end, "end")
        for name, v in (("start", self.start), ("end", self.end)):
            if not _positive_value(v):
                raise ConfigError(f"Geometric schedule needs {name} > 0, got {describe(v)}")

    def value(self, t):
        s, e = _to(self.start, t), _to(self.end, t)
        return torch.exp((1 - t) * torch.log(s) + t * torch.log(e))

    def slope(self, t):
        s, e = _to(self.start, t), _to(self.end, t)
        return self.value(t) * (torch.log(e) - torch.log(s))

    def is_positive(self) -> bool:
        """Always true (validated at construction)."""
        return True

    def __repr__(self) -> str:
        return f"Geometric(start={self.start!r}, end={self.end!r})"


class Linear(Schedule):
    """Linear schedule ``v(t) = (1 - t) start + t end``."""

    def __init__(self, start: Scalar, end: Scalar):
        self.start = _param(start, "start")
        self.end = _param(end, "end")

    def value(self, t):
        s, e = _to(self.start, t), _to(self.end, t)
        return s + t * (e - s)

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
        return v0 + (t - t0) * (v1 - v0) / (t1 - t0)

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
