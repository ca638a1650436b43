"""The one integration loop: every solve — fixed grid, error-controlled, native solver or adapter,
eager or compiled — runs :func:`run`, so saving, statistics, progress, callbacks, the ``t = 0``
endpoint rule, failures and ``output`` are the same code for all.

Order of events: ``flow.to_state`` → ``solver.init`` → the controller starts (an error controller
evaluates the drift at the start for its first step; that drift is offered to the solver) → the
steps (:func:`flowrestore.integrate.stepping.steps`): the loop asks the controller's run for the
next step (``next()``), steps the rows it names (the flow restricted to them,
:meth:`Flow.restrict <flowrestore.flows.Flow.restrict>`, and their solver state), tells the run
what happened (``report()``), merges accepted rows, saves, counts, calls back → the landing step
onto a singular end (:mod:`flowrestore.integrate.endpoint`) → ``output`` → failures →
``flow.from_state`` (:mod:`flowrestore.integrate.finish`). There is no fixed or controlled branch
here: the controller decides (:mod:`flowrestore.controllers`). With ``compile=`` the steps and the
landing run as one compiled function (:mod:`flowrestore.integrate.compiled`).

**Memory.** :func:`flowrestore.solve` runs this under ``torch.no_grad()`` unless
``differentiable=True``: without a saved trajectory only the current state is alive, so memory
does not grow with the number of steps. **Host synchronisation.** Nothing in the step loop reads a
device value of its own (:mod:`flowrestore.integrate.stepping`); an error controller's run
synchronises once per step, for its decision.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from flowrestore.controllers import Schedule, StepController
from flowrestore.flows.base import Flow
from flowrestore.integrate.compiled import run_compiled
from flowrestore.integrate.finish import Failures, finish
from flowrestore.integrate.solution import Solution
from flowrestore.integrate.stepping import Counts, Evaluator, steps, trajectory_buffer
from flowrestore.solvers.base import Context, Solver

__all__ = ["run"]


def run(
    flow: Flow,
    solver: Solver,
    x_start: Tensor,
    schedule: Schedule,
    controller: StepController,
    ctx: Context,
    *,
    output: str,
    progress: bool,
    callback: Callable[[int, Tensor, Tensor], None] | None,
    on_failure: str,
    check_finite: bool,
    failures: Failures,
    compile_options: dict | None = None,
) -> Solution:
    """Integrate ``flow`` with ``solver`` as ``schedule`` says (see the module docstring)."""
    B, dev, dtype = x_start.shape[0], x_start.device, x_start.dtype
    schedule.check_dtype(dtype)
    x = flow.to_state(x_start, schedule.t0)
    t0 = torch.full((), schedule.t0, dtype=dtype, device=dev)
    x, state = solver.init(flow, t0, x, ctx)
    evaluate = Evaluator(flow)
    ctl = controller.start(schedule, x, solver=solver, evaluate=evaluate)
    counts = Counts(B, dev)
    counts.nfe += evaluate.calls
    if evaluate.first is not None:
        state = solver.start_derivative(state, evaluate.first)
    track = check_finite and not ctl.catches_nonfinite
    bar = None
    try:
        if compile_options is not None:
            x, x_stop, traj, sums, done = run_compiled(
                compile_options, flow, solver, ctl, schedule, x, state, ctx, counts, track
            )
            state = None
        else:
            x_stop = None  # finish keeps it as it lands
            traj = trajectory_buffer(schedule, ctl, x)
            sums = [] if track else None
            bar = _progress_bar(progress, ctl, schedule.lands, type(solver).__name__)
            x, state, done = steps(
                flow, solver, ctl, x, state, ctx, counts, sums, traj, callback, bar
            )
        return finish(
            flow,
            solver,
            ctl,
            schedule,
            x,
            state,
            ctx,
            counts,
            failures,
            sums=sums,
            traj=traj,
            callback=callback,
            steps_done=done,
            bar=bar,
            output=output,
            on_failure=on_failure,
            check_finite=check_finite,
            landed=compile_options is not None and schedule.lands,
            x_stop=x_stop,
            x_start=x_start,
        )
    finally:
        if bar is not None:
            bar.close()  # also when a step, a callback or the landing raises (idempotent)


def _progress_bar(progress: bool, ctl, lands: bool, desc: str):
    if not progress:
        return None
    from tqdm.auto import tqdm

    _, total = ctl.progress()
    return tqdm(total=total + (1 if lands else 0), desc=desc, leave=False)
