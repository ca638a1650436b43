"""The solver abstraction: *how to step*.

A solver takes one step ``t → t + h`` of a flow and declares what it is; it never chooses step
sizes, grids or what to save (:func:`flowrestore.solve` and its controller do). Subclass
:class:`Solver` and set:

* ``order`` — the (deterministic) order; ``error_order`` — the order of an embedded error estimate
  (``None`` without one; a solver with one can run under a ``PIController``); ``strong_order`` /
  ``weak_order`` for SDE methods;
* ``flow_types`` — the flow classes it steps (``(ODE,)``, ``(SDE,)``, ``(InDIFlow,)``, ...):
  ``solve`` refuses any other flow before evaluating anything;
* ``stage_fractions`` — where in the step it evaluates the flow (``c_i`` of ``t + c_i h``). A solver
  with a stage at ``c = 1`` cannot take a step that ends on a singular point (InDI's ``t = 0``); the
  loop's endpoint rule then lands by the denoising step instead;
* ``per_sample_steps`` — whether ``t`` and ``h`` may be ``[B]`` tensors (per-sample control).

and implement:

* ``init(flow, t_start, x_start, ctx) -> (x_start', state)`` — once, before the first step (a
  sampler may add its initial noise; ``state`` is ``None`` or the solver's own state object);
* ``step(flow, t, x, h, state, ctx) -> StepResult`` — ``t`` and ``h`` are 0-d (a fixed grid) or
  ``[B]`` tensors; ``state`` is what the previous step returned (the loop selects and merges its
  per-sample tensors, :mod:`flowrestore.integrate.state`); ``flow`` is already restricted to the
  rows being stepped (:meth:`Flow.restrict <flowrestore.flows.Flow.restrict>`); ``ctx`` is the
  loop's :class:`Context` (noise, rows, records). A stochastic solver declares its draws per step
  in :meth:`Solver.noise_draws` (``fr.solve(..., compile=True)`` draws them beforehand). A step
  must not modify ``x`` in place and should read no device value on the host (``.item()``,
  ``bool(t)``): the loop is built to never wait for the device on a fixed grid.

``controller`` (an instance attribute) is the step-size controller ``solve`` uses when it is given
neither ``steps=`` nor ``grid=`` nor ``controller=``: ``None`` for fixed-step methods, a
:class:`~flowrestore.PIController` for embedded pairs (``Dopri5(rtol=...)`` builds it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from flowrestore.controllers import StepController
from flowrestore.errors import ArgumentTypeError, IncompatibleSolverError
from flowrestore.flows.base import ODE, Flow
from flowrestore.noise import GeneratorNoise, NoiseSource

__all__ = ["Context", "Solver", "StepResult", "fields_equal"]


@dataclass
class Context:
    """What a solver's step may use from the loop besides ``(t, x, h, state)``.

    The loop (:func:`flowrestore.solve`) makes one per solve and updates it before every step;
    flows never see it. Build one yourself only to call a solver's ``init``/``step`` by hand.

    Attributes:
        noise: the solve's :class:`~flowrestore.NoiseSource` (``generator=``, ``seeds=``,
            ``noise=``); stochastic steps draw from it.
        index: the batch rows being stepped (a long tensor; ``None``: all rows). Pass it to
            ``noise`` so per-sample seeds follow their samples.
        step_index: the number of steps the loop has taken so far.
        steps_left: the steps after this one, the landing step onto a singular end included,
            when the loop knows them before the solve (a fixed grid: a host int, so a solver may
            branch on it without reading the device); ``None`` under error control or in a
            hand-made context.
        error_control: whether the step's size is chosen from its error estimate (the loop's
            controller has no fixed grid: ``steps_left`` is ``None``); an embedded pair then steps
            in ``t``, where its estimate sees what a step skips. ``False`` on a fixed grid and in
            a hand-made context (a grid fitter's cost model).
        records: per-step values (:meth:`record`), stacked into ``Solution.records``.
        batch: the solve's batch size (``None``: unknown, e.g. a hand-made context).
    """

    noise: NoiseSource = field(default_factory=GeneratorNoise)
    index: Tensor | None = None
    step_index: int = 0
    steps_left: int | None = None
    error_control: bool = False
    records: dict[str, list[Tensor]] = field(default_factory=dict)
    batch: int | None = None

    def record(self, name: str, value: Tensor) -> None:
        """Append a per-step value (e.g. a data-consistency norm) to ``Solution.records[name]``.

        A per-sample value ``[k, ...]`` of a step that moved only the rows ``index`` (the others
        failed or, under error control, wait) is laid into the whole batch's rows, NaN for the
        rows not stepped, so the records stack into ``[steps, B, ...]``."""
        value = value.detach()
        rows, batch = self.index, self.batch
        if rows is not None and batch is not None and value.dim() >= 1:
            if value.shape[0] == rows.shape[0] != batch:
                full = value.new_full((batch, *value.shape[1:]), float("nan"))
                value = full.index_copy(0, rows.to(value.device), value)
        self.records.setdefault(name, []).append(value)


@dataclass
class StepResult:
    """One step's outcome: new state, solver state, evaluations, optional error estimate."""

    x: Tensor
    state: Any
    nfe: int
    error: Tensor | None = None


class Solver:
    """Base class of every solver (see the module docstring for what a subclass declares)."""

    order: ClassVar[float] = 1.0
    error_order: ClassVar[float | None] = None
    strong_order: ClassVar[float | None] = None
    weak_order: ClassVar[float | None] = None
    flow_types: ClassVar[tuple[type, ...]] = (ODE,)
    stage_fractions: ClassVar[tuple[float, ...]] = (0.0,)
    per_sample_steps: ClassVar[bool] = True
    #: on a grid the flow declares, lay the last positive point no coarser than Euler's at the
    #: same number of evaluations (:class:`~flowrestore.grids.EulerMatchedEnd`; issue 16)
    end_matches_euler: ClassVar[bool] = False
    #: a solver that lands by the denoising step and keeps its last stage's clean estimate at the
    #: step's end (``d_end`` in its state) lands in two parts instead, through ``κ·t_stop`` with
    #: ``κ`` this fraction (:func:`~flowrestore.integrate.endpoint.split_landing`; issue 16)
    landing_split: ClassVar[float | None] = None
    stochastic: bool = False
    controller: StepController | None = None

    @property
    def evaluates_at_end(self) -> bool:
        """Whether a stage sits at the end of the step (``c = 1``)."""
        return any(c >= 1.0 for c in self.stage_fractions)

    @property
    def adaptive(self) -> bool:
        """Whether the default controller is error-controlled."""
        return self.controller is not None and self.controller.adaptive

    def check_flow(self, flow: Flow) -> None:
        """Raise :class:`IncompatibleSolverError` if this solver cannot step ``flow`` (or an
        :class:`ArgumentTypeError` if it is an abstract base that cannot step at all)."""
        self.check_concrete()
        if isinstance(flow, self.flow_types):
            return
        kinds = " or ".join(t.__name__ for t in self.flow_types)
        instead = ", ".join(flow.suggested_solvers) or "a solver for this flow"
        raise IncompatibleSolverError(
            f"{type(self).__name__} steps {kinds} flows, but {type(flow).__name__} is not one; "
            f"use {instead} instead"
        )

    def check_concrete(self) -> None:
        """Refuse an abstract base (no ``step`` of its own) with :class:`ArgumentTypeError`."""
        if type(self).step is Solver.step:
            raise ArgumentTypeError(
                f"{type(self).__name__} is an abstract base class: use a concrete solver "
                "(e.g. fr.Heun(), fr.SemiLinearMultistep()) or subclass it with a step()"
            )

    def init(
        self, flow: Flow, t_start: Tensor, x_start: Tensor, ctx: Context
    ) -> tuple[Tensor, Any]:
        """Prepare the first step; returns the (possibly perturbed) start state and solver state."""
        return x_start, None

    def noise_draws(self) -> tuple[str, ...] | None:
        """The draws one step takes from ``ctx.noise``, in order (``"normal"``, ``"increment"``,
        ``"increment_and_area"``): ``()`` for a deterministic solver, ``None`` when undeclared.

        ``fr.solve(..., compile=True)`` draws a stochastic solve's noise before the compiled
        steps from this declaration (``torch.compile`` cannot use generators); an undeclared
        stochastic solver is refused there. Draws made in :meth:`init` run outside the compiled
        steps and need no declaration.
        """
        return None if self.stochastic else ()

    #: whether ``fr.solve(..., compile=True)`` may capture this solver's steps (adapters to other
    #: libraries keep their own Python state and are not captured)
    capturable: ClassVar[bool] = True

    def default_spacing(self, flow: Flow):
        """The grid spacing this solver prefers for ``steps=N`` on ``flow`` (``None``: the loop's
        rule, :mod:`flowrestore.integrate.endpoint`); the flow's own preference comes first."""
        return None

    def fitted_spacing(self):
        """The spacing ``steps=N`` must use, ahead of the flow's and the loop's (``None``:
        none; a solver fitted on one grid, :class:`~flowrestore.FittedMultistep`, returns it)."""
        return None

    def check_schedule(self, schedule) -> None:
        """Refuse, before any evaluation, a planned
        :class:`~flowrestore.controllers.Schedule` this solver cannot step (default: any)."""

    def check_start(self, flow: Flow, t_start: float) -> None:
        """Refuse, before any evaluation, a solve of ``flow`` from ``t_start`` (the planned start
        time, a host float) that this solver cannot start (default: any; a ``start_estimate``
        needs the flow's pure-noise start, :func:`~flowrestore.solvers.adams.check_start_time`)."""

    def linear_form(self) -> Solver:
        """This solver with its per-sample, data-dependent choices off: a linear map of its
        evaluations, what the grid fitter's symbolic solves model
        (:mod:`flowrestore.integrate.gits`). Default: itself."""
        return self

    def start_derivative(self, state: Any, f0: Tensor) -> Any:
        """Offer the drift at the start (evaluated for the first step size) to the state."""
        return state

    def step(
        self, flow: Flow, t: Tensor, x: Tensor, h: Tensor, state: Any, ctx: Context
    ) -> StepResult:
        """Advance ``x`` from ``t`` to ``t + h``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        if dataclasses.is_dataclass(self):  # its constructor's fields, never a ClassVar
            fields = dataclasses.fields(self)
            args = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields)
            return f"{type(self).__name__}({args})"
        return f"{type(self).__name__}()"


def _same_option(a: Any, b: Any) -> bool:
    """Whether two option values are the same: tensors by shape, dtype, device and values
    (``==`` on two tensors is elementwise, and its truth value ambiguous), anything else by
    ``==``; a tensor never equals a number."""
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return (
            isinstance(a, Tensor)
            and isinstance(b, Tensor)
            and a.shape == b.shape
            and a.dtype == b.dtype
            and a.device == b.device
            and torch.equal(a, b)
        )
    return bool(a == b)


def fields_equal(self: Solver, other: object) -> bool:
    """``__eq__`` of a dataclass solver with tensor-valued options (``start_estimate``): the same
    class and the same constructor fields (:func:`_same_option`). The dataclass-generated
    ``__eq__`` compares the fields as tuples, which asks a tensor comparison for its truth value
    and raised ``RuntimeError: Boolean value of Tensor ... is ambiguous``. Such a solver stays
    unhashable (a mutable dataclass)."""
    if other.__class__ is not self.__class__:
        return NotImplemented
    return all(
        _same_option(getattr(self, f.name), getattr(other, f.name))
        for f in dataclasses.fields(self)
    )
