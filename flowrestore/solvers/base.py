"""The solver abstraction: *how to step* (DESIGN.md, "the solver").

A solver takes one step ``t → t + h`` of a flow and declares its order. It never chooses step
sizes, grids or what to save: :func:`flowrestore.solve` owns that. The contract:

* ``init(flow, t0, x0, ctx) -> (x0', state)`` — once, before the first step (a sampler may add
  its initial noise here; FSAL methods may leave ``state`` empty);
* ``step(flow, t, x, h, state, ctx) -> StepResult`` — ``t`` and ``h`` are 0-d (shared, fixed
  grid) or ``[B]`` tensors (per-sample adaptive control); ``state`` is ``None`` or a dict of
  ``[B, ...]`` tensors the loop carries, subsets and merges per sample.
* ``stage_fractions`` — the ``c`` of the stages; a stage at ``c = 1`` evaluates at the step's
  end, so on a flow singular at 0 the loop replaces such a step onto 0 by ``flow.denoise``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from torch import Tensor

from flowrestore.errors import IncompatibleSolverError
from flowrestore.flows.base import Flow
from flowrestore.integrate.noise import GeneratorNoise, NoiseSource


def resolve_t_min(t_min: float | None, rtol: float) -> float:
    """Where a tolerance-controlled solve of a flow singular at 0 stops before its denoising step.

    ``t_min`` if given, else ``min(1e-2, sqrt(rtol)/10)``: the denoising step's error is
    ``O(t_min²)``, so this keeps it about ``rtol/100`` (MATH.md §1, "The endpoint t = 0").
    """
    if t_min is not None:
        return t_min
    return min(1e-2, max(rtol, 1e-16) ** 0.5 / 10)


@dataclass
class StepContext:
    """What a step may see besides ``(t, x, h)``: the run's noise, start and per-step records."""

    noise: NoiseSource = field(default_factory=GeneratorNoise)
    x_start: Tensor | None = None
    t_start: Tensor | None = None
    step_index: int = 0
    index: Tensor | None = None
    records: dict[str, list[Tensor]] = field(default_factory=dict)

    def record(self, name: str, value: Tensor) -> None:
        """Append a per-step value (e.g. a data-consistency norm) to ``Solution.records[name]``."""
        self.records.setdefault(name, []).append(value.detach())

    def start_rows(self) -> Tensor | None:
        """The initial state restricted to the rows being stepped."""
        if self.x_start is None or self.index is None:
            return self.x_start
        return self.x_start[self.index]


@dataclass
class StepResult:
    """One step's outcome: new state, solver state, evaluations, optional error estimate."""

    x: Tensor
    state: dict[str, Tensor] | None
    nfe: int
    error: Tensor | None = None


class Solver:
    """Base class of every solver. Subclasses set the class attributes and implement ``step``.

    Class attributes: ``order`` (ODE / deterministic order), ``strong_order`` and ``weak_order``
    (SDE methods, else ``None``), ``adaptive`` (has an embedded error estimate and step control),
    ``stochastic`` (draws noise), ``needs`` (``"ode"``, ``"sde"``, ``"denoiser"``, or ``"any"``),
    ``stage_fractions``.
    """

    order: ClassVar[float] = 1.0
    strong_order: ClassVar[float | None] = None
    weak_order: ClassVar[float | None] = None
    stage_fractions: ClassVar[tuple[float, ...]] = (0.0,)
    needs: ClassVar[str] = "ode"
    adaptive: bool = False
    stochastic: bool = False
    delegates: ClassVar[bool] = False
    #: its own step onto t = 0 returns the flow's clean-image estimate (Euler, InDI samplers)
    lands_on_estimate: ClassVar[bool] = False

    @property
    def evaluates_at_end(self) -> bool:
        """Whether a stage sits at the end of the step (``c = 1``)."""
        return any(c >= 1.0 for c in self.stage_fractions)

    def check_flow(self, flow: Flow) -> None:
        """Raise :class:`IncompatibleSolverError` if this solver cannot integrate ``flow``."""
        name = type(self).__name__
        if self.needs == "ode" and flow.is_sde:
            raise IncompatibleSolverError(
                f"{name} is an ODE method but {type(flow).__name__} is an SDE; use an SDE solver "
                "such as EulerMaruyama"
            )
        if self.needs == "sde" and not flow.is_sde:
            raise IncompatibleSolverError(
                f"{name} is an SDE method but {type(flow).__name__} has no diffusion; "
                "use an ODE solver"
            )
        if self.needs == "denoiser" and not flow.has_denoiser:
            raise IncompatibleSolverError(
                f"{name} needs a flow with a clean-image predictor (InDIFlow), "
                f"got {type(flow).__name__}"
            )

    def init(
        self, flow: Flow, t0: Tensor, x0: Tensor, ctx: StepContext
    ) -> tuple[Tensor, dict[str, Tensor] | None]:
        """Prepare the first step; returns the (possibly perturbed) start state and solver state."""
        return x0, None

    def step(
        self,
        flow: Flow,
        t: Tensor,
        x: Tensor,
        h: Tensor,
        state: dict[str, Tensor] | None,
        ctx: StepContext,
    ) -> StepResult:
        """Advance ``x`` from ``t`` to ``t + h``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        fields = getattr(self, "__dataclass_fields__", None)
        if fields:
            args = ", ".join(f"{k}={getattr(self, k)!r}" for k in fields)
            return f"{type(self).__name__}({args})"
        return f"{type(self).__name__}()"
