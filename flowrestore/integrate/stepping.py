"""The step loop itself, shared by the eager and the compiled solve (``fr.solve(...,
compile=True)`` compiles exactly this function): ask the controller's run for the next step,
step the rows it names, report, merge, save, count (:mod:`flowrestore.integrate.loop` for the
order of events around it).

Nothing here reads a device value: times, statistics, saved states and the non-finite tracking
stay on the device. An error controller's run synchronises once per step, inside ``next()``; a
progress bar or a callback under error control reads the time or the acceptance — one more
synchronisation per step, only when asked for.
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowrestore.controllers import ControllerRun, Schedule
from flowrestore.flows.base import Flow
from flowrestore.integrate.endpoint import land
from flowrestore.integrate.state import merge_rows, merge_x, select_rows

__all__ = ["Counts", "Evaluator", "finite_marker", "land_all", "steps", "trajectory_buffer"]


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


class Evaluator:
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


def finite_marker(x: Tensor) -> Tensor:
    """Per sample ``[B]``: 0 where every entry of ``x`` is finite, NaN where one is NaN or ±inf
    (the loop's non-finite tracking; no host read). The row sum of ``x`` it replaces overflowed
    on a finite float32 state of large magnitude (``e^80`` over 4·10⁴ entries) and failed it as
    non-finite; a row's min and max or the sum of ``0·x``, which a NaN reaches eagerly, drop it
    once compiled (inductor)."""
    finite = torch.isfinite(x.detach().reshape(x.shape[0], -1)).all(1)
    return torch.where(finite, 0.0, torch.nan)


def trajectory_buffer(schedule: Schedule, ctl: ControllerRun, x: Tensor) -> Tensor | None:
    """The saved-states buffer (NaN: a slot a sample never reaches, because it failed before),
    with the start state in its slot. A run that saves per row gets one more, dump, slot."""
    if schedule.save_times is None:
        return None
    extra = 0 if ctl.dump_slot is None else 1
    traj = torch.full(
        (schedule.n_slots + extra, *x.shape), torch.nan, dtype=x.dtype, device=x.device
    )
    if schedule.start_slot is not None:
        traj[schedule.start_slot] = x
    return traj


def steps(flow, solver, ctl: ControllerRun, x, state, ctx, counts, sums, traj, callback, bar):
    """The step loop (module docstring). Returns the state, the solver state and the number of
    steps (with a callback: of steps where a sample was accepted)."""
    owned = False  # whether x is the loop's own copy (rows are then merged into it in place)
    restricted: tuple[Tensor | None, Flow] = (None, flow)
    k = accepted = 0
    shown = 0.0
    while (prop := ctl.next()) is not None:
        rows = prop.rows
        ctx.index, ctx.step_index, ctx.steps_left = rows, k, ctl.steps_left()
        ctx.error_control = ctx.steps_left is None
        if rows is None:
            f, xa, sa = flow, x, state
        else:
            if restricted[0] is not rows:
                restricted = (rows, flow.restrict(rows))
            f, xa, sa = restricted[1], x[rows], select_rows(state, rows)
        res = solver.step(f, prop.t, xa, prop.h, sa, ctx)
        out = ctl.report(prop, xa, res.x, res.error)
        if out.accept is None and rows is None:  # every row stepped and accepted: no merge
            counts.nfe += res.nfe
            counts.steps += 1
            x, state, owned = res.x, res.state, False
        else:
            counts.add(rows, out.accept, res.nfe)
            if rows is not None and (not owned or x.requires_grad):
                x, owned = x.clone(), True  # autograd may need the old rows: write a copy
            x = merge_x(x, res.x, out.accept, rows)
            state = merge_rows(state, res.state, out.accept, rows)
        if sums is not None:
            sums.append(finite_marker(x))
        if traj is not None and out.save is not None:
            _save(traj, out.save, rows, x)
        k += 1
        if callback is not None and (out.accept is None or bool(out.accept.any())):
            accepted += 1
            # the loop's own copy takes later rows in place: the callback keeps a snapshot
            callback(accepted, out.t, x.clone() if owned else x)
        if bar is not None:
            value, _ = ctl.progress()
            bar.update(value - shown)
            shown = value
    ctx.step_index = k  # a landing step onto a singular end follows the k steps taken
    return x, state, accepted if callback is not None else k


def _save(traj: Tensor, save, rows: Tensor | None, x: Tensor) -> None:
    """Write the state into its slot(s): one slot for every row, or a slot per stepped row."""
    if isinstance(save, int):
        traj[save] = x
        return
    index = torch.arange(x.shape[0], device=x.device) if rows is None else rows
    traj.index_put_((save, index), x if rows is None else x[rows])


def land_all(flow, solver, ctl: ControllerRun, x, state, ctx, counts) -> Tensor:
    """The landing step onto a singular end for every sample (none failed)."""
    ctx.index = None
    res = land(flow, solver, ctl.t_stop, x, state, ctx)
    counts.add(None, None, res.nfe)
    return res.x
