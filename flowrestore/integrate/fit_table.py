"""Fitted grids at several step counts, checked on held-out inputs (docs/math.md §11):
:func:`fit_grids`, the tool behind a model's declared :class:`~flowrestore.FittedGrids`.

:func:`~flowrestore.integrate.fit_grid` fits one solver's grid at one step count on a warm-up
batch and is never worse than the flow's default *on that batch*. A grid a model declares for
every user must also hold on inputs the fit never saw, so :func:`fit_grids` fits at each step
count (with one or several ``fit_grid`` settings, ``tries``) and, given check inputs, keeps a fit
only where it is at least as close as the flow's default grid to an accurate reference solve
of those inputs — the best try where several are given (GITS, Chen et al. 2024, fitted its
schedules the same way: warm-up samples to fit, others to score). The result declares itself to
a flow: ``fr.InDIFlow(F, grids=fit_grids(...))`` runs ``steps=N`` with that solver on the fitted
grids; :meth:`~flowrestore.FittedGrids.to_dict` saves them as JSON, ``from_dict`` loads them.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Iterable, Mapping

import torch
from torch import Tensor

from flowrestore.errors import ConfigError, SolveFailure, describe
from flowrestore.flows.base import Flow
from flowrestore.grids import FittedGrids
from flowrestore.integrate.fitting import _check, _check_teacher, fit_grid, refuse_own_grid
from flowrestore.integrate.solve import solve
from flowrestore.solvers.base import Solver

__all__ = ["fit_grids", "relative_error"]

#: reference solve of the check inputs: RK4 steps on the flow's grid for RK4 (400 evaluations)
REFERENCE_STEPS = 100
#: the ``fit_grid`` keywords a try may set, and their defaults
_FIT_DEFAULTS = {
    k: p.default
    for k, p in inspect.signature(fit_grid).parameters.items()
    if p.kind is p.KEYWORD_ONLY and k != "t_span"
}
TRY_KEYS = frozenset(_FIT_DEFAULTS)


def relative_error(x: Tensor, ref: Tensor) -> Tensor:
    """Per-sample relative error ``‖x − ref‖ / ‖ref‖`` (float64, ``[B]``; a ``[B]`` state is a
    batch of scalars)."""
    b = x.shape[0]
    d = (x.double() - ref.double()).reshape(b, -1).norm(dim=1)
    return d / ref.double().reshape(b, -1).norm(dim=1).clamp_min(torch.finfo(torch.float64).tiny)


def fit_grids(
    flow: Flow,
    solver: Solver,
    x_warmup: Tensor,
    steps: Iterable[int],
    *,
    x_check: Tensor | None = None,
    reference: Tensor | None = None,
    error: Callable[[Tensor, Tensor], Tensor] = relative_error,
    tries: Mapping[str, Mapping] | None = None,
    t_span: tuple[float, float] | None = None,
    log: Callable[[dict], None] | None = None,
) -> FittedGrids | None:
    """Fit ``solver``'s grid on ``flow`` at each step count in ``steps`` (module docstring).

    Args:
        flow, solver, x_warmup, t_span: as for :func:`~flowrestore.integrate.fit_grid`.
        steps: the step counts to fit (distinct ints ≥ 1).
        x_check: inputs to check each fit on (other than the warm-up ones) against the flow's
            default grid for ``solver`` (the grid ``steps=N`` lays now: fit from a flow without
            declared grids to compare with the generic one); ``None`` keeps every fit (each is
            never worse than the default on the warm-up batch). A grid whose solve of
            ``x_check`` fails or is not finite scores ``inf``; such a fit is never kept.
        reference: accurate answers for ``x_check`` (default: ``RK4()`` with
            :data:`REFERENCE_STEPS` steps of the flow's grid for it).
        error: per-sample error ``[B]`` of an answer to the reference (lower is better); a fit
            is judged by its worst sample. Default :func:`relative_error`.
        tries: named ``fit_grid`` keyword sets, each fitted at every step count (default
            ``{"default": {}}``); more than one needs ``x_check``, which picks the best.
        log: called once per step count with a record ``{"steps", "default", "fits", "kept",
            "seconds"}`` (worst-sample errors on ``x_check``, ``None`` without it).

    Returns:
        :class:`~flowrestore.FittedGrids` for ``solver`` over the span with the kept grids, or
        ``None`` when no fit beat the default on ``x_check`` at any step count.
    """
    counts = _counts(steps)
    if isinstance(solver, Solver):
        refuse_own_grid(solver)
    tries = {"default": {}} if tries is None else dict(tries)
    if not tries or not all(
        isinstance(k, str) and isinstance(v, Mapping) for k, v in tries.items()
    ):
        raise ConfigError(f"tries must map names to fit_grid keyword sets, got {describe(tries)}")
    for name, kw in tries.items():  # every request checked before any evaluation
        unknown = set(kw) - TRY_KEYS
        if unknown:
            raise ConfigError(
                f"tries[{name!r}] may set {sorted(TRY_KEYS)} of fit_grid, got {sorted(unknown)}"
            )
        if not isinstance(kw.get("linearise", False), bool):
            raise ConfigError(
                f"tries[{name!r}]: linearise must be a bool, got {describe(kw['linearise'])}"
            )
        if kw.get("teacher") is not None:
            _check_teacher(kw["teacher"])
            kw["teacher"].check_flow(flow)
        for n in counts:
            _check(
                flow,
                solver,
                x_warmup,
                n,
                kw.get("teacher_steps", _FIT_DEFAULTS["teacher_steps"]),
                t_span,
                kw.get("refine", _FIT_DEFAULTS["refine"]),
            )
    if x_check is None and (len(tries) > 1 or reference is not None):
        raise ConfigError(
            "several tries or a reference need x_check, the inputs that decide between fits"
        )
    for name, v in (("x_check", x_check), ("reference", reference)):
        if v is not None and not isinstance(v, Tensor):
            raise ConfigError(f"{name} must be a tensor, got {describe(v)}")
    if log is not None and not callable(log):
        raise ConfigError(f"log must be None or a callable log(record), got {describe(log)}")
    if not callable(error):
        raise ConfigError(
            f"error must be a callable (answer, reference) -> [B], got {describe(error)}"
        )
    if x_check is not None:
        flow.check_state(x_check)
        if reference is not None and reference.shape != x_check.shape:
            raise ConfigError(
                f"reference must have x_check's shape {tuple(x_check.shape)}, got "
                f"{tuple(reference.shape)}"
            )
    span = t_span if t_span is not None else flow.default_span
    if span is None:
        raise ConfigError(f"{type(flow).__name__} has no default span: pass t_span=(t0, t1)")
    solve_kw = {} if t_span is None else {"t_span": tuple(t_span)}
    if x_check is not None and reference is None:
        from flowrestore.solvers import RK4

        with torch.no_grad():
            reference = solve(flow, RK4(), x_check, steps=REFERENCE_STEPS, **solve_kw).x

    def worst(spacing=None, n=None) -> float:
        try:
            with torch.no_grad():
                x = solve(flow, solver, x_check, steps=n, spacing=spacing, **solve_kw).x
        except SolveFailure:  # a grid that fails an unseen input scores inf: not kept, and
            return math.inf  # the fits of the other step counts are not lost to the error
        e = error(x, reference)
        if not isinstance(e, Tensor) or e.shape != (x.shape[0],):
            raise ConfigError(
                f"error must return one value per sample (shape [{x.shape[0]}]), got {describe(e)}"
            )
        e = float(e.max())
        return math.inf if math.isnan(e) else e

    kept = {}
    for n in counts:
        start = time.perf_counter()
        fits = {
            name: fit_grid(flow, solver, x_warmup, n, t_span=t_span, **kw)
            for name, kw in tries.items()
        }
        seconds = time.perf_counter() - start
        record = {"steps": n, "default": None, "fits": None, "kept": None, "seconds": seconds}
        if x_check is None:
            name = next(iter(fits))
            kept[n], record["kept"] = fits[name].times, name
        else:
            generic = worst(n=n)
            scores = {name: worst(spacing=sp, n=n) for name, sp in fits.items()}
            name = min(scores, key=scores.get)
            record.update(default=generic, fits=scores)
            if scores[name] <= generic:
                if math.isfinite(scores[name]):  # never a fit that failed x_check
                    kept[n], record["kept"] = fits[name].times, name
        if log is not None:
            log(record)
    if not kept:
        return None
    fitted_span = tuple(float(v) for v in span)
    return FittedGrids(solver=repr(solver), times=kept, t_span=fitted_span)


def _counts(steps) -> tuple[int, ...]:
    try:
        counts = tuple(steps)
    except TypeError:
        counts = ()
    if (
        not counts
        or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in counts)
        or len(set(counts)) != len(counts)
    ):
        raise ConfigError(f"steps must be distinct ints >= 1, got {describe(steps)}")
    return counts
