"""How the one loop walks through time: a fixed grid, or error-controlled steps per sample.

The loop (:mod:`flowrestore.integrate.loop`) asks a driver for the next step (``propose``: which
rows, from which time, how far) and tells it the outcome (``judge``: accepted rows, new times,
which save times were reached, failures). Two drivers:

* :class:`FixedDriver` — every sample steps the same grid; every step is accepted; nothing is
  synchronised with the host per step (times stay on the device).
* :class:`ControlledDriver` — a :class:`~flowrestore.PIController` per sample (or for the batch):
  only unfinished samples are stepped, each step is clipped to land exactly on the next save time,
  accepted or rejected from the solver's error estimate; one host synchronisation per step.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from flowrestore.controllers import PIController
from flowrestore.flows.base import bcast
from flowrestore.integrate.solution import MAX_STEPS, NONFINITE, UNDERFLOW, Stats

__all__ = ["ControlledDriver", "FixedDriver", "Outcome", "Proposal"]


class Proposal(NamedTuple):
    """A step to take: the batch rows (``None``: all), their start time and signed step."""

    rows: Tensor | None
    t: Tensor
    h: Tensor


class Outcome(NamedTuple):
    """What a step did: rows accepted (``None``: all), save slots reached, the time(s) reached."""

    accept: Tensor | None
    hits: tuple[tuple[int, Tensor | None], ...]
    t: Tensor | None
    any_accepted: bool


class FixedDriver:
    """Steps every sample along ``grid`` (float64 CPU; the loop's part of the grid)."""

    def __init__(self, grid: Tensor, slots: dict[int, int], x: Tensor):
        self.grid = grid.to(device=x.device, dtype=x.dtype)
        self.n = grid.numel() - 1
        # 0-d device tensors indexed once here: a Python list lookup per step instead of a tensor
        # indexing op (a few µs at batch 1)
        self.ts = list(self.grid.unbind())
        self.hs = list(self.grid.diff().unbind())
        self.slots = slots  # grid index -> save slot
        self.i = 0

    @property
    def progress_total(self) -> int:
        return self.n

    def propose(self) -> Proposal | None:
        if self.i >= self.n:
            return None
        return Proposal(None, self.ts[self.i], self.hs[self.i])

    def judge(self, prop: Proposal, x: Tensor, x_new: Tensor, error, stats_nfe: int) -> Outcome:
        self.i += 1
        slot = self.slots.get(self.i)
        return Outcome(None, () if slot is None else ((slot, None),), self.ts[self.i], True)

    def progress_value(self) -> float:
        return float(self.i)

    @property
    def t_reached(self) -> Tensor:
        return self.ts[self.i]


class ControlledDriver:
    """Error-controlled steps from ``t0`` through ``targets`` (save times, then the end).

    ``slots[j]`` is the save slot of ``targets[j]`` (or absent). ``k`` is the exponent of the local
    error estimate, ``min(order, error_order) + 1``.
    """

    def __init__(
        self,
        controller: PIController,
        t0: float,
        targets: list[float],
        slots: dict[int, int],
        x: Tensor,
        k: float,
        per_sample: bool,
        stats: Stats,
    ):
        B, dev, dtype = x.shape[0], x.device, x.dtype
        self.ctrl, self.k, self.per_sample, self.stats = controller, k, per_sample, stats
        self.t0, self.t_end = t0, targets[-1]
        self.sign = 1.0 if self.t_end > t0 else -1.0
        self.targets = torch.tensor(targets, dtype=dtype, device=dev)
        self.n_targets = len(targets)
        self.slots = slots
        self.t = torch.full((B,), t0, dtype=dtype, device=dev)
        self.h = torch.zeros(B, dtype=dtype, device=dev)
        self.next = torch.zeros(B, dtype=torch.long, device=dev)
        self.en_prev = torch.ones(B, dtype=dtype, device=dev)
        self.done = torch.zeros(B, dtype=torch.bool)
        self.tiny = 4 * torch.finfo(dtype).eps
        self._clip = None

    @property
    def progress_total(self) -> float:
        return 1.0

    def start(self, x: Tensor, f0: Tensor, probe) -> int:
        """Pick the first step per sample from the start's drift ``f0``; returns the extra NFE."""
        with torch.no_grad():  # step-size control is not differentiated (diffrax: stop_gradient)
            habs, extra = self.ctrl.initial_step(x, f0, probe, self.k, abs(self.t_end - self.t0))
        if not self.per_sample:
            habs = habs.min().expand_as(habs).clone()
        self.h = self.sign * habs
        # a non-finite start (state, drift or step) fails at once: stepping it would hand NaN
        # times to the flow and, with a NaN step, never underflow
        bad = (~torch.isfinite(_rms(x) + _rms(f0) + habs)).cpu()
        if bool(bad.any()):
            self.stats.status[bad] = NONFINITE
            self.done |= bad
            self.h = torch.where(bad.to(self.h.device), torch.zeros_like(self.h), self.h)
        return extra

    def propose(self) -> Proposal | None:
        if bool(self.done.all()):
            return None
        act_cpu = (~self.done).nonzero().squeeze(1)
        full = act_cpu.numel() == self.done.numel()
        rows = None if full else act_cpu.to(self.t.device)
        sel = (lambda v: v) if full else (lambda v: v[rows])
        ta, ha, na = sel(self.t), sel(self.h), sel(self.next)
        dist = self.targets[na] - ta
        clip = ha.abs() >= dist.abs()
        hs = torch.where(clip, dist, ha)
        self._step = (act_cpu, rows, ta, ha, na, clip, hs)
        if not self.per_sample:  # one time and step for the batch (all rows share them)
            return Proposal(rows, ta[0], hs[0])
        return Proposal(rows, ta, hs)

    def judge(self, prop: Proposal, x: Tensor, x_new: Tensor, error: Tensor, nfe: int) -> Outcome:
        act_cpu, rows, ta, ha, na, clip, hs = self._step
        ctrl, k = self.ctrl, self.k
        self.stats.nfe[act_cpu] += nfe
        with torch.no_grad():
            en = ctrl.error_norm(x.detach(), x_new.detach(), error.detach())
            if not self.per_sample:
                en = en.max().expand_as(en)
            finite = torch.isfinite(en)
            accept = finite & (en <= 1)
            en_prev = self.en_prev if rows is None else self.en_prev[rows]
            h_new = hs * ctrl.step_factor(en, en_prev, accept, k)
            # a step clipped to a target says nothing about the natural size: keep the larger one
            h_new = torch.where(
                accept & clip, self.sign * torch.maximum(h_new.abs(), ha.abs()), h_new
            )
        target = self.targets[na]
        t_new = torch.where(accept, torch.where(clip, target, ta + hs), ta)
        hit = accept & clip
        na_new = na + hit.long()
        ep_new = torch.where(accept, en.clamp_min(1e-4), en_prev)
        if rows is None:
            self.t, self.h, self.next, self.en_prev = t_new, h_new, na_new, ep_new
        else:
            self.t[rows], self.h[rows], self.next[rows], self.en_prev[rows] = (
                t_new,
                h_new,
                na_new,
                ep_new,
            )
        acc_cpu, hit_cpu, na_cpu = accept.cpu(), hit.cpu(), na.cpu()
        self.stats.steps[act_cpu] += acc_cpu.long()
        self.stats.rejected[act_cpu] += (~acc_cpu).long()
        finished = hit_cpu & (na_cpu == self.n_targets - 1)
        self.done[act_cpu[finished]] = True
        hits = []
        for j in na_cpu[hit_cpu].unique().tolist():
            slot = self.slots.get(j)
            if slot is not None:
                sel_rows = act_cpu[hit_cpu & (na_cpu == j)]
                hits.append((slot, sel_rows.to(self.t.device)))
        # failures of samples still running
        running = ~finished
        h_abs = h_new.abs()
        under = (h_abs < ctrl.min_step) | (h_abs <= self.tiny * t_new.abs().clamp_min(1))
        under = (under | ~torch.isfinite(h_new)).cpu() & running
        nonfin = under & ~finite.cpu()
        self.stats.status[act_cpu[under & ~nonfin]] = UNDERFLOW
        self.stats.status[act_cpu[nonfin]] = NONFINITE
        used = self.stats.steps[act_cpu] + self.stats.rejected[act_cpu]
        out = running & ~under & (used >= ctrl.max_steps)
        self.stats.status[act_cpu[out]] = MAX_STEPS
        self.done[act_cpu[under | out]] = True
        # per-sample accept mask within the stepped rows (all accepted: None, no merge needed)
        all_acc = bool(acc_cpu.all())
        return Outcome(None if all_acc else accept, tuple(hits), self.t, bool(acc_cpu.any()))

    def progress_value(self) -> float:
        if self.sign < 0:
            frac = float((self.t0 - self.t.max()) / (self.t0 - self.t_end))
        else:
            frac = float((self.t.min() - self.t0) / (self.t_end - self.t0))
        return min(max(frac, 0.0), 1.0)

    @property
    def t_reached(self) -> Tensor:
        return self.t


def _rms(v: Tensor) -> Tensor:
    return v.reshape(v.shape[0], -1).pow(2).mean(1).sqrt()


def merge_state_x(x: Tensor, x_new: Tensor, accept: Tensor | None, rows: Tensor | None) -> Tensor:
    """``x`` with the stepped ``rows`` set to ``x_new`` where accepted (in place for a subset:
    the controlled loop owns ``x``, a copy of the start state)."""
    if accept is None and rows is None:
        return x_new
    part = (
        x_new
        if accept is None
        else torch.where(bcast(accept, x_new), x_new, x if rows is None else x[rows])
    )
    if rows is None:
        return part
    if x.requires_grad:  # autograd may need the old rows (differentiable=True): write a copy
        x = x.clone()
    x[rows] = part
    return x
