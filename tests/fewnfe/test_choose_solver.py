"""``choose_solver``: the candidate with the smallest warm-up error to the teacher, each run with
the most steps its budget allows; wrong requests refused before any evaluation (issue 16)."""

from __future__ import annotations

import math

import pytest
import torch

import flowrestore as fr
from flowrestore.errors import ArgumentTypeError, ConfigError, IncompatibleSolverError
from flowrestore.integrate import candidate_solvers, choose_solver, make_grid
from flowrestore.integrate.endpoint import default_spacing

from .helpers import diffusion_problem, indi_problem


def _teacher(flow, x, steps=64):
    """The teacher the module docstring names: 64 steps of SemiLinearMultistep() on the
    flow's declared grid."""
    t = fr.SemiLinearMultistep()
    grid = make_grid(steps, 1.0, 0.0, default_spacing(flow, t, 0.0))
    return fr.solve(flow, t, x, grid=grid).x


def _mean_rel(x, ref):
    return float(((x - ref).flatten(1).norm(dim=1) / ref.flatten(1).norm(dim=1)).mean())


@pytest.mark.parametrize("nfe", [4, 6])
def test_scores_are_the_warm_up_errors_and_the_smallest_wins(nfe):
    _, flow, x_T, _ = diffusion_problem("linear", "epsilon", seed=3, dim=16, batch=8)
    warm = x_T.flip(0) * 1.01  # other inputs than the ones scored elsewhere
    choice = choose_solver(flow, warm, nfe)
    ref = _teacher(flow, warm)
    names = [type(c).__name__ for c, *_ in choice.errors]
    assert {"IPNDM", "DataIPNDM", "UniPC", "Euler", "RK4"} <= set(names)
    for solver, steps, used, score in choice.errors:
        sol = fr.solve(flow, solver, warm, steps=steps)
        assert int(sol.stats.nfe.max()) == used <= nfe, (solver, steps, used)
        more = fr.solve(flow, solver, warm, steps=steps + 1)
        assert int(more.stats.nfe.max()) > nfe, (solver, steps)  # the most steps within it
        assert score == pytest.approx(_mean_rel(sol.x, ref), rel=1e-9), solver
    best = min(s for *_, s in choice.errors)
    assert choice.errors[[s for *_, s in choice.errors].index(best)][0] is choice.solver
    assert (choice.steps, choice.nfe) == next(
        (n, u) for c, n, u, _ in choice.errors if c is choice.solver
    )
    # an exact model: a multistep solver, far ahead of Euler at the same evaluations
    euler = next(s for c, *_, s in choice.errors if type(c).__name__ == "Euler")
    assert best < 0.5 * euler


def test_a_candidate_that_saves_an_evaluation_gets_the_step_it_pays_for():
    """With the analytic first step ``steps=N`` costs ``N − 1`` evaluations: at a budget of 5
    the candidate runs 6 steps, not the 5 its stage count suggests."""
    _, flow, x_T, _ = diffusion_problem("linear", "epsilon", seed=6, dim=16, batch=8)
    m = fr.integrate.estimate_start(flow, x_T)
    choice = choose_solver(flow, x_T, 5, candidates=[fr.IPNDM(start_estimate=m)])
    assert (choice.steps, choice.nfe) == (6, 5)


def test_the_score_is_the_power_mean_of_the_warm_up_errors():
    _, flow, x_T, _ = diffusion_problem("linear", "sample", seed=8, dim=16, batch=8)
    ref = _teacher(flow, x_T)
    e = fr.integrate.relative_error(fr.solve(flow, fr.Euler(), x_T, steps=4).x, ref)
    for power, want in ((1, e.mean()), (2, e.pow(2).mean().sqrt()), (math.inf, e.max())):
        got = choose_solver(flow, x_T, 4, candidates=[fr.Euler()], power=power).errors[0][3]
        assert got == pytest.approx(float(want), rel=1e-9), power


def test_ties_go_to_the_earlier_candidate_and_the_order_does_not_pick():
    _, flow, x_T, _ = diffusion_problem("cosine", "v_prediction", seed=4, dim=16, batch=8)
    first, second = fr.Euler(), fr.Euler()
    assert choose_solver(flow, x_T, 5, candidates=[first, second]).solver is first
    for cands in ([fr.Euler(), fr.IPNDM()], [fr.IPNDM(), fr.Euler()]):
        assert isinstance(choose_solver(flow, x_T, 5, candidates=cands).solver, fr.IPNDM)


def test_a_flow_a_candidate_cannot_step_is_skipped_with_the_reason():
    _, flow, y, _ = indi_problem(seed=2, dim=16, batch=4)
    choice = choose_solver(flow, y, 4)
    assert choice.skipped and all(type(c).__name__ == "UniPC" for c, _ in choice.skipped)
    assert all("UniPC" in msg for _, msg in choice.skipped)
    assert not any(type(c).__name__ == "UniPC" for c, *_ in choice.errors)
    with pytest.raises(IncompatibleSolverError, match="no candidate"):
        choose_solver(flow, y, 4, candidates=[fr.UniPC()])


