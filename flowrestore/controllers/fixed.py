"""The fixed step grid as a controller: every step is accepted, nothing is read from the device.

``FixedGrid(steps=N, spacing=fr.Power(2))`` lays ``N`` steps over the solve's span;
``FixedGrid(times=tensor)`` steps an explicit grid (its order sets the direction).
``fr.solve(..., steps=N, spacing=...)`` and ``grid=`` build one. On a flow singular at the end
(InDI's ``t = 0``) the stepping stops at the last interior grid point and the loop lands from there
(:mod:`flowrestore.integrate.endpoint`). Step times are device tensors prepared once; the run
never synchronises with the host, and with ``steps=N`` the plan uses only Python floats and
tensor arithmetic, so a whole solve traces in ``torch.compile(fullgraph=True)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from flowrestore.controllers.base import (
    ControllerRun,
    Outcome,
    Proposal,
    Schedule,
    StepController,
    TimeRequest,
    positive_int,
)
from flowrestore.errors import ConfigError, GridError, describe
from flowrestore.grids import Spacing, check_grid, make_grid

__all__ = ["FixedGrid", "FixedRun", "FixedSchedule"]


@dataclass(kw_only=True)
class FixedSchedule(Schedule):
    """``grid``: the stepped part (float64 CPU; it ends at ``t_stop``); ``full``: the whole grid;
    ``slots``: grid index → save slot for the points reached by a step; ``save_times``: the
    requested save times as given (``save_at="steps"``: the grid), each within the save times'
    resolution of the grid point whose state its slot holds (:class:`FixedGrid`)."""

    grid: Tensor
    full: Tensor
    slots: dict[int, int]

    def signature(self) -> tuple:
        """What a compiled solve of this schedule depends on (host values; a cache key)."""
        return (
            tuple(self.full.tolist()),
            self.lands,
            tuple(sorted(self.slots.items())),
            self.start_slot,
            self.end_slot,
            None if self.save_times is None else len(self.save_times),
        )

    def check_dtype(self, dtype) -> None:
        """A bfloat16/float16/float32 state rounds the grid's times to its dtype: refuse a grid
        whose neighbouring times then collide (a zero-length step, which the multistep solvers
        divide by: ``Power(rho=7)`` at 200 steps ending at 0.3 in float32 turned into NaN
        mid-solve) with a :class:`GridError`. Planning data on the host, checked once per
        dtype (a prepared solve run again reads nothing: BIRD's one read per iteration)."""
        low = (torch.bfloat16, torch.float16, torch.float32)
        checked = self.__dict__.setdefault("_checked_dtypes", set())
        if dtype not in low or dtype in checked or torch.compiler.is_compiling():
            return
        rounded = self.full.to(dtype).double()
        same = rounded.diff() == 0
        if bool(same.any()):
            k = int(same.int().argmax())
            raise GridError(
                f"grid times {float(self.full[k]):.9g} and {float(self.full[k + 1]):.9g} collide "
                f"in {dtype} (both round to {float(rounded[k]):.9g}): use fewer steps, another "
                "spacing or a wider dtype (float64)"
            )
        checked.add(dtype)


@dataclass(frozen=True, kw_only=True)
class FixedGrid(StepController):
    """A fixed step grid: ``steps`` intervals laid out by ``spacing``, or explicit ``times``.

    Args:
        steps: number of steps over the solve's span (an ``int``; numpy integers accepted).
        spacing: how the steps are laid (:class:`~flowrestore.Uniform`, :class:`~flowrestore.Power`,
            :class:`~flowrestore.Fitted`, ...); ``None`` lets the loop pick the flow's and solver's
            default (see :mod:`flowrestore.integrate.endpoint`).
        times: an explicit strictly monotone 1-D grid (its order sets the direction).

    Save times (``solve(..., save_at=...)``) must be points of the grid, in any order: each is
    matched to the nearest grid point within the resolution of the dtype it came in
    (:meth:`~flowrestore.controllers.TimeRequest.save_tolerance`, at least 1e-9), and two save
    times may not match the same point. The solution's ``ts`` reports the times as requested
    (``save_at="steps"``: the grid points), not the grid points matched: they differ by at most
    that resolution (a float32 ``0.3`` is reported as ``0.30000001192``, the state is the grid's
    at ``0.3``); read the grid points with ``save_at="steps"``.
    """

    steps: int | None = None
    spacing: Spacing | None = None
    times: Tensor | Sequence[float] | None = None

    capturable = True

    def __post_init__(self):
        if (self.steps is None) == (self.times is None):
            raise ConfigError(
                "FixedGrid needs exactly one of steps= or times=, got "
                f"steps={describe(self.steps)}, times={describe(self.times)}"
            )
        if self.steps is not None:
            object.__setattr__(self, "steps", positive_int("steps", self.steps))
        if self.spacing is not None and not isinstance(self.spacing, Spacing):
            raise ConfigError(
                f"spacing must be a flowrestore Spacing (Uniform, Power, Fitted), "
                f"got {describe(self.spacing)}"
            )
        if self.times is not None and self.spacing is not None:
            raise ConfigError("times= already fixes the grid: do not also pass spacing=")
        if self.times is not None:
            object.__setattr__(self, "times", check_grid(self.times))

    def grid(self, t0: float, t1: float, default: Spacing) -> Tensor:
        """The float64 CPU grid from ``t0`` to ``t1`` (``default`` spacing when none was set)."""
        if self.times is not None:
            return self.times
        return make_grid(self.steps, t0, t1, self.spacing or default)

    def schedule(self, request: TimeRequest) -> FixedSchedule:
        """The grid, its save slots and, on a singular end, the point the loop lands from."""
        if self.times is not None:
            if request.explicit_span:
                raise ConfigError(
                    "grid= already fixes the times: do not also pass steps=, t_span= or t_end="
                )
            grid = check_grid(
                self.times, time_range=request.time_range, direction=request.direction
            )
            t0, t1 = float(grid[0]), float(grid[-1])
        else:
            t0, t1 = request.need_span()
            grid = make_grid(self.steps, t0, t1, self.spacing or request.spacing(t1))
        lands = request.lands(t1)
        n = grid.numel() - 1
        tol = max(_SAVE_ATOL, request.save_tolerance(t0, t1))
        idx = _save_indices(request.save_at, grid, tol)
        slots = {k: j for j, k in enumerate(idx)}
        if request.save_at is None:
            save_times = None
        elif isinstance(request.save_at, str):
            save_times = grid
        else:
            save_times = list(request.save_at)
        return FixedSchedule(
            t0=t0,
            t1=t1,
            lands=lands,
            t_stop=grid[-2] if lands else t1,
            save_times=save_times,
            start_slot=slots.get(0),
            end_slot=slots.get(n) if lands else None,
            grid=grid[:-1] if lands else grid,
            full=grid,
            slots={k: j for k, j in slots.items() if k > 0 and not (lands and k == n)},
        )

    def start(self, schedule: FixedSchedule, x: Tensor, *, solver, evaluate) -> FixedRun:
        """Step the grid; no evaluation of its own."""
        return FixedRun(schedule, x)


#: a float64 save time this close to a grid point is that point (a float32 one: a few of its ulps,
#: :meth:`~flowrestore.controllers.TimeRequest.save_tolerance`)
_SAVE_ATOL = 1e-9


def _save_indices(save_at, grid: Tensor, tol: float) -> list[int]:
    """The grid index of every save time (within ``tol``; two save times may not share one), or
    a :class:`GridError`."""
    if save_at is None:
        return []
    n = grid.numel()
    if isinstance(save_at, str):
        return list(range(n))
    idx: list[int] = []
    for tv in save_at:
        d = (grid - tv).abs()
        k = int(d.argmin())
        if float(d[k]) > tol:
            raise GridError(
                f"save_at time {tv:.9g} is not a point of the step grid (nearest "
                f"{float(grid[k]):.9g}, {float(d[k]):.3g} away, more than the save times' "
                f"resolution {tol:.3g})"
            )
        if k in idx:
            # a grid point fills one slot: the other slot would stay NaN
            raise GridError(
                f"save_at times {save_at[idx.index(k)]:.17g} and {tv:.17g} are both the grid "
                f"point {float(grid[k]):.17g} (within the save times' resolution {tol:.3g}): "
                "each save time must be its own grid point; pass it once"
            )
        idx.append(k)
    return idx


class FixedRun(ControllerRun):
    """Every sample steps the same grid; every step is accepted; nothing is read from the device.

    The grid's times are moved to the device once and indexed in Python: a step costs no tensor
    op of the controller's.
    """

    def __init__(self, schedule: FixedSchedule, x: Tensor):
        grid = schedule.grid.to(dtype=x.dtype)
        if x.device.type == "cuda":  # a pinned, non-blocking copy: no wait for the device
            grid = grid.pin_memory().to(x.device, non_blocking=True)
        else:
            grid = grid.to(x.device)
        self.ts = list(grid.unbind())
        self.hs = list(grid.diff().unbind())
        self.n = schedule.grid.numel() - 1
        self.full = schedule.full
        self.t_stop = self.ts[-1]
        self.lands = schedule.lands
        self.i = 0
        # every question and answer is known in advance: a step costs two list lookups
        self._proposals = [Proposal(None, t, h) for t, h in zip(self.ts, self.hs, strict=False)]
        self._outcomes = [
            Outcome(None, schedule.slots.get(i), self.ts[i]) for i in range(1, self.n + 1)
        ]

    def next(self) -> Proposal | None:
        if self.i >= self.n:
            return None
        return self._proposals[self.i]

    def report(self, prop: Proposal, x: Tensor, x_new: Tensor, error) -> Outcome:
        self.i += 1
        return self._outcomes[self.i - 1]

    def time(self) -> Tensor:
        return self.ts[self.i]

    def progress(self) -> tuple[float, float]:
        return float(self.i), float(self.n)

    def steps_left(self) -> int:
        """The grid's steps after the proposed one, plus the landing step if the grid lands."""
        return self.n - self.i - 1 + int(self.lands)

    def step_label(self, k: int) -> str:
        g = self.full
        return f"step {k + 1} of {g.numel() - 1} (t={g[k].item():.6g} -> {g[k + 1].item():.6g})"
