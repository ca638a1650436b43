"""Scalar schedules of the severity ``t ∈ [0, 1]``: noise levels σ_t and degradation parameters.

Implements the schedules of docs/math.md §3: the geometric noise schedule
``σ_t = σ_min^{1-t} σ_max^t``
used by Dirac's stochastic degradation process, linear and constant schedules, the
piecewise-linear schedule returned by degradation scheduling (Dirac supplement B), and any callable
``t -> value`` (:class:`FunctionSchedule`, derivative by central difference).

Every schedule is callable on ``t`` (a float or a tensor of any shape, typically ``[B]``) and
returns a tensor of the same shape as ``t`` (a 0-dim tensor of the default dtype for a float ``t``).
Each has an exact ``derivative(t)`` and ``variance_derivative(t) = d(v_t²)/dt`` (the diffusion
coefficient squared of the forward SDE ``dy = ∂_t A_t(x) dt + sqrt(dσ_t²/dt) dw`` when the schedule
is σ_t).

**Checked calls and the hot path.** ``schedule(t)``, ``derivative(t)`` and
``variance_derivative(t)`` check that ``t`` lies in ``[0, 1]`` (for a tensor by reading its values
on the host). Inside a solve the times were validated once when the solve was planned, so flows
evaluate :meth:`Schedule.value`, :meth:`Schedule.slope` and :meth:`Schedule.variance_slope`, which
never read a device value (no host synchronisation; traceable by ``torch.compile``). Whether a
schedule is positive, finite or monotone on ``[0, 1]`` is likewise decided once, on a CPU probe
(:func:`check_on_unit_interval`), when the flow or family using it is built.

``start``/``end``/``value`` may be floats or tensors (also tensors requiring grad); everything is
computed with torch operations so gradients flow to tensor parameters. Float parameters become
tensors once per dtype and device (cached), not on every call.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import lru_cache

import torch

from flowrestore.errors import ConfigError, FlowRestoreError, ShapeError, describe

__all__ = [
    "Schedule",
    "Geometric",
    "Linear",
    "Constant",
    "PiecewiseLinear",
    "FunctionSchedule",
    "as_schedule",
    "as_time_tensor",
    "check_on_unit_interval",
]

Scalar = float | int | torch.Tensor


def as_time_tensor(t, *, name: str = "t", like: torch.Tensor | None = None) -> torch.Tensor:
    """Return ``t`` as a tensor (``like``'s dtype/device for python numbers), checked in [0, 1].

    Raises :class:`~flowrestore.errors.ConfigError` naming ``name`` when any entry is outside [0, 1]
    or not finite. A python number is checked on the host without creating a tensor first; a
    tensor is checked by reading it (a host synchronisation: this is the user-facing path, not the
    solver's).
    """
    if isinstance(t, torch.Tensor):
        tt = t
        if not tt.is_floating_point():
            tt = tt.to(torch.get_default_dtype() if like is None else like.dtype)
        if bool((~((tt >= 0) & (tt <= 1))).any()):
            raise ConfigError(f"{name} must lie in [0, 1], got {describe(t)}")
        return tt
    if isinstance(t, (int, float)) and not isinstance(t, bool):
        if not 0.0 <= float(t) <= 1.0:
            raise ConfigError(f"{name} must lie in [0, 1], got {describe(t)}")
        if like is not None and like.is_floating_point():
            return torch.full((), float(t), dtype=like.dtype, device=like.device)
        return torch.full((), float(t), dtype=torch.get_default_dtype())
    raise ConfigError(f"{name} must be a float or a tensor, got {describe(t)}")


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


@lru_cache(maxsize=1024)
def _constant(value: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.tensor(value, dtype=dtype, device=device)


def _to(value: Scalar, t: torch.Tensor) -> torch.Tensor:
    """``value`` as a tensor for ``t``: a float parameter from a per-(dtype, device) cache (do not
    modify it), a tensor parameter converted (keeping its graph)."""
    if isinstance(value, torch.Tensor):
        return value.to(device=t.device, dtype=torch.promote_types(value.dtype, t.dtype))
    if torch.compiler.is_compiling():  # traced once: a constant of the compiled graph
        return torch.tensor(value, dtype=t.dtype, device=t.device)
    return _constant(value, t.dtype, t.device)


class Schedule:
    """Base class: a scalar function ``v(t)`` of the severity with its exact derivative."""

    def __call__(self, t) -> torch.Tensor:
        """Value ``v(t)``, same shape as ``t`` (``t`` checked to lie in [0, 1])."""
        return self.value(as_time_tensor(t))

    def derivative(self, t) -> torch.Tensor:
        """Exact ``dv/dt`` at ``t``, same shape as ``t`` (``t`` checked)."""
        return self.slope(as_time_tensor(t))

    def variance_derivative(self, t) -> torch.Tensor:
        """``d(v_t²)/dt = 2 v_t v'_t``; for a noise schedule σ_t this is the forward SDE's g(t)²
        (``t`` checked)."""
        return self.variance_slope(as_time_tensor(t))

    def is_positive(self) -> bool:
        """Whether ``v(t) > 0`` for every ``t ∈ [0, 1]`` (required of a noise schedule σ_t)."""
        raise NotImplementedError

    # subclasses implement these on a tensor t already known to lie in [0, 1]: no checks, no host
    # reads (what flows call inside a solve)
    def value(self, t: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Value on a validated tensor ``t``."""
        raise NotImplementedError

    def slope(self, t: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Derivative on a validated tensor ``t``."""
        raise NotImplementedError

    def variance_slope(self, t: torch.Tensor) -> torch.Tensor:
        """``d(v_t²)/dt`` on a validated tensor ``t``."""
        return 2.0 * self.value(t) * self.slope(t)


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


class FunctionSchedule(Schedule):
    """A callable ``t -> value`` as a :class:`Schedule` (its derivative by central difference).

    ``fn`` receives a tensor of times and returns one value per time (or a 0-dim value for all);
    ``slope`` is ``(v(t + h) − v(t − h)) / (2h)`` in float64, one-sided inside ``[0, 1]`` at the
    ends, error ``O(h²)`` with ``h = fd_step``; ``variance_slope`` differences ``v²`` the same way.
    ``name`` is what error messages call it (``"sigma"``, ``"width"``, ...).
    """

    def __init__(self, fn: Callable, *, name: str = "schedule", fd_step: float = 1e-4):
        if not callable(fn):
            raise ConfigError(
                f"{name} must be a Schedule or a callable t -> value, got {describe(fn)}"
            )
        if isinstance(fd_step, bool) or not isinstance(fd_step, (int, float)):
            raise ConfigError(f"fd_step must be a float in (0, 0.5), got {describe(fd_step)}")
        if not 0 < fd_step < 0.5:
            raise ConfigError(f"fd_step must be a float in (0, 0.5), got {describe(fd_step)}")
        self.fn, self.name, self.h = fn, name, float(fd_step)

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

    def _points(self, t):
        t64 = t.detach().double()
        lo, hi = (t64 - self.h).clamp_min(0), (t64 + self.h).clamp_max(1)
        return lo, hi, hi - lo

    def slope(self, t):
        lo, hi, dt = self._points(t)
        return ((self._eval(hi) - self._eval(lo)) / dt).to(t.dtype)

    def variance_slope(self, t):
        lo, hi, dt = self._points(t)
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
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Constant(float(value))
    if callable(value):
        return FunctionSchedule(value, name=name, fd_step=fd_step)
    raise ConfigError(
        f"{name} must be a Schedule, a callable t -> value or a number, got {describe(value)}"
    )


def check_on_unit_interval(
    schedule: Schedule,
    *,
    name: str,
    positive: bool = False,
    nonnegative: bool = False,
    nondecreasing: bool = False,
    points: int = 101,
) -> None:
    """Plan-time check of a schedule on a CPU probe of ``points`` times in ``[0, 1]``.

    Always: the values are finite (and computable on a float64 tensor of times); optionally
    ``> 0`` (``positive``), ``>= 0`` (``nonnegative``) and ``d(v²)/dt >= 0`` up to round-off
    (``nondecreasing``, for a noise level whose square's derivative is a squared diffusion).
    Raises :class:`~flowrestore.errors.ConfigError` naming ``name`` and the first time that fails.
    Runs once, where the schedule is adopted, so that evaluating it inside a solve needs no check.
    """
    grid = torch.linspace(0.0, 1.0, points, dtype=torch.float64)
    try:
        with torch.no_grad():
            v = schedule.value(grid).detach().to("cpu", torch.float64)
            dv = schedule.variance_slope(grid).detach().to("cpu", torch.float64)
    except FlowRestoreError:
        raise
    except Exception as exc:  # a user callable that fails on a [points] float64 tensor
        raise ConfigError(f"{name}(t) must accept a tensor of times, got error: {exc}") from exc
    want = "positive and finite" if positive else "finite and >= 0" if nonnegative else "finite"
    bad = ~torch.isfinite(v)
    if positive:
        bad |= ~(v > 0)
    elif nonnegative:
        bad |= ~(v >= 0)
    if bool(bad.any()):
        k = int(torch.nonzero(bad)[0])
        raise ConfigError(
            f"{name} must be {want} on [0, 1]; {name}({float(grid[k]):.3g}) = {float(v[k])!r}"
        )
    if nondecreasing:
        tol = 1e-9 * float(v.abs().max()) ** 2
        falls = dv < -tol
        if bool(falls.any()):
            k = int(torch.nonzero(falls)[0])
            raise ConfigError(
                f"{name} must be non-decreasing on [0, 1] (dσ²/dt is the squared diffusion); "
                f"dσ²/dt({float(grid[k]):.3g}) = {float(dv[k]):.3g}"
            )
