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
     start on a flow that declares reciprocal stages (:class:`~flowrestore.flows.base.TimeVariable`:
     there a stage of the step onto ``w = 1/t = ∞`` would sit at ``t → 0``) — takes the
     denoising step ``x_0 = D(x_stop, t_stop)`` (1 evaluation; error ``O(t_stop²)``, because
     ``D(x(τ), τ) = x(0) + O(τ²)`` along the exact solution); after a step in reciprocal
     variables it extrapolates that estimate and the step's first one to ``τ = 0`` instead
     (:func:`~flowrestore.solvers.reciprocal.reciprocal_landing`, still 1 evaluation);
   * a solver that declares :attr:`~flowrestore.Solver.landing_split` ``κ`` (RK4, and on a
     fixed grid Bosh3 and Dopri5, ``κ = 1/3``) lands in two parts instead (:func:`split_landing`,
     still 1 evaluation): its last stage sits at ``t_stop`` and its drift ``k`` there, carried
     at the step's result ``x``, gives the clean estimate ``d = x − t_stop·k`` and an Euler step
     to ``s = κ·t_stop`` with no evaluation; the estimate ``D(x_s, s)`` and ``d`` are
     extrapolated linearly in ``τ^p`` to 0. On a prior far
     below the data's scale the solve's error is set by the last noise level it lands from, and
     RK4 with ``4N − 3`` evaluations landed from ``t_{N−1}`` while Euler with as many lands from a
     point ~4× lower: up to 1.85× behind Euler (``benchmarks.stiff_stability``); through
     ``t_{N−1}/3`` it is ahead on every family measured, and more accurate on ordinary priors,
     trained DDPMs and the shipped InDI predictors too (issue 16; benchmarks/RESULTS.md, "RK4's
     split landing"; its cost: 1.12× the mean error on ordinary exact diffusion priors). ``κ``
     was chosen on the validation split (``1/4``–``1/2`` tried: ``0.4`` and above trail Euler on
     very stiff priors, ``1/4`` gains less on the trained DDPM and the photos); the embedded
     pairs took the same ``κ`` on the same validation split (``python -m
     benchmarks.split_landing --solvers Bosh3 Dopri5``: worst ratio to Euler on very stiff priors
     2.13 → 1.20 for Bosh3 and 2.19 → 0.88 for Dopri5; the denoising step's error over the
     split's, geometric mean per family of exact models and the trained DDPM, 0.92–1.85 for Bosh3
     and 1.33–1.79 for Dopri5; +0.00 to +0.07 dB on the shipped predictors); Heun keeps the
     denoising step: the same rule left it behind Euler on very stiff flow-matching priors
     (1.04–1.26× at ``κ = 1/3``) and cost the shipped sr4 predictor 0.28 dB on average.

``output="posterior_mean"`` at such an end is the landed state itself: at ``t = 0`` the state is
the clean estimate (``E[x | x_0] = x_0``).

**Default grids** for ``steps=N``, first match: the grid a solver was fitted on
(:meth:`~flowrestore.Solver.fitted_spacing`: :class:`~flowrestore.FittedMultistep`'s, whose
weights belong to it); a grid the flow declares as fitted for this very
solver at ``N`` steps (:meth:`~flowrestore.flows.Flow.fitted_grids`, a
:class:`~flowrestore.grids.FittedGrids`: a shipped model's few-NFE schedules); the spacing the
flow declares for this solver (:meth:`~flowrestore.flows.Flow.declared_spacing`: an
:class:`~flowrestore.InDIFlow`'s ``spacings``, e.g. a shipped predictor's
``Unrefined(StartRefined(rho=3))`` for its other solvers; a
:class:`~flowrestore.grids.Unrefined` declaration is laid exactly as given, none of the end rules
below applied on it) or else its own :meth:`~flowrestore.flows.Flow.default_spacing` (a
diffusion model's :class:`~flowrestore.grids.NoiseLevels`, a flow-matching model's shifted grid);
the solver's
:meth:`~flowrestore.Solver.default_spacing` (the multistep solver's few-NFE grid); when the solve
lands on a singular end by the denoising step, ``Power(ρ = max(1, p/2))`` — its last step
``t_{N−1} = O(N^{−ρ})`` makes the denoising error ``O(N^{−2ρ}) = O(N^{−p})``, so each solver keeps
its declared order ``p`` at ``t = 0``; else uniform. A declared grid whose last interval shrinks
like ``N^{−e}`` (:attr:`~flowrestore.grids.Spacing.end_exponent`) is refined the same way, with a
margin: to ``N^{−(p+1)/2}`` when ``0 < e < (p + 1)/2``, ``EndRefined(ρ = (p + 1)/(2e))`` (RK4 and
Dopri5 on a diffusion model's ``e = 2``). At a few steps the landing from the last positive
point dominates the error: RK4 on DDPM's quadratic timesteps (exact linear/ε and cosine/v models,
the few-NFE benchmark's validation priors, worst relative error at 5 / 9 evaluations) has 0.417 /
0.093 and 0.192 / 0.043 as declared (``ρ = 1``: behind Euler's 0.283 at 5), 0.273 / 0.056 and
0.180 / 0.025 with ``ρ = 5/4``; ``ρ = p/(2e) = 1`` would keep the declared grid. On the trained
DDPM's validation noises (``benchmarks/ddpm-faces``) it helps with 3 and 4 steps (9 / 13
evaluations: 0.226 / 0.138 → 0.166 / 0.087) and costs at 2 (5 evaluations: 0.435 → 0.481).
``e = 0`` is a deliberate floor (EDM's ``σ_min``), laid as declared. A solver that declares
``end_matches_euler`` (Midpoint) gets the declared grid with its last positive point no coarser
than Euler's on it at the same number of evaluations (:class:`~flowrestore.grids.EulerMatchedEnd`):
on a prior whose components all lie far below the data's scale (every std ≤ 0.05) the whole change
of a probability-flow ODE happens below that point, and Midpoint on the declared grid was up to
1.45× behind Euler on diffusion, flow-matching and EDM models (``python -m
benchmarks.stiff_stability``); with the ends matched it is ahead on every family and prior range
measured (validation priors 11–12 and test priors 2101–2103: worst ratio 0.95), at a cost on
ordinary priors (cosine/v test split, 9 evaluations: 0.0107 → 0.0228, still ahead of every peer).
Heun and RK4 keep the declared grid: matched ends put them behind Euler at 3 steps on priors
with stds in [0.05, 2] (Heun 1.30–1.48, RK4 1.61 on the cosine schedule).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from flowrestore.flows.base import Flow
from flowrestore.grids import EndRefined, EulerMatchedEnd, Power, Spacing, Uniform, Unrefined
from flowrestore.solvers.base import Context, Solver, StepResult
from flowrestore.solvers.reciprocal import ReciprocalState, reciprocal_landing

__all__ = [
    "as_declared",
    "default_spacing",
    "generic_spacing",
    "land",
    "lands_by_denoising",
    "singular_end",
    "split_landing",
]


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
        d_end = getattr(state, "d_end", None)
        if solver.landing_split is not None and d_end is not None:
            return split_landing(flow, t, x, d_end, solver.landing_split)
        if isinstance(state, ReciprocalState):
            return reciprocal_landing(flow, t, x, state)
        return StepResult(flow.denoise(t, x), None, 1)
    # the last step of any solve; a copy, so that a caller stepping on with the same context
    # (the grid fitter's cost model) is not told so
    return solver.step(flow, t, x, -t, state, dataclasses.replace(ctx, steps_left=0))


def split_landing(flow: Flow, t: Tensor, x: Tensor, d_end: Tensor, kappa: float) -> StepResult:
    """The landing in two parts (module docstring): the Euler step from ``t`` to ``s = κt`` with
    the drift ``(x − d_end)/t`` the last step's final stage took at ``t`` (no evaluation), the
    estimate ``D(x_s, s)`` there, and both clean estimates extrapolated linearly in ``τ^p`` to
    ``τ = 0`` (``p`` the flow's interpolation power): ``(D(x_s, s) − κ^p d_end)/(1 − κ^p)``.
    One evaluation, as the denoising step."""
    s = t * kappa
    x_s = torch.lerp(d_end, x, kappa)  # (s/t) x + (1 − s/t) d_end
    d = flow.denoise(s, x_s)
    w = kappa ** flow.time_variable().power
    return StepResult(torch.add(d, d_end, alpha=-w).div_(1.0 - w), None, 1)


def default_spacing(flow: Flow, solver: Solver, t_end: float) -> Spacing:
    """The spacing ``steps=N`` uses when none is given (module docstring)."""
    pinned = solver.fitted_spacing()
    if pinned is not None:
        return pinned
    generic = generic_spacing(flow, solver, t_end)
    fitted = flow.fitted_grids()
    if fitted is not None and fitted.applies_to(solver):
        return fitted.over(generic)
    return generic


def generic_spacing(flow: Flow, solver: Solver, t_end: float) -> Spacing:
    """The default spacing without the flow's fitted grids (module docstring)."""
    return as_declared(flow, solver, t_end, flow.declared_spacing(solver))


def as_declared(flow: Flow, solver: Solver, t_end: float, own: Spacing | None) -> Spacing:
    """What ``steps=N`` lays when ``flow`` declares ``own`` for ``solver`` (``None``: the
    solver's preference, then the loop's rule), with the landing rules (module docstring)."""
    own = own or solver.default_spacing(flow)
    if isinstance(own, Unrefined):
        return own  # laid exactly as declared (module docstring)
    landing = singular_end(flow, t_end) and lands_by_denoising(solver, flow)
    if own is None:
        return Power(rho=solver.order / 2) if landing and solver.order > 2 else Uniform()
    e = own.end_exponent  # 0: a deliberate floor (EDM's σ_min), laid as declared
    target = (solver.order + 1) / 2  # the declared grid's rule (module docstring)
    rho = target / e if landing and 0 < e < target else 1.0
    if solver.end_matches_euler and e > 0:
        stages = len(solver.stage_fractions)
        return EulerMatchedEnd(own, stages=stages, landing=landing, rho_min=rho)
    return EndRefined(own, rho=rho) if rho > 1.0 else own
