"""Explicit Runge–Kutta solvers (MATH.md §6): Euler, Midpoint, Heun, RK4 and the embedded pairs
Bogacki–Shampine 3(2) and Dormand–Prince 5(4).

Each is a tableau from :mod:`flowrestore.solvers.tableau` on the one generic stepper. The embedded
pairs carry their step-control settings (rtol, atol, PI gains, max_steps, min_step); the loop in
:mod:`flowrestore.integrate.solve` does the control, per sample.

At ``t = 0`` on a singular flow (InDI): Euler and Midpoint never evaluate at a step's end, so
their last step is their own (Euler's is exactly ``F(x_t, t)``). Heun, RK4 and fixed-step
Bosh3/Dopri5 have a stage at ``c = 1``; the loop takes their last interval onto 0 as the
first-order denoising step ``x_0 = F(x_t, t)``, whose error is ``O(h_last²)`` (MATH.md §1).
Adaptive Bosh3/Dopri5 integrate to ``t_min`` (default ``min(1e-2, sqrt(rtol)/10)``), then denoise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from flowrestore.errors import ConfigError, describe
from flowrestore.flows.base import Flow
from flowrestore.solvers.base import Solver, StepContext, StepResult, resolve_t_min
from flowrestore.solvers.tableau import (
    BOSH3,
    DOPRI5,
    EULER,
    HEUN,
    MIDPOINT,
    RK4,
    ButcherTableau,
    rk_step,
)


class ExplicitRK(Solver):
    """A fixed-step explicit Runge–Kutta method given by ``tableau``."""

    tableau: ClassVar[ButcherTableau]

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "tableau" in cls.__dict__:
            cls.order = float(cls.tableau.order)
            cls.stage_fractions = tuple(cls.tableau.c)

    def step(
        self,
        flow: Flow,
        t: Tensor,
        x: Tensor,
        h: Tensor,
        state: dict[str, Tensor] | None,
        ctx: StepContext,
    ) -> StepResult:
        """One step of the tableau (reusing the FSAL stage carried in ``state``)."""
        k1 = state.get("k1") if state else None
        x_next, err, last, nfe = rk_step(self.tableau, flow, t, x, h, k1)
        new_state = {"k1": last} if self.tableau.fsal else None
        return StepResult(x_next, new_state, nfe, err)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Euler(ExplicitRK):
    """Explicit Euler, order 1. On InDIFlow it is exactly the ε = 0 InDI sampler."""

    tableau = EULER
    lands_on_estimate = True


class Midpoint(ExplicitRK):
    """Explicit midpoint rule, order 2; never evaluates at a step's end."""

    tableau = MIDPOINT


class Heun(ExplicitRK):
    """Heun's method (explicit trapezoid), order 2."""

    tableau = HEUN


class RK4(ExplicitRK):
    """Classical fourth-order Runge–Kutta."""

    tableau = RK4


@dataclass(repr=False)
class _Embedded(ExplicitRK):
    """An embedded pair with per-sample PI step-size control (configured here, run by the loop).

    Args:
        rtol, atol: relative and absolute tolerances of the per-sample RMS error norm
            ``‖err / (atol + rtol · max(|x|, |x_new|))‖_rms ≤ 1``.
        max_steps: accepted + rejected steps allowed per sample.
        min_step: a step size below this (in |h|) stops the sample with ``StepSizeUnderflowError``.
        safety, ifactor, dfactor: safety factor and the bounds on one step-size change.
        pcoeff, icoeff: PI gains (Hairer:
            ``h_new = h · safety · err^(−icoeff/k) · err_prev^(pcoeff/k)``).
        dt0: initial |step|; ``None`` selects it per sample (Hairer's algorithm, one extra NFE).
        t_min: on flows singular at 0, where to stop before the final denoising step
            (``None``: ``min(1e-2, sqrt(rtol)/10)``).
        adaptive: ``False`` steps on the given grid with no error control.
    """

    rtol: float = 1e-3
    atol: float = 1e-6
    max_steps: int = 10_000
    min_step: float = 0.0
    safety: float = 0.9
    ifactor: float = 10.0
    dfactor: float = 0.2
    pcoeff: float = 0.4
    icoeff: float = 0.7
    dt0: float | None = None
    t_min: float | None = None
    adaptive: bool = True

    def __post_init__(self):
        for name in ("rtol", "atol"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value >= 0:
                raise ConfigError(f"{name} must be a non-negative number, got {describe(value)}")
        if self.rtol == 0 and self.atol == 0:
            raise ConfigError("rtol and atol cannot both be 0")
        if not isinstance(self.max_steps, int) or self.max_steps < 1:
            raise ConfigError(f"max_steps must be a positive int, got {describe(self.max_steps)}")
        if not self.min_step >= 0:
            raise ConfigError(f"min_step must be >= 0, got {describe(self.min_step)}")
        if not 0 < self.safety <= 1:
            raise ConfigError(f"safety must be in (0, 1], got {describe(self.safety)}")
        if not (0 < self.dfactor < 1 < self.ifactor):
            raise ConfigError(
                f"need 0 < dfactor < 1 < ifactor, got dfactor={self.dfactor!r}, "
                f"ifactor={self.ifactor!r}"
            )
        if self.dt0 is not None and not self.dt0 > 0:
            raise ConfigError(f"dt0 must be positive, got {describe(self.dt0)}")
        if self.t_min is not None and not 0 < self.t_min < 1:
            raise ConfigError(f"t_min must be in (0, 1), got {describe(self.t_min)}")

    @property
    def error_exponent(self) -> float:
        """``k = min(order, error_order) + 1``: the local error estimate is ``O(h^k)``."""
        return float(min(self.tableau.order, self.tableau.error_order) + 1)

    def resolved_t_min(self) -> float:
        """``t_min`` used on singular flows."""
        return resolve_t_min(self.t_min, self.rtol)


@dataclass(repr=False)
class Bosh3(_Embedded):
    """Bogacki–Shampine 3(2) with per-sample PI step control (FSAL: 3 NFE per accepted step)."""

    tableau = BOSH3


@dataclass(repr=False)
class Dopri5(_Embedded):
    """Dormand–Prince 5(4) with per-sample PI step control (FSAL: 6 NFE per accepted step)."""

    tableau = DOPRI5


for _cls in (Bosh3, Dopri5):
    _cls.__repr__ = Solver.__repr__
