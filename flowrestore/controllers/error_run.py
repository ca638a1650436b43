"""The per-solve state of an error controller: per-sample times, steps, error history, status.

Everything lives on the device. ``next()`` reads the ``done`` flags the previous ``report()``
copied to the host without blocking (:class:`~flowrestore.controllers.base.HostCopy`) — the one
synchronisation per step — and proposes a step for the rows still running, clipped to land on
their next target; ``report()`` judges it with the controller's error norm and rule
(:mod:`flowrestore.controllers.error`), advances the accepted rows, marks finished and failed rows
and says which save slot each row reached.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from flowrestore.controllers.base import ControllerRun, HostCopy, Outcome, Proposal, rms_norm
from flowrestore.errors import MAX_STEPS, NONFINITE, UNDERFLOW
from flowrestore.noise import rows_index

__all__ = ["ErrorRun"]


_UNKNOWN = object()  # the rows to step next are not known on the host yet

#: a step reaching within this factor of its target lands on it (Hairer's ``1.01``)
STRETCH = 1.01


class _Attempt(NamedTuple):
    """The step the run proposed, kept for its report."""

    rows: Tensor | None
    t: Tensor
    h_natural: Tensor
    h: Tensor
    target: Tensor
    clipped: Tensor


def _shared_norm(en: Tensor, stuck: Tensor) -> tuple[Tensor, Tensor]:
    """One error norm for a batch stepped together: the largest sample's, so a non-finite one
    rejects the step for all and they shrink together. Once that shrinking is ``stuck`` (the next
    step would underflow), a sample whose norm is not finite while others' are is ``dropped`` (it
    fails, ``non_finite``) and the others are judged by the largest finite norm: one sample's
    NaN does not fail the batch."""
    finite = torch.isfinite(en)
    some = finite.any()
    top = torch.where(finite, en, torch.zeros_like(en)).max()
    shared = torch.where(finite.all(), top, torch.full_like(top, math.nan))
    dropped = ~finite & some & stuck
    shared = torch.where(stuck & some, top, shared)
    return torch.where(dropped, en, shared.expand_as(en)), dropped


class ErrorRun(ControllerRun):
    """The per-sample state of an :class:`~flowrestore.controllers.error.ErrorController` for
    one solve (module docstring); ``schedule`` is its
    :class:`~flowrestore.controllers.error.ErrorSchedule`."""

    catches_nonfinite = True

    def __init__(self, ctrl, schedule, x: Tensor, k: float, per_sample: bool, evaluate):
        B, dev, dtype = x.shape[0], x.device, x.dtype
        self.ctrl, self.k, self.per_sample = ctrl, float(k), per_sample
        self.t0, self.t_end = schedule.t0, schedule.targets[-1]
        self.sign = 1.0 if self.t_end > self.t0 else -1.0
        self.targets = torch.tensor(schedule.targets, dtype=dtype, device=dev)
        self.t_stop = self.targets[-1]
        self.last = len(schedule.targets) - 1
        self.dump_slot = schedule.n_slots
        table = [schedule.slots.get(j, self.dump_slot) for j in range(self.last + 1)]
        self.slot_table = torch.tensor(table, dtype=torch.long, device=dev)
        self.saves = bool(schedule.slots)
        self.tiny = 4 * torch.finfo(dtype).eps
        # round-off is relative to the time, floored at the span's magnitude where it is below 1
        # (a span of 1e-6 near t = 0 is resolved to eps · 1e-6, not to eps)
        self.floor = min(1.0, max(abs(self.t0), abs(self.t_end)))
        self.B = B
        self.t = torch.full((B,), self.t0, dtype=dtype, device=dev)
        self.next_target = torch.zeros(B, dtype=torch.long, device=dev)
        self.history = tuple(torch.ones(B, dtype=dtype, device=dev) for _ in range(ctrl.history))
        self.attempts = torch.zeros(B, dtype=torch.long, device=dev)
        self.codes = torch.zeros(B, dtype=torch.long, device=dev)
        self._host = HostCopy(self.codes)
        self._rows: tuple[tuple[int, ...], Tensor | None] = ((), None)
        self._attempt: _Attempt | None = None
        self.h = self._first_step(x, evaluate)
        # the first step's rows are decided at the start (a sample may fail there), so the loop
        # reads the device once per step, after it
        self._known = self._active()

    def _first_step(self, x: Tensor, evaluate) -> Tensor:
        t0 = self.t[0]
        f0 = evaluate(t0, x)  # also the FSAL solvers' first stage: part of a differentiable graph
        with torch.no_grad():  # step-size control is not differentiated (diffrax: stop_gradient)

            def probe(h0: Tensor) -> Tensor:
                hs = self.sign * h0
                return evaluate(t0 + hs, x + hs.reshape(-1, *([1] * (x.dim() - 1))) * f0)

            span = abs(self.t_end - self.t0)
            habs = self.ctrl.initial_step(x.detach(), f0.detach(), probe, self.k, span)
            if not self.per_sample:  # the smallest finite step (a non-finite sample fails below)
                top = torch.where(torch.isfinite(habs), habs, torch.full_like(habs, math.inf))
                top = top.min()
                top = torch.where(torch.isfinite(top), top, torch.full_like(top, math.nan))
                habs = top.expand_as(habs).clone()
            # a non-finite start (state, drift or step) fails at once: stepping it would hand NaN
            # times to the flow and, with a NaN step, never underflow
            bad = ~torch.isfinite(rms_norm(x.detach()) + rms_norm(f0.detach()) + habs)
        self.codes = torch.where(bad, NONFINITE, self.codes)
        self._host.push(self.codes)
        return torch.where(bad, torch.zeros_like(habs), self.sign * habs)

    # ------------------------------------------------------------------ the loop's questions
    def _active(self) -> Tensor | None | bool:
        codes = self._host.read()  # the step's one synchronisation
        done = [c != 0 for c in codes]
        active = tuple(i for i, d in enumerate(done) if not d)
        if not active:
            return False
        if len(active) == self.B:
            return None
        if active != self._rows[0]:
            self._rows = (active, rows_index(active, self.t.device))
        return self._rows[1]

    def next(self) -> Proposal | None:
        rows = self._active() if self._known is _UNKNOWN else self._known
        self._known = _UNKNOWN
        if rows is False:
            return None
        sel = (lambda v: v) if rows is None else (lambda v: v[rows])
        ta, ha, na = sel(self.t), sel(self.h), sel(self.next_target)
        target = self.targets[na]
        # a step that would stop within 1 % of its target is stretched onto it (Hairer's DOPRI5:
        # no sliver of a step, a whole step's evaluations, left before a save time or the end),
        # never past the rule's bound (``limit_step``: PID's dt_max)
        reach = self.ctrl.limit_step(ha.abs() * STRETCH)
        clip = torch.maximum(reach, ha.abs()) >= (target - ta).abs()
        hs = torch.where(clip, target - ta, ha)
        self._attempt = _Attempt(rows, ta, ha, hs, na, clip)
        if not self.per_sample:  # one time and step for the batch (all rows share them)
            return Proposal(rows, ta[0], hs[0])
        return Proposal(rows, ta, hs)

    def report(self, prop: Proposal, x: Tensor, x_new: Tensor, error: Tensor) -> Outcome:
        a, ctrl = self._attempt, self.ctrl
        rows = a.rows
        sel = (lambda v: v) if rows is None else (lambda v: v[rows])
        with torch.no_grad():
            en = ctrl.error_norm(x.detach(), x_new.detach(), error.detach())
            dropped = None
            if not self.per_sample:
                # would a rejection (a non-finite norm shrinks the step by dfactor) underflow?
                h_try = (a.h * ctrl.dfactor).abs()
                stuck = (h_try < ctrl.min_step) | (
                    h_try <= self.tiny * a.t.abs().clamp_min(self.floor)
                )
                en, dropped = _shared_norm(en, stuck)
            finite = torch.isfinite(en)
            accept = finite & (en <= 1)
            history = tuple(sel(v) for v in self.history)
            h_new = a.h * ctrl.step_factor(en, history, accept, self.k)
            # a step clipped to a target says nothing about the natural size: keep the larger one
            h_abs = torch.where(
                accept & a.clipped, torch.maximum(h_new.abs(), a.h_natural.abs()), h_new.abs()
            )
            h_new = self.sign * ctrl.limit_step(h_abs)
        t_new = torch.where(accept, torch.where(a.clipped, self.targets[a.target], a.t + a.h), a.t)
        hit = accept & a.clipped
        na_new = a.target + hit.long()
        e_kept = en.clamp_min(1e-4)
        shifted = (e_kept, *history)[: len(history)]  # newest first; the oldest drops out
        history = tuple(
            torch.where(accept, new, old) for new, old in zip(shifted, history, strict=True)
        )
        attempts = sel(self.attempts) + 1
        finished = hit & (a.target == self.last)
        under = (h_new.abs() < ctrl.min_step) | (
            h_new.abs() <= self.tiny * t_new.abs().clamp_min(self.floor)
        )
        under = (under | ~torch.isfinite(h_new)) & ~finished
        out = ~finished & ~under & (attempts >= ctrl.max_steps)
        code = torch.where(under, torch.where(finite, UNDERFLOW, NONFINITE), MAX_STEPS * out.long())
        if dropped is not None:
            code = torch.where(dropped, NONFINITE, code)
        code = torch.where(finished, -1, code)  # -1: finished (not a failure)
        self._write(rows, t_new, h_new, na_new, history, attempts, code)
        self._host.push(self.codes)
        save = None
        if self.saves:
            save = torch.where(hit, self.slot_table[a.target], self.dump_slot)
        return Outcome(accept, save, self.t)

    def _write(self, rows, t, h, na, history, attempts, code) -> None:
        if rows is None:
            self.t, self.h, self.next_target, self.attempts = t, h, na, attempts
            self.history = history
            self.codes = code
            return
        # the times are handed out (Outcome.t, a callback's t): a new tensor, never written over
        self.t = self.t.index_put((rows,), t)
        self.h[rows], self.next_target[rows], self.attempts[rows] = h, na, attempts
        for full, part in zip(self.history, history, strict=True):
            full[rows] = part
        self.codes[rows] = code

    # ------------------------------------------------------------------ the end
    def time(self) -> Tensor:
        return self.t

    def status(self) -> Tensor:
        return self.codes.clamp_min(0).cpu()

    def failure_message(self, code, rows, t, steps) -> str:
        at = f"at t={[round(v, 6) for v in t[:10]]}"
        if code == MAX_STEPS:
            return (
                f"samples {rows[:10]} used max_steps={self.ctrl.max_steps} before reaching the "
                f"end (stopped {at}); raise max_steps, loosen rtol/atol, or pass "
                "on_failure='return'"
            )
        what = (
            "became non-finite (the state or the drift is NaN/inf)"
            if code == NONFINITE
            else f"step size fell below min_step={self.ctrl.min_step} / round-off"
        )
        return (
            f"samples {rows[:10]} {what} in step {steps[:10]} {at}; pass on_failure='return' "
            "for the partial solution"
        )

    def progress(self) -> tuple[float, float]:
        if self.sign < 0:
            frac = float((self.t0 - self.t.max()) / (self.t0 - self.t_end))
        else:
            frac = float((self.t.min() - self.t0) / (self.t_end - self.t0))
        return min(max(frac, 0.0), 1.0), 1.0
