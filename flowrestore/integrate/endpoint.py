"""The ``t = 0`` endpoint rule, stated once (InDI, Delbracio & Milanfar 2023, §3; docs/math.md §1).

A residual flow ``dx/dt = (x − D(x, t))/t`` is singular at ``t = 0``: ``0/0`` for an exact
estimate ``D``, unbounded for a learned one. So on a flow with ``singular_at_zero`` whose solve
ends at 0, **nothing is evaluated at 0**:

1. the solve integrates to ``t_stop > 0``: the last positive point of a fixed grid, or the
   :class:`~flowrestore.PIController`'s ``t_min`` under error control;
2. then it *lands* on 0 with one step from ``t_stop``:

   * a solver whose stages stay at the start of the step (``stage_fractions == (0,)``: Euler, the
     InDI samplers, the semi-linear multistep solvers) takes it as its own step — Euler's is
     exactly ``D(x, t_stop)``, the multistep solver's the extrapolation of its history to
     ``τ = 0``; so does Midpoint (stage at ``c = 1/2``) on a flow whose Runge–Kutta stages are
     in ``t``;
   * any other solver — a stage at ``c = 1`` (Heun, RK4, Bosh3, Dopri5, ...), or any stage past the
     start on a flow that declares reciprocal stages (:class:`~flowrestore.grids.TimeVariable`:
     there a stage of the step onto ``w = 1/t = ∞`` would sit at ``t → 0``) — takes the
     denoising step ``x_0 = D(x_stop, t_stop)`` (1 evaluation; error ``O(t_stop²)``, because
     ``D(x(τ), τ) = x(0) + O(τ²)`` along the exact solution); after a step in reciprocal
     variables it extrapolates that estimate and the step's first one to ``τ = 0`` instead
     (:func:`~flowrestore.solvers.reciprocal.reciprocal_landing`, still 1 evaluation).

``output="posterior_mean"`` at such an end is the landed state itself: at ``t = 0`` the state is
the clean estimate (``E[x | x_0] = x_0``).

**Default grids** for ``steps=N``: the flow declares its few-step grid
(:meth:`~flowrestore.flows.Flow.default_spacing`: InDI's :class:`~flowrestore.StartRefined`, a
diffusion model's :class:`~flowrestore.grids.NoiseLevels`; ``None`` — an ``ODEFlow`` — is
:class:`~flowrestore.Uniform`); solvers choose no grid. The one rule on top is for a method of
order ``p`` that lands on a singular end by the denoising step, whose error ``O(t_stop²)`` would
otherwise dominate its few-step solves (InDI's start-refined grid ends on an ``O(1/N)`` step:
Heun with 3 steps lands from ``t = 0.56``): its last positive point must be
``O(N^{−(p+1)/2})``, so that the landing error is ``o(N^{−p})`` and the method keeps its order
``p`` at ``t = 0``. When the flow's grid shrinks its last interval more slowly, like ``N^{−e}``
(:attr:`~flowrestore.grids.Spacing.end_exponent`: ``e = 1`` for InDI's grid, ``2`` for a
diffusion model's), the rule refines its end, ``EndRefined(ρ = (p + 1)/(2e))``: Heun and RK4
on InDI get ``ρ = 1.5`` and ``2.5``, RK4 on a diffusion model ``1.25``; Heun there needs none.
"""

from __future__ import annotations

from torch import Tensor

from flowrestore.flows.base import Flow
from flowrestore.grids import EndRefined, Spacing, Uniform
from flowrestore.solvers.base import Context, Solver, StepResult
from flowrestore.solvers.reciprocal import ReciprocalState, reciprocal_landing

__all__ = ["default_spacing", "land", "lands_by_denoising", "singular_end"]


def singular_end(flow: Flow, t_end: float) -> bool:
    """Whether a solve of ``flow`` ending at ``t_end`` ends on its singular point."""
    return flow.singular_at_zero and t_end == 0.0


def lands_by_denoising(solver: Solver, flow: Flow | None = None) -> bool:
    """Whether ``solver`` lands on a singular end of ``flow`` by the denoising step (module
    docstring): a stage at ``c = 1``, or a stage past ``c = 0`` on a flow with reciprocal stages."""
    if solver.evaluates_at_end:
        return True
    past_start = any(c > 0 for c in solver.stage_fractions)
    return past_start and flow is not None and flow.time_variable().reciprocal


def land(flow: Flow, solver: Solver, t: Tensor, x: Tensor, state, ctx: Context) -> StepResult:
    """The step from ``t = t_stop`` onto the singular end ``0`` (module docstring)."""
    if lands_by_denoising(solver, flow):
        if isinstance(state, ReciprocalState):
            return reciprocal_landing(flow, t, x, state)
        return StepResult(flow.denoise(t, x), None, 1)
    return solver.step(flow, t, x, -t, state, ctx)


def default_spacing(flow: Flow, solver: Solver, t_end: float) -> Spacing:
    """The spacing ``steps=N`` uses when none is given (module docstring)."""
    own = flow.default_spacing() or Uniform()
    need = (solver.order + 1) / 2  # last positive point O(N^{-(p+1)/2}): landing o(N^{-p})
    if singular_end(flow, t_end) and lands_by_denoising(solver, flow) and need > own.end_exponent:
        return EndRefined(own, rho=need / own.end_exponent)
    return own
