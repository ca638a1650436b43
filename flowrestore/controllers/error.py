"""Error-controlled steps, per sample: :class:`ErrorController`, the base of PI and PID.

For solvers with an embedded error estimate (Hairer, Nørsett & Wanner, *Solving ODEs I*, §II.4).
With ``k = min(p, q) + 1`` (``p`` the solver's order, ``q`` its error estimate's order, so the
local error estimate is ``O(h^k)``) and the RMS error norm
``e = ‖err / (atol + rtol·max(|x|, |x_new|))‖``:

* a step is accepted when ``e ≤ 1``; the next step is ``h · clip(factor, dfactor, ifactor)``, the
  factor given by the controller's rule from ``e`` and the norms of earlier *accepted* steps —
  :class:`PIController` (Gustafsson's PI form): ``safety · e^(−icoeff/k) · e_prev^(pcoeff/k)``;
* a rejected step is retried from the same time with ``h · clip(safety · e^(−1/k), dfactor, 1)``
  (a non-finite ``e`` shrinks by ``dfactor``);
* the first step is Hairer's starting step ``min(100 h0, (0.01 / max(d1, d2))^(1/k))`` with
  ``h0 = 0.01 d0/d1`` (``d0 = ‖x0‖``, ``d1 = ‖f0‖``, ``d2 = ‖f(t0 + h0, x0 + h0 f0) − f0‖/h0``,
  scaled norms), raised to ``min_step`` if below it, unless ``dt0`` is given;
* every step is clipped to land exactly on the next target (a save time, then the end), and one
  that would stop less than 1 % short of it is stretched onto it (Hairer's DOPRI5, within the
  rule's ``limit_step``): no sliver of a step, costing a whole step's evaluations, is left; a
  step cut short that way says nothing about the natural size, so the larger one is kept.

A sample fails with ``step_size_underflow`` when its step falls below ``min_step`` or round-off
(``non_finite`` when its error norm is not finite), and with ``max_steps_reached`` after
``max_steps`` attempts. On a flow singular at ``t = 0`` the controlled part stops at ``t_min``
(default ``min(1e-2, sqrt(rtol)/10)``: the final denoising step's ``O(t_min²)`` error stays near
``rtol/100``); the loop's endpoint rule takes it from there.

**Host synchronisation.** All per-sample state lives on the device. After each step the run
copies its ``done`` flags to the host without blocking (:class:`~flowrestore.controllers.base.
HostCopy`) and waits for them only when the loop asks for the next step: one synchronisation per
step, the only one (saving, statistics and failures stay on the device until the end).

A rule is a subclass that sets ``history`` and implements :meth:`ErrorController.factor` (and
optionally :meth:`ErrorController.limit_step`), one file each: :class:`~flowrestore.PIController`
(:mod:`~flowrestore.controllers.pi`), :class:`~flowrestore.PIDController`
(:mod:`~flowrestore.controllers.pid`). The per-solve state is
:class:`~flowrestore.controllers.error_run.ErrorRun`.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from flowrestore.controllers.base import (
    ControllerRun,
    Schedule,
    StepController,
    TimeRequest,
    positive_int,
    rms_norm,
    set_numbers,
)
from flowrestore.controllers.error_run import ErrorRun
from flowrestore.errors import (
    ConfigError,
    GridError,
    IncompatibleSolverError,
    describe,
)

__all__ = ["ErrorController", "ErrorSchedule"]

_LOW_PRECISION = (torch.bfloat16, torch.float16)


@dataclass(kw_only=True)
class ErrorSchedule(Schedule):
    """``targets``: the interior save times then ``t_stop``; ``slots``: target index → slot."""

    targets: list[float]
    slots: dict[int, int]


@dataclass(frozen=True, kw_only=True)
class ErrorController(StepController):
    """Per-sample error control (module docstring); subclasses give the step-size rule.

    Args:
        rtol, atol: tolerances of the per-sample RMS error norm (not both 0).
        safety: safety factor in (0, 1].
        ifactor, dfactor: bounds of one step-size change, ``0 < dfactor < 1 < ifactor``.
        min_step: a sample whose next |step| falls below this fails with status
            ``step_size_underflow``.
        max_steps: accepted plus rejected steps allowed per sample.
        dt0: the first |step|; ``None`` selects it per sample (Hairer; one extra evaluation).
        t_min: on flows singular at ``t = 0``, where the controlled part stops (default: the
            flow's ``preferred_t_min(rtol)``, else ``min(1e-2, sqrt(rtol)/10)``).
        per_sample: each sample has its own step (default). ``False`` steps the batch together
            (one error norm: the largest sample's), as torchdiffeq does; solvers that can only
            take one step size for the batch get this automatically. There a non-finite
            error norm shrinks the batch's step; once that step would fall below round-off
            (or ``min_step``), the samples whose norm is still not finite fail with status
            ``non_finite`` and the others go on (as a sample whose start is not finite).
    """

    rtol: float = 1e-3
    atol: float = 1e-6
    safety: float = 0.9
    ifactor: float = 10.0
    dfactor: float = 0.2
    min_step: float = 0.0
    max_steps: int = 10_000
    dt0: float | None = None
    t_min: float | None = None
    per_sample: bool = True

    adaptive = True
    #: how many earlier accepted error norms the rule uses (``factor``'s ``history``)
    history: ClassVar[int] = 1

    def __post_init__(self):
        set_numbers(self, "rtol", "atol", "min_step", allow_zero=True)
        set_numbers(self, "safety", "dfactor", "ifactor")
        if self.rtol == 0 and self.atol == 0:
            raise ConfigError("rtol and atol cannot both be 0")
        object.__setattr__(self, "max_steps", positive_int("max_steps", self.max_steps))
        if self.safety > 1:
            raise ConfigError(f"safety must be in (0, 1], got {describe(self.safety)}")
        if not self.dfactor < 1 < self.ifactor:
            raise ConfigError(
                f"need 0 < dfactor < 1 < ifactor, got dfactor={self.dfactor!r}, "
                f"ifactor={self.ifactor!r}"
            )
        if self.dt0 is not None:
            set_numbers(self, "dt0")
            if self.dt0 < self.min_step:
                raise ConfigError(
                    f"dt0={self.dt0!r} is below min_step={self.min_step!r}: no step below "
                    "min_step is taken; raise dt0 or lower min_step"
                )
        if self.t_min is not None:
            if not (isinstance(self.t_min, numbers.Real) and not isinstance(self.t_min, bool)):
                raise ConfigError(f"t_min must be a number in (0, 1), got {describe(self.t_min)}")
            if not 0 < self.t_min < 1:  # NaN fails too
                raise ConfigError(f"t_min must be in (0, 1), got {describe(self.t_min)}")
            object.__setattr__(self, "t_min", float(self.t_min))
        if not isinstance(self.per_sample, bool):
            raise ConfigError(f"per_sample must be a bool, got {describe(self.per_sample)}")

    # ------------------------------------------------------------------ the rule (subclasses)
    def factor(self, e: Tensor, history: tuple[Tensor, ...], k: float) -> Tensor:
        """Step-size factor after an accepted step with error norm ``e`` (``> 0``, finite) given
        the norms of the ``history`` previous accepted steps (newest first; 1 before any)."""
        raise NotImplementedError

    def limit_step(self, h_abs: Tensor) -> Tensor:
        """Bound a proposed |step| (default: no bound; ``PIDController`` applies ``dt_max``)."""
        return h_abs

    # ------------------------------------------------------------------ shared formulas
    def resolved_t_min(self, preferred: float | None = None) -> float:
        """Where the controlled part stops on a flow singular at 0: ``t_min``, else the flow's
        ``preferred`` stop (:meth:`~flowrestore.flows.Flow.preferred_t_min`), else the module
        docstring's default."""
        if self.t_min is not None:
            return float(self.t_min)
        if preferred is not None:
            return float(preferred)
        return min(1e-2, max(self.rtol, 1e-16) ** 0.5 / 10)

    def exponent(self, solver) -> float:
        """``k = min(p, q) + 1``: the local error estimate of ``solver`` is ``O(h^k)``."""
        return min(solver.order, solver.error_order) + 1

    def error_norm(self, x: Tensor, x_new: Tensor, error: Tensor) -> Tensor:
        """``‖err / (atol + rtol·max(|x|, |x_new|))‖_rms`` per sample ``[B]`` (with ``atol = 0``
        an element where ``x``, ``x_new`` and ``err`` are all 0 counts as 0, not ``0/0``)."""
        scale = self.atol + self.rtol * torch.maximum(x.abs(), x_new.abs())
        ratio = error / scale
        if self.atol == 0:  # pure relative tolerance: an element that stays exactly 0 is exact
            ratio = torch.where((scale == 0) & (error == 0), torch.zeros_like(ratio), ratio)
        return rms_norm(ratio)

    def initial_step(self, x0: Tensor, f0: Tensor, probe, k: float, span: float) -> Tensor:
        """Starting |step| per sample ``[B]``; ``probe(h0)`` returns ``f(t0 + h0, x0 + h0 f0)``
        (``h0`` ``[B]``, signed by the caller). Without ``dt0`` it costs one evaluation."""
        if self.dt0 is not None:
            h = torch.full((x0.shape[0],), min(self.dt0, span), dtype=x0.dtype, device=x0.device)
            return self.limit_step(h)
        scale = self.atol + self.rtol * x0.abs()
        if self.atol == 0:
            # pure relative tolerance: an element exactly 0 at the start has no scale (0/0; its
            # drift over 0 is infinite); the guess ignores it, the first step's error norm judges it
            scale = torch.where(scale == 0, torch.full_like(scale, math.inf), scale)
        d0, d1 = rms_norm(x0 / scale), rms_norm(f0 / scale)
        h0 = torch.where((d0 < 1e-5) | (d1 < 1e-5), torch.full_like(d0, 1e-6), 0.01 * d0 / d1)
        # a non-finite sample (failed at once) must not hand a NaN time to the flow
        h0 = torch.where(torch.isfinite(h0), h0, torch.full_like(h0, 1e-6)).clamp(max=span)
        d2 = rms_norm((probe(h0) - f0) / scale) / h0
        dmax = torch.maximum(d1, d2)
        h1 = torch.where(dmax <= 1e-15, (h0 * 1e-3).clamp_min(1e-6), (0.01 / dmax) ** (1.0 / k))
        # a guess, not an error-controlled size: never below min_step (its step is judged)
        h = torch.minimum(100 * h0, h1).clamp(min=self.min_step).clamp(max=span)
        return self.limit_step(h)

    def step_factor(
        self, en: Tensor, history: tuple[Tensor, ...], accept: Tensor, k: float
    ) -> Tensor:
        """Factor on the step just tried: the rule's after an accepted step, ``e^(−1/k)`` after a
        reject; non-finite norms shrink the step by ``dfactor``."""
        finite = torch.isfinite(en)
        e = torch.where(finite, en.clamp_min(1e-10), torch.full_like(en, math.inf))
        acc = self.factor(e, history, k)
        rej = self.safety * e ** (-1.0 / k)
        fac = torch.where(
            accept, acc.clamp(self.dfactor, self.ifactor), rej.clamp(self.dfactor, 1.0)
        )
        return torch.where(finite, fac, torch.full_like(fac, self.dfactor))

    # ------------------------------------------------------------------ the protocol
    def check(self, solver, x_start: Tensor) -> None:
        """Error control needs an embedded error estimate and a state dtype that can resolve
        the tolerance."""
        name = type(solver).__name__
        if solver.error_order is None:
            instead = (  # no SDE step has an embedded error estimate: the ODE pairs cannot help
                "step it on a fixed grid (steps= or grid=)"
                if getattr(solver, "stochastic", False)
                else "use Bosh3, Dopri5 or Torchdiffeq('dopri5'), or a fixed grid (steps=)"
            )
            raise IncompatibleSolverError(
                f"{name} has no embedded error estimate, so a {type(self).__name__} cannot "
                f"control it; {instead}"
            )
        if x_start.dtype in _LOW_PRECISION:
            raise ConfigError(
                f"error-controlled {name} needs float32 or float64 states; x_start has dtype "
                f"{x_start.dtype}, whose resolution is coarser than any useful tolerance. Solve "
                "in float32 (x_start.float()) or use a fixed grid"
            )
        eps = torch.finfo(x_start.dtype).eps
        if 0 < self.rtol < eps:
            raise ConfigError(
                f"rtol={self.rtol!r} is below the resolution of x_start's dtype {x_start.dtype} "
                f"(machine epsilon {eps:.3g}): no {x_start.dtype} state is that accurate, so the "
                f"solve could only run into max_steps. Raise rtol to at least {eps:.2g} or solve "
                "in float64 (x_start.double())"
            )

    def schedule(self, request: TimeRequest) -> ErrorSchedule:
        """Targets: the interior save times, then the end (or ``t_min`` before a singular end)."""
        t0, t1 = request.need_span()
        lands = request.lands(t1)
        t_stop = t1
        if lands:
            t_stop = self.resolved_t_min(request.preferred_t_min(self.rtol))
            if not abs(t0) > t_stop:
                raise ConfigError(
                    f"t_min={t_stop:.6g}, where the controlled steps stop before the singular end "
                    f"{t1}, must lie inside the span ({t0}, {t1}): pass the controller a t_min "
                    f"below {abs(t0):.6g} (e.g. PIController(t_min={abs(t0) / 10:.3g})) or step "
                    "a fixed grid (steps=)"
                )
        if isinstance(request.save_at, str):
            raise ConfigError(
                "under error control the step times are not known in advance: pass "
                "save_at=<tensor of times>"
            )
        save_times = None if request.save_at is None else list(request.save_at)
        direction = 1.0 if t1 > t0 else -1.0
        tol = request.save_tolerance(t0, t1)
        interior, interior_slots = [], []
        start_slot = end_slot = stop_slot = None
        for j, tv in enumerate(save_times or []):
            if abs(tv - t0) <= tol:
                start_slot = j
            elif abs(tv - t1) <= tol:
                end_slot = j
            elif (tv - t0) * direction < 0 or (tv - t1) * direction > 0:
                raise GridError(f"save_at time {tv:.6g} lies outside the span ({t0}, {t1})")
            elif lands and abs(tv - t_stop) <= tol:
                stop_slot = j  # the state the landing step starts from
            elif (tv - t_stop) * direction > 0:
                raise GridError(
                    f"save_at time {tv:.6g} lies between t_min={t_stop} and the end {t1}, where "
                    f"nothing is integrated: the controlled steps stop at t_min and one landing "
                    f"step goes from there to {t1}; save at t_min={t_stop} itself, at {t1}, or "
                    "before t_min"
                )
            else:
                interior.append(tv)
                interior_slots.append(j)
        targets = [*interior, t_stop]
        slots = dict(enumerate(interior_slots))
        last = stop_slot if lands else end_slot
        if last is not None:
            slots[len(targets) - 1] = last
        return ErrorSchedule(
            t0=t0,
            t1=t1,
            lands=lands,
            t_stop=t_stop,
            save_times=save_times,
            start_slot=start_slot,
            end_slot=end_slot if lands else None,
            targets=targets,
            slots=slots,
        )

    def start(self, schedule: ErrorSchedule, x: Tensor, *, solver, evaluate) -> ControllerRun:
        """Evaluate the drift at the start and pick each sample's first step."""
        per_sample = self.per_sample and solver.per_sample_steps
        return ErrorRun(self, schedule, x, self.exponent(solver), per_sample, evaluate)
