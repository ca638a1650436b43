"""A new user's mistakes are refused with one clear line, before any work (issue 19, items 4, 6).

* a predictor that modifies ``x`` in place would silently corrupt the solve: refused;
* ``seeds=7`` names ``seeds``; ``steps=np.int64(4)`` is an int;
* a tolerance below the state dtype's resolution is refused up front;
* NaN/inf in ``x_start`` is found before the first step (``check_finite=False`` skips it);
* every failure error carries the partial solution.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import flowrestore as fr

from .helpers import gaussian_oracle, observations

F64 = torch.float64


@pytest.fixture(scope="module")
def oracle():
    return gaussian_oracle(seed=21, dim=6)


@pytest.fixture(scope="module")
def y(oracle):
    return observations(oracle, n=3)


# ------------------------------------------------------------------ in-place predictors
@pytest.mark.parametrize(
    "solver", [fr.Euler(), fr.Heun(), fr.Dopri5(), fr.InDISampler(), fr.SemiLinearMultistep()]
)
def test_in_place_predictor_is_refused(oracle, y, solver):
    def in_place(x, t):
        out = oracle(x.clone(), t)
        x.mul_(0.5)  # the mistake: the loop reuses this tensor
        return out

    kw = {} if solver.adaptive else {"steps": 4}
    with pytest.raises(fr.PredictorOutputError, match="modified its input x in place"):
        fr.solve(fr.InDIFlow(in_place), solver, y.clone(), **kw)


def test_in_place_predictor_would_have_corrupted_the_solve(oracle, y):
    """What the check prevents: without it (check_outputs=False) the answer is wrong, while the
    same predictor written out of place gives the right one."""

    def in_place(x, t):
        out = oracle(x.clone(), t)
        x.mul_(0.5)
        return out

    right = fr.solve(fr.InDIFlow(oracle), fr.Heun(), y, steps=8)
    wrong = fr.solve(fr.InDIFlow(in_place, check_outputs=False), fr.Heun(), y.clone(), steps=8)
    assert float((wrong.x - right.x).abs().max()) > 1e-2


def test_in_place_drift_is_refused():
    with pytest.raises(fr.PredictorOutputError, match="f modified its input x in place"):
        fr.solve(
            fr.ODEFlow(lambda t, x: x.neg_()), fr.RK4(), torch.ones(2, 3), t_span=(0, 1), steps=2
        )


def test_out_of_place_predictors_and_inference_mode_are_fine(oracle, y):
    ref = fr.solve(fr.InDIFlow(oracle), fr.Heun(), y, steps=6)
    with torch.inference_mode():  # inference tensors have no version counter: no check, no crash
        inf = fr.solve(fr.InDIFlow(oracle), fr.Heun(), y.clone(), steps=6)
    assert torch.equal(inf.x, ref.x)


# ------------------------------------------------------------------ messages that name the problem
@pytest.mark.parametrize("seeds", [7, "abc", 2.5, [1, 2.5, 3], [True, 1, 2]])
def test_bad_seeds_name_seeds(y, seeds):
    with pytest.raises(fr.ConfigError, match="seeds must"):
        fr.solve(fr.InDIFlow(lambda x, t: x), fr.InDISampler(eps=0.1), y, steps=2, seeds=seeds)


def test_numpy_integers_are_ints(oracle, y):
    a = fr.solve(fr.InDIFlow(oracle), fr.Euler(), y, steps=np.int64(4), seeds=np.arange(3))
    b = fr.solve(fr.InDIFlow(oracle), fr.Euler(), y, steps=4, seeds=[0, 1, 2])
    assert torch.equal(a.x, b.x) and a.stats.steps.tolist() == [4, 4, 4]
    sol = fr.solve(fr.InDIFlow(oracle), fr.Dopri5(max_steps=np.int32(50)), y)
    assert sol.status == "success"
    with pytest.raises(fr.ConfigError, match="steps must be a positive int"):
        fr.solve(fr.InDIFlow(oracle), fr.Euler(), y, steps=np.float64(4.0))


def test_tolerance_below_the_dtype_resolution_is_refused_up_front(oracle, y):
    calls = []
    flow = fr.InDIFlow(lambda x, t: calls.append(t) or oracle(x.double(), t.double()).float())
    with pytest.raises(
        fr.ConfigError, match=r"rtol=1e-12 is below the resolution .*torch\.float32"
    ):
        fr.solve(flow, fr.Dopri5(rtol=1e-12), y.float())
    assert calls == []
    # float64 resolves it; a float32 tolerance above epsilon is fine
    fr.solve(fr.InDIFlow(oracle), fr.Dopri5(rtol=1e-12, atol=1e-12, max_steps=200), y, t_end=0.5)
    assert fr.solve(flow, fr.Dopri5(rtol=1e-6), y.float()).status == "success"


# ------------------------------------------------------------------ non-finite starts
@pytest.mark.parametrize("solver", [fr.Euler(), fr.Dopri5()], ids=["Euler", "Dopri5"])
def test_non_finite_start_is_found_before_the_first_step(oracle, y, solver):
    calls = []
    flow = fr.InDIFlow(lambda x, t: calls.append(t) or oracle(x, t))
    bad = y.clone()
    bad[0, 2] = float("inf")
    kw = {} if solver.adaptive else {"steps": 3}
    with pytest.raises(fr.NonFiniteError, match=r"x_start is non-finite .*samples \[0\]") as e:
        fr.solve(flow, solver, bad, **kw)
    assert calls == []
    assert e.value.solution.stats.status.tolist() == [3, 0, 0]
    assert torch.equal(e.value.solution.x, bad)
    # check_finite=False skips the check (and all tracking): the solve runs, NaN in, NaN out
    if not solver.adaptive:
        sol = fr.solve(flow, solver, bad, check_finite=False, **kw)
        assert calls and not bool(torch.isfinite(sol.x[0]).all()) and sol.status == "success"


# ------------------------------------------------------------------ partial solutions
def test_every_failure_error_carries_the_partial_solution(oracle, y):
    nan_late = fr.InDIFlow(
        lambda x, t: oracle(x, t) * torch.where(t < 0.4, torch.nan, 1.0)[:, None]
    )
    with pytest.raises(fr.NonFiniteError) as e:
        fr.solve(nan_late, fr.Euler(), y, steps=4)
    assert e.value.solution is not None and e.value.solution.stats.status.tolist() == [3, 3, 3]
    with pytest.raises(fr.NonFiniteError) as e:
        fr.solve(nan_late, fr.Dopri5(), y)
    assert bool((e.value.solution.t_final > 0.3).all())
    with pytest.raises(fr.StepSizeUnderflowError) as e:
        fr.solve(fr.InDIFlow(oracle), fr.Dopri5(rtol=1e-10, atol=1e-12, min_step=0.2), y)
    assert e.value.solution.status == "step_size_underflow"
    assert isinstance(e.value, fr.errors.SolveFailure)
