"""The ``t = 0`` endpoint rule, stated once (InDI, Delbracio & Milanfar 2023, §3; docs/math.md §1).

A residual flow ``dx/dt = (x − D(x, t))/t`` is singular at ``t = 0``: ``0/0`` for an exact
estimate ``D``, unbounded for a learned one. So on a flow with ``singular_at_zero`` whose solve
ends at 0, **nothing is evaluated at 0**:

1. the solve integrates to ``t_stop > 0``: the last positive point of a fixed grid, or the
   :class:`~flowrestore.PIController`'s ``t_min`` under error control;
2. then it *lands* on 0 with one step from ``t_stop``:

   * a solver whose stages stay strictly inside the step (``max(stage_fractions) < 1``: Euler,
     Midpoint, the InDI samplers, the semi-linear multistep solvers) takes it as its own step —
     Euler's is exactly ``D(x, t_stop)``, the multistep solver's the extrapolation of its history
     to ``τ = 0``;
   * any other solver (a stage at ``c = 1``: Heun, RK4, Bosh3, Dopri5, ...) takes the denoising
     step ``x_0 = D(x_stop, t_stop)`` (1 evaluation; error ``O(t_stop²)``, because
     ``D(x(τ), τ) = x(0) + O(τ²)`` along the exact solution).

``output="posterior_mean"`` at such an end is the landed state itself: at ``t = 0`` the state is
the clean estimate (``E[x | x_0] = x_0``).

**Default grids** for ``steps=N``, first match: the flow's own
:meth:`~flowrestore.flows.Flow.default_spacing` (e.g. a diffusion model's σ schedule); the solver's
:meth:`~flowrestore.Solver.default_spacing` (the multistep solver's few-NFE grid); when the solve
lands on a singular end by the denoising step, ``Power(ρ = max(1, p/2))`` — its last step
``t_{N−1} = O(N^{−ρ})`` makes the denoising error ``O(N^{−2ρ}) = O(N^{−p})``, so each solver keeps
its declared order ``p`` at ``t = 0``; else uniform.
"""

from __future__ import annotations

from torch import Tensor

from flowrestore.flows.base import Flow
from flowrestore.grids import Power, Spacing, Uniform
from flowrestore.solvers.base import Context, Solver, StepResult

__all__ = ["default_spacing", "land", "lands_by_denoising", "singular_end"]


def singular_end(flow: Flow, t_end: float) -> bool:
    """Whether a solve of ``flow`` ending at ``t_end`` ends on its singular point."""
    return flow.singular_at_zero and t_end == 0.0


def lands_by_denoising(solver: Solver) -> bool:
    """Whether ``solver`` lands on a singular end by the denoising step (a stage at ``c = 1``)."""
    return solver.evaluates_at_end


def land(flow: Flow, solver: Solver, t: Tensor, x: Tensor, state, ctx: Context) -> StepResult:
    """The step from ``t = t_stop`` onto the singular end ``0`` (module docstring)."""
    if lands_by_denoising(solver):
        return StepResult(flow.denoise(t, x), None, 1)
    return solver.step(flow, t, x, -t, state, ctx)


def default_spacing(flow: Flow, solver: Solver, t_end: float) -> Spacing:
    """The spacing ``steps=N`` uses when none is given (module docstring)."""
    for own in (flow.default_spacing(), solver.default_spacing(flow)):
        if own is not None:
            return own
    if singular_end(flow, t_end) and lands_by_denoising(solver) and solver.order > 2:
        return Power(rho=solver.order / 2)
    return Uniform()
