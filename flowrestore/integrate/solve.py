"""``fr.solve``: check a request, decide everything before the first evaluation, run the one loop.

Flows say what to integrate, solvers how to step, controllers how big a step; this module turns a
call into a :class:`~flowrestore.integrate.loop.Plan` (span, grid or controlled targets, save
slots, the endpoint rule) and hands it to :func:`flowrestore.integrate.loop.run`. Every wrong
combination — a solver that cannot step the flow, a controller the solver cannot serve, times
outside the flow's range — is refused here, before anything is evaluated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from flowrestore.controllers import FixedGrid, PIController, StepController
from flowrestore.errors import ConfigError, GridError, IncompatibleSolverError, describe
from flowrestore.flows.base import Flow
from flowrestore.grids import Spacing, check_grid
from flowrestore.integrate.context import StepContext
from flowrestore.integrate.endpoint import default_spacing, singular_end
from flowrestore.integrate.loop import Plan, run
from flowrestore.integrate.solution import Solution
from flowrestore.noise import GeneratorNoise, NoiseSource, PerSampleNoise
from flowrestore.solvers.base import Solver

__all__ = ["solve"]

_OUTPUTS = ("last", "posterior_mean")
_ON_FAILURE = ("raise", "return")
_LOW_PRECISION = (torch.bfloat16, torch.float16)


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
) -> Solution:
    """Integrate ``flow`` from ``x_start`` with ``solver``.

    Args:
        flow: what to integrate (:class:`InDIFlow`, :class:`ODEFlow`, :class:`DiracSDE`, ...).
        solver: how to step (:class:`Euler`, :class:`Heun`, :class:`Dopri5`,
            :class:`InDISampler`, ...); it must step this kind of flow.
        x_start: the state at the start ``[B, ...]`` (for restoration flows the degraded batch
            ``y`` at ``t = 1``).
        steps: a fixed grid of ``steps`` steps over the span (short for
            ``controller=FixedGrid(steps=..., spacing=...)``), laid out by ``spacing`` (default:
            the flow's and solver's, see :mod:`flowrestore.integrate.endpoint`).
        grid: an explicit 1-D grid of step times (its order sets the direction); short for
            ``controller=FixedGrid(times=grid)``.
        spacing: :class:`Uniform`, :class:`Power` or :class:`Fitted`, with ``steps``.
        controller: a :class:`FixedGrid` or :class:`PIController`; default: ``steps``/``grid``,
            else the solver's own (``Dopri5(rtol=...)`` builds a ``PIController``).
        t_span: ``(t_start, t_end)`` for flows without a default span (e.g. ``ODEFlow``).
        t_end: early stop: end time replacing the flow's default (restoration flows: in (0, 1)).
        save_at: ``None`` (end only), ``"steps"`` (every grid point, fixed grid), or times to save
            (grid points of a fixed grid; any times inside the span under error control).
        output: ``"last"`` (the last iterate) or ``"posterior_mean"`` (the flow's clean-image
            estimate at the end time; at a singular ``t = 0`` the landed state already is one).
        generator: seeds stochastic solvers (one generator for the batch).
        seeds: one seed per sample instead: sample ``i``'s noise depends only on ``seeds[i]``.
        noise: an explicit :class:`NoiseSource` (e.g. ``BrownianIncrements``).
        progress: show a tqdm progress bar.
        callback: ``callback(step, t, x)`` after every step with an accepted sample (under error
            control ``t`` is per sample), including the landing step onto ``t = 0``.
        differentiable: keep the autograd graph through the solve (default: ``torch.no_grad``).
        on_failure: ``"raise"`` (default) or ``"return"`` the partial solution with per-sample
            ``stats.status`` when a sample hits ``max_steps``, underflows or becomes non-finite.
        check_finite: track non-finite states on a fixed grid (device-side, one sync at the end).

    Returns:
        :class:`Solution` with ``x``, ``ts``, ``trajectory``, ``stats``, ``t_final``, ``records``.
    """
    _check_request(flow, solver, x_start, output, on_failure)
    noise = _noise_source(generator, seeds, noise, x_start)
    ctrl = _controller(solver, controller, steps, grid, spacing)
    if ctrl.adaptive:
        _check_controlled(solver, ctrl, x_start)
    plan = _plan(flow, solver, ctrl, t_span, t_end, save_at)
    bound = flow.for_solve(x_start, plan.t0)
    with torch.set_grad_enabled(differentiable):
        return run(
            bound,
            solver,
            x_start,
            plan,
            ctrl,
            StepContext(noise=noise),
            output=output,
            progress=progress,
            callback=callback,
            on_failure=on_failure,
            check_finite=check_finite,
        )


def _check_request(flow, solver, x_start, output, on_failure) -> None:
    if not isinstance(flow, Flow):
        hint = " (wrap a drift callable f(t, x) in fr.ODEFlow(f))" if callable(flow) else ""
        raise TypeError(f"flow must be a flowrestore Flow, got {type(flow).__name__}{hint}")
    if not isinstance(solver, Solver):
        raise TypeError(
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


def _noise_source(generator, seeds, noise, x_start) -> NoiseSource:
    if sum(v is not None for v in (generator, seeds, noise)) > 1:
        raise ConfigError("pass at most one of generator=, seeds=, noise=")
    if noise is not None:
        if not isinstance(noise, NoiseSource):
            raise ConfigError(f"noise must be a flowrestore NoiseSource, got {describe(noise)}")
        return noise
    if seeds is not None:
        if isinstance(seeds, (list, tuple, Tensor)) and len(seeds) != x_start.shape[0]:
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
                f"controller must be a FixedGrid or PIController, got {describe(controller)}"
            )
        if steps is not None or grid is not None or spacing is not None:
            raise ConfigError(
                "controller= already sets the steps: do not also pass steps=, grid= or spacing="
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


def _check_controlled(solver, ctrl: PIController, x_start: Tensor) -> None:
    name = type(solver).__name__
    if solver.error_order is None:
        raise IncompatibleSolverError(
            f"{name} has no embedded error estimate, so a PIController cannot control it; use "
            "Bosh3, Dopri5 or Torchdiffeq('dopri5'), or a fixed grid (steps=)"
        )
    if x_start.dtype in _LOW_PRECISION:
        raise ConfigError(
            f"error-controlled {name} needs float32 or float64 states; x_start has dtype "
            f"{x_start.dtype}, whose resolution is coarser than any useful tolerance. Solve in "
            "float32 (x_start.float()) or use a fixed grid"
        )


def _span(flow, t_span, t_end) -> tuple[float, float, int | None]:
    direction = None
    if flow.default_span is not None:
        direction = 1 if flow.default_span[1] > flow.default_span[0] else -1
    span = t_span if t_span is not None else flow.default_span
    if span is None:
        raise ConfigError(
            f"{type(flow).__name__} has no default time span: pass grid=<1-D tensor of times> "
            "or t_span=(t_start, t_end)"
        )
    if t_end is not None:
        if isinstance(t_end, bool) or not isinstance(t_end, (int, float)):
            raise ConfigError(f"t_end must be a number, got {describe(t_end)}")
        span = (span[0], float(t_end))
    g = check_grid(
        torch.tensor([float(span[0]), float(span[1])], dtype=torch.float64),
        time_range=flow.time_range,
        direction=direction,
        name="t_span" if t_end is None else "(t_start, t_end)",
    )
    return float(g[0]), float(g[1]), direction


def _plan(flow, solver, ctrl, t_span, t_end, save_at) -> Plan:
    if isinstance(ctrl, FixedGrid):
        return _plan_fixed(flow, solver, ctrl, t_span, t_end, save_at)
    return _plan_controlled(flow, ctrl, t_span, t_end, save_at)


def _plan_fixed(flow, solver, ctrl: FixedGrid, t_span, t_end, save_at) -> Plan:
    if ctrl.times is not None:
        if t_span is not None or t_end is not None:
            raise ConfigError(
                "grid= already fixes the times: do not also pass steps=, t_span= or t_end="
            )
        direction = None
        if flow.default_span is not None:
            direction = 1 if flow.default_span[1] > flow.default_span[0] else -1
        grid = check_grid(ctrl.times, time_range=flow.time_range, direction=direction)
    else:
        t0, t1, _ = _span(flow, t_span, t_end)
        grid = ctrl.grid(t0, t1, default_spacing(flow, solver, t1))
    t0, t1 = float(grid[0]), float(grid[-1])
    lands = singular_end(flow, t1)
    save_idx = _save_indices(save_at, grid) if save_at is not None else []
    slots = {k: j for j, k in enumerate(save_idx)}
    n = grid.numel() - 1
    return Plan(
        t0=t0,
        t1=t1,
        t_stop=float(grid[-2]) if lands else t1,
        lands=lands,
        grid=grid[:-1] if lands else grid,
        targets=None,
        save_times=None if save_at is None else [float(grid[k]) for k in save_idx],
        slots={k: j for k, j in slots.items() if k > 0 and not (lands and k == n)},
        start_slot=slots.get(0),
        end_slot=slots.get(n) if lands else None,
    )


def _save_indices(save_at, grid: Tensor) -> list[int]:
    n = grid.numel()
    if isinstance(save_at, str):
        if save_at in ("steps", "all"):
            return list(range(n))
        raise ConfigError(f"save_at must be None, 'steps' or a tensor of times, got {save_at!r}")
    times = _save_times(save_at)
    idx = []
    for tv in times:
        d = (grid - tv).abs()
        k = int(d.argmin())
        if float(d[k]) > 1e-9:
            raise GridError(f"save_at time {tv:.6g} is not a point of the step grid")
        idx.append(k)
    return idx


def _save_times(save_at) -> list[float]:
    st = torch.as_tensor(save_at, dtype=torch.float64).reshape(-1)
    return check_grid(st, name="save_at").tolist() if st.numel() > 1 else st.tolist()


def _plan_controlled(flow, ctrl: PIController, t_span, t_end, save_at) -> Plan:
    t0, t1, _ = _span(flow, t_span, t_end)
    lands = singular_end(flow, t1)
    t_stop = t1
    if lands:
        t_stop = ctrl.resolved_t_min(flow)
        if not abs(t0) > t_stop:
            raise ConfigError(f"t_min={t_stop} must lie inside the span ({t0}, {t1})")
    if save_at is None:
        save_times = None
    elif isinstance(save_at, str):
        raise ConfigError(
            "under error control the step times are not known in advance: pass "
            "save_at=<tensor of times>"
        )
    else:
        save_times = _save_times(save_at)
    direction = 1.0 if t1 > t0 else -1.0
    interior = []
    for tv in save_times or []:
        if (tv - t0) * direction < 0 or (tv - t1) * direction > 0:
            raise GridError(f"save_at time {tv:.6g} lies outside the span ({t0}, {t1})")
        if tv in (t0, t1):
            continue
        if (tv - t_stop) * direction >= 0:
            raise GridError(
                f"save_at time {tv:.6g} lies between t_min={t_stop} and 0, where nothing is "
                "integrated (the last step is the landing step)"
            )
        interior.append(tv)
    targets = [*interior, t_stop]
    slot_of = {tv: j for j, tv in enumerate(save_times or [])}
    slots = {j: slot_of[tv] for j, tv in enumerate(interior)}
    if not lands and t1 in slot_of:
        slots[len(targets) - 1] = slot_of[t1]
    return Plan(
        t0=t0,
        t1=t1,
        t_stop=t_stop,
        lands=lands,
        grid=None,
        targets=targets,
        save_times=save_times,
        slots=slots,
        start_slot=slot_of.get(t0),
        end_slot=slot_of.get(t1) if lands else None,
    )
