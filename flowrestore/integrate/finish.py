"""The end of a solve: failures, the landing step, ``output``, the solution.

After the step loop (:mod:`flowrestore.integrate.loop`): the controller's per-sample status and
the loop's own non-finite tracking become the solution's ``stats.status`` (one read of the device,
here, not per step); the samples that did not fail take the landing step onto a singular end
(:mod:`flowrestore.integrate.endpoint`; one whose landing is not finite stopped at ``t_stop``,
with its state there); ``output="posterior_mean"`` evaluates the clean estimate;
saved states are converted to the user's units; and with ``on_failure="raise"`` the first failure
kind raises its error with the partial :class:`~flowrestore.Solution` attached.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from flowrestore.errors import FAILURE_ERRORS, NONFINITE
from flowrestore.flows.base import select_rows
from flowrestore.integrate.endpoint import land
from flowrestore.integrate.solution import Solution, Stats
from flowrestore.integrate.stepping import finite_marker, land_all
from flowrestore.noise import rows_index

__all__ = ["Failures", "finish"]


class Failures:
    """Per-sample failure status (host) and one message per failure kind (the first found)."""

    def __init__(self, batch: int):
        self.batch = batch
        self.status: Tensor | None = None
        self.messages: dict[int, str] = {}
        #: the rows refused before the first step (a non-finite start or per-sample field): their
        #: partial result is their start, whatever the batched steps did with them
        self.at_start: list[int] = []

    def add(self, code: int, rows: list[int], message: str, *, at_start: bool = False) -> None:
        """Mark ``rows`` (those not failed yet) with ``code``; ``at_start``: found before the
        first step."""
        if self.status is None:
            self.status = torch.zeros(self.batch, dtype=torch.long)
        fresh = [r for r in rows if int(self.status[r]) == 0]
        if fresh:
            self.status[fresh] = code
            self.messages.setdefault(code, message)
            if at_start:
                self.at_start = sorted({*self.at_start, *fresh})

    def ok_rows(self) -> list[int] | None:
        """The rows that did not fail (``None``: all of them, known without a device read)."""
        if self.status is None or not bool((self.status != 0).any()):
            return None
        return (self.status == 0).nonzero().squeeze(1).tolist()

    def raise_first(self, sol: Solution, on_failure: str) -> None:
        """Raise the first failure kind's error (``on_failure="raise"``) with ``sol`` attached."""
        if on_failure == "return" or not self.messages:
            return
        for code, exc in FAILURE_ERRORS.items():
            if code in self.messages:
                raise exc(self.messages[code], solution=sol)


def finish(
    flow,
    solver,
    ctl,
    schedule,
    x: Tensor,
    state,
    ctx,
    counts,
    failures: Failures,
    *,
    sums,
    traj,
    callback,
    steps_done: int,
    bar,
    output: str,
    on_failure: str,
    check_finite: bool,
    landed: bool = False,
    x_stop: Tensor | None = None,
    x_start: Tensor | None = None,
) -> Solution:
    """Everything after the step loop (module docstring); ``landed``: the compiled steps already
    took the landing step, for every sample, from the state ``x_stop``; ``x_start``: the
    caller's start state (the partial result of a sample refused before the first step)."""
    B = x.shape[0]
    t_final = ctl.time()
    _controller_failures(ctl, failures, t_final, counts)
    stopped = None
    if sums is not None and len(sums):
        stopped = _tracked_failures(
            sums if isinstance(sums, Tensor) else torch.stack(sums), ctl, failures, solver
        )
    if landed:
        t_final = _landed_times(t_final, failures)
    elif schedule.lands:
        x_stop = x
        x, t_final, took = _land(flow, solver, x, state, ctl, t_final, counts, ctx, failures)
        if took:  # no landing step when every sample had failed
            if callback is not None:
                callback(steps_done + 1, t_final, x)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    if stopped is not None:
        t_final = _stopped_times(t_final, stopped, schedule, B)
    if output == "posterior_mean" and not schedule.lands:
        x = flow.denoise(t_final, x)
        counts.nfe += 1
    if (schedule.lands or output == "posterior_mean" or ctl.catches_nonfinite) and (
        check_finite or ctl.catches_nonfinite
    ):

        def what() -> str:  # built only for a failure (t_stop may live on the device)
            place = (
                f"the landing step onto t=0 from t={float(schedule.t_stop):.6g}"
                if schedule.lands
                else f"the posterior-mean estimate at t={schedule.t1:.6g}"
                if output == "posterior_mean"
                else f"the state at t={schedule.t1:.6g}"
            )
            return f"{place} ({solver!r})"

        crashed = _check_final(x, failures, what)
        if schedule.lands and crashed:
            x, t_final = _stopped_landing(x, x_stop, t_final, schedule.t_stop, crashed)
    else:
        crashed = []
    x_state = x
    if output != "posterior_mean":  # a clean estimate is already in the data's units
        x = flow.from_state(x, schedule.t1)
    if output != "posterior_mean" or schedule.lands:  # a failed sample stopped before the end
        x = _failed_from_state(flow, x_state, x, t_final, failures)
    if failures.at_start and x_start is not None:
        x, t_final = _unstarted(x, t_final, x_start, schedule.t0, failures.at_start)
    ts, traj = _trajectory(flow, schedule, traj, x, failures)
    nfe, steps, rejected = counts.host()
    if stopped is not None and getattr(schedule, "full", None) is not None:
        for row, k in stopped.items():  # its steps up to the last finite state, as t_final says
            steps[row] = min(int(steps[row]), k)
    if schedule.lands:  # a landing that was not finite is not a step reached, as t_final says
        for row in crashed:
            steps[row] = max(int(steps[row]) - 1, 0)
    if failures.at_start:  # never started (t_final is its start)
        steps[failures.at_start] = 0
    status = failures.status if failures.status is not None else torch.zeros(B, dtype=torch.long)
    sol = Solution(
        x=x,
        ts=ts,
        trajectory=traj,
        stats=Stats(nfe=nfe, steps=steps, rejected=rejected, status=status),
        t_final=(t_final.expand(B) if t_final.dim() == 0 else t_final).clone(),
        records={name: torch.stack(v) for name, v in ctx.records.items()},
    )
    failures.raise_first(sol, on_failure)
    return sol


