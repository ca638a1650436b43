"""Review: the grid-fitting entry points refuse wrong requests before any evaluation, with a
message naming the argument and the value received."""

from __future__ import annotations

import json
import math

import pytest
import torch

import flowrestore as fr
from flowrestore.errors import ConfigError, GridError
from flowrestore.integrate import choose_solver, fit_grid, fit_grids, fit_weights


def _counted_flow():
    oracle = fr.oracles.GaussianOracle(mean=torch.zeros(4), std=torch.ones(4), noise_std=0.8)
    calls = {"n": 0}

    def F(x, t):
        calls["n"] += 1
        return oracle.posterior_mean(x, t)

    _, y = oracle.sample(3, generator=torch.Generator().manual_seed(0))
    return fr.InDIFlow(F), y, calls


FITTERS = {
    "fit_grid": lambda flow, y, **kw: fit_grid(flow, fr.Heun(), y, 2, **kw),
    "fit_grids": lambda flow, y, **kw: fit_grids(flow, fr.Heun(), y, [2], **kw),
    "fit_weights": lambda flow, y, **kw: fit_weights(flow, y, 2, **kw),
    "choose_solver": lambda flow, y, **kw: choose_solver(flow, y, 2, **kw),
}


@pytest.mark.parametrize("name", sorted(FITTERS))
def test_a_t_span_against_the_flows_direction_is_refused_naming_t_span(name):
    flow, y, calls = _counted_flow()
    with pytest.raises(GridError, match=r"t_span.*wrong direction.*\(0\.0, 1\.0\)"):
        FITTERS[name](flow, y, t_span=(0.0, 1.0))
    assert calls["n"] == 0


def test_choose_solver_names_nfe_when_the_budget_reaches_teacher_steps():
    flow, y, calls = _counted_flow()
    with pytest.raises(ConfigError, match=r"nfe=64.*teacher_steps=64"):
        choose_solver(flow, y, 64)
    assert calls["n"] == 0


def test_fit_weights_names_steps_and_start_estimate_when_the_grid_reaches_teacher_steps():
    """With ``start_estimate`` the grid has ``steps + 1`` steps: the message said ``steps (8)``
    for ``steps=7``."""
    flow, y, calls = _counted_flow()
    with pytest.raises(ConfigError, match=r"steps=7.*start_estimate.*8 steps.*teacher_steps=8"):
        fit_weights(flow, y, 7, start_estimate=torch.zeros(4), teacher_steps=8)
    assert calls["n"] == 0


@pytest.mark.parametrize("name", sorted(FITTERS))
def test_a_non_finite_warm_up_batch_is_refused_naming_x_warmup(name):
    """The teacher's solve refused it, suggesting ``on_failure='return'``, which no fitter takes."""
    flow, y, calls = _counted_flow()
    y = y.clone()
    y[1, 2] = float("nan")
    with pytest.raises(fr.NonFiniteError, match=r"x_warmup.*samples \[1\]") as info:
        FITTERS[name](flow, y)
    assert "on_failure" not in str(info.value)
    assert calls["n"] == 0


def _fitted_multistep(t_span=(1.0, 0.0)):
    return fr.FittedMultistep(
        weights=((1.0,), (1.5, -0.5), (1.5, -0.5, 0.0)),
        times=(1.0, 0.6, 0.25, 0.0),
        t_span=t_span,
    )


@pytest.mark.parametrize("name", ["fit_grid", "fit_grids"])
def test_a_solver_tied_to_its_own_grid_is_refused_by_the_grid_fitters(name):
    """A FittedMultistep carries its grid: fitting another one failed after the teacher's solve."""
    flow, y, calls = _counted_flow()
    fit = {"fit_grid": fit_grid, "fit_grids": lambda *a: fit_grids(*a[:3], [a[3]])}[name]
    with pytest.raises(ConfigError, match=r"FittedMultistep.*grid"):
        fit(flow, _fitted_multistep(), y, 3)
    assert calls["n"] == 0


def test_choose_solver_scores_a_grid_bound_candidate_at_its_own_steps():
    """A FittedMultistep candidate crashed choose_solver part-way (a ConfigError from its solve
    at another step count) unless the budget was exactly its own."""
    flow, y, _ = _counted_flow()
    fitted = _fitted_multistep()
    for nfe in (3, 4, 6):
        choice = choose_solver(flow, y, nfe, candidates=[fr.Heun(), fitted], teacher_steps=8)
        scored = {repr(c): (steps, used) for c, steps, used, _ in choice.errors}
        assert scored[repr(fitted)] == (3, 3)
    choice = choose_solver(flow, y, 2, candidates=[fr.Heun(), fitted], teacher_steps=8)
    assert [c for c, _ in choice.skipped] == [fitted]
    assert "3 evaluations" in choice.skipped[0][1]


def test_choose_solver_skips_a_grid_bound_candidate_fitted_over_another_span_before_any_work():
    flow, y, calls = _counted_flow()
    other = _fitted_multistep(t_span=(1.0, 0.5))
    with pytest.raises(ConfigError, match="no candidate"):
        choose_solver(flow, y, 3, candidates=[other], teacher_steps=8)
    assert calls["n"] == 0
    choice = choose_solver(flow, y, 3, candidates=[fr.Heun(), other], teacher_steps=8)
    assert [c for c, _ in choice.skipped] == [other]
    assert "t_span" in choice.skipped[0][1]


def test_fit_grids_refuses_a_bad_linearise_in_any_try_before_fitting_the_others():
    """``linearise`` was checked only when its try's turn came: the tries before it were fitted
    first, then the request was refused."""
    flow, y, calls = _counted_flow()
    tries = {"a": {"teacher_steps": 8, "refine": 0}, "b": {"linearise": "yes"}}
    with pytest.raises(ConfigError, match=r"tries\['b'\].*linearise.*'yes'"):
        fit_grids(flow, fr.Heun(), y, [2], x_check=y, tries=tries)
    assert calls["n"] == 0


def test_fit_grids_refuses_a_log_that_is_not_callable_before_any_work():
    """``log="print"`` failed with a bare TypeError once the first step count was fitted."""
    flow, y, calls = _counted_flow()
    with pytest.raises(ConfigError, match=r"log must be None or a callable.*'print'"):
        fit_grids(flow, fr.Heun(), y, [2], tries={"a": {"teacher_steps": 8}}, log="print")
    assert calls["n"] == 0


def test_a_grid_fitted_on_a_forward_span_ends_at_plus_zero():
    """``(t1 − t1)/(t0 − t1)`` is ``-0.0`` for ``t0 < t1``: the saved grid read ``..., -0.0]``."""
    flow = fr.ODEFlow(lambda t, x: -(1 + 10 * t[:, None]) * x)
    fit = fit_grid(
        flow, fr.Heun(), torch.ones(2, 2), 2, teacher_steps=8, t_span=(0.0, 1.0), refine=2
    )
    assert math.copysign(1.0, fit.times[-1]) == 1.0
    assert "-0.0" not in json.dumps(list(fit.times))
