"""The one integration loop: every solve — fixed grid, error-controlled, native solver or adapter —
runs :func:`run`, so saving, statistics, progress, callbacks, the ``t = 0`` endpoint rule,
failures and ``output`` are the same code for all.

Order of events: ``flow.to_state`` → ``solver.init`` → (controlled: the start's drift and the
first step size) → steps proposed by the driver (:mod:`flowrestore.integrate.drivers`), each
followed by merging accepted rows, saving, statistics, the callback and the progress bar → the
landing step onto a singular end (:mod:`flowrestore.integrate.endpoint`) → ``output`` → failure
report → ``flow.from_state``.

**Memory.** :func:`flowrestore.solve` runs this under ``torch.no_grad()`` unless
``differentiable=True``: without a saved trajectory only the current state is alive, so memory
does not grow with the number of steps. **Host synchronisation.** A fixed grid keeps times and
non-finite flags on the device and synchronises once, at the end; error control must decide on
acceptance, so it synchronises once per step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from flowrestore.errors import MaxStepsReachedError, NonFiniteError, StepSizeUnderflowError
from flowrestore.flows.base import Flow
from flowrestore.integrate.context import StepContext
from flowrestore.integrate.drivers import ControlledDriver, FixedDriver, merge_state_x
from flowrestore.integrate.endpoint import land
from flowrestore.integrate.solution import (
    MAX_STEPS,
    NONFINITE,
    UNDERFLOW,
    Solution,
    Stats,
    make_stats,
)
from flowrestore.integrate.state import merge_rows, select_rows
from flowrestore.solvers.base import Solver

__all__ = ["Plan", "run"]

_LOW_PRECISION = (torch.bfloat16, torch.float16)


@dataclass
class Plan:
    """Everything decided before the first evaluation.

    ``grid``: the fixed driver's grid (float64 CPU; it ends at ``t_stop``), or ``None`` under error
    control; ``targets``: the controlled driver's interior save times then ``t_stop``;
    ``save_times``: the times of the trajectory's slots (``None``: no trajectory);
    ``slots``: grid index (fixed) or target index (controlled) → slot; ``start_slot``/``end_slot``:
    the slots of ``t0`` and of the end, if saved.
    """

    t0: float
    t1: float
    t_stop: float
    lands: bool
    grid: Tensor | None
    targets: list[float] | None
    save_times: list[float] | None
    slots: dict[int, int]
    start_slot: int | None
    end_slot: int | None


def run(
    flow: Flow,
    solver: Solver,
    x_start: Tensor,
    plan: Plan,
    controller,
    ctx: StepContext,
    *,
    output: str,
    progress: bool,
    callback: Callable[[int, Tensor, Tensor], None] | None,
    on_failure: str,
    check_finite: bool,
) -> Solution:
    """Integrate ``flow`` with ``solver`` as ``plan`` says (see the module docstring)."""
    B, dev, dtype = x_start.shape[0], x_start.device, x_start.dtype
    stats = make_stats(B)
    x = flow.to_state(x_start, plan.t0)
    t0 = torch.tensor(plan.t0, dtype=dtype, device=dev)
    x, state = solver.init(flow, t0, x, ctx)
    traj = None
    if plan.save_times is not None:
        traj = torch.empty((len(plan.save_times), *x.shape), dtype=dtype, device=dev)
        if plan.start_slot is not None:
            traj[plan.start_slot] = flow.from_state(x, plan.t0)
    if plan.grid is not None:
        driver = FixedDriver(plan.grid, plan.slots, x)
        nfe_fixed = 0  # a fixed grid counts evaluations in Python: no per-step tensor update
        sums = None
        if check_finite and driver.n:
            sums = torch.empty((driver.n, B), dtype=_sum_dtype(dtype), device=dev)
    else:
        per_sample = controller.per_sample and solver.per_sample_steps
        k = min(solver.order, solver.error_order) + 1
        driver = ControlledDriver(
            controller, plan.t0, plan.targets, plan.slots, x, k, per_sample, stats
        )
        x = x.clone()  # the controlled loop writes accepted rows in place
        f0 = flow.drift(t0, x)

        def probe(h0: Tensor) -> Tensor:
            return flow.drift(t0 + driver.sign * h0, x + bcast_rows(driver.sign * h0, x) * f0)

        stats.nfe += 1 + driver.start(x, f0, probe)
        state = solver.start_derivative(state, f0)
        nfe_fixed = sums = None
    fixed_landing = plan.lands and plan.grid is not None
    total = driver.progress_total + (1 if fixed_landing else 0)
    bar = _progress_bar(progress, total, type(solver).__name__)
    shown = 0.0
    steps_done = 0
    while (prop := driver.propose()) is not None:
        rows = prop.rows
        ctx.index, ctx.step_index = rows, steps_done
        xa, sa = (x, state) if rows is None else (x[rows], select_rows(state, rows))
        res = solver.step(flow, prop.t, xa, prop.h, sa, ctx)
        out = driver.judge(prop, xa, res.x, res.error, res.nfe)
        if out.accept is None and rows is None:  # every row stepped and accepted: no merge
            x, state = res.x, res.state
        else:
            x = merge_state_x(x, res.x, out.accept, rows)
            state = merge_rows(state, res.state, out.accept, rows)
        if nfe_fixed is not None:
            nfe_fixed += res.nfe
        if sums is not None:
            torch.sum(x.detach().reshape(B, -1), 1, dtype=sums.dtype, out=sums[steps_done])
        for slot, hit_rows in out.hits:
            _save(traj, slot, hit_rows, x, flow, plan.save_times[slot])
        if out.any_accepted:
            steps_done += 1
            if callback is not None:
                callback(steps_done, out.t, x)
        if bar is not None:
            value = driver.progress_value()
            bar.update(value - shown)
            shown = value
    if nfe_fixed is not None:
        stats.nfe += nfe_fixed
        stats.steps += driver.n
        _fixed_failures(sums, plan, stats, on_failure, solver)
    t_final = driver.t_reached
    if plan.lands:
        x, t_final = _land(flow, solver, x, state, t_final, plan, stats, ctx, B)
        steps_done += 1
        if callback is not None:
            callback(steps_done, t_final, x)
        if bar is not None and fixed_landing:
            bar.update(1)
    if bar is not None:
        bar.close()
    if output == "posterior_mean" and not plan.lands:
        x = flow.denoise(t_final, x)
        stats.nfe += 1
    if plan.lands or output == "posterior_mean" or plan.grid is None:
        if check_finite or plan.grid is None:
            what = (
                f"the landing step onto t=0 from t={plan.t_stop:.6g}"
                if plan.lands
                else f"the posterior-mean estimate at t={plan.t1:.6g}"
                if output == "posterior_mean"
                else f"the state at t={plan.t1:.6g}"
            )
            _check_final_finite(x, stats, on_failure, f"{what} ({solver!r})")
    if output != "posterior_mean":  # a clean estimate is already in the data's units
        x = flow.from_state(x, plan.t1)
    if traj is not None and plan.end_slot is not None:
        traj[plan.end_slot] = x
    sol = Solution(
        x=x,
        ts=torch.tensor(plan.save_times or [plan.t1], dtype=dtype, device=dev),
        trajectory=traj,
        stats=stats,
        t_final=(t_final.expand(B) if t_final.dim() == 0 else t_final).clone(),
        records={name: torch.stack(v) for name, v in ctx.records.items()},
    )
    _raise_failures(sol, controller, on_failure)
    return sol


def bcast_rows(v: Tensor, x: Tensor) -> Tensor:
    """A ``[B]`` tensor shaped to broadcast against ``x``."""
    return v.reshape(v.shape[0], *([1] * (x.dim() - 1)))


def _land(flow, solver, x, state, t_final, plan, stats, ctx, B):
    """The endpoint rule's landing step for the samples that reached ``t_stop``."""
    ok = stats.status == 0
    t_stop = torch.tensor(plan.t_stop, dtype=x.dtype, device=x.device)
    ctx.index = None
    if bool(ok.all()):
        res = land(flow, solver, t_stop, x, state, ctx)
        stats.nfe += res.nfe
        stats.steps += 1
        zero = torch.zeros_like(t_final)
        return res.x, zero
    if not bool(ok.any()):
        return x, t_final
    rows = ok.nonzero().squeeze(1).to(x.device)
    t_final = t_final.expand(B) if t_final.dim() == 0 else t_final
    ctx.index = rows
    res = land(flow, solver, t_stop, x[rows], select_rows(state, rows), ctx)
    x = x.clone()
    x[rows] = res.x
    t_final = t_final.clone()
    t_final[rows] = 0.0
    stats.nfe[ok] += res.nfe
    stats.steps[ok] += 1
    return x, t_final


