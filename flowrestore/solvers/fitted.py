"""A multistep solver with fitted per-step weights, tied to the grid it was fitted on (issue 16).

The data-prediction form of iPNDM (:class:`~flowrestore.DataIPNDM`, module
:mod:`flowrestore.solvers.adams`) steps a residual flow ``dx/dt = (x − D(x, t))/t`` by the
exponential (DDIM/InDI) step with a combination of the last clean estimates,

    x_{k+1} = r_k x_k + (1 − r_k) Σ_j w_{k,j} D_{k−j},     r_k = t_{k+1}/t_k,

with Adams–Bashforth's fixed weights ``w``. At a budget of 4–8 evaluations the best weights of a
given grid are not Adams–Bashforth's: the learned model's errors, the warm start and the landing
extrapolation onto ``t = 0`` all enter the answer, and no order condition sees them. Learning the
solver's coefficients per step from a few samples of the problem — "S4S" (Frankel et al. 2025,
"S4S: Solving for a diffusion model solver"), "DC-Solver" (Zhao et al. 2024) — takes them off the
order conditions onto the problem. :class:`FittedMultistep` is that update with one weight vector
per step, fitted by :func:`flowrestore.integrate.fit_weights` (gradient descent on the whole
solve's error against a fine teacher, warm-up inputs only).

The weights are fitted for one grid, so the solver carries it (``times``, normalised over
``t_span`` like :class:`~flowrestore.Fitted`): ``steps=N`` lays it (``N`` must be its step count)
and :func:`~flowrestore.solve` refuses any other grid or an error-controlled solve before the
first evaluation. Each weight vector sums to 1 (the step is exact on a constant clean estimate:
consistency); with ``w_k`` = Adams–Bashforth's it is :class:`~flowrestore.DataIPNDM` on that grid.
With ``start_estimate`` (the clean estimate at a pure-noise start, e.g.
:func:`~flowrestore.integrate.estimate_start`) the first step takes it instead of an evaluation,
as :class:`~flowrestore.IPNDM`'s analytic first step does (flowrestore/solvers/adams.py): the
grid's ``N`` steps cost ``N − 1`` evaluations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from flowrestore.controllers.fixed import FixedSchedule
from flowrestore.errors import ConfigError, describe
from flowrestore.flows.base import Flow, ResidualFlow, bcast
from flowrestore.grids import Fitted, span_of
from flowrestore.solvers.adams import (
    check_estimate,
    check_estimate_shape,
    check_start_estimate,
    check_start_time,
    start_value,
)
from flowrestore.solvers.base import Context, Solver, StepResult, fields_equal

__all__ = ["FittedMultistep", "FittedState"]


@dataclass(frozen=True)
class FittedState:
    """The clean estimates taken so far (newest first, as many as the next weights use) and the
    number of steps taken (a host int: which weights step next)."""

    values: tuple[Tensor, ...] = ()
    taken: int = 0


def _weights(value) -> tuple[tuple[float, ...], ...]:
    bad = ConfigError(
        "weights must be one non-empty sequence of numbers per step, newest estimate first, "
        f"got {describe(value)}"
    )
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise bad
    out = []
    for row in value:
        if isinstance(row, (str, bytes)) or not hasattr(row, "__iter__"):
            raise bad
        try:
            w = tuple(float(v) for v in row)
        except (TypeError, ValueError) as exc:
            raise bad from exc
        if not w or not all(math.isfinite(v) for v in w):
            raise bad
        out.append(w)
    if not out:
        raise bad
    return tuple(out)


@dataclass(repr=False)
class FittedMultistep(Solver):
    """The exponential step with per-step fitted weights of the last clean estimates (module
    docstring); built by :func:`flowrestore.integrate.fit_weights`.

    Args:
        weights: one sequence per step, newest estimate first: step ``k`` combines the last
            ``len(weights[k])`` clean estimates (at most ``k + 1``). Each must sum to 1.
        times: the normalised grid ``1 = τ_0 > … > τ_N = 0`` the weights were fitted on
            (:class:`~flowrestore.Fitted`), ``N = len(weights)``.
        t_span: the span ``times`` is normalised over (default ``(1.0, 0.0)``).
        start_estimate: the clean estimate at a pure-noise start, taken by the first step
            instead of an evaluation (module docstring); ``None`` (default): evaluate.

    Solve with ``steps=N`` (or ``grid=`` the same times). Declared order 1: fitted weights keep
    consistency, not an order.
    """

    weights: tuple[tuple[float, ...], ...]
    times: tuple[float, ...]
    t_span: tuple[float, float] = (1.0, 0.0)
    start_estimate: Tensor | float | None = None
    order: ClassVar[float] = 1.0
    flow_types: ClassVar[tuple[type, ...]] = (ResidualFlow,)
    stage_fractions: ClassVar[tuple[float, ...]] = (0.0,)
    per_sample_steps: ClassVar[bool] = False
    #: the same weights, grid, span and start estimate (a tensor by its values;
    #: base.fields_equal)
    __eq__ = fields_equal

    def __post_init__(self):
        self.weights = _weights(self.weights)
        self.times = Fitted(self.times).times
        self.t_span = span_of(self.t_span)
        check_estimate(self.start_estimate)
        if len(self.times) != len(self.weights) + 1:
            raise ConfigError(
                f"times must hold one more point than weights has steps ({len(self.weights)}), "
                f"got {len(self.times)} times"
            )
        for k, w in enumerate(self.weights):
            if len(w) > k + 1:
                raise ConfigError(
                    f"weights[{k}] combines {len(w)} estimates, but step {k} has only {k + 1}"
                )
            if abs(sum(w) - 1.0) > 1e-6:
                raise ConfigError(
                    f"weights[{k}] must sum to 1 (consistency), got {w} (sum {sum(w):.9g})"
                )

        # estimates to carry after step k: the most any later step combines, less its own
        lengths = [len(w) for w in self.weights]
        self._keep = tuple(max([*lengths[k + 1 :], 1]) - 1 for k in range(len(lengths)))

    @property
    def steps(self) -> int:
        """The number of steps the weights were fitted for (``steps=`` of the solve)."""
        return len(self.weights)

    @property
    def evaluations(self) -> int:
        """The model evaluations of a solve: :attr:`steps`, less one with ``start_estimate``."""
        return self.steps - (self.start_estimate is not None)

    def check_flow(self, flow: Flow) -> None:
        """A residual flow; with ``start_estimate``, one that starts from pure noise."""
        super().check_flow(flow)
        check_start_estimate(self, flow)

    def check_start(self, flow: Flow, t_start: float) -> None:
        """With ``start_estimate``, a solve from the flow's pure-noise start only
        (:func:`~flowrestore.solvers.adams.check_start_time`)."""
        check_start_time(self, flow, t_start)

    def grid(self) -> Tensor:
        """The fitted grid over ``t_span`` (float64)."""
        return Fitted(self.times)(self.steps, *self.t_span)

    def fitted_spacing(self) -> Fitted:
        """``steps=N`` lays the grid the weights were fitted on."""
        return Fitted(self.times)

    def check_schedule(self, schedule) -> None:
        """Refuse, before any evaluation, a plan that is not the fitted grid."""
        if not isinstance(schedule, FixedSchedule):
            raise ConfigError(
                f"FittedMultistep steps the grid it was fitted on: pass steps={self.steps}, "
                "not an error-controlled solve"
            )
        full = schedule.full.double()
        want = self.grid()
        # the fitted times up to float32 round-off (a grid given as a float32 tensor: it was
        # refused at rtol 1e-9, its message printing two equal grids)
        tol = 4 * torch.finfo(torch.float32).eps
        if full.shape != want.shape or not torch.allclose(full, want, rtol=tol, atol=tol * 1e-3):
            raise ConfigError(
                f"FittedMultistep's weights were fitted on the {self.steps}-step grid "
                f"{[round(v, 6) for v in want.tolist()]} over t_span={self.t_span}; got the grid "
                f"{[round(v, 6) for v in full.tolist()]}: pass steps={self.steps} and no "
                "spacing=, grid= or t_end="
            )

    def init(self, flow: Flow, t_start: Tensor, x_start: Tensor, ctx: Context):
        """No estimates yet; a ``start_estimate`` that does not broadcast to the state is
        refused here, before any evaluation."""
        check_estimate_shape(self.start_estimate, x_start)
        return x_start, FittedState()

    def step_weights(self, k: int, like: Tensor) -> Tensor | tuple[float, ...]:
        """The weights of step ``k`` (a hook: :func:`~flowrestore.integrate.fit_weights`
        differentiates through tensors here)."""
        return self.weights[k]

    def step(
        self, flow: Flow, t: Tensor, x: Tensor, h: Tensor, state: FittedState, ctx: Context
    ) -> StepResult:
        """One evaluation at ``(t, x)`` (none on the first step with ``start_estimate``), then
        the exponential step with step ``k``'s weights."""
        k = state.taken
        w = self.step_weights(k, x)
        if k == 0 and self.start_estimate is not None:  # the analytic first step
            nfe, value = 0, start_value(self.start_estimate, x)
        else:
            nfe, value = 1, flow.denoise(t, x)
        values = (value, *state.values)
        combo = None
        for j in range(len(w)):
            term = w[j] * values[j]
            combo = term if combo is None else combo + term
        r = bcast((t + h) / t, x)
        x_next = r * x + (1 - r) * combo
        return StepResult(x_next, FittedState(values[: self._keep[k]], k + 1), nfe)

    def __repr__(self) -> str:
        m = self.start_estimate
        extra = "" if m is None else f", start_estimate={describe(m)}"
        return (
            f"FittedMultistep(weights={self.weights!r}, times={self.times!r}, "
            f"t_span={self.t_span!r}{extra})"
        )