def test_a_budget_below_one_step_skips_the_candidate():
    flow = fr.ODEFlow(lambda t, x: -0.5 * x)  # no landing: RK4's one step costs 4
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    kw = dict(t_span=(0.0, 1.0), teacher_steps=32)
    choice = choose_solver(flow, x, 2, candidates=[fr.RK4(), fr.Heun(), fr.Euler()], **kw)
    assert [type(c).__name__ for c, _ in choice.skipped] == ["RK4"]
    assert "more than 2 evaluations" in choice.skipped[0][1]
    assert [(type(c).__name__, n, u) for c, n, u, _ in choice.errors] == [
        ("Heun", 1, 2),
        ("Euler", 2, 2),
    ]
    assert isinstance(choice.solver, fr.Heun)  # second order beats two Euler steps here
    with pytest.raises(ConfigError, match="within nfe=2"):
        choose_solver(flow, x, 2, candidates=[fr.RK4()], **kw)
    # a batch of scalars (a [B] state) is scored per sample too
    one_d = choose_solver(flow, x[:, 0], 2, candidates=[fr.Heun(), fr.Euler()], **kw)
    assert isinstance(one_d.solver, fr.Heun)


def test_wrong_requests_are_refused_before_any_evaluation():
    calls = []

    def predictor(x, t):
        calls.append(1)
        return 0.5 * x

    flow = fr.InDIFlow(predictor)
    y = torch.randn(4, 3, dtype=torch.float64)
    bad = [
        (dict(nfe=0), ConfigError, "nfe"),
        (dict(nfe=True), ConfigError, "nfe"),
        (dict(nfe=64), ConfigError, "teacher_steps"),
        (dict(nfe=4, candidates=[]), ConfigError, "candidates"),
        (dict(nfe=4, candidates=fr.Euler()), ConfigError, "candidates"),
        (dict(nfe=4, candidates=["Euler"]), ConfigError, "candidates"),
        (dict(nfe=4, candidates=[fr.EulerMaruyama()]), ConfigError, "deterministic"),
        (dict(nfe=4, candidates=[fr.Dopri5(rtol=1e-3)]), ConfigError, "deterministic"),
        (dict(nfe=4, teacher=fr.EulerMaruyama()), ConfigError, "teacher"),
        (dict(nfe=4, power=0.5), ConfigError, "power"),
        (dict(nfe=4, power=True), ConfigError, "power"),
        (dict(nfe=4, power=math.nan), ConfigError, "power"),
    ]
    for kw, err, match in bad:
        nfe = kw.pop("nfe")
        with pytest.raises(err, match=match):
            choose_solver(flow, y, nfe, **kw)
    with pytest.raises(ArgumentTypeError, match="flow"):
        choose_solver(predictor, y, 4)
    with pytest.raises(fr.errors.ShapeError):
        choose_solver(flow, torch.randn(()), 4)
    assert not calls
    assert len(candidate_solvers()) == len({repr(c) for c in candidate_solvers()})


def test_the_candidates_are_the_documented_ones():
    """``candidate_solvers``' docstring names the defaults then three variants; the variant of
    ``SemiLinearMultistep`` steps in the log-SNR (``power=0``), not in a power of ``t``."""
    documented = (
        fr.IPNDM(), fr.DataIPNDM(), fr.UniPC(), fr.SemiLinearMultistep(), fr.Midpoint(),
        fr.Heun(), fr.RK4(), fr.Euler(), fr.IPNDM(landing_order=4), fr.UniPC(nodes=3),
        fr.SemiLinearMultistep(power=0),
    )  # fmt: skip
    assert [repr(c) for c in candidate_solvers()] == [repr(c) for c in documented]


class _PECE(fr.Solver):
    """Euler predictor, evaluated again at the predicted end, trapezoid corrector: two
    evaluations per step while its declared stages (one, at the start) suggest one."""

    order = 2.0

    def step(self, flow, t, x, h, state, ctx):
        from flowrestore.flows.base import bcast
        from flowrestore.solvers.base import StepResult

        k1 = flow.drift(t, x)
        k2 = flow.drift(t + h, x + bcast(h, x) * k1)
        return StepResult(x + bcast(h, x) * (k1 + k2) / 2, state, 2)


class _Exploding(fr.Euler):
    """A candidate whose steps fail with the library's own error (as a user's model may)."""

    def step(self, flow, t, x, h, state, ctx):
        raise fr.errors.NonFiniteError("this candidate always fails")


def test_a_candidate_spending_more_than_its_stages_suggest_steps_down_to_the_budget():
    """The first count tried is ``nfe`` over the declared stages; a solver spending two
    evaluations per step is stepped down one count at a time to the most that fit."""
    flow = fr.ODEFlow(lambda t, x: -0.5 * x)
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    kw = dict(t_span=(0.0, 1.0), teacher_steps=32, candidates=[_PECE()])
    for nfe, steps in ((2, 1), (3, 1), (4, 2), (7, 3)):
        choice = choose_solver(flow, x, nfe, **kw)
        assert (choice.steps, choice.nfe) == (steps, 2 * steps), nfe


def test_a_failing_candidate_is_scored_infinite_at_its_budget_and_never_chosen():
    flow = fr.ODEFlow(lambda t, x: -0.5 * x)
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    kw = dict(t_span=(0.0, 1.0), teacher_steps=32)
    choice = choose_solver(flow, x, 4, candidates=[_Exploding(), fr.Euler()], **kw)
    assert isinstance(choice.solver, fr.Euler) and not isinstance(choice.solver, _Exploding)
    bad = choice.errors[0]
    assert isinstance(bad[0], _Exploding) and bad[1:] == (4, 4, math.inf)
    assert not choice.skipped
    with pytest.raises(fr.errors.NonFiniteError, match="every candidate failed"):
        choose_solver(flow, x, 4, candidates=[_Exploding()], **kw)