def _controller_failures(ctl, failures: Failures, t_final: Tensor, counts) -> None:
    status = ctl.status()
    if status is None or not bool((status != 0).any()):
        return
    _, steps, _ = counts.host()
    t_host = t_final.detach().cpu().expand(status.shape[0])
    for code in FAILURE_ERRORS:
        rows = (status == code).nonzero().squeeze(1).tolist()
        if rows:
            t = t_host[rows].tolist()
            msg = ctl.failure_message(code, rows, t, (steps[rows] + 1).tolist())
            failures.add(code, rows, msg)


def _tracked_failures(sums: Tensor, ctl, failures: Failures, solver) -> dict[int, int] | None:
    """Non-finite states found by the loop's per-step markers (:func:`finite_marker`): one host
    read, after the last step. A NaN or ±inf state makes its marker NaN, so the first non-finite
    marker of a sample is its first bad step.
    """
    bad = ~torch.isfinite(sums)
    if not bool(bad.any()):
        return None
    rows = bad.any(0).nonzero().squeeze(1).tolist()
    k = int(bad.any(1).nonzero()[0])
    failures.add(
        NONFINITE,
        rows,
        f"the state became non-finite in {ctl.step_label(k)} for samples {rows[:10]} "
        f"({solver!r}): the predictor/drift returned NaN/inf or the step overflowed",
    )
    first = bad.long().argmax(0)  # each sample's first non-finite step (0 where none)
    return {r: int(first[r]) for r in rows}


def _stopped_times(t_final: Tensor, stopped: dict[int, int], schedule, batch: int) -> Tensor:
    """A sample found non-finite on a fixed grid reached the start of its first bad step (its
    last finite state), not the grid's end."""
    full = getattr(schedule, "full", None)
    if full is None:
        return t_final
    t_final = t_final.expand(batch).clone() if t_final.dim() == 0 else t_final.clone()
    for row, k in stopped.items():
        t_final[row] = float(full[k])
    return t_final


def _land(flow, solver, x, state, ctl, t_final, counts, ctx, failures: Failures):
    """The endpoint rule's landing step for the samples that did not fail; also whether it was
    taken (not when every sample had failed)."""
    ok = failures.ok_rows()
    if ok is None:
        return land_all(flow, solver, ctl, x, state, ctx, counts), torch.zeros_like(t_final), True
    if not ok:
        return x, t_final, False
    rows = rows_index(ok, x.device)
    t_final = t_final.expand(x.shape[0]) if t_final.dim() == 0 else t_final
    ctx.index = rows
    res = land(flow.restrict(rows), solver, ctl.t_stop, x[rows], select_rows(state, rows), ctx)
    x = x.clone()
    x[rows] = res.x
    t_final = t_final.clone()
    t_final[rows] = 0.0
    counts.add(rows, None, res.nfe)
    return x, t_final, True


def _landed_times(t_final: Tensor, failures: Failures) -> Tensor:
    """After a landing of every sample: 0, except where a sample had failed before it."""
    ok = failures.ok_rows()
    zero = torch.zeros_like(t_final)
    if ok is None:
        return zero
    t_final = t_final.expand(failures.batch).clone()
    t_final[ok] = 0.0
    return t_final


