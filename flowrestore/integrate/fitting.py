"""Fitted time grids (docs/math.md §11): :func:`fit_grid`, a GITS-style optimiser.

At a budget of a few evaluations the grid matters more than the order (Chen et al. 2024, "On the
trajectory regularity of ODE-based diffusion sampling", GITS). :func:`fit_grid` fits the
``steps``-step grid of one solver on one flow from a few warm-up inputs:

1. **Teacher.** One fine solve of the warm-up batch with ``teacher_steps`` steps of the flow's
   declared grid (``SemiLinearMultistep()`` where it applies, else ``RK4()``): states ``X_m`` at
   the teacher's times ``t_0 > … > t_M`` and, for residual flows, the clean estimates
   ``D_m = D(X_m, t_m)``. Candidate grids are subsets of the teacher's times.
2. **Costs** of a step ``t_i → t_j`` against the teacher's ``X_j``, for multistep solvers
   with the history of the point before, ``t_k`` ("costing pairs of steps"): the solver is started
   at ``X_k``, steps to ``t_i``, and steps on from ``X_i`` (a single-step solver's cost is that of
   its step from ``X_i``; the first step is the solver's warm start from ``X_0``). For a solver
   whose steps are linear in the state and in clean estimates taken at grid points (Euler, Heun,
   the semi-linear multistep solvers: detected by running it) every such step is evaluated
   *symbolically* with the teacher's ``D_m`` (teacher forcing, :mod:`flowrestore.integrate.gits`):
   no network evaluation beyond the teacher's. Other solvers (Midpoint, RK4, ...) are stepped for
   real from the teacher's states (``O(M²)`` solves: meant for cheap flows; pass a smaller
   ``teacher_steps``).
3. **Dynamic programming** over the last two teacher points and the steps used minimises the
   summed costs (O(M³ N)); for symbolic solvers a local search then moves single points to
   minimise the error of the whole solve, history included, with the teacher's clean estimates
   (``linearise=True``: each linearised about the teacher's, ``D(x) ≈ D_m + α_m (x − X_m)``,
   ``α_m`` probed once per teacher point, so that a solver's errors propagate as in a real solve;
   ``M`` more evaluations). Off by default: on the few-NFE benchmark's validation split the fitted
   grids were as accurate without it (the same grids on the DDPM and the shipped U-Net; on the
   exact diffusion models better in 8 of 12 (solver, NFE) cells, worse in 2;
   ``python -m benchmarks.fit_options --option linearise --which abc``).
4. **Verification.** The candidates (the searches' ends and the :data:`CANDIDATES` best paths
   they costed) and the flow's default grid are solved for real on the warm-up inputs; the most
   accurate is kept — never worse than the default on them.
5. **Refinement** (``refine`` real solves, :mod:`flowrestore.integrate.refine`): Nelder–Mead
   moves the kept grid's interior points off the teacher's points, minimising the mean relative
   error of real solves of the warm-up batch to the teacher's answer; the best grid it solved is
   returned (never worse than the kept one). Teacher forcing scores each step against the
   teacher; the refinement scores the whole solve, in which the steps' errors cancel. On the
   few-NFE benchmark's validation priors (exact linear/ε diffusion models, ``IPNDM()``, 5 steps)
   the verified grid's error 0.017 falls to 0.004–0.008 with 64 solves.

Every solve of steps 4 and 5 starts from the warm-up batch at ``t_0``, where a solver that evaluates
at its step starts takes the same value there, ``D(X_0, t_0)`` (which the teacher took first) or
the drift: it is evaluated once and served from a memo (:func:`_start_memo`), one evaluation fewer
per solve — a sixth of a 6-step fit's verification and refinement.

Wrong requests are refused before any evaluation (a solver that cannot step the flow, a
stochastic or error-controlled solver, a bad budget). The result is a :class:`~flowrestore.Fitted`
spacing: ``fr.solve(flow, solver, x, steps=steps, spacing=fitted)`` (exactly the fitted grid;
interpolated at other step counts), saved as ``fitted.times``.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
from torch import Tensor

from flowrestore.controllers.base import check_span
from flowrestore.errors import (
    ArgumentTypeError,
    ConfigError,
    FlowRestoreError,
    NonFiniteError,
    describe,
)
from flowrestore.flows.base import Flow
from flowrestore.grids import Fitted, make_grid
from flowrestore.integrate.endpoint import default_spacing
from flowrestore.integrate.gits import _OffGrid, _recorded, dp_path, local_search, symbolic_cost
from flowrestore.integrate.refine import refine_grid
from flowrestore.integrate.solve import solve
from flowrestore.solvers.base import Solver

__all__ = ["fit_with_teacher", "fit_grid"]

#: teacher-forced best paths also solved for real on the warm-up inputs
CANDIDATES = 6


def fit_grid(
    flow: Flow,
    solver: Solver,
    x_warmup: Tensor,
    steps: int,
    *,
    teacher_steps: int = 64,
    teacher: Solver | None = None,
    t_span: tuple[float, float] | None = None,
    refine: int = 64,
    linearise: bool = False,
) -> Fitted:
    """Fit the ``steps``-step grid of ``solver`` on ``flow`` to the warm-up batch ``x_warmup``.

    Args:
        flow, solver: the pairing to fit (refused before any work if the solver cannot step it,
            is stochastic, or carries tolerances).
        x_warmup: a few inputs like those to be solved (e.g. ≤ 16 degraded crops or noises);
            fit on other inputs than those you evaluate on.
        steps: the step budget (``≥ 1``, ``< teacher_steps``).
        teacher_steps: steps of the teacher solve; candidate times are its grid points.
        teacher: the teacher solver (default ``SemiLinearMultistep()`` if it steps the flow,
            else ``RK4()``).
        t_span: ``(t_start, t_end)`` for flows without a default span.
        refine: real solves of the warm-up batch the refinement may spend (``0``: none; each
            costs ``steps`` evaluations of the batch, about ``refine · steps`` in all).
        linearise: linearise the teacher's clean estimates in the local search (module
            docstring, step 3; ``teacher_steps`` more evaluations).

    The grid is fitted for the solver's :meth:`~flowrestore.solvers.Solver.linear_form`: a
    per-sample choice made from the values themselves (:class:`~flowrestore.IPNDM`'s guarded
    landing) is left out of the fit, so that the search and the symbolic costs score the same
    update (the costs cannot model the choice). A first form of the guard, searched over, gave
    grids that suited the warm-up batch's switches and not other inputs (an exact cosine/v model
    at 5 steps: 2.1× the default grid's error on unseen noises, against 0.5× without it); the
    guard as shipped was not measured searched over.

    Returns:
        :class:`~flowrestore.Fitted` normalised times over the span (module docstring).
    """
    fitted, _ = fit_with_teacher(
        flow,
        solver,
        x_warmup,
        steps,
        teacher_steps=teacher_steps,
        teacher=teacher,
        t_span=t_span,
        refine=refine,
        linearise=linearise,
    )
    return fitted


def fit_with_teacher(
    flow: Flow,
    solver: Solver,
    x_warmup: Tensor,
    steps: int,
    *,
    teacher_steps: int = 64,
    teacher: Solver | None = None,
    t_span: tuple[float, float] | None = None,
    refine: int = 64,
    linearise: bool = False,
) -> tuple[Fitted, Tensor]:
    """:func:`fit_grid`, also returning the teacher's answer for ``x_warmup`` (what the fit
    scored against; :func:`~flowrestore.integrate.fit_weights` fits further against it)."""
    t0, t1 = _check(flow, solver, x_warmup, steps, teacher_steps, t_span, refine)
    refuse_own_grid(solver)
    # a per-sample choice made from the values (IPNDM's guarded landing) is not fitted over: the
    # symbolic costs cannot model it and a search over it overfits the warm-up batch
    solver = solver.linear_form()
    if not isinstance(linearise, bool):
        raise ConfigError(f"linearise must be a bool, got {describe(linearise)}")
    teacher = resolve_teacher(flow, teacher)
    grid_t = teacher_grid(flow, teacher, teacher_steps, t0, t1)
    sol, states, seen = _teacher_solve(flow, teacher, x_warmup, grid_t)
    default = make_grid(steps, t0, t1, default_spacing(flow, solver, t1))
    candidates = _candidates(flow, solver, grid_t, states, steps, default, seen, linearise)
    start = _recorded(seen, t0, states[0])
    with _start_memo(flow, solver, x_warmup, start):
        best = _verify(flow, solver, x_warmup, sol.x, [*candidates, default])
        if refine > 0 and steps > 1:
            best = refine_grid(flow, solver, x_warmup, sol.x, best, budget=refine)
    tau = (best - t1) / (t0 - t1)
    return Fitted(tuple(float(v) + 0.0 for v in tau)), sol.x  # + 0.0: no -0.0 (t0 < t1)


def _check(flow, solver, x, steps, teacher_steps, t_span, refine) -> tuple[float, float]:
    """Refuse a wrong request before any evaluation; return the span."""
    if not isinstance(flow, Flow):
        raise ArgumentTypeError(f"flow must be a flowrestore Flow, got {describe(flow)}")
    if not isinstance(solver, Solver):
        raise ArgumentTypeError(
            f"solver must be a flowrestore Solver instance, got {describe(solver)}"
        )
    solver.check_flow(flow)
    flow.check_state(x)
    finite = torch.isfinite(x.detach()).reshape(x.shape[0], -1).all(1)
    if not bool(finite.all()):
        bad = (~finite).nonzero().flatten().tolist()
        raise NonFiniteError(
            f"x_warmup is non-finite (NaN/inf) for samples {bad[:10]}: fit on finite inputs"
        )
    if solver.stochastic:
        raise ConfigError(
            f"fit_grid fits a deterministic map; {solver!r} is stochastic (fit its ε = 0 member)"
        )
    if getattr(solver, "controller_options", None):
        raise ConfigError(
            f"{solver!r} configures error control; fit_grid fits fixed grids: build "
            f"{type(solver).__name__}() without tolerances"
        )
    for name, v, lo in (
        ("steps", steps, 1),
        ("teacher_steps", teacher_steps, 2),
        ("refine", refine, 0),
    ):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ConfigError(f"{name} must be an int >= {lo}, got {describe(v)}")
    if steps >= teacher_steps:
        raise ConfigError(
            f"steps ({steps}) must be smaller than teacher_steps ({teacher_steps}): the fitted "
            "times are a subset of the teacher's"
        )
    span = t_span if t_span is not None else flow.default_span
    if span is None:
        raise ConfigError(f"{type(flow).__name__} has no default span: pass t_span=(t0, t1)")
    try:
        t0, t1 = (float(v) for v in span)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"t_span must be two times (t0, t1), got {describe(span)}") from exc
    # as solve checks a span: the flow's direction too, naming t_span and its values (the
    # teacher's grid would otherwise be refused, naming neither)
    direction = None
    if flow.default_span is not None:
        direction = 1 if flow.default_span[1] > flow.default_span[0] else -1
    check_span(t0, t1, time_range=flow.time_range, direction=direction, name="t_span")
    return t0, t1


def refuse_own_grid(solver: Solver) -> None:
    """Refuse a solver tied to the grid it was fitted on (:class:`~flowrestore.FittedMultistep`):
    there is no grid to fit (its solves refuse any other)."""
    own = solver.fitted_spacing()
    if own is not None:
        raise ConfigError(
            f"{type(solver).__name__} steps the {len(own.times) - 1}-step grid it was fitted on "
            "and refuses any other: there is no grid to fit; fit the grid of a solver without "
            "one (e.g. fr.DataIPNDM())"
        )


def default_teacher(flow: Flow) -> Solver:
    """``SemiLinearMultistep()`` if it steps ``flow``, else ``RK4()``."""
    from flowrestore.solvers import RK4, SemiLinearMultistep

    teacher = SemiLinearMultistep()
    try:
        teacher.check_flow(flow)
    except FlowRestoreError:
        teacher = RK4()
    return teacher


def resolve_teacher(flow: Flow, teacher: Solver | None) -> Solver:
    """``teacher`` checked (deterministic, fixed-step, steps ``flow``) before any evaluation, or
    :func:`default_teacher` when ``None``."""
    if teacher is None:
        return default_teacher(flow)
    _check_teacher(teacher)
    teacher.check_flow(flow)
    return teacher


def teacher_grid(flow: Flow, teacher: Solver, steps: int, t0: float, t1: float) -> Tensor:
    """The teacher's grid: ``steps`` steps of the flow's (and teacher's) default spacing."""
    return make_grid(steps, t0, t1, default_spacing(flow, teacher, t1))


def _check_teacher(teacher) -> None:
    """Refuse a teacher that is not a deterministic fixed-step solver, before any evaluation."""
    if not isinstance(teacher, Solver):
        raise ConfigError(f"teacher must be a flowrestore Solver instance, got {describe(teacher)}")
    if teacher.stochastic or getattr(teacher, "controller_options", None):
        raise ConfigError(
            f"teacher must be a deterministic solver without tolerances (it steps a fixed grid), "
            f"got {teacher!r}"
        )


def _teacher_solve(flow, teacher, x, grid_t):
    """The teacher's solve of ``x`` on ``grid_t``: the solution, its states ``X_m`` (in the
    flow's state) and the clean estimates it evaluated, ``[(t, ‖x‖, D(x, t)), ...]``.

    A teacher that evaluates only at the start of its steps (``stage_fractions == (0,)``: the
    default multistep teacher) takes exactly ``D(X_m, t_m)`` at each grid point, which
    :func:`~flowrestore.integrate.gits.symbolic_cost` would otherwise evaluate again: they are
    recorded by shadowing ``flow.denoise`` on the instance for the duration of the solve (restored
    after, also on failure) — ``M`` fewer evaluations of the warm-up batch, about a tenth of a fit.
    Only the estimate and the input's norm (a check, kept on the device) are held, not the input.
    A flow that takes no instance attribute (a frozen dataclass, ``__slots__``) is not recorded.
    """
    seen: list = []
    record = flow.has_denoiser and tuple(teacher.stage_fractions) == (0.0,)
    shadowed = "denoise" in vars(flow)
    plain = flow.denoise

    def recording(t, z):
        d = plain(t, z)
        seen.append((t, z.detach().double().norm(), d))
        return d

    if record:
        try:
            flow.denoise = recording
        except AttributeError:  # a frozen dataclass or slotted flow: no record, M more evaluations
            record = False
    try:
        with torch.no_grad():
            sol = solve(flow, teacher, x, grid=grid_t, save_at="steps")
    finally:
        if record and shadowed:
            flow.denoise = plain
        elif record:
            del flow.denoise
    states = [flow.to_state(sol.trajectory[m], float(grid_t[m])) for m in range(grid_t.numel())]
    return sol, states, seen


def _candidates(
    flow, solver, grid_t, states, steps, default, seen=(), linearise=False
) -> list[Tensor]:
    """Candidate grids (subsets of ``grid_t``) from the symbolic or the numeric costs."""
    m = grid_t.numel() - 1
    even = [round(k * m / steps) for k in range(steps + 1)]
    cost = None
    if flow.has_denoiser:
        cost = symbolic_cost(flow, solver, grid_t, states, seen, linearise=linearise)
    if cost is not None and cost.path(even) is None:
        cost = None  # the solver evaluates off the grid points: not symbolic
    if cost is not None:
        try:
            first = dp_path(cost.first_steps(), cost.triples(), steps)
        except _OffGrid:  # e.g. steps=1: ``even`` is one landing step, which a Runge–Kutta
            cost = None  # solver takes without its stages, while its other steps leave the grid
    if cost is not None:
        starts = [first, _snap(default, grid_t), even]
        seen: dict = {}
        paths = [local_search(cost.path, p, 12, seen) for p in starts]
        ranked = sorted((v, k) for k, v in seen.items() if v is not None)
        paths += [list(k) for _, k in ranked[:CANDIDATES]]
        paths = [list(p) for p in dict.fromkeys(tuple(p) for p in paths if p is not None)]
    else:
        local = _numeric_costs(flow, solver, grid_t, states)
        paths = [dp_path(local[0], _as_triples(local), steps)]
    return [grid_t[list(p)].clone() for p in paths if p is not None]


def _snap(grid: Tensor, grid_t: Tensor) -> list[int] | None:
    """``grid`` moved to the nearest teacher points (``None`` if two points collide)."""
    idx = [int((grid_t - float(v)).abs().argmin()) for v in grid]
    idx[0], idx[-1] = 0, grid_t.numel() - 1
    return idx if all(b > a for a, b in zip(idx, idx[1:], strict=False)) else None


def _as_triples(local: Tensor) -> Tensor:
    """Single-step costs ``c[i, j]`` as triple costs ``c[k, i, j]`` (independent of ``k < i``)."""
    m = local.shape[0]
    k = torch.arange(m)
    return torch.where((k[:, None] < k[None, :])[:, :, None], local[None], torch.inf)


def _numeric_costs(flow, solver, grid_t, states) -> Tensor:
    """``c[i, j]``: relative error of the solver's solve from ``X_i`` over ``[t_i, t_j]``."""
    m = grid_t.numel() - 1
    cost = torch.full((m + 1, m + 1), math.inf, dtype=torch.float64)
    with torch.no_grad():
        for i in range(m):
            ti = float(grid_t[i])
            x_i = flow.from_state(states[i], ti)
            for j in range(i + 1, m + 1):
                try:
                    x = solve(flow, solver, x_i, grid=grid_t[[i, j]]).x
                except FlowRestoreError:
                    continue
                target = flow.from_state(states[j], float(grid_t[j]))
                err = float((x - target).norm() / target.norm().clamp_min(1e-30))
                cost[i, j] = err if math.isfinite(err) else math.inf
    return cost


def _verify(flow, solver, x, reference, grids: list[Tensor]) -> Tensor:
    """The grid whose real solve of the warm-up batch is closest to the teacher's answer."""
    best, best_err = None, math.inf
    with torch.no_grad():
        for grid in grids:
            try:
                out = solve(flow, solver, x, grid=grid).x
            except FlowRestoreError:
                continue
            err = float((out - reference).norm())
            if math.isfinite(err) and err < best_err:
                best, best_err = grid, err
    if best is None:
        raise FlowRestoreError(
            f"fit_grid: no candidate grid could be solved with {solver!r} on "
            f"{type(flow).__name__} (every solve failed or was non-finite)"
        )
    return best


@contextmanager
def _start_memo(flow, solver, x_warm: Tensor, d0: Tensor | None):
    """Within the block, the first evaluation of every solve of ``x_warm`` — by ``denoise``,
    ``velocity`` or ``drift`` — is taken once and then served from a memo (a copy each time);
    ``denoise``'s memo starts with the teacher's record ``d0`` when there is one.

    Decided on the host only, so the solves' step loops read no device value: the loop converts its
    start with ``flow.to_state`` once per solve, which arms the memo when the start is the
    ``x_warm`` object itself; the next evaluation of that solve, if it has the state's shape, is
    its first stage at ``(t_0, X_w)`` (a solver whose first stage is at the step's start, ``c_1 =
    0``; for any other nothing is served) and is served; every evaluation disarms it. The methods
    are restored after, also on failure; a flow that takes no instance attribute (a frozen
    dataclass, ``__slots__``) gets no memo."""
    if not solver.stage_fractions or solver.stage_fractions[0] != 0.0:
        yield
        return
    memo = {"denoise": d0}
    armed = {"shape": None}
    names = [n for n in ("denoise", "velocity", "drift") if n != "denoise" or flow.has_denoiser]
    names = [n for n in ["to_state", *names] if callable(getattr(flow, n, None))]
    saved = {n: (n in vars(flow), getattr(flow, n)) for n in names}

    def to_state(x, t):
        z = saved["to_state"][1](x, t)
        armed["shape"] = z.shape if x is x_warm else None
        return z

    def served(name, plain):
        def method(t, z):
            start, armed["shape"] = armed["shape"] == z.shape, None
            if not start:
                return plain(t, z)
            if memo.get(name) is None:
                memo[name] = plain(t, z)
            return memo[name].clone()

        return method

    try:
        flow.to_state = to_state
    except AttributeError:  # a frozen dataclass or slotted flow: no memo (one more evaluation)
        yield
        return
    for n in names[1:]:
        setattr(flow, n, served(n, saved[n][1]))
    try:
        yield
    finally:
        for n, (own, plain) in saved.items():
            if own:
                setattr(flow, n, plain)
            else:
                delattr(flow, n)
