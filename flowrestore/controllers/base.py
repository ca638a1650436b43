"""Step-size controllers: *how big a step* (the third of flow / solver / controller / loop).

A controller never evaluates a flow's stages and never steps. It owns every step decision:

* **before the first step** — :meth:`StepController.schedule` turns the solve's span and save
  times into where steps must land exactly (a grid, or the save times and the end), the save
  slots, and where the stepping stops before a singular end (the loop's endpoint rule tells it
  whether the end is singular); :meth:`StepController.check` refuses a solver or state it cannot
  serve;
* **during the solve** — :meth:`StepController.start` returns a :class:`ControllerRun`, the
  per-solve state that answers the loop's two questions: ``next()`` ("which rows step next,
  from which time, how far?", ``None`` when finished) and ``report(...)`` ("this is what the step
  did": which rows accept, which save slot they reached, the time reached). The run keeps its own
  per-sample times, step sizes, error history, acceptance and failure status, and clips steps to
  land exactly on its targets;
* **at the end** — the run reports each sample's status and explains its failures.

This is diffrax's ``init``/``adapt_step_size`` with torchode's per-sample state merging. The loop
(:mod:`flowrestore.integrate.loop`) has no fixed-or-controlled branches: a fixed grid is a
controller that accepts every step and never fails. Adding a controller is one file: subclass
:class:`StepController` (or :class:`~flowrestore.controllers.error.ErrorController` for a new
error-based rule, as :class:`~flowrestore.PIDController` does) — README "Write your own
controller".
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch
from torch import Tensor

from flowrestore.errors import ConfigError, GridError, describe, finite_number
from flowrestore.grids import Spacing

__all__ = [
    "ControllerRun",
    "HostCopy",
    "Outcome",
    "Proposal",
    "Schedule",
    "StepController",
    "TimeRequest",
    "check_span",
    "positive_int",
    "positive_number",
    "rms_norm",
    "set_numbers",
    "set_reals",
]


def rms_norm(v: Tensor) -> Tensor:
    """Per-sample root-mean-square ``[B]`` of a batch ``[B, ...]`` (Hairer's scaled norm)."""
    return v.reshape(v.shape[0], -1).pow(2).mean(1).sqrt()


def positive_number(name: str, value, *, allow_zero: bool = False) -> float:
    """``value`` as a Python float; refuse anything but a finite real number ``> 0`` (``>= 0``
    with ``allow_zero``; numpy scalars welcome)."""
    return finite_number(name, value, allow_zero=allow_zero)


def set_reals(obj, *names: str) -> None:
    """Check the frozen dataclass ``obj``'s fields ``names`` are finite real numbers of any sign
    (a ``bool`` is not) and store them as Python floats (a filter gain may be negative)."""
    for name in names:
        value = getattr(obj, name)
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
        try:
            ok = ok and math.isfinite(value)
        except OverflowError:  # an int past float's range
            ok = False
        if not ok:
            raise ConfigError(f"{name} must be a finite real number, got {describe(value)}")
        object.__setattr__(obj, name, float(value))


def set_numbers(obj, *names: str, allow_zero: bool = False) -> None:
    """Check the frozen dataclass ``obj``'s fields ``names`` (:func:`positive_number`) and store
    them as Python floats (a numpy scalar kept its type: ``np.float32`` in a repr, a config)."""
    for name in names:
        value = positive_number(name, getattr(obj, name), allow_zero=allow_zero)
        object.__setattr__(obj, name, value)


def positive_int(name: str, value) -> int:
    """Refuse anything but an integer ``>= 1`` (``numpy`` integers welcome, ``bool`` not)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ConfigError(f"{name} must be a positive int, got {describe(value)}")
    return int(value)


class Proposal(NamedTuple):
    """The next step: the batch ``rows`` (long tensor; ``None``: all), start time(s) ``t`` and
    signed step(s) ``h`` (0-d: shared by the rows; ``[len(rows)]``: per sample)."""

    rows: Tensor | None
    t: Tensor
    h: Tensor


class Outcome(NamedTuple):
    """What a step did.

    ``accept``: per stepped row, whether it takes the new state (``None``: all rows do);
    ``save``: the trajectory slot every row reached (an ``int``), per stepped row the slot
    reached (a long tensor; rows that reached none carry the run's ``dump_slot``), or ``None``;
    ``t``: the time(s) reached (0-d, or ``[B]`` per sample).
    """

    accept: Tensor | None
    save: int | Tensor | None
    t: Tensor


@dataclass(frozen=True, kw_only=True)
class TimeRequest:
    """What a controller plans from: host values only, decided by ``solve`` before any work.

    Attributes:
        span: ``(t_start, t_end)`` from ``t_span=``/``t_end=`` or the flow's default span, or
            ``None`` when there is none (:meth:`need_span` explains what to pass).
        explicit_span: ``t_span=`` or ``t_end=`` was passed.
        time_range: the closed interval every time must lie in (``None``: unbounded).
        direction: ``-1``/``+1`` when the flow runs one way only.
        lands: the loop's endpoint rule: whether a solve ending at ``t`` ends on the flow's
            singular point (then the stepping stops before it and the loop lands).
        spacing: the default spacing of a ``steps=N`` grid ending at ``t``.
        preferred_t_min: the flow's stopping time before a singular end for a tolerance
            ``rtol`` (:meth:`~flowrestore.flows.Flow.preferred_t_min`; ``None``: no preference).
        save_at: ``None``, ``"steps"`` or the save times (validated, in order).
        flow_name: for messages.
        save_eps: the machine epsilon of the dtype the save times came in (float64's for
            Python floats): a save time matches a planned time to that resolution
            (:meth:`save_tolerance`).
    """

    span: tuple[float, float] | None
    explicit_span: bool
    time_range: tuple[float, float] | None
    direction: int | None
    lands: Callable[[float], bool]
    spacing: Callable[[float], Spacing]
    preferred_t_min: Callable[[float], float | None]
    save_at: str | tuple[float, ...] | None
    flow_name: str
    save_eps: float = 2.0**-52

    def need_span(self) -> tuple[float, float]:
        """The span, or a :class:`ConfigError` saying what to pass."""
        if self.span is None:
            raise ConfigError(
                f"{self.flow_name} has no default time span: pass grid=<1-D tensor of times> "
                "or t_span=(t_start, t_end)"
            )
        return self.span

    def save_tolerance(self, t0: float, t1: float) -> float:
        """How far a save time may lie from a planned time it means, over the span ``(t0,
        t1)``: a few units of :attr:`save_eps` relative to the span's largest time (a float32
        ``0.1`` is the grid's ``0.1``, not a time between grid points)."""
        return SAVE_ULPS * self.save_eps * max(abs(t0), abs(t1))


#: a save time within this many units of its dtype's epsilon (relative to the span) of a planned
#: time is that time (:meth:`TimeRequest.save_tolerance`)
SAVE_ULPS = 4


def check_span(
    t0: float,
    t1: float,
    *,
    time_range: tuple[float, float] | None,
    direction: int | None,
    name: str,
) -> None:
    """Validate a ``(start, end)`` pair of Python floats (no tensor: it traces in
    ``torch.compile``) against the flow's range and direction."""
    if not (math.isfinite(t0) and math.isfinite(t1)):
        raise GridError(f"{name} must be finite, got ({t0}, {t1})")
    if t0 == t1:
        raise GridError(f"{name} must be strictly monotone; got start = end = {t0:.6g}")
    if direction is not None and (1 if t1 > t0 else -1) != direction:
        want = "decreasing (from 1 toward 0)" if direction < 0 else "increasing"
        raise GridError(f"{name} runs in the wrong direction: it must be {want}, got ({t0}, {t1})")
    if time_range is not None:
        lo, hi = time_range
        if min(t0, t1) < lo or max(t0, t1) > hi:
            raise GridError(
                f"{name} must lie in [{lo}, {hi}], got values from {min(t0, t1):.6g} "
                f"to {max(t0, t1):.6g}"
            )


@dataclass(kw_only=True)
class Schedule:
    """A controller's plan of times (its subclasses add what their run needs).

    ``t0``/``t1``: the solve's span; ``lands``: it ends on the flow's singular point, so the
    stepping stops at ``t_stop`` (a float or a 0-d CPU tensor) and the loop lands from there;
    ``save_times``: the times of the trajectory's slots (``None``: no trajectory);
    ``start_slot``/``end_slot``: the slots of ``t0`` and of a landed end, saved by the loop.
    """

    t0: float
    t1: float
    lands: bool
    t_stop: float | Tensor
    save_times: list[float] | Tensor | None
    start_slot: int | None
    end_slot: int | None

    def signature(self) -> tuple:
        """What a compiled solve of this schedule depends on (only capturable controllers'
        schedules need one)."""
        raise NotImplementedError

    def check_dtype(self, dtype) -> None:
        """Refuse, before any evaluation, a plan the state's ``dtype`` cannot hold (default:
        nothing to check)."""

    @property
    def n_slots(self) -> int:
        """Number of trajectory slots."""
        return 0 if self.save_times is None else len(self.save_times)


class ControllerRun:
    """A controller's state for one solve: the loop asks :meth:`next` and tells :meth:`report`.

    ``catches_nonfinite``: the run itself rejects non-finite steps (error control), so the loop
    need not track the state's finiteness; ``dump_slot``: the slot index meaning "no slot" when
    the run saves per row (``None``: it never does); ``t_stop``: where the stepping ends.
    """

    catches_nonfinite: ClassVar[bool] = False
    dump_slot: int | None = None
    #: where the stepping ends (0-d, on the state's device): the landing step starts there
    t_stop: Tensor

    def next(self) -> Proposal | None:
        """The next step, or ``None`` when every sample is finished or failed."""
        raise NotImplementedError

    def report(self, prop: Proposal, x: Tensor, x_new: Tensor, error: Tensor | None) -> Outcome:
        """Judge the step ``prop`` (``x`` → ``x_new`` for its rows; ``error``: the solver's
        embedded error estimate, if any) and update the run's state."""
        raise NotImplementedError

    def time(self) -> Tensor:
        """The time reached: 0-d (all samples) or ``[B]``."""
        raise NotImplementedError

    def status(self) -> Tensor | None:
        """Per-sample status codes (``[B]`` int64, CPU), or ``None`` when no sample can have
        failed (known without reading the device)."""
        return None

    def failure_message(self, code: int, rows: list[int], t: list[float], steps: list[int]) -> str:
        """Why the samples ``rows`` failed with status ``code`` (their times and step counts)."""
        raise NotImplementedError

    def progress(self) -> tuple[float, float]:
        """``(done, total)`` for a progress bar (may read the device)."""
        raise NotImplementedError

    def steps_left(self) -> int | None:
        """How many steps follow the one :meth:`next` proposed, the loop's landing step onto a
        singular end included, when known on the host before the solve (``None``: unknown,
        the default: error control decides step by step)."""
        return None

    def step_label(self, k: int) -> str:
        """Describe step ``k`` (0-based) for a message, e.g. ``"step 3 of 4 (t=0.5 -> 0.25)"``."""
        return f"step {k + 1}"


class StepController:
    """Base class of step-size controllers (module docstring for the protocol).

    ``adaptive`` says whether steps are accepted or rejected from an error estimate (for users and
    ``Solver.adaptive``; the loop never reads it). ``capturable``: its run makes no host decision
    per step, so ``fr.solve(..., compile=True)`` can compile the steps (a fixed grid).
    """

    adaptive: ClassVar[bool] = False
    capturable: ClassVar[bool] = False

    def check(self, solver, x_start: Tensor) -> None:
        """Refuse, before any work, a solver or start state this controller cannot serve."""

    def schedule(self, request: TimeRequest) -> Schedule:
        """Plan the times (host values only)."""
        raise NotImplementedError

    def start(
        self,
        schedule: Schedule,
        x: Tensor,
        *,
        solver,
        evaluate: Callable[[Tensor, Tensor], Tensor],
    ) -> ControllerRun:
        """Begin a solve from the state ``x`` at ``schedule.t0``. ``evaluate(t, x)`` is the
        flow's drift (counted by the loop; the first drift evaluated at ``(t0, x)`` is offered to
        the solver as its first stage)."""
        raise NotImplementedError


class HostCopy:
    """A small device tensor's values on the host: copied without blocking right after the step
    computes it, synchronised only when the host reads it (torchode's overlapped decision flag).

    Every host read of the error-controlled loop goes through :meth:`read`, once per step.
    """

    def __init__(self, like: Tensor):
        self._buf = torch.empty(
            like.shape, dtype=like.dtype, device="cpu", pin_memory=like.device.type == "cuda"
        )
        self._event = None

    def push(self, value: Tensor) -> None:
        """Start copying ``value`` to the host (returns at once on a GPU)."""
        self._buf.copy_(value.detach(), non_blocking=True)
        if value.device.type == "cuda":
            self._event = torch.cuda.Event()
            self._event.record()

    def read(self) -> list:
        """The values last pushed (waits for the copy: the one synchronisation)."""
        if self._event is not None:
            self._event.synchronize()
            self._event = None
        return self._buf.tolist()
