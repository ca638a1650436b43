"""The one integration loop: every solve — fixed grid, error-controlled, native solver or adapter —
runs :func:`run`, so saving, statistics, progress, callbacks, the ``t = 0`` endpoint rule,
failures and ``output`` are the same code for all.

Order of events: ``flow.to_state`` → ``solver.init`` → the controller starts (an error controller
evaluates the drift at the start for its first step; that drift is offered to the solver) → steps:
the loop asks the controller's run for the next step (``next()``), steps the rows it names (the
flow restricted to them, :meth:`Flow.restrict <flowrestore.flows.Flow.restrict>`, and their solver
state), tells the run what happened (``report()``), merges accepted rows, saves, counts, calls
back → the landing step onto a singular end (:mod:`flowrestore.integrate.endpoint`) → ``output``
→ failures → ``flow.from_state`` (:mod:`flowrestore.integrate.finish`). There is no fixed or
controlled branch here: the controller decides (:mod:`flowrestore.controllers`).

**Memory.** :func:`flowrestore.solve` runs this under ``torch.no_grad()`` unless
``differentiable=True``: without a saved trajectory only the current state is alive, so memory
does not grow with the number of steps. **Host synchronisation.** Nothing in the step loop reads a
device value: times, statistics, saved states and the non-finite tracking stay on the device until
the end; an error controller's run synchronises once per step, for its decision (its
``HostCopy``). A progress bar or a callback under error control reads the time or the acceptance:
one more synchronisation per step, only when asked for.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from flowrestore.controllers import ControllerRun, Schedule, StepController
from flowrestore.flows.base import Flow
from flowrestore.integrate.finish import Failures, finish
from flowrestore.integrate.solution import Solution
from flowrestore.integrate.state import merge_rows, merge_x, select_rows
from flowrestore.solvers.base import Context, Solver

__all__ = ["Counts", "run"]

_LOW_PRECISION = (torch.bfloat16, torch.float16)


class Counts:
    """Per-sample evaluations, accepted and rejected steps: Python integers while every row takes
    every step (a fixed grid), device tensors once rows differ; read on the host at the end."""

    def __init__(self, batch: int, device: torch.device):
        self.batch, self.device = batch, device
        self.nfe = self.steps = 0
        self._per_row: tuple[Tensor, Tensor, Tensor] | None = None

    def add(self, rows: Tensor | None, accept: Tensor | None, nfe: int) -> None:
        """Count one step of ``rows`` (``None``: all) costing ``nfe`` evaluations per row."""
        if rows is None and accept is None:
            self.nfe += nfe
            self.steps += 1
            return
        if self._per_row is None:
            self._per_row = tuple(
                torch.zeros(self.batch, dtype=torch.long, device=self.device) for _ in range(3)
            )
        n, s, r = self._per_row
        if rows is None:
            n += nfe
            acc = accept.long()
            s += acc
            r += 1 - acc
            return
        acc = torch.ones_like(rows) if accept is None else accept.long()
        n.index_add_(0, rows, torch.full_like(rows, nfe))
        s.index_add_(0, rows, acc)
        r.index_add_(0, rows, 1 - acc)

    def host(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(nfe, steps, rejected)`` as ``[B]`` int64 CPU tensors."""
        base = [torch.full((self.batch,), v, dtype=torch.long) for v in (self.nfe, self.steps, 0)]
        if self._per_row is None:
            return tuple(base)
        return tuple(b + p.cpu() for b, p in zip(base, self._per_row, strict=True))


