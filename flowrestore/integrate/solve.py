"""The one integration loop: :func:`solve`.

Flows say what to integrate, solvers how to step; this module owns everything else — the time grid
or the per-sample adaptive control (:mod:`flowrestore.integrate.adaptive`), the ``t = 0`` endpoint,
saving, statistics, progress, callbacks, autograd and error reporting.

**The endpoint t = 0** (MATH.md §1). On a flow singular at 0 (InDI) nothing is evaluated there:

* fixed grids — a solver whose stages stay inside ``[t, s)`` (Euler, Midpoint, the InDI samplers)
  takes its own last step; a solver with a stage at the step's end (Heun, RK4, fixed-step
  Bosh3/Dopri5) takes the last interval ``[t_{N−1}, 0]`` as the denoising step
  ``x_0 = F(x_{t_{N−1}}, t_{N−1})`` (1 NFE, error ``O(t_{N−1}²)``; use ``spacing=Power(rho)`` with
  ``rho ≥ order/2`` to keep the method's order at 0);
* adaptive solvers integrate to ``t_min`` and then take that denoising step.

**Memory.** By default the solve runs under ``torch.no_grad()``: no graph is built, and without a
saved trajectory only the current state is alive, so peak memory does not grow with the number of
steps. ``differentiable=True`` keeps the graph (for inversion through the solve).

**Host synchronisation.** Fixed-grid loops keep times and non-finite flags on the device and
synchronise once, at the end; only adaptive control (which must decide on acceptance) syncs per
step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from flowrestore.errors import (
    ConfigError,
    GridError,
    MaxStepsReachedError,
    NonFiniteError,
    StepSizeUnderflowError,
    describe,
)
from flowrestore.flows.base import Flow
from flowrestore.integrate.adaptive import run_adaptive
from flowrestore.integrate.grids import Spacing, check_grid, make_grid
from flowrestore.integrate.noise import GeneratorNoise, NoiseSource, PerSampleNoise
from flowrestore.integrate.solution import (
    MAX_STEPS,
    NONFINITE,
    UNDERFLOW,
    Solution,
    Stats,
    make_stats,
)
from flowrestore.solvers.base import Solver, StepContext

_OUTPUTS = ("last", "posterior_mean")
_ON_FAILURE = ("raise", "return")
_LOW_PRECISION = (torch.bfloat16, torch.float16)


def solve(
    flow: Flow,
    solver: Solver,
    x0: Tensor,
    *,
    steps: int | None = None,
    grid: Tensor | Sequence[float] | None = None,
    spacing: Spacing | None = None,
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
    """Integrate ``flow`` from ``x0`` with ``solver``.

    Args:
        flow: what to integrate (:class:`InDIFlow`, :class:`ODEFlow`, an SDE flow, ...).
        solver: how to step (:class:`Euler`, :class:`Heun`, :class:`Dopri5`, :class:`InDISampler`,
            ...).
        x0: initial state ``[B, ...]`` (for restoration flows, the degraded batch ``y`` at t = 1).
        steps: number of steps of a fixed-step solve over the flow's span (restoration flows:
            1 → 0, or 1 → ``t_end``), laid out by ``spacing`` (default uniform).
        grid: explicit 1-D grid of times (its order sets the direction); for fixed-step solvers
            the step grid, for adaptive solvers the span and the times to save.
        spacing: :class:`~flowrestore.integrate.grids.Uniform` or ``Power(rho)`` with ``steps``.
        t_span: ``(t_start, t_end)`` for flows without a default span (e.g. ``ODEFlow``).
        t_end: early stop: end time replacing the flow's default (restoration flows: in (0, 1)).
        save_at: ``None`` (end only), ``"steps"`` (every grid point, fixed-step), or times to save
            (grid points for fixed-step solvers; any times inside the span for adaptive ones).
        output: ``"last"`` (the last iterate) or ``"posterior_mean"`` (the flow's clean-image
            estimate at the end: ``denoise(t_end, x)``, or the last one computed when the end is
            ``t = 0`` on a singular flow).
        generator: seeds stochastic solvers (one generator for the batch).
        seeds: one seed per sample instead: sample ``i``'s noise depends only on ``seeds[i]``.
        noise: an explicit :class:`NoiseSource` (e.g. ``BrownianIncrements``).
        progress: show a tqdm progress bar.
        callback: ``callback(step, t, x)`` after every step (adaptive: after every iteration
            with an accepted step; ``t`` is then per sample).
        differentiable: keep the autograd graph through the solve (default: ``torch.no_grad``).
        on_failure: ``"raise"`` (default) or ``"return"`` the partial solution with per-sample
            ``stats.status`` when a sample hits ``max_steps``, underflows or becomes non-finite.
        check_finite: track non-finite states (device-side flag, one sync at the end).

    Returns:
        :class:`Solution` with ``x``, ``ts``, ``trajectory``, ``stats``, ``t_final``, ``records``.
    """
    _check_types(flow, solver, x0, output, on_failure)
    if sum(v is not None for v in (generator, seeds, noise)) > 1:
        raise ConfigError("pass at most one of generator=, seeds=, noise=")
    if noise is None:
        noise = PerSampleNoise(seeds) if seeds is not None else GeneratorNoise(generator)
    elif not isinstance(noise, NoiseSource):
        raise ConfigError(f"noise must be a flowrestore NoiseSource, got {describe(noise)}")
    adaptive = bool(getattr(solver, "adaptive", False))
    if adaptive and x0.dtype in _LOW_PRECISION:
        raise ConfigError(
            f"adaptive {type(solver).__name__} needs float32 or float64 states; x0 has dtype "
            f"{x0.dtype}, whose resolution is coarser than any useful tolerance. Solve in float32 "
            "(x0.float()) or use a fixed-step solver"
        )
    if isinstance(seeds, (list, tuple, Tensor)) and len(seeds) != x0.shape[0]:
        raise ConfigError(f"seeds must have one entry per sample ({x0.shape[0]}), got {len(seeds)}")

    times, direction = _plan_times(flow, solver, adaptive, steps, grid, spacing, t_span, t_end)
    ctx = StepContext(noise=noise, x_start=x0, t_start=None)
    with torch.set_grad_enabled(differentiable):
        if solver.delegates:
            sol = solver.integrate(flow, x0, times, ctx=ctx, save_at=save_at, output=output)
            if check_finite:
                _check_final_finite(
                    sol.x,
                    sol.stats,
                    on_failure,
                    f"the result of {solver!r} at t={float(sol.ts[-1]):.6g}",
                )
            return sol
        if adaptive:
            return _solve_adaptive(
                flow, solver, x0, times, save_at, output, ctx, progress, callback, on_failure
            )
        return _solve_fixed(
            flow,
            solver,
            x0,
            times,
            save_at,
            output,
            ctx,
            progress,
            callback,
            check_finite,
            on_failure,
        )


def _check_types(flow, solver, x0, output, on_failure) -> None:
    if not isinstance(flow, Flow):
        hint = " (wrap a drift callable f(t, x) in fr.ODEFlow(f))" if callable(flow) else ""
        raise TypeError(f"flow must be a flowrestore Flow, got {type(flow).__name__}{hint}")
    if not isinstance(solver, Solver):
        raise TypeError(
            f"solver must be a flowrestore Solver instance such as fr.Heun(), "
            f"got {describe(solver)}"
        )
    flow.check_state(x0)
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


def _plan_times(flow, solver, adaptive, steps, grid, spacing, t_span, t_end):
    """Return the float64 CPU grid (fixed) or ``[t_start, t_end]`` (adaptive), and the direction."""
    default_dir = None
    if flow.default_span is not None:
        default_dir = 1 if flow.default_span[1] > flow.default_span[0] else -1
    if grid is not None:
        if steps is not None or t_span is not None or t_end is not None:
            raise ConfigError(
                "grid= already fixes the times: do not also pass steps=, t_span= or t_end="
            )
        g = check_grid(grid, time_range=flow.time_range, direction=default_dir)
        return g, int(torch.sign(g[1] - g[0]))
    span = t_span if t_span is not None else flow.default_span
    if span is None:
        raise ConfigError(
            f"{type(flow).__name__} has no default time span: pass grid=<1-D tensor of times> "
            "or t_span=(t_start, t_end)"
        )
    if t_end is not None:
        if not isinstance(t_end, (int, float)):
            raise ConfigError(f"t_end must be a number, got {describe(t_end)}")
        span = (span[0], float(t_end))
    g = check_grid(
        torch.tensor([float(span[0]), float(span[1])], dtype=torch.float64),
        time_range=flow.time_range,
        direction=default_dir,
        name="t_span" if t_end is None else "(t_start, t_end)",
    )
    if adaptive:
        if steps is not None:
            raise ConfigError(
                f"steps= is for fixed-step solving; {type(solver).__name__} is adaptive. Pass "
                f"{type(solver).__name__}(adaptive=False) to step on a grid"
            )
        return g, int(torch.sign(g[1] - g[0]))
    if steps is None:
        raise ConfigError(f"fixed-step solver {type(solver).__name__} needs steps= or grid=")
    return make_grid(steps, float(g[0]), float(g[1]), spacing), int(torch.sign(g[1] - g[0]))


def _save_indices(save_at, grid: Tensor) -> list[int]:
    n = grid.numel()
    if save_at is None:
        return [n - 1]
    if isinstance(save_at, str):
        if save_at in ("steps", "all"):
            return list(range(n))
        raise ConfigError(f"save_at must be None, 'steps' or a tensor of times, got {save_at!r}")
    times = (
        check_grid(save_at, name="save_at")
        if torch.as_tensor(save_at).numel() > 1
        else torch.as_tensor(save_at, dtype=torch.float64).reshape(1)
    )
    idx = []
    for tv in times.tolist():
        d = (grid - tv).abs()
        k = int(d.argmin())
        if float(d[k]) > 1e-9:
            raise GridError(f"save_at time {tv:.6g} is not a point of the step grid")
        idx.append(k)
    return idx


def _progress_bar(progress: bool, total, desc: str):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False)


def _solve_fixed(
    flow, solver, x0, grid, save_at, output, ctx, progress, callback, check_finite, on_failure
):
    B, dev, dt = x0.shape[0], x0.device, x0.dtype
    g_dev = grid.to(device=dev, dtype=dt)
    g_chk = g_dev.detach().cpu().double()
    if not (((g_chk.diff() > 0).all()) or ((g_chk.diff() < 0).all())):
        raise GridError(
            f"the grid of {grid.numel() - 1} steps is not strictly monotone in {dt}: neighbouring "
            "times round to the same value; use fewer steps or a wider dtype"
        )
    hs = g_dev.diff()
    n = grid.numel() - 1
    save_idx = set(_save_indices(save_at, grid))
    singular_end = flow.singular_at_zero and float(grid[-1]) == 0.0
    final_denoise = singular_end and solver.evaluates_at_end
    ctx.t_start = g_dev[0]
    x, state = solver.init(flow, g_dev[0], x0, ctx)
    nfe = 0
    saved = [x] if 0 in save_idx else []
    # row sums of every step's state, written in place (one kernel per step, no sync); NaN/inf
    # propagate into a sum, so the first non-finite row of a sample is its first bad step
    sums = torch.empty((n, B), dtype=_sum_dtype(dt), device=dev) if check_finite else None
    x_prev = None
    keep_prev = (
        output == "posterior_mean"
        and singular_end
        and not final_denoise
        and not getattr(solver, "lands_on_estimate", False)
    )
    bar = _progress_bar(progress, n, type(solver).__name__)
    for i in range(n):
        ctx.step_index = i
        if keep_prev and i == n - 1:
            x_prev = x
        if final_denoise and i == n - 1:
            x, state = flow.denoise(g_dev[i], x), None
            nfe += 1
        else:
            res = solver.step(flow, g_dev[i], x, hs[i], state, ctx)
            x, state = res.x, res.state
            nfe += res.nfe
        if sums is not None:
            torch.sum(x.detach().reshape(B, -1), 1, dtype=sums.dtype, out=sums[i])
        if i + 1 in save_idx:
            saved.append(x)
        if callback is not None:
            callback(i + 1, g_dev[i + 1], x)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    stats = make_stats(B)
    stats.nfe += nfe
    stats.steps += n
    bad_rows = ~torch.isfinite(sums) if sums is not None else None
    if bad_rows is not None and bool(bad_rows.any()) and on_failure == "return":
        stats.status[bad_rows.any(0).cpu()] = NONFINITE
    elif bad_rows is not None and bool(bad_rows.any()):
        rows = bad_rows.any(0).nonzero().squeeze(1).cpu()
        k = int(bad_rows.any(1).nonzero()[0])
        raise NonFiniteError(
            f"the state became non-finite in step {k + 1} of {n} (t={grid[k].item():.6g} -> "
            f"{grid[k + 1].item():.6g}) for samples {rows.tolist()[:10]}: the predictor/drift "
            "returned NaN/inf or the step overflowed"
        )
    if output == "posterior_mean":
        if singular_end:
            if x_prev is not None:
                x = flow.denoise(g_dev[n - 1], x_prev)
                stats.nfe += 1
        else:
            x = flow.denoise(g_dev[n], x)
            stats.nfe += 1
        if check_finite:
            t_pm = g_dev[n - 1] if singular_end else g_dev[n]
            _check_final_finite(
                x, stats, on_failure, f"the posterior-mean estimate at t={float(t_pm):.6g}"
            )
    ordered = sorted(save_idx)
    traj = torch.stack(saved) if save_at is not None else None
    records = {k: torch.stack(v) for k, v in ctx.records.items()}
    return Solution(
        x=x,
        ts=g_dev[ordered],
        trajectory=traj,
        stats=stats,
        t_final=g_dev[n].expand(B).clone(),
        records=records,
    )


def _sum_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation dtype of the non-finite row sums (at least float32)."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _finite_rows(x: Tensor) -> Tensor:
    """Per-sample ``[B]`` flag: every entry of ``x[b]`` is finite, from the row sum.

    NaN and ±inf propagate into a sum, so this is one vectorised reduction (an inf-norm or
    ``isfinite(x).all`` costs 10–100× more on CPU). Sums are taken in at least float32; a row of
    finite values could only be misflagged if its sum overflowed (``|x| ~ 1e38 / numel``).
    """
    acc = torch.float32 if x.dtype in _LOW_PRECISION else None
    return torch.isfinite(x.reshape(x.shape[0], -1).sum(1, dtype=acc))


def _check_final_finite(x: Tensor, stats: Stats, on_failure: str, what: str) -> None:
    """Flag (``on_failure='return'``) or raise on samples whose final ``x`` is not finite.

    Covers evaluations made after the step loop's own check (the ``output='posterior_mean'``
    estimate, delegated integrators); one host synchronisation.
    """
    finite = _finite_rows(x.detach())
    bad = (~finite).cpu() & (stats.status == 0)
    if not bool(bad.any()):
        return
    if on_failure == "return":
        stats.status[bad] = NONFINITE
        return
    rows = bad.nonzero().squeeze(1).tolist()
    raise NonFiniteError(
        f"{what} is non-finite for samples {rows[:10]}: the predictor/drift returned NaN/inf"
    )


def _solve_adaptive(flow, solver, x0, span, save_at, output, ctx, progress, callback, on_failure):
    B, dev, dt = x0.shape[0], x0.device, x0.dtype
    t0, t1 = float(span[0]), float(span[-1])
    direction = 1.0 if t1 > t0 else -1.0
    singular_end = flow.singular_at_zero and t1 == 0.0
    t_stop = t1
    if singular_end:
        t_stop = solver.resolved_t_min()
        if not abs(t0) > t_stop:
            raise ConfigError(f"t_min={t_stop} must lie inside the span ({t0}, {t1})")
    if save_at is None and span.numel() > 2:
        save_times = span.tolist()
    elif save_at is None:
        save_times = [t1]
    elif isinstance(save_at, str):
        raise ConfigError("adaptive solvers save at given times: pass save_at=<tensor of times>")
    else:
        st = torch.as_tensor(save_at, dtype=torch.float64).reshape(-1)
        save_times = check_grid(st, name="save_at").tolist() if st.numel() > 1 else st.tolist()
    interior = []
    for tv in save_times:
        if (tv - t0) * direction < 0 or (tv - t1) * direction > 0:
            raise GridError(f"save_at time {tv:.6g} lies outside the span ({t0}, {t1})")
        if tv in (t0, t1):
            continue
        if (tv - t_stop) * direction >= 0:
            raise GridError(
                f"save_at time {tv:.6g} lies between t_min={t_stop} and 0, where "
                "nothing is integrated (the final step is the denoising step)"
            )
        interior.append(tv)
    targets = interior + [t_stop]
    ts_list = ([t0] if t0 in save_times else []) + interior + ([t1] if t1 in save_times else [])
    stats = make_stats(B)
    want_traj = save_at is not None or span.numel() > 2
    traj = torch.empty((len(targets), *x0.shape), dtype=dt, device=dev) if want_traj else None
    x, _ = solver.init(flow, torch.tensor(t0, dtype=dt, device=dev), x0, ctx)
    bar = _progress_bar(progress, 1.0, type(solver).__name__)
    x = x.clone()
    x, t = run_adaptive(flow, solver, x, t0, targets, ctx, stats, traj, bar, callback)
    if bar is not None:
        bar.close()
    ok = stats.status == 0
    if singular_end and bool(ok.any()):
        rows = ok.nonzero().squeeze(1).to(dev)
        xs = x[rows]
        x = x.clone()
        x[rows] = flow.denoise(torch.tensor(t_stop, dtype=dt, device=dev), xs)
        t[rows] = 0.0
        stats.nfe[ok] += 1
    if output == "posterior_mean" and not singular_end:
        x = flow.denoise(t, x)
        stats.nfe += 1
    _check_final_finite(
        x, stats, on_failure, "the final estimate (denoising / posterior-mean step)"
    )
    ts = torch.tensor(ts_list, dtype=dt, device=dev)
    if traj is not None:
        parts = [x0.unsqueeze(0)] if t0 in save_times else []
        parts.append(traj[: len(interior)])
        if t1 in save_times:
            parts.append(x.unsqueeze(0))
        traj = torch.cat(parts)
    sol = Solution(
        x=x,
        ts=ts,
        trajectory=traj,
        stats=stats,
        t_final=t,
        records={k: torch.stack(v) for k, v in ctx.records.items()},
    )
    _raise_failures(sol, solver, on_failure)
    return sol


def _raise_failures(sol: Solution, solver, on_failure: str) -> None:
    status = sol.stats.status
    if on_failure == "return" or not bool((status != 0).any()):
        return
    for code, exc in ((NONFINITE, NonFiniteError), (UNDERFLOW, StepSizeUnderflowError)):
        rows = (status == code).nonzero().squeeze(1)
        if rows.numel():
            t = sol.t_final[rows.to(sol.t_final.device)].cpu().tolist()
            step = (sol.stats.steps[rows] + 1).tolist()
            what = (
                "became non-finite (the state or the drift is NaN/inf)"
                if code == NONFINITE
                else f"step size fell below min_step={solver.min_step} / round-off"
            )
            raise exc(
                f"samples {rows.tolist()[:10]} {what} in step {step[:10]} at "
                f"t={[round(v, 6) for v in t[:10]]}; pass on_failure='return' for the "
                "partial solution"
            )
    rows = (status == MAX_STEPS).nonzero().squeeze(1)
    t = sol.t_final[rows.to(sol.t_final.device)].cpu().tolist()
    raise MaxStepsReachedError(
        f"samples {rows.tolist()[:10]} used max_steps={solver.max_steps} before reaching the end "
        f"(stopped at t={[round(v, 6) for v in t[:10]]}); raise max_steps, loosen rtol/atol, or "
        "pass on_failure='return'",
        solution=sol,
    )