def _unstarted(x: Tensor, t_final: Tensor, x_start: Tensor, t0: float, rows: list[int]):
    """The samples refused before the first step (``on_failure="return"``) stopped at their
    start: their result is their start state at ``t0``, as the partial solution of a refused
    solve says (:func:`start_solution`). The batched steps still moved them (a fixed grid steps
    every row), and where the non-finite value was not one the step used (an observation the
    solver does not read) they reached the end with a finite state and ``t_final`` while
    ``status`` said they never started."""
    index = rows_index(rows, x.device)
    x = x.clone()
    x[index] = x_start[index].to(dtype=x.dtype)
    t_final = t_final.expand(x.shape[0]).clone() if t_final.dim() == 0 else t_final.clone()
    t_final[index.to(t_final.device)] = t0
    return x, t_final


def _check_final(x: Tensor, failures: Failures, what: Callable[[], str]) -> list[int]:
    """Flag the samples whose final ``x`` is not finite (landing, output, error control);
    returns the rows flagged here."""
    finite = torch.isfinite(finite_marker(x)).cpu()
    if bool(finite.all()):
        return []
    done = failures.status if failures.status is not None else torch.zeros_like(finite).long()
    rows = ((~finite) & (done == 0)).nonzero().squeeze(1).tolist()
    if rows:
        failures.add(
            NONFINITE,
            rows,
            f"{what()} is non-finite for samples {rows[:10]}: the predictor/drift returned NaN/inf",
        )
    return rows


def _stopped_landing(x: Tensor, x_stop: Tensor, t_final: Tensor, t_stop, rows: list[int]):
    """The samples whose landing step onto ``t = 0`` was not finite stopped at ``t_stop`` with
    their state there (as a sample that fails during the steps keeps its last finite state and
    time): their ``t_final`` said 0 (the end reached) and ``x`` was NaN."""
    index = rows_index(rows, x.device)
    x = x.clone()
    x[index] = x_stop[index]
    t_final = t_final.expand(x.shape[0]).clone() if t_final.dim() == 0 else t_final.clone()
    t_final[index.to(t_final.device)] = float(t_stop)
    return x, t_final


def _failed_from_state(flow, x_state: Tensor, x: Tensor, t_final: Tensor, failures: Failures):
    """``x`` with each failed sample's state in the user's units at the time it stopped
    (``t_final``), not at the end it never reached (a diffusion model's state is scaled by
    ``√(1 + σ²)``: converted at the end's ``σ``, its partial result was off by that factor)."""
    if failures.status is None:
        return x
    bad = (failures.status != 0).nonzero().squeeze(1).tolist()
    if not bad:
        return x
    t_host = t_final.detach().cpu().expand(failures.batch).tolist()
    at: dict[float, list[int]] = {}  # the failed rows by the time they stopped at
    for r in bad:
        at.setdefault(t_host[r], []).append(r)
    x = x.clone()
    for t, group in at.items():
        rows = rows_index(group, x.device)
        x[rows] = flow.restrict(rows).from_state(x_state[rows], t)
    return x


def _trajectory(flow, schedule, traj: Tensor | None, x: Tensor, failures: Failures):
    """The saved times and states in the user's units (states were saved as integrated); a
    landed end's slot holds the samples that reached it (NaN for a failed one, as every slot a
    sample never reached)."""
    dtype, dev = x.dtype, x.device
    times = schedule.save_times
    if times is None:
        return torch.full((1,), schedule.t1, dtype=dtype, device=dev), None
    if isinstance(times, Tensor):
        ts = times.to(dtype=dtype, device=dev)
    else:
        ts = torch.tensor(times, dtype=dtype, device=dev)
    traj = traj[: schedule.n_slots]
    for j in range(schedule.n_slots):
        if j != schedule.end_slot:
            traj[j] = flow.from_state(traj[j], times[j])
    if failures.at_start:  # refused before the first step: only the start slot was reached
        rows = rows_index(failures.at_start, x.device)
        for j in range(schedule.n_slots):
            if j != schedule.start_slot:
                traj[j, rows] = torch.nan
    if schedule.end_slot is not None:
        ok = failures.ok_rows()
        if ok is None:
            traj[schedule.end_slot] = x
        elif ok:
            rows = rows_index(ok, x.device)
            traj[schedule.end_slot, rows] = x[rows]
    return ts, traj


def start_solution(x_start: Tensor, t0: float, failures: Failures) -> Solution:
    """The partial solution of a solve refused before its first step: a copy of the start state
    (not the caller's tensor: writing into ``solution.x`` must not change ``x_start``)."""
    B, dtype, dev = x_start.shape[0], x_start.dtype, x_start.device
    zeros = torch.zeros(B, dtype=torch.long)
    return Solution(
        x=x_start.clone(),
        ts=torch.full((1,), t0, dtype=dtype, device=dev),
        trajectory=None,
        stats=Stats(nfe=zeros, steps=zeros.clone(), rejected=zeros.clone(), status=failures.status),
        t_final=torch.full((B,), t0, dtype=dtype, device=dev),
    )
