"""``fr.solve``: check a request, decide everything before the first evaluation, run the one loop.

Flows say what to integrate, solvers how to step, controllers how big a step; this module checks
the call, asks the controller for its :class:`~flowrestore.controllers.Schedule` (span, grid or
targets, save slots; the endpoint rule says whether the end is singular) and hands it to
:func:`flowrestore.integrate.loop.run`. Every wrong combination — a solver that cannot step the
flow, a controller the solver cannot serve, a tolerance the dtype cannot resolve, times outside
the flow's range, a non-finite start — is refused here, before anything is evaluated.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from flowrestore.controllers import FixedGrid, Schedule, StepController, TimeRequest
from flowrestore.controllers.base import check_span
from flowrestore.errors import NONFINITE, ArgumentTypeError, ConfigError, GridError, describe
from flowrestore.flows.base import Flow
from flowrestore.grids import Spacing, check_grid
from flowrestore.integrate.compiled import check_compile, compile_options
from flowrestore.integrate.endpoint import default_spacing, singular_end
from flowrestore.integrate.finish import Failures, start_solution
from flowrestore.integrate.loop import run
from flowrestore.integrate.solution import Solution
from flowrestore.noise import GeneratorNoise, NoiseSource, PerSampleNoise
from flowrestore.solvers.base import Context, Solver

__all__ = ["PreparedSolve", "prepare", "solve"]

_OUTPUTS = ("last", "posterior_mean")
_ON_FAILURE = ("raise", "return")


def solve(
    flow: Flow,
    solver: Solver,
    x_start: Tensor,
    *,
    steps: int | None = None,
    grid: Tensor | Sequence[float] | None = None,
    spacing: Spacing | None = None,
    controller: StepController | None = None,
    t_span: tuple[float, float] | None = None,
    t_end: float | None = None,
    save_at: str | Tensor | Sequence[float] | None = None,
    output: str = "last",
    generator: torch.Generator | None = None,
    seeds: Sequence[int] | Tensor | None = None,
    noise: NoiseSource | None = None,
    progress: bool = False,
    callback: Callable[[int, Tensor, Tensor], None] | None = None,
    differentiable: bool = False,
    on_failure: str = "raise",
    check_finite: bool = True,
    compile: bool | str | dict = False,
) -> Solution:
    """Integrate ``flow`` from ``x_start`` with ``solver``.

    Args:
        flow: what to integrate (:class:`InDIFlow`, :class:`ODEFlow`, :class:`DiracSDE`, ...).
        solver: how to step (:class:`Euler`, :class:`Dopri5`, :class:`InDISampler`, ...).
        x_start: the start state ``[B, ...]`` (restoration flows: the degraded ``y`` at t = 1).
        steps, spacing: a fixed grid of ``steps`` steps over the span laid out by ``spacing``
            (default: the flow's and solver's, :mod:`flowrestore.integrate.endpoint`).
        grid: an explicit strictly monotone 1-D grid of times (its order sets the direction).
        controller: :class:`FixedGrid`, :class:`PIController`, :class:`PIDController` or your
            own :class:`~flowrestore.controllers.StepController`; default: ``steps``/``grid``,
            else the solver's own (``Dopri5(rtol=...)`` builds a ``PIController``).
        t_span, t_end: ``(t_start, t_end)`` for flows without a default span; an early end.
        save_at: ``"steps"`` (every grid point) or times to save (grid points of a fixed grid,
            any times inside the span under error control) into ``trajectory``.
        output: ``"last"`` or ``"posterior_mean"`` (the clean-image estimate at the end time).
        generator, seeds, noise: the noise of stochastic solvers: one generator for the batch,
            one ``int`` seed per sample (sample ``i``'s noise depends only on ``seeds[i]``), or
            a :class:`NoiseSource` (e.g. ``BrownianIncrements``).
        progress, callback: a tqdm bar; ``callback(step, t, x)`` after every step with an
            accepted sample (per-sample ``t`` under error control) and after the landing step.
            ``x`` is the integrated state: for a model flow that is not the model's units
            (a diffusion model's ``x̄ = x/√ᾱ``); ``flow.from_state(x, t)`` converts it. ``t``
            and ``x`` may be kept: later steps never write into them.
        differentiable: keep the autograd graph through the solve (default: ``torch.no_grad``).
        on_failure: ``"raise"`` (the error carries the partial solution as ``.solution``) or
            ``"return"`` it, with per-sample ``stats.status``; a sample refused before the first
            step (``check_finite``) keeps its start: ``x_start``, ``t_final`` the start time,
            no steps.
        check_finite: refuse a non-finite ``x_start`` or a non-finite floating per-sample field
            of the flow (its ``observation``, ``cond``) before the first step, and track
            non-finite states on a fixed grid (one host read each); ``False`` skips both.
        compile: ``True`` (or a ``torch.compile`` mode string, or a dict of its arguments) runs
            the fixed-grid steps compiled, cached per input shape, as a CUDA graph on CUDA;
            refused with what it cannot capture (:mod:`flowrestore.integrate.compiled`).

    Returns:
        :class:`Solution` with ``x``, ``ts``, ``trajectory``, ``stats``, ``t_final``, ``records``.
    """
    plan = prepare(
        flow,
        solver,
        x_start,
        steps=steps,
        grid=grid,
        spacing=spacing,
        controller=controller,
        t_span=t_span,
        t_end=t_end,
        save_at=save_at,
        output=output,
        progress=progress,
        callback=callback,
        differentiable=differentiable,
        on_failure=on_failure,
        check_finite=check_finite,
        compile=compile,
    )
    return plan(x_start, generator=generator, seeds=seeds, noise=noise)


def prepare(
    flow: Flow,
    solver: Solver,
    x_start: Tensor,
    *,
    steps: int | None = None,
    grid: Tensor | Sequence[float] | None = None,
    spacing: Spacing | None = None,
    controller: StepController | None = None,
    t_span: tuple[float, float] | None = None,
    t_end: float | None = None,
    save_at: str | Tensor | Sequence[float] | None = None,
    output: str = "last",
    progress: bool = False,
    callback: Callable[[int, Tensor, Tensor], None] | None = None,
    differentiable: bool = False,
    on_failure: str = "raise",
    check_finite: bool = True,
    compile: bool | str | dict = False,
) -> PreparedSolve:
    """Check and plan a solve once, to run it on many start states of ``x_start``'s shape.

    Takes :func:`solve`'s arguments except the noise (``generator``/``seeds``/``noise`` are
    given per call). Everything :func:`solve` refuses is refused here; the returned
    :class:`PreparedSolve` only checks that each start state has the planned shape, dtype and
    device. An optimisation loop that solves the same flow every iteration (BIRD) plans once.

    Example::

        psi = fr.integrate.prepare(flow, fr.Euler(), z, steps=10, check_finite=False)
        x = psi(z).x  # as fr.solve(flow, fr.Euler(), z, steps=10, check_finite=False).x
    """
    _check_request(flow, solver, x_start, output, on_failure)
    _check_loop_options(progress, callback, differentiable, check_finite)
    ctrl = _controller(solver, controller, steps, grid, spacing)
    ctrl.check(solver, x_start)
    options = _compile_request(compile, solver, ctrl, x_start, progress, callback, differentiable)
    request = _time_request(flow, solver, t_span, t_end, save_at)
    _check_save_order(request, ctrl)
    schedule = ctrl.schedule(request)
    solver.check_schedule(schedule)
    solver.check_start(flow, schedule.t0)
    loop = {"output": output, "progress": progress, "callback": callback, "on_failure": on_failure}
    return PreparedSolve(
        flow=flow,
        solver=solver,
        controller=ctrl,
        schedule=schedule,
        loop=loop,
        check_finite=check_finite,
        differentiable=differentiable,
        compile_options=options,
        like=(tuple(x_start.shape), x_start.dtype, x_start.device),
    )


@dataclass(frozen=True, kw_only=True, eq=False)
class PreparedSolve:
    """A checked and planned solve (:func:`prepare`); call it on a start state.

    Compared and hashed by identity (``eq=False``): a plan is one object, and ``torch.compile``
    (2.11) hashes the callables it traces."""

    flow: Flow
    solver: Solver
    controller: StepController
    schedule: Schedule
    loop: dict
    check_finite: bool
    differentiable: bool
    compile_options: dict | None
    like: tuple

    def __call__(
        self,
        x_start: Tensor,
        *,
        generator: torch.Generator | None = None,
        seeds: Sequence[int] | Tensor | None = None,
        noise: NoiseSource | None = None,
    ) -> Solution:
        """Solve from ``x_start`` (the planned shape, dtype and device) as planned."""
        if not isinstance(x_start, Tensor):
            raise ArgumentTypeError(
                f"x_start must be a tensor of the planned shape, dtype and device {self.like}, "
                f"got {describe(x_start)}"
            )
        got = (tuple(x_start.shape), x_start.dtype, x_start.device)
        if got != self.like:
            raise ConfigError(
                f"x_start must have the planned shape, dtype and device {self.like}, got {got}"
            )
        ctx = Context(noise=_noise_source(generator, seeds, noise, x_start), batch=x_start.shape[0])
        failures = Failures(x_start.shape[0])
        if self.check_finite:
            _check_start(x_start, self.flow, self.schedule.t0, failures, self.loop["on_failure"])
        with torch.set_grad_enabled(self.differentiable):
            bound = self.flow.for_solve(x_start, self.schedule.t0)
            return run(
                bound,
                self.solver,
                x_start,
                self.schedule,
                self.controller,
                ctx,
                **self.loop,
                check_finite=self.check_finite,
                failures=failures,
                compile_options=self.compile_options,
            )


def _compile_request(compile, solver, ctrl, x_start, progress, callback, differentiable):
    options = compile_options(compile, x_start.device)
    if options is not None:
        check_compile(
            solver, ctrl, progress=progress, callback=callback, differentiable=differentiable
        )
    return options


def _check_request(flow, solver, x_start, output, on_failure) -> None:
    if not isinstance(flow, Flow):
        hint = " (wrap a drift callable f(t, x) in fr.ODEFlow(f))" if callable(flow) else ""
        raise ArgumentTypeError(f"flow must be a flowrestore Flow, got {type(flow).__name__}{hint}")
    if not isinstance(solver, Solver):
        raise ArgumentTypeError(
            f"solver must be a flowrestore Solver instance such as fr.Heun(), "
            f"got {describe(solver)}"
        )
    flow.check_state(x_start)
    solver.check_flow(flow)
    if output not in _OUTPUTS:
        raise ConfigError(f"output must be one of {_OUTPUTS}, got {output!r}")
    if output == "posterior_mean" and not flow.has_denoiser:
        raise ConfigError(
            f"output='posterior_mean' needs a flow with a clean-image estimate; "
            f"{type(flow).__name__} has none"
        )
    if on_failure not in _ON_FAILURE:
        raise ConfigError(f"on_failure must be one of {_ON_FAILURE}, got {on_failure!r}")


def _check_loop_options(progress, callback, differentiable, check_finite) -> None:
    """The loop's switches are bools and ``callback`` a callable, refused before any work."""
    for name, value in (
        ("progress", progress),
        ("differentiable", differentiable),
        ("check_finite", check_finite),
    ):
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be True or False, got {describe(value)}")
    if callback is not None and not callable(callback):
        raise ArgumentTypeError(
            f"callback must be None or a callable callback(step, t, x), got {describe(callback)}"
        )


def _noise_source(generator, seeds, noise, x_start) -> NoiseSource:
    if sum(v is not None for v in (generator, seeds, noise)) > 1:
        raise ConfigError("pass at most one of generator=, seeds=, noise=")
    if noise is not None:
        if not isinstance(noise, NoiseSource):
            raise ConfigError(f"noise must be a flowrestore NoiseSource, got {describe(noise)}")
        noise.check_state(x_start)
        return noise
    if seeds is not None:
        if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__len__"):
            raise ConfigError(
                f"seeds must be a sequence of ints, one per sample ({x_start.shape[0]}), got "
                f"{describe(seeds)}; for one seed for the whole batch pass "
                "generator=torch.Generator().manual_seed(seed)"
            )
        if len(seeds) != x_start.shape[0]:
            raise ConfigError(
                f"seeds must have one entry per sample ({x_start.shape[0]}), got {len(seeds)}"
            )
        return PerSampleNoise(seeds)
    return GeneratorNoise(generator)


def _controller(solver, controller, steps, grid, spacing) -> StepController:
    name = type(solver).__name__
    if controller is not None:
        if not isinstance(controller, StepController):
            raise ConfigError(
                "controller must be a FixedGrid, PIController, PIDController or another "
                f"flowrestore StepController, got {describe(controller)}"
            )
        if steps is not None or grid is not None or spacing is not None:
            raise ConfigError(
                "controller= already sets the steps: do not also pass steps=, grid= or spacing="
            )
        options = getattr(solver, "controller_options", None)
        if options:
            raise ConfigError(
                f"{solver!r} configures its own error control, but controller="
                f"{type(controller).__name__}(...) replaces it: build {name}() without "
                f"{sorted(options)} and give the tolerances to the controller, or drop "
                "controller="
            )
        return controller
    if grid is not None:
        if steps is not None:
            raise ConfigError(
                "grid= already fixes the times: do not also pass steps=, t_span= or t_end="
            )
        if spacing is not None:
            raise ConfigError("grid= already fixes the times: do not also pass spacing=")
        _refuse_tolerances(solver, "grid=")
        return FixedGrid(times=grid)
    if steps is not None:
        _refuse_tolerances(solver, "steps=")
        return FixedGrid(steps=steps, spacing=spacing)
    if spacing is not None:
        raise ConfigError("spacing= lays out steps=: pass steps= too")
    if solver.controller is None:
        raise ConfigError(
            f"fixed-step solver {name} needs steps= or grid= (or controller=FixedGrid(...))"
        )
    return solver.controller


def _refuse_tolerances(solver, what: str) -> None:
    options = getattr(solver, "controller_options", None)
    if options:
        raise ConfigError(
            f"{solver!r} configures error control, but {what} asks for a fixed grid; build "
            f"{type(solver).__name__}() without {sorted(options)} to step on a grid, or drop "
            f"{what}"
        )


def _time_request(flow, solver, t_span, t_end, save_at) -> TimeRequest:
    """The host facts a controller plans from (Python floats only: it traces in compile)."""
    direction = None
    if flow.default_span is not None:
        direction = 1 if flow.default_span[1] > flow.default_span[0] else -1
    span = _span_pair(t_span) if t_span is not None else flow.default_span
    if t_end is not None:
        if not _real(t_end):  # a number or a 0-d real tensor, as each of t_span's ends
            raise ConfigError(f"t_end must be a number, got {describe(t_end)}")
        if isinstance(t_end, Tensor) and t_end.requires_grad:
            raise ConfigError(
                f"t_end requires grad, got {describe(t_end)}: it is read on the host and no "
                "gradient flows to it; pass t_end.detach()"
            )
        if span is None:
            raise ConfigError(
                f"{type(flow).__name__} has no default time span: pass t_span=(t_start, t_end)"
            )
        end = float(t_end)
        if t_span is not None and not (
            min(span) <= end <= max(span) and end != span[0] and end == end
        ):
            # an early end of t_span; past its end or behind its start it ran a span the
            # caller never asked for (t_span=(0, 1), t_end=-1 integrated backwards)
            raise ConfigError(
                f"t_end is an early end of t_span and must lie in ({span[0]:.6g}, "
                f"{span[1]:.6g}], got t_end={end:.6g} with t_span={describe(t_span)}"
            )
        span = (span[0], end)
    if span is not None:
        span = (float(span[0]), float(span[1]))
        name = "t_span" if t_end is None else "(t_start, t_end)"
        check_span(*span, time_range=flow.time_range, direction=direction, name=name)
    return TimeRequest(
        span=span,
        explicit_span=t_span is not None or t_end is not None,
        time_range=flow.time_range,
        direction=direction,
        lands=lambda t1: singular_end(flow, t1),
        spacing=lambda t1: default_spacing(flow, solver, t1),
        preferred_t_min=flow.preferred_t_min,
        save_at=_save_request(save_at),
        save_eps=_save_eps(save_at),
        flow_name=type(flow).__name__,
    )


def _check_save_order(request: TimeRequest, ctrl: StepController) -> None:
    """Under error control the save times inside the span are targets stepped to in turn:
    given against the span's direction they sent the steps past the end
    (``MaxStepsReachedError`` far outside the span), so they are refused here. A fixed grid
    saves in any order, and the span's ends may come in any order."""
    times, span = request.save_at, request.span
    if isinstance(ctrl, FixedGrid) or not isinstance(times, tuple) or span is None:
        return
    t0, t1 = span
    tol = request.save_tolerance(t0, t1)
    inside = [t for t in times if abs(t - t0) > tol and abs(t - t1) > tol]
    if len(inside) > 1 and (inside[1] - inside[0]) * (t1 - t0) < 0:
        raise GridError(
            f"save_at must run in the span's direction, from {t0:.6g} to {t1:.6g}, under "
            f"error control, got {inside[0]:.6g} before {inside[1]:.6g}: pass the times in "
            "that order"
        )


def _real(v) -> bool:
    """A real number: a Python or numpy real (not a bool) or a 0-d real tensor."""
    if isinstance(v, Tensor):
        return v.dim() == 0 and not (v.is_complex() or v.dtype == torch.bool)
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _span_pair(t_span) -> tuple[float, float]:
    """``t_span`` as two Python floats, or a :class:`ConfigError` unless it is a pair of real
    numbers (their values are :func:`~flowrestore.controllers.base.check_span`'s to check)."""

    ok = not isinstance(t_span, (str, bytes)) and hasattr(t_span, "__len__")
    ok = ok and (not isinstance(t_span, Tensor) or t_span.dim() == 1)
    if not (ok and len(t_span) == 2 and all(_real(v) for v in t_span)):
        raise ConfigError(
            f"t_span must be a pair (t_start, t_end) of numbers, got {describe(t_span)}"
        )
    if any(isinstance(v, Tensor) and v.requires_grad for v in (t_span, *t_span)):
        raise ConfigError(
            f"t_span requires grad, got {describe(t_span)}: the span is read on the host and no "
            "gradient flows to it; pass detached times"
        )
    return (float(t_span[0]), float(t_span[1]))


def _save_request(save_at):
    if save_at is None:
        return None
    if isinstance(save_at, str):
        if save_at in ("steps", "all"):
            return "steps"
        raise ConfigError(f"save_at must be None, 'steps' or a tensor of times, got {save_at!r}")
    try:
        raw = torch.as_tensor(save_at)  # its dtype and shape only (Python floats: float32)
        # a bool (True saved t = 1), a complex time (its imaginary part was dropped) or a
        # table of times (flattened: [B, S] read as B·S shared times, not per-sample ones)
        if raw.dtype == torch.bool or raw.is_complex() or raw.dim() > 1:
            raise TypeError
        st = torch.as_tensor(save_at, dtype=torch.float64).reshape(-1)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise GridError(
            f"save_at must be 'steps' or a 1-D sequence of real times (shared by every sample), "
            f"got {describe(save_at)}"
        ) from exc
    if not bool(torch.isfinite(st).all()):
        raise GridError(f"save_at must hold finite times, got {describe(save_at)}")
    times = check_grid(st, name="save_at").tolist() if st.numel() > 1 else st.tolist()
    return tuple(times)


def _save_eps(save_at) -> float:
    """The machine epsilon of the dtype ``save_at``'s times came in (float64 for Python floats):
    a float32 tensor's ``0.1`` is the grid's ``0.1`` to its own resolution."""
    dtype = getattr(save_at, "dtype", None)
    if dtype is not None and not isinstance(dtype, torch.dtype):  # numpy
        try:
            dtype = torch.as_tensor(save_at).dtype
        except (TypeError, ValueError, RuntimeError):
            dtype = None
    if isinstance(dtype, torch.dtype) and dtype.is_floating_point:
        return torch.finfo(dtype).eps
    return torch.finfo(torch.float64).eps


def _check_start(
    x_start: Tensor, flow: Flow, t0: float, failures: Failures, on_failure: str
) -> None:
    """A non-finite ``x_start``, or a non-finite floating per-sample field of the flow (its
    ``observation``, ``cond``: a NaN measurement would only surface as NaN states or records),
    is found before the first step — one host read for all of them."""
    B = x_start.shape[0]
    names, flags = ["x_start"], [_finite_rows(x_start, B)]
    for field in flow.per_sample_fields:
        value = getattr(flow, field, None)
        items = value.items() if isinstance(value, Mapping) else [(None, value)]
        for key, v in items:
            if isinstance(v, Tensor) and v.is_floating_point():
                names.append(field if key is None else f"{field}[{key!r}]")
                flags.append(_finite_rows(v, B).to(x_start.device))
    finite = torch.stack(flags).tolist()
    bad = {
        name: [i for i, ok in enumerate(row) if not ok]
        for name, row in zip(names, finite, strict=True)
    }
    bad = {name: rows for name, rows in bad.items() if rows}
    if not bad:
        return
    rows = sorted({i for r in bad.values() for i in r})
    which = "; ".join(
        f"{name} is non-finite (NaN/inf) for samples {r[:10]}" for name, r in bad.items()
    )
    message = (
        f"{which} at t={t0:.6g}, found before the first step; pass on_failure='return' to "
        "solve the other samples"
    )
    failures.add(NONFINITE, rows, message, at_start=True)
    if on_failure == "raise":
        failures.raise_first(start_solution(x_start, t0, failures), on_failure)


def _finite_rows(value: Tensor, batch: int) -> Tensor:
    """``[batch]`` bools: whether each sample's rows of ``value`` are finite (a 0-d value is
    shared by every sample)."""
    value = value.detach()
    if value.dim() == 0:
        return torch.isfinite(value).expand(batch)
    return torch.isfinite(value.reshape(value.shape[0], -1)).all(1)
