"""The schedule base: ``Schedule``, the checked time of a user call, cached constants, central
differences and the plan-time probe of a schedule on ``[0, 1]`` (see :mod:`flowrestore.schedules`).
"""

from __future__ import annotations

import math
import numbers
from functools import lru_cache

import torch

from flowrestore.errors import ConfigError, FlowRestoreError, describe

__all__ = [
    "Schedule",
    "as_time_tensor",
    "check_fd_step",
    "check_on_unit_interval",
    "difference_points",
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
        if tt.dtype == torch.bool or tt.is_complex():  # a mask given for a time, not a time
            raise ConfigError(f"{name} must be a real tensor of times, got {describe(t)}")
        if not tt.is_floating_point():
            tt = tt.to(torch.get_default_dtype() if like is None else like.dtype)
        if bool((~((tt >= 0) & (tt <= 1))).any()):
            raise ConfigError(f"{name} must lie in [0, 1], got {describe(t)}")
        return tt
    if isinstance(t, numbers.Real) and not isinstance(t, bool):  # numpy scalars too
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


def _wide(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float64 for a computation rounded once at the end (float32 on MPS, which has no
    float64)."""
    return t.to(torch.float32 if t.device.type == "mps" else torch.float64)


def _out_dtype(t: torch.Tensor, *params: Scalar) -> torch.dtype:
    """The dtype of a schedule's value: ``t``'s, promoted with any tensor parameter's."""
    dtype = t.dtype
    for p in params:
        if isinstance(p, torch.Tensor):
            dtype = torch.promote_types(p.dtype, dtype)
    return dtype


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


def check_fd_step(fd_step) -> float:
    """A finite-difference step: a float in ``(0, 0.5)`` (else :class:`ConfigError`)."""
    if isinstance(fd_step, bool) or not isinstance(fd_step, (int, float)) or not 0 < fd_step < 0.5:
        raise ConfigError(f"fd_step must be a float in (0, 0.5), got {describe(fd_step)}")
    return float(fd_step)


def difference_points(t: torch.Tensor, h: float):
    """``(lo, hi, hi − lo)`` of a central difference of step ``h`` at ``t``: ``t ∓ h``, one-sided
    inside ``[0, 1]`` at the ends (no host reads)."""
    lo, hi = (t - h).clamp_min(0), (t + h).clamp_max(1)
    return lo, hi, hi - lo


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
        vmax = float(v.abs().max())
        tol = 1e-9 * vmax * vmax  # not vmax ** 2: a float power raises OverflowError above 1e154
        wild = ~torch.isfinite(dv)
        if bool(wild.any()):
            k = int(torch.nonzero(wild)[0])
            raise ConfigError(
                f"{name}'s dσ²/dt (the squared diffusion) must be finite on [0, 1]; "
                f"dσ²/dt({float(grid[k]):.3g}) = {float(dv[k])!r} (σ = {float(v[k]):.3g})"
            )
        falls = dv < -tol
        if bool(falls.any()):
            k = int(torch.nonzero(falls)[0])
            raise ConfigError(
                f"{name} must be non-decreasing on [0, 1] (dσ²/dt is the squared diffusion); "
                f"dσ²/dt({float(grid[k]):.3g}) = {float(dv[k]):.3g}"
            )
