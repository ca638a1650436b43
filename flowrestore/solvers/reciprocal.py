"""Runge–Kutta stages in a residual flow's integrating-factor variables (docs/math.md §1, §8).

A residual flow ``dx/dt = (x − D(x, t))/t`` reads, in ``w = 1/t`` and ``y = x/t``,

    dy/dw = D(y/w, 1/w),

the data-prediction form of the probability-flow ODE (DPM-Solver++, Lu et al. 2022, eq. 9 with
``e^λ = 1/σ``): the stiff linear part ``x/t`` is gone, and a diffusion model's state
``y = x̄/σ = x₀/σ + ε`` varies smoothly however large the step in ``σ`` is. An explicit tableau
applied there is an integrating-factor (Lawson 1967) Runge–Kutta method: it keeps its order (a
smooth change of variables inside each step) and its one-stage member is exactly Euler — DDIM on a
diffusion model, InDI's step. In ``t`` itself Heun and RK4 average slopes taken at both ends of a
step from ``σ_max`` to ``O(1)``, which is off by ``σ_max`` times the change of slope (issue 16:
relative error 10²–10³ at 3–9 evaluations on a cosine schedule); here they are stable.

Written with the ratios ``r_i = t_i/t`` instead of ``w`` (``s·Δw = 1 − s/t`` and
``t_i Δw = (t − s)/(s + c_i (t − s))`` stay finite as ``s → 0``), a step from ``t`` to ``s`` is

    t_i = t s / (s + c_i (t − s)),   x_i = (t_i/t) x + t_i Δw Σ_j a_ij D_j,   D_i = D(x_i, t_i),
    x_s = (s/t) x + (1 − s/t) Σ_i b_i D_i,

so Euler's step onto ``s = 0`` is exactly ``D(x, t)``; a tableau with a stage past ``c = 0`` would
evaluate at ``t_i = 0`` there, so the loop lands those by :func:`reciprocal_landing`: every stage
here is a clean estimate, and the step's first one, ``D(x_k, t_k)``, is kept in the state
(:class:`ReciprocalState`), so the landing extrapolates the clean estimate to ``τ = 0`` through
``D(x_stop, t_stop)`` and the last step's ``D(x_k, t_k)`` — linearly in ``τ^p``, ``p`` the flow's
interpolation power (the semi-linear solvers' landing with two nodes) — instead of stopping at
``D(x_stop, t_stop)``, whose error ``O(t_stop²)`` dominates a few-step solve: RK4 with 3 steps on
DDPM's linear schedule, relative error 0.14 → 0.08, Heun 0.28 → 0.21 (issue 16).

A flow asks for this form with :class:`~flowrestore.flows.base.TimeVariable` ``(reciprocal=True)``
(:meth:`flowrestore.flows.Flow.time_variable`); :class:`~flowrestore.ExplicitRK` then steps its
tableaus with :func:`reciprocal_step` — the embedded pairs (Bosh3, Dopri5) too on a fixed grid
(``steps=``, ``grid=``; in ``t`` ``Dopri5()`` with 3 steps on a cosine/v model was 4·10³× less
accurate than Euler at equal evaluations, 0.40× here). Under error control
(:attr:`~flowrestore.solvers.base.Context.error_control`) a pair keeps ``t``: over a step from
``σ ≈ 1`` to ``10⁻⁵`` every stage past the first sits at ``w ≥ Δw/5``, where the clean estimate
has long stopped changing, so the embedded error estimate would accept a step that skips the
whole transition (measured: Dopri5 under a ``PIController`` at ``rtol = 10⁻⁷`` landed with error
0.5 in 4 steps).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from flowrestore.flows.base import Flow, bcast
from flowrestore.solvers.base import StepResult
from flowrestore.solvers.tableau import ButcherTableau

__all__ = ["ReciprocalState", "reciprocal_landing", "reciprocal_step"]


@dataclass(frozen=True)
class ReciprocalState:
    """After a step in reciprocal variables: the drift at its end for FSAL pairs (``k1``, in
    ``dx/dt`` units, as :class:`~flowrestore.solvers.runge_kutta.RKState`), the step's start
    time and clean estimate, for :func:`reciprocal_landing`, and (``keep_end``) the clean estimate
    ``x_next − t_end·k`` that the drift ``k`` of its last stage (at the step's end) gives at the
    result, for :func:`~flowrestore.integrate.endpoint.split_landing`."""

    k1: Tensor | None
    t_start: Tensor
    d_start: Tensor
    d_end: Tensor | None = None


def _sum(coefs, ds: list[Tensor]) -> Tensor | None:
    out = None
    for c, d in zip(coefs, ds, strict=False):
        if c != 0.0:
            out = c * d if out is None else torch.add(out, d, alpha=c)
    return out


def reciprocal_step(
    tableau: ButcherTableau,
    flow: Flow,
    t: Tensor,
    x: Tensor,
    h: Tensor,
    k1: Tensor | None = None,
    *,
    keep_end: bool = False,
) -> StepResult:
    """One step ``t → t + h`` of ``tableau`` in ``(w, y)`` (module docstring).

    ``k1``: the drift ``dx/dt`` at the start, reused by FSAL pairs (converted with
    ``D = x − t·dx/dt``). The error estimate is in the state's units; the state is a
    :class:`ReciprocalState` (its ``k1``, for FSAL pairs, again a drift ``dx/dt``; with
    ``keep_end`` and a last stage at ``c = 1``, its ``d_end`` the clean estimate that stage's drift
    gives at the step's result).
    """
    s = t + h
    tb, sb = bcast(t, x), bcast(s, x)
    ratio = sb / tb
    nfe = 0
    if k1 is None:
        ds = [flow.denoise(t, x)]
        nfe += 1
    else:
        ds = [x - tb * k1]
    for c, row in zip(tableau.c[1:], tableau.a, strict=True):
        # t s / (s + c (t − s)) without the product t·s, which underflows in float16 at small
        # times (σ_max = 80: t_i became 0, an evaluation at σ = 0 and RK4 35 % off)
        t_i = t / (1 + c * (t / s - 1))
        ti = bcast(t_i, x)
        incr = _sum(row, ds)
        base = (ti / tb) * x
        x_i = base if incr is None else base + ((tb - sb) / (sb + c * (tb - sb))) * incr
        ds.append(flow.denoise(t_i, x_i))
        nfe += 1
    x_next = ratio * x + (1 - ratio) * _sum(tableau.b, ds)
    err = None if tableau.b_error is None else (1 - ratio) * _sum(tableau.b_error, ds)
    k_end = (x_next - ds[-1]) / sb if tableau.fsal else None
    d_end = None
    if keep_end and tableau.c[-1] == 1.0:  # the last stage's drift at the step's result
        d_end = ds[-1] + (x_next - x_i)
    return StepResult(x_next, ReciprocalState(k_end, t, ds[0], d_end), nfe, err)


def reciprocal_landing(flow: Flow, t: Tensor, x: Tensor, state: ReciprocalState) -> StepResult:
    """The step onto ``t = 0`` after a reciprocal step (module docstring): the clean estimate at
    ``(x, t)`` and the last step's, extrapolated linearly in ``τ^p`` to ``τ = 0``. One
    evaluation."""
    d = flow.denoise(t, x)
    p = flow.time_variable().power
    v, v_prev = bcast(t, x) ** p, bcast(state.t_start, x) ** p
    return StepResult((d * v_prev - state.d_start * v) / (v_prev - v), None, 1)