def _save(traj, slot, rows, x, flow, t):
    value = flow.from_state(x, t)
    if rows is None:
        traj[slot] = value
    else:
        traj[slot, rows] = value[rows]


def _progress_bar(progress: bool, total, desc: str):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False)


def _sum_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation dtype of the non-finite row sums (at least float32)."""
    return torch.float32 if dtype in _LOW_PRECISION else dtype


def _fixed_failures(sums, plan: Plan, stats: Stats, on_failure: str, solver) -> None:
    """Non-finite states on a fixed grid: one host synchronisation, after the last step.

    NaN and ±inf propagate into a row sum, so the first non-finite row sum of a sample is its
    first bad step (one vectorised reduction per step instead of an inf-norm).
    """
    if sums is None:
        return
    bad = ~torch.isfinite(sums)
    if not bool(bad.any()):
        return
    samples = bad.any(0).cpu()
    if on_failure == "return":
        stats.status[samples] = NONFINITE
        return
    k = int(bad.any(1).nonzero()[0])
    g = plan.grid
    total = g.numel() - 1 + int(plan.lands)
    raise NonFiniteError(
        f"the state became non-finite in step {k + 1} of {total} (t={g[k].item():.6g} -> "
        f"{g[k + 1].item():.6g}) for samples {samples.nonzero().squeeze(1).tolist()[:10]} "
        f"({solver!r}): the predictor/drift returned NaN/inf or the step overflowed"
    )


def _check_final_finite(x: Tensor, stats: Stats, on_failure: str, what: str) -> None:
    """Flag or raise on samples whose final ``x`` is not finite (landing, output, control)."""
    acc = torch.float32 if x.dtype in _LOW_PRECISION else None
    finite = torch.isfinite(x.detach().reshape(x.shape[0], -1).sum(1, dtype=acc))
    bad = (~finite).cpu() & (stats.status == 0)
    if not bool(bad.any()):
        return
    if on_failure == "return":
        stats.status[bad] = NONFINITE
        return
    rows = bad.nonzero().squeeze(1).tolist()
    raise NonFiniteError(
        f"{what} is non-finite for samples {rows[:10]}: the predictor/drift returned NaN/inf"
    )


def _raise_failures(sol: Solution, controller, on_failure: str) -> None:
    status = sol.stats.status
    if on_failure == "return" or not bool((status != 0).any()):
        return
    for code, exc in ((NONFINITE, NonFiniteError), (UNDERFLOW, StepSizeUnderflowError)):
        rows = (status == code).nonzero().squeeze(1)
        if rows.numel():
            t = sol.t_final[rows.to(sol.t_final.device)].cpu().tolist()
            step = (sol.stats.steps[rows] + 1).tolist()
            what = (
                "became non-finite (the state or the drift is NaN/inf)"
                if code == NONFINITE
                else f"step size fell below min_step={controller.min_step} / round-off"
            )
            raise exc(
                f"samples {rows.tolist()[:10]} {what} in step {step[:10]} at "
                f"t={[round(v, 6) for v in t[:10]]}; pass on_failure='return' for the "
                "partial solution"
            )
    rows = (status == MAX_STEPS).nonzero().squeeze(1)
    t = sol.t_final[rows.to(sol.t_final.device)].cpu().tolist()
    raise MaxStepsReachedError(
        f"samples {rows.tolist()[:10]} used max_steps={controller.max_steps} before reaching the "
        f"end (stopped at t={[round(v, 6) for v in t[:10]]}); raise max_steps, loosen rtol/atol, "
        "or pass on_failure='return'",
        solution=sol,
    )
