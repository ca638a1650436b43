"""Step-size controllers: *how big a step* (the third of flow / solver / controller / loop).

A controller never evaluates a flow and never steps; :func:`flowrestore.solve` asks it for step
sizes. Two kinds, in the spirit of diffrax's ``stepsize_controller`` and torchode's controllers:

* :class:`FixedGrid` — a step grid: ``FixedGrid(steps=N, spacing=fr.Power(2))`` or
  ``FixedGrid(times=tensor)``. ``fr.solve(..., steps=N)`` and ``grid=`` build one.
* :class:`PIController` — error-controlled steps, per sample, for solvers with an embedded error
  estimate (Hairer, Nørsett & Wanner, *Solving ODEs I*, §II.4; the PI form of Gustafsson 1991).
  With ``k = min(p, q) + 1`` (``p`` the solver's order, ``q`` its error estimate's order, so the
  local error estimate is ``O(h^k)``) and the RMS error norm
  ``e = ‖err / (atol + rtol·max(|x|, |x_new|))‖``:

  - a step is accepted when ``e ≤ 1``; the next step is then
    ``h · clip(safety · e^(−icoeff/k) · e_prev^(pcoeff/k), dfactor, ifactor)``;
  - a rejected step is retried with ``h · clip(safety · e^(−1/k), dfactor, 1)``;
  - the first step is Hairer's starting step ``min(100 h0, (0.01 / max(d1, d2))^(1/k))`` with
    ``h0 = 0.01 d0/d1`` (``d0 = ‖x0‖``, ``d1 = ‖f0‖``, ``d2 = ‖f(t0 + h0, x0 + h0 f0) − f0‖/h0``,
    scaled norms), unless ``dt0`` is given.

  On a flow singular at ``t = 0`` the controlled part stops at ``t_min`` (default
  ``min(1e-2, sqrt(rtol)/10)``: the final denoising step's ``O(t_min²)`` error stays near
  ``rtol/100``); the loop's endpoint rule takes it from there.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from flowrestore.errors import ConfigError, describe
from flowrestore.grids import Spacing, check_grid, make_grid

__all__ = ["FixedGrid", "PIController", "StepController", "rms_norm"]


def rms_norm(v: Tensor) -> Tensor:
    """Per-sample root-mean-square ``[B]`` of a batch ``[B, ...]``."""
    return v.reshape(v.shape[0], -1).pow(2).mean(1).sqrt()


class StepController:
    """Base class of step-size controllers (:class:`FixedGrid`, :class:`PIController`)."""

    #: whether steps are accepted or rejected from an error estimate
    adaptive: bool = False


@dataclass(frozen=True, kw_only=True)
class FixedGrid(StepController):
    """A fixed step grid: ``steps`` intervals laid out by ``spacing``, or explicit ``times``.

    Args:
        steps: number of steps over the solve's span.
        spacing: how the steps are laid (:class:`~flowrestore.Uniform`, :class:`~flowrestore.Power`,
            :class:`~flowrestore.Fitted`); ``None`` lets the loop pick the flow's and solver's
            default (see :mod:`flowrestore.integrate.endpoint`).
        times: an explicit strictly monotone 1-D grid (its order sets the direction).
    """

    steps: int | None = None
    spacing: Spacing | None = None
    times: Tensor | Sequence[float] | None = None

    def __post_init__(self):
        if (self.steps is None) == (self.times is None):
            raise ConfigError(
                "FixedGrid needs exactly one of steps= or times=, got "
                f"steps={describe(self.steps)}, times={describe(self.times)}"
            )
        if self.steps is not None and (
            isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1
        ):
            raise ConfigError(f"steps must be a positive int, got {describe(self.steps)}")
        if self.spacing is not None and not isinstance(self.spacing, Spacing):
            raise ConfigError(
                f"spacing must be a flowrestore Spacing (Uniform, Power, Fitted), "
                f"got {describe(self.spacing)}"
            )
        if self.times is not None and self.spacing is not None:
            raise ConfigError("times= already fixes the grid: do not also pass spacing=")
        if self.times is not None:
            object.__setattr__(self, "times", check_grid(self.times))

    def grid(self, t0: float, t1: float, default: Spacing) -> Tensor:
        """The float64 CPU grid from ``t0`` to ``t1`` (``default`` spacing when none was set)."""
        if self.times is not None:
            return self.times
        return make_grid(self.steps, t0, t1, self.spacing or default)


def _positive_number(name: str, value, *, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        want = "a finite number >= 0" if allow_zero else "a finite number > 0"
        raise ConfigError(f"{name} must be {want}, got {describe(value)}")


@dataclass(frozen=True, kw_only=True)
class PIController(StepController):
    """Per-sample PI step-size control (module docstring for the formulas).

    Args:
        rtol, atol: tolerances of the per-sample RMS error norm (not both 0).
        safety: safety factor in (0, 1].
        ifactor, dfactor: bounds of one step-size change, ``0 < dfactor < 1 < ifactor``.
        pcoeff, icoeff: PI gains (``pcoeff = 0``: the classical I controller).
        min_step: a sample whose next |step| falls below this fails with status
            ``step_size_underflow``.
        max_steps: accepted plus rejected steps allowed per sample.
        dt0: the first |step|; ``None`` selects it per sample (Hairer; one extra evaluation).
        t_min: on flows singular at ``t = 0``, where the controlled part stops (default: the
            flow's ``preferred_t_min(rtol)``, else ``min(1e-2, sqrt(rtol)/10)``).
        per_sample: each sample has its own step (default). ``False`` steps the batch together
            (one error norm: the largest sample's), as torchdiffeq does; solvers that can only
            take one step size for the batch get this automatically.
    """

    rtol: float = 1e-3
    atol: float = 1e-6
    safety: float = 0.9
    ifactor: float = 10.0
    dfactor: float = 0.2
    pcoeff: float = 0.4
    icoeff: float = 0.7
    min_step: float = 0.0
    max_steps: int = 10_000
    dt0: float | None = None
    t_min: float | None = None
    per_sample: bool = True

    adaptive = True

    def __post_init__(self):
        _positive_number("rtol", self.rtol, allow_zero=True)
        _positive_number("atol", self.atol, allow_zero=True)
        if self.rtol == 0 and self.atol == 0:
            raise ConfigError("rtol and atol cannot both be 0")
        if isinstance(self.max_steps, bool) or not isinstance(self.max_steps, int):
            raise ConfigError(f"max_steps must be a positive int, got {describe(self.max_steps)}")
        if self.max_steps < 1:
            raise ConfigError(f"max_steps must be a positive int, got {describe(self.max_steps)}")
        _positive_number("min_step", self.min_step, allow_zero=True)
        _positive_number("safety", self.safety)
        if self.safety > 1:
            raise ConfigError(f"safety must be in (0, 1], got {describe(self.safety)}")
        _positive_number("dfactor", self.dfactor)
        _positive_number("ifactor", self.ifactor)
        if not self.dfactor < 1 < self.ifactor:
            raise ConfigError(
                f"need 0 < dfactor < 1 < ifactor, got dfactor={self.dfactor!r}, "
                f"ifactor={self.ifactor!r}"
            )
        _positive_number("pcoeff", self.pcoeff, allow_zero=True)
        _positive_number("icoeff", self.icoeff)
        if self.dt0 is not None:
            _positive_number("dt0", self.dt0)
        if self.t_min is not None and not (
            isinstance(self.t_min, (int, float)) and 0 < self.t_min < 1
        ):
            raise ConfigError(f"t_min must be in (0, 1), got {describe(self.t_min)}")
        if not isinstance(self.per_sample, bool):
            raise ConfigError(f"per_sample must be a bool, got {describe(self.per_sample)}")

    # ------------------------------------------------------------------ the formulas
    def resolved_t_min(self, flow=None) -> float:
        """Where the controlled part stops on a flow singular at 0: ``t_min``, else the flow's
        :meth:`~flowrestore.flows.Flow.preferred_t_min`, else the module docstring's default."""
        if self.t_min is not None:
            return float(self.t_min)
        preferred = None if flow is None else flow.preferred_t_min(self.rtol)
        if preferred is not None:
            return float(preferred)
        return min(1e-2, max(self.rtol, 1e-16) ** 0.5 / 10)

    def error_norm(self, x: Tensor, x_new: Tensor, error: Tensor) -> Tensor:
        """``‖err / (atol + rtol·max(|x|, |x_new|))‖_rms`` per sample ``[B]``."""
        scale = self.atol + self.rtol * torch.maximum(x.abs(), x_new.abs())
        return rms_norm(error / scale)

    def initial_step(
        self, x0: Tensor, f0: Tensor, probe: Callable[[Tensor], Tensor], k: float, span: float
    ) -> tuple[Tensor, int]:
        """Starting |step| per sample ``[B]`` and the evaluations it cost (0 or 1).

        ``probe(h0)`` returns ``f(t0 + h0, x0 + h0 f0)`` (``h0`` ``[B]``, signed by the caller).
        """
        if self.dt0 is not None:
            return torch.full(
                (x0.shape[0],), min(self.dt0, span), dtype=x0.dtype, device=x0.device
            ), 0
        scale = self.atol + self.rtol * x0.abs()
        d0, d1 = rms_norm(x0 / scale), rms_norm(f0 / scale)
        h0 = torch.where((d0 < 1e-5) | (d1 < 1e-5), torch.full_like(d0, 1e-6), 0.01 * d0 / d1)
        # a non-finite sample (failed by the loop) must not hand a NaN time to the flow
        h0 = torch.where(torch.isfinite(h0), h0, torch.full_like(h0, 1e-6)).clamp(max=span)
        d2 = rms_norm((probe(h0) - f0) / scale) / h0
        dmax = torch.maximum(d1, d2)
        h1 = torch.where(dmax <= 1e-15, (h0 * 1e-3).clamp_min(1e-6), (0.01 / dmax) ** (1.0 / k))
        return torch.minimum(100 * h0, h1).clamp(max=span), 1

    def step_factor(self, en: Tensor, en_prev: Tensor, accept: Tensor, k: float) -> Tensor:
        """Factor on the step just tried: PI after an accepted step, ``e^(−1/k)`` after a reject.

        ``en``: this step's error norms (``inf`` where non-finite); ``en_prev``: the last accepted
        norms. Non-finite norms shrink the step by ``dfactor``.
        """
        finite = torch.isfinite(en)
        e = torch.where(finite, en.clamp_min(1e-10), torch.full_like(en, math.inf))
        acc = self.safety * e ** (-self.icoeff / k) * en_prev ** (self.pcoeff / k)
        rej = self.safety * e ** (-1.0 / k)
        fac = torch.where(
            accept, acc.clamp(self.dfactor, self.ifactor), rej.clamp(self.dfactor, 1.0)
        )
        return torch.where(finite, fac, torch.full_like(fac, self.dfactor))
