"""Choose the solver for a model at an evaluation budget, from a few warm-up inputs (issue 16).

Which few-step solver is most accurate depends on the model, not only on its family: on the
few-NFE benchmark (``benchmarks/RESULTS.md``) an exact Gaussian diffusion model is solved best by
``IPNDM()`` (by the order-4 landing of ``IPNDM(landing_order=4)`` on the worst sample at 4
evaluations), a diffusers-trained v-model by ``DataIPNDM()`` at 3–5 evaluations and ``IPNDM()``
from 6, a trained ε-model by ``UniPC()`` or, on some noises, ``UniPC(nodes=3)`` — and the same
update wins on one model's validation noises and loses on its test ones. :func:`choose_solver`
measures it on the user's model instead of reading a table:

1. **Teacher.** One fine solve of the warm-up batch, as :func:`~flowrestore.integrate.fit_grid`'s
   (``teacher_steps`` steps of the flow's declared grid with ``SemiLinearMultistep()`` where it
   applies, else ``RK4()``).
2. **Candidates.** Each candidate (default :func:`candidate_solvers`: every default-constructed
   fixed-step solver and three documented variants) that steps the flow is run with ``steps=N``
   on its declared grid, ``N`` the largest step count whose solve spends at most ``nfe``
   evaluations (read from ``stats.nfe``: RK4 at 6 evaluations takes one step, 4 evaluations;
   Heun two steps, 3). A candidate tied to the grid it was fitted on
   (:class:`~flowrestore.FittedMultistep`) is run on that grid only, if it fits the budget and
   the span. A candidate the flow refuses, or whose solve of the batch over the span its checks
   refuse (a ``start_estimate`` away from the pure-noise start), is listed in ``skipped`` with
   the reason, before any evaluation.
3. **Score.** The power mean (exponent ``power``) over the warm-up batch of the relative errors
   ``‖x − x*‖/‖x*‖`` to the teacher's answer (``power=1``: the mean; ``math.inf``: the worst
   sample); the smallest wins (ties: the earlier candidate, so the defaults before the
   variants).

The answer is a plain solver and step count: ``fr.solve(flow, choice.solver, x, steps=
choice.steps)``. Cost: the teacher's ``teacher_steps`` evaluations plus about ``nfe`` per
candidate (twice for a candidate whose first step count misses the budget). Choose on other
inputs than those you evaluate on; wrong requests are refused before any evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from flowrestore.errors import (
    ArgumentTypeError,
    ConfigError,
    FlowRestoreError,
    IncompatibleSolverError,
    NonFiniteError,
    SolveFailure,
    describe,
)
from flowrestore.flows.base import Flow
from flowrestore.integrate.fit_table import relative_error
from flowrestore.integrate.fitting import _check, _check_teacher, resolve_teacher, teacher_grid
from flowrestore.integrate.solve import prepare, solve
from flowrestore.solvers.adams import check_estimate_shape
from flowrestore.solvers.base import Solver

__all__ = ["SolverChoice", "candidate_solvers", "choose_solver"]


def candidate_solvers() -> tuple[Solver, ...]:
    """The default candidates, defaults first: ``IPNDM()``, ``DataIPNDM()``, ``UniPC()``,
    ``SemiLinearMultistep()``, ``Midpoint()``, ``Heun()``, ``RK4()``, ``Euler()``, then the
    variants ``IPNDM(landing_order=4)`` (the published iPNDM landing), ``UniPC(nodes=3)``
    (diffusers' UniPC-3) and ``SemiLinearMultistep(power=0)`` (its steps in the log-SNR)."""
    import flowrestore.solvers as S

    return (
        S.IPNDM(),
        S.DataIPNDM(),
        S.UniPC(),
        S.SemiLinearMultistep(),
        S.Midpoint(),
        S.Heun(),
        S.RK4(),
        S.Euler(),
        S.IPNDM(landing_order=4),
        S.UniPC(nodes=3),
        S.SemiLinearMultistep(power=0),
    )


@dataclass(frozen=True)
class SolverChoice:
    """:func:`choose_solver`'s answer: the chosen ``solver`` with its ``steps`` (spending ``nfe``
    evaluations), every candidate's ``(solver, steps, nfe, score)`` in the order tried (score:
    the power mean, exponent ``power``, of the warm-up batch's relative errors to the teacher;
    ``inf`` where its solve failed), and
    the candidates ``skipped`` with the reason (``(solver, message)``)."""

    solver: Solver
    steps: int
    nfe: int
    errors: tuple[tuple[Solver, int, int, float], ...]
    skipped: tuple[tuple[Solver, str], ...]


def choose_solver(
    flow: Flow,
    x_warmup: Tensor,
    nfe: int,
    *,
    candidates: Sequence[Solver] | None = None,
    teacher_steps: int = 64,
    teacher: Solver | None = None,
    t_span: tuple[float, float] | None = None,
    power: float = 1.0,
) -> SolverChoice:
    """The candidate solver that solves ``x_warmup`` on ``flow`` most accurately with at most
    ``nfe`` evaluations (module docstring).

    Args:
        flow: what to solve (a diffusion, flow-matching or EDM model, InDI, an ``ODEFlow``...).
        x_warmup: a few inputs like those to be solved (e.g. ≤ 16 noises); not the ones scored.
        nfe: the evaluation budget (``≥ 1`` and ``< teacher_steps``).
        candidates: deterministic fixed-step solvers to compare (default
            :func:`candidate_solvers`); those that cannot step ``flow`` are skipped.
        teacher_steps, teacher, t_span: the reference solve, as :func:`fit_grid`'s.
        power: the exponent of the power mean of the warm-up errors scored (``≥ 1``; ``inf``:
            the worst sample).

    Returns:
        :class:`SolverChoice`; solve with ``choice.solver`` and ``steps=choice.steps``.
    """
    if not isinstance(flow, Flow):
        raise ArgumentTypeError(f"flow must be a flowrestore Flow, got {describe(flow)}")
    candidates = _check_candidates(candidate_solvers() if candidates is None else candidates)
    if isinstance(nfe, bool) or not isinstance(nfe, int) or nfe < 1:
        raise ConfigError(f"nfe must be an int >= 1, got {describe(nfe)}")
    if (
        isinstance(teacher_steps, int)
        and not isinstance(teacher_steps, bool)
        and nfe >= teacher_steps >= 2
    ):
        raise ConfigError(
            f"nfe={nfe} must be smaller than teacher_steps={teacher_steps}: the teacher's "
            "solve, the reference the candidates are scored against, takes more steps"
        )
    if isinstance(power, bool) or not isinstance(power, (int, float)) or not power >= 1:
        raise ConfigError(f"power must be a number >= 1 (or math.inf), got {describe(power)}")
    usable, skipped = [], []
    for cand in candidates:
        try:
            cand.check_flow(flow)
        except IncompatibleSolverError as exc:
            skipped.append((cand, str(exc)))
            continue
        usable.append(cand)
    if not usable:
        raise IncompatibleSolverError(
            f"choose_solver: no candidate steps {type(flow).__name__} "
            f"({'; '.join(msg for _, msg in skipped)})"
        )
    # the pairing, the batch, the budget against the teacher and the span, before any work
    t0, t1 = _check(flow, usable[0], x_warmup, nfe, teacher_steps, t_span, 0)
    teacher = resolve_teacher(flow, teacher)
    span = (t0, t1)
    # every candidate's solve planned here, before any evaluation: one its checks refuse (a
    # start_estimate on a span that does not start from pure noise, or that does not broadcast
    # to the batch) is skipped with the reason instead of failing after the teacher's solve. A
    # candidate tied to the grid it was fitted on (FittedMultistep) solves only that grid
    fixed = {}
    for cand in list(usable):
        n = _own_steps(cand)
        first = max(1, nfe // max(1, len(cand.stage_fractions))) if n is None else n
        try:
            prepare(flow, cand, x_warmup, steps=first, t_span=span, on_failure="return")
            check_estimate_shape(getattr(cand, "start_estimate", None), x_warmup)
        except FlowRestoreError as exc:
            usable = [c for c in usable if c is not cand]  # by identity: == compares tensors
            skipped.append((cand, str(exc)))
            continue
        if n is not None:
            fixed[id(cand)] = n
    if not usable:
        raise ConfigError(
            f"choose_solver: no candidate solves {type(flow).__name__} over t_span={span} "
            f"({'; '.join(msg for _, msg in skipped)})"
        )
    with torch.no_grad():
        ref = solve(
            flow, teacher, x_warmup, grid=teacher_grid(flow, teacher, teacher_steps, t0, t1)
        ).x
        errors = []
        for cand in usable:
            n = fixed.get(id(cand))
            if n is not None:  # its own grid, or nothing
                found = (n, *_run(flow, cand, x_warmup, ref, n, span, power))
                if found[1] > nfe:
                    skipped.append(
                        (
                            cand,
                            f"{cand!r} solves only its {n}-step grid, which spends {found[1]} "
                            f"evaluations, more than nfe={nfe}",
                        )
                    )
                    continue
                errors.append((cand, *found))
                continue
            found = _within_budget(flow, cand, x_warmup, ref, nfe, span, power)
            if found is None:
                skipped.append((cand, f"one step of {cand!r} spends more than {nfe} evaluations"))
                continue
            errors.append((cand, *found))
    if not errors:
        raise ConfigError(
            f"choose_solver: no candidate solves {type(flow).__name__} within nfe={nfe} "
            f"evaluations ({'; '.join(msg for _, msg in skipped)})"
        )
    best = min(range(len(errors)), key=lambda i: (errors[i][3], i))
    if not math.isfinite(errors[best][3]):
        raise NonFiniteError(
            f"choose_solver: every candidate failed on the warm-up batch "
            f"({', '.join(repr(c) for c, *_ in errors)})"
        )
    solver, steps, used, _ = errors[best]
    return SolverChoice(solver, steps, used, tuple(errors), tuple(skipped))


def _within_budget(flow, solver, x, ref, nfe, span, power):
    """``(steps, evaluations, score)`` for the largest step count of ``solver`` that spends at
    most ``nfe`` evaluations, or ``None`` if one step spends more. The first count tried is
    ``nfe`` over the solver's stages; each solve's evaluations are read from its statistics."""
    steps = max(1, nfe // max(1, len(solver.stage_fractions)))
    used, score = _run(flow, solver, x, ref, steps, span, power)
    while used > nfe:  # down to the budget
        if steps == 1:
            return None
        steps -= 1
        used, score = _run(flow, solver, x, ref, steps, span, power)
    while used < nfe:  # up while the next count stays within it (more steps spend more)
        more = _run(flow, solver, x, ref, steps + 1, span, power)
        if more[0] > nfe:
            return steps, used, score
        steps, (used, score) = steps + 1, more
    return steps, used, score


def _run(flow, solver, x, ref, steps, span, power) -> tuple[int, float]:
    """Evaluations spent and the power mean of the batch's relative errors (``inf`` if the
    solve failed or is not finite) of ``solver`` with ``steps`` on its declared grid."""
    try:
        sol = solve(flow, solver, x, steps=steps, t_span=span, on_failure="return")
    except SolveFailure:
        return steps * max(1, len(solver.stage_fractions)), math.inf
    used = int(sol.stats.nfe.max())
    e = relative_error(sol.x, ref)
    # the power mean of e scaled by its largest value: e^p would underflow to 0 (or overflow)
    # at a large power, making every candidate's score 0 (e.g. errors 1e-2 at power 200)
    scale = e.max().clamp_min(torch.finfo(e.dtype).tiny)
    e = e / scale
    err = float(scale * (e.max() if math.isinf(power) else e.pow(power).mean().pow(1 / power)))
    return used, (err if math.isfinite(err) else math.inf)


def _own_steps(solver) -> int | None:
    """The step count of the grid ``solver`` is tied to (``None``: it steps any grid)."""
    own = solver.fitted_spacing()
    return None if own is None else len(own.times) - 1


def _check_candidates(candidates) -> tuple[Solver, ...]:
    """``candidates`` as a non-empty tuple of deterministic fixed-step solvers, refused
    otherwise (before any evaluation)."""
    if isinstance(candidates, Solver) or not isinstance(candidates, Sequence) or not candidates:
        raise ConfigError(
            f"candidates must be a non-empty sequence of Solver instances, got "
            f"{describe(candidates)}"
        )
    for c in candidates:
        if not isinstance(c, Solver):
            raise ConfigError(f"candidates must hold Solver instances, got {describe(c)}")
        try:
            _check_teacher(c)
        except FlowRestoreError as exc:
            raise ConfigError(
                f"candidates must be deterministic fixed-step solvers, got {c!r}"
            ) from exc
    return tuple(candidates)
