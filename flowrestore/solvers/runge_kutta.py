"""Explicit Runge–Kutta solvers: Euler, Midpoint, Heun, RK4 and the embedded pairs
Bogacki–Shampine 3(2) and Dormand–Prince 5(4) (Hairer, Nørsett & Wanner, *Solving ODEs I*, §II).

Each is a tableau from :mod:`flowrestore.solvers.tableau` on the one generic stepper; a new method
is a subclass of :class:`ExplicitRK` with a ``tableau``. Embedded pairs declare the order of their
error estimate, so they run under a :class:`~flowrestore.PIController`; ``Dopri5(rtol=...)`` is a
convenience that builds that controller (the solver itself owns no tolerance) and ``steps=`` /
``grid=`` step them on a fixed grid instead.

At ``t = 0`` on a singular flow (InDI) the loop's endpoint rule applies
(:mod:`flowrestore.integrate.endpoint`): Euler and Midpoint never evaluate at a step's end, so
their last step is their own (Euler's is exactly ``F(x_t, t)``); Heun, RK4, Bosh3 and Dopri5 have
a stage at ``c = 1`` and land by the denoising step ``x_0 = F(x_t, t)`` — RK4, and on a fixed grid
Bosh3 and Dopri5, in two parts, through ``t/3``, with their last stage's drift
(:func:`~flowrestore.integrate.endpoint.split_landing`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from flowrestore.controllers import PIController
from flowrestore.errors import ArgumentTypeError
from flowrestore.flows.base import Flow, bcast
from flowrestore.solvers.base import Context, Solver, StepResult
from flowrestore.solvers.reciprocal import reciprocal_step
from flowrestore.solvers.tableau import (
    BOSH3,
    DOPRI5,
    EULER,
    HEUN,
    MIDPOINT,
    RK4_TABLEAU,
    ButcherTableau,
    rk_step,
)

__all__ = [
    "RK4",
    "Bosh3",
    "Dopri5",
    "EmbeddedRK",
    "Euler",
    "ExplicitRK",
    "Heun",
    "Midpoint",
    "RKState",
]


@dataclass(frozen=True)
class RKState:
    """State of an FSAL method: the drift at the current point (its next step's first stage);
    of a method with :attr:`~flowrestore.Solver.landing_split`, the clean estimate ``d_end =
    x − t·k`` that the drift ``k`` of its last stage (at the step's end ``t``) gives at the
    result ``x`` (for :func:`~flowrestore.integrate.endpoint.split_landing`)."""

    k1: Tensor | None = None
    d_end: Tensor | None = None


class ExplicitRK(Solver):
    """An explicit Runge–Kutta method given by its class attribute ``tableau``.

    A subclass sets ``tableau = ButcherTableau(...)``; ``order``, ``error_order`` and
    ``stage_fractions`` are read from it.
    """

    tableau: ClassVar[ButcherTableau]

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "tableau" in cls.__dict__:
            cls.order = float(cls.tableau.order)
            cls.error_order = (
                None if cls.tableau.error_order is None else float(cls.tableau.error_order)
            )
            cls.stage_fractions = tuple(cls.tableau.c)

    def check_concrete(self) -> None:
        """Refuse :class:`ExplicitRK` and :class:`EmbeddedRK` themselves: they need a tableau."""
        if not hasattr(type(self), "tableau"):
            raise ArgumentTypeError(
                f"{type(self).__name__} is an abstract base class: use a concrete method "
                "(e.g. fr.Heun(), fr.RK4(), fr.Dopri5()) or subclass it with a tableau"
            )

    def init(self, flow: Flow, t_start: Tensor, x_start: Tensor, ctx: Context):
        """FSAL methods carry the last stage in an :class:`RKState`; others carry nothing."""
        return x_start, (RKState() if self.tableau.fsal else None)

    def start_derivative(self, state, f0: Tensor):
        """An FSAL method uses the start's drift as its first stage."""
        return RKState(f0) if self.tableau.fsal else state

    def step(self, flow: Flow, t: Tensor, x: Tensor, h: Tensor, state, ctx: Context) -> StepResult:
        """One step of the tableau (reusing the FSAL stage carried in ``state``), in the flow's
        reciprocal variables if it declares them (:mod:`flowrestore.solvers.reciprocal`) —
        except an embedded pair under error control (``ctx.error_control``), which keeps ``t``,
        where its error estimate sees what a step skips. On a fixed grid the pair steps in the
        reciprocal variables too: in ``t`` ``Dopri5()`` with ``steps=3`` on a cosine/v diffusion
        model was 4·10³× less accurate than Euler at the same evaluations (issue 16)."""
        k1 = state.k1 if state is not None else None
        # the split landing needs the last stage's estimate only after the step before it
        # (steps_left counts the landing; None: unknown, e.g. in a hand-made context); under
        # error control a pair lands by the denoising step from the controller's t_min, never
        # evaluating below it
        controlled = ctx is not None and ctx.error_control
        last_step = ctx is None or ctx.steps_left is None or ctx.steps_left <= 1
        keep_end = self.landing_split is not None and flow.singular_at_zero and last_step
        keep_end = keep_end and not controlled
        in_t = self.tableau.b_error is not None and controlled
        if not in_t and flow.time_variable().reciprocal:
            return reciprocal_step(self.tableau, flow, t, x, h, k1, keep_end=keep_end)
        x_next, err, last, nfe = rk_step(self.tableau, flow, t, x, h, k1)
        if keep_end and self.tableau.c[-1] == 1.0:
            # the residual flow's drift is (x − D)/t: the last stage's drift at the result
            d_end = x_next - bcast(t + h, x_next) * last
            return StepResult(x_next, RKState(last if self.tableau.fsal else None, d_end), nfe, err)
        return StepResult(x_next, RKState(last) if self.tableau.fsal else None, nfe, err)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Euler(ExplicitRK):
    """Explicit Euler, order 1. On InDIFlow it is exactly the ε = 0 InDI sampler."""

    tableau = EULER


class Midpoint(ExplicitRK):
    """Explicit midpoint rule, order 2; never evaluates at a step's end. On a grid the flow
    declares (a diffusion, flow-matching or EDM model's) its last positive point is laid no
    coarser than Euler's at the same number of evaluations
    (:class:`~flowrestore.grids.EulerMatchedEnd`)."""

    tableau = MIDPOINT
    end_matches_euler = True


class Heun(ExplicitRK):
    """Heun's method (explicit trapezoid), order 2."""

    tableau = HEUN


class RK4(ExplicitRK):
    """Classical fourth-order Runge–Kutta. On a singular end it lands in two parts through a
    third of its last positive time, reusing its last stage's clean estimate
    (:func:`~flowrestore.integrate.endpoint.split_landing`)."""

    tableau = RK4_TABLEAU
    landing_split = 1 / 3


def check_controller_options(owner: str, options: dict) -> None:
    """Refuse keyword arguments a :class:`PIController` does not take, naming ``owner`` (the
    controller's own ``TypeError`` named ``PIController.__init__``, not the solver built)."""
    known = [f.name for f in dataclasses.fields(PIController) if f.init]
    unknown = [k for k in options if k not in known]
    if unknown:
        raise ArgumentTypeError(
            f"{owner} got unexpected keyword arguments {unknown}: its keyword arguments are "
            f"its PIController's, {known}"
        )


class EmbeddedRK(ExplicitRK):
    """An embedded Runge–Kutta pair; its default controller is a :class:`~flowrestore.PIController`.

    Keyword arguments are the controller's (``rtol``, ``atol``, ``max_steps``, ``min_step``,
    ``safety``, ``ifactor``, ``dfactor``, ``pcoeff``, ``icoeff``, ``dt0``, ``t_min``): a
    convenience for ``fr.solve(flow, Dopri5(), x, controller=PIController(...))``. With ``steps=``
    or ``grid=`` the pair steps on that grid instead (then it must be built without tolerances).
    """

    def __init__(self, **controller_options):
        check_controller_options(f"{type(self).__name__}()", controller_options)
        self.controller = PIController(**controller_options)
        self.controller_options = dict(controller_options)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.controller_options.items())
        return f"{type(self).__name__}({args})"


class Bosh3(EmbeddedRK):
    """Bogacki–Shampine 3(2) (FSAL: 3 NFE per accepted step). On a fixed grid it lands on a
    singular end in two parts, as :class:`RK4` does (under error control by the denoising step
    from the controller's ``t_min``)."""

    tableau = BOSH3
    landing_split = 1 / 3


class Dopri5(EmbeddedRK):
    """Dormand–Prince 5(4) (FSAL: 6 NFE per accepted step). On a fixed grid it lands on a
    singular end in two parts, as :class:`RK4` does (under error control by the denoising step
    from the controller's ``t_min``)."""

    tableau = DOPRI5
    landing_split = 1 / 3