class _Evaluator:
    """The flow's drift for the controller's own evaluations; remembers the first (the drift at
    the start, the FSAL solvers' first stage) and counts them."""

    def __init__(self, flow: Flow):
        self.flow, self.calls, self.first = flow, 0, None

    def __call__(self, t: Tensor, x: Tensor) -> Tensor:
        out = self.flow.drift(t, x)
        if self.calls == 0:
            self.first = out
        self.calls += 1
        return out


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
) -> Solution:
    """Integrate ``flow`` with ``solver`` as ``schedule`` says (see the module docstring)."""
    B, dev, dtype = x_start.shape[0], x_start.device, x_start.dtype
    x = flow.to_state(x_start, schedule.t0)
    t0 = torch.full((), schedule.t0, dtype=dtype, device=dev)
    x, state = solver.init(flow, t0, x, ctx)
    evaluate = _Evaluator(flow)
    ctl = controller.start(schedule, x, solver=solver, evaluate=evaluate)
    counts = Counts(B, dev)
    counts.nfe += evaluate.calls
    if evaluate.first is not None:
        state = solver.start_derivative(state, evaluate.first)
    traj = None
    if schedule.save_times is not None:
        extra = 0 if ctl.dump_slot is None else 1
        # a slot a sample never reaches (it failed before) stays NaN
        traj = torch.full((schedule.n_slots + extra, *x.shape), torch.nan, dtype=dtype, device=dev)
        if schedule.start_slot is not None:
            traj[schedule.start_slot] = x
    sums = [] if check_finite and not ctl.catches_nonfinite else None
    bar = _progress_bar(progress, ctl, schedule.lands, type(solver).__name__)
    x, state, done = _steps(flow, solver, ctl, x, state, ctx, counts, sums, traj, callback, bar)
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
    )


def _steps(flow, solver, ctl: ControllerRun, x, state, ctx, counts, sums, traj, callback, bar):
    """The step loop (module docstring): no host read of a device value of its own."""
    B = x.shape[0]
    owned = False  # whether x is the loop's own copy (rows are then merged into it in place)
    restricted: tuple[Tensor | None, Flow] = (None, flow)
    k = accepted = 0
    shown = 0.0
    while (prop := ctl.next()) is not None:
        rows = prop.rows
        ctx.index, ctx.step_index = rows, k
        if rows is None:
            f, xa, sa = flow, x, state
        else:
            if restricted[0] is not rows:
                restricted = (rows, flow.restrict(rows))
            f, xa, sa = restricted[1], x[rows], select_rows(state, rows)
        res = solver.step(f, prop.t, xa, prop.h, sa, ctx)
        out = ctl.report(prop, xa, res.x, res.error)
        counts.add(rows, out.accept, res.nfe)
        if out.accept is None and rows is None:  # every row stepped and accepted: no merge
            x, state, owned = res.x, res.state, False
        else:
            if rows is not None and (not owned or x.requires_grad):
                x, owned = x.clone(), True  # autograd may need the old rows: write a copy
            x = merge_x(x, res.x, out.accept, rows)
            state = merge_rows(state, res.state, out.accept, rows)
        if sums is not None:
            acc = torch.float32 if x.dtype in _LOW_PRECISION else None
            sums.append(x.detach().reshape(B, -1).sum(1, dtype=acc))
        if traj is not None and out.save is not None:
            _save(traj, out.save, rows, x)
        k += 1
        if callback is not None and (out.accept is None or bool(out.accept.any())):
            accepted += 1
            callback(accepted, out.t, x)
        if bar is not None:
            value, _ = ctl.progress()
            bar.update(value - shown)
            shown = value
    return x, state, accepted if callback is not None else k


def _save(traj: Tensor, save, rows: Tensor | None, x: Tensor) -> None:
    """Write the state into its slot(s): one slot for every row, or a slot per stepped row."""
    if isinstance(save, int):
        traj[save] = x
        return
    index = torch.arange(x.shape[0], device=x.device) if rows is None else rows
    traj.index_put_((save, index), x if rows is None else x[rows])


def _progress_bar(progress: bool, ctl: ControllerRun, lands: bool, desc: str):
    if not progress:
        return None
    from tqdm.auto import tqdm

    _, total = ctl.progress()
    return tqdm(total=total + (1 if lands else 0), desc=desc, leave=False)
