"""Fitted per-step weights (flowrestore/solvers/fitted.py, flowrestore/integrate/fit_weights.py).

* the step is the exponential step with the given weights, written out here by hand;
* with DataIPNDM's weights it is DataIPNDM on the fitted grid;
* the solver steps only its grid: any other plan is refused before any evaluation;
* ``fit_weights`` lowers the error on inputs it did not see (exact diffusion models: closed-form
  answers), returns consistent weights, and refuses wrong requests before any evaluation.
"""

from __future__ import annotations

import pytest
import torch

import flowrestore as fr
from flowrestore.errors import ConfigError, IncompatibleSolverError
from flowrestore.integrate import fit_weights

from .helpers import F64, diffusion_problem, indi_problem, rel


class _Spy:
    """A clean-image predictor that counts its calls and records its inputs."""

    def __init__(self, f):
        self.f, self.calls, self.seen = f, 0, []

    def __call__(self, x, t):
        self.calls += 1
        self.seen.append((x.clone(), float(t.reshape(-1)[0])))
        return self.f(x, t)


def _toy_flow():
    """An InDI flow whose predictor is a known nonlinear function of (x, t)."""
    spy = _Spy(lambda x, t: torch.tanh(x) * (1 + 0.3 * t[:, None]) + 0.1 * t[:, None])
    return spy, fr.InDIFlow(spy)


WEIGHTS = ((1.0,), (1.7, -0.7), (1.2, 0.3, -0.5), (2.0, -1.5, 0.5))
TIMES = (1.0, 0.6, 0.3, 0.1, 0.0)


@pytest.mark.parametrize(
    "weights",
    # the second: a later step combines estimates an earlier one did not use (kept meanwhile)
    [WEIGHTS, ((1.0,), (1.0,), (0.5, 0.2, 0.3), (0.6, 0.1, 0.2, 0.1))],
)
def test_step_is_the_exponential_step_with_the_weights(weights):
    spy, flow = _toy_flow()
    y = torch.randn(3, 5, generator=torch.Generator().manual_seed(1), dtype=F64)
    solver = fr.FittedMultistep(weights=weights, times=TIMES)
    out = fr.solve(flow, solver, y, steps=4)
    # by hand: x_{k+1} = r x_k + (1 − r) Σ_j w_{k,j} D_{k−j}, r = t_{k+1}/t_k, newest first
    x, ds = y.clone(), []
    for k, w in enumerate(weights):
        t, s = TIMES[k], TIMES[k + 1]
        ds.insert(0, torch.tanh(x) * (1 + 0.3 * t) + 0.1 * t)
        combo = sum(wj * d for wj, d in zip(w, ds, strict=False))
        x = (s / t) * x + (1 - s / t) * combo
    torch.testing.assert_close(out.x, x, rtol=1e-12, atol=1e-12)
    assert spy.calls == 4 and int(out.stats.nfe.max()) == 4
    assert [t for _, t in spy.seen] == pytest.approx(TIMES[:-1])


def test_dataipndm_weights_reproduce_dataipndm_on_the_grid():
    _, flow, x_T, _ = diffusion_problem(seed=3, dim=16, batch=4)
    times = (1.0, 0.2, 0.03, 0.004, 0.0006, 0.0)
    ab = ((1.0,), (1.5, -0.5), (1.5, -0.5, 0.0), (1.5, -0.5), (1.5, -0.5))
    mine = fr.solve(flow, fr.FittedMultistep(weights=ab, times=times), x_T, steps=5).x
    ref = fr.solve(flow, fr.DataIPNDM(), x_T, steps=5, spacing=fr.Fitted(times)).x
    torch.testing.assert_close(mine, ref, rtol=1e-12, atol=1e-12)


def test_only_the_fitted_grid_is_stepped():
    spy, flow = _toy_flow()
    y = torch.randn(2, 5, dtype=F64)
    solver = fr.FittedMultistep(weights=WEIGHTS, times=TIMES)
    torch.testing.assert_close(solver.grid(), torch.tensor(TIMES, dtype=F64))
    for kwargs, match in (
        ({"steps": 5}, "fitted on the 4-step grid"),
        ({"steps": 4, "spacing": fr.Uniform()}, "fitted on the 4-step grid"),
        ({"grid": [1.0, 0.5, 0.3, 0.1, 0.0]}, "fitted on the 4-step grid"),
        ({"steps": 4, "t_end": 0.05}, "fitted on the 4-step grid"),
    ):
        with pytest.raises(ConfigError, match=match):
            fr.solve(flow, solver, y, **kwargs)
    with pytest.raises(IncompatibleSolverError, match="no embedded error estimate"):
        fr.solve(flow, solver, y, controller=fr.PIController(rtol=1e-3))
    with pytest.raises(ConfigError, match="not an error-controlled solve"):
        solver.check_schedule(object())  # a plan without a fixed grid
    assert spy.calls == 0
    # the same grid passed explicitly is accepted
    a = fr.solve(flow, solver, y, grid=list(TIMES)).x
    torch.testing.assert_close(a, fr.solve(flow, solver, y, steps=4).x)
    # in float32 too (its times rounded to float32: they were refused, at rtol 1e-9)
    b = fr.solve(flow, solver, y, grid=torch.tensor(TIMES, dtype=torch.float32)).x
    torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-7)
    with pytest.raises(ConfigError, match="fitted on the 4-step grid"):  # but not a float32 grid
        fr.solve(flow, solver, y, grid=torch.tensor(TIMES, dtype=torch.float32) * 0.999)
    with pytest.raises(IncompatibleSolverError):
        fr.solve(fr.ODEFlow(lambda t, x: -x), solver, y, steps=4, t_span=(1.0, 0.0))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"weights": ((1.0,), (1.5, -0.4)), "times": (1.0, 0.5, 0.0)}, r"sum to 1"),
        ({"weights": ((0.5, 0.5), (1.0,)), "times": (1.0, 0.5, 0.0)}, r"step 0 has only 1"),
        ({"weights": ((1.0,), (1.5, -0.5)), "times": (1.0, 0.0)}, r"one more point"),
        ({"weights": ((1.0,), ()), "times": (1.0, 0.5, 0.0)}, r"non-empty"),
        ({"weights": "abc", "times": (1.0, 0.5, 0.0)}, r"weights must be"),
        ({"weights": ((1.0,), (float("nan"), 1.0)), "times": (1.0, 0.5, 0.0)}, r"weights"),
        ({"weights": ((1.0,), (1.0,)), "times": (1.0, 0.7, 0.8, 0.0)}, r"decrease strictly"),
        ({"weights": ((1.0,),), "times": (1.0, 0.0), "t_span": (1.0, 1.0)}, r"t_span"),
    ],
)
def test_bad_construction_is_refused(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        fr.FittedMultistep(**kwargs)


def test_repr_rebuilds_the_solver():
    s = fr.FittedMultistep(weights=WEIGHTS, times=TIMES, t_span=(0.9, 0.0))
    assert eval(repr(s), {"FittedMultistep": fr.FittedMultistep}) == s


def test_fitted_weights_beat_the_fitted_grid_on_unseen_noises():
    """Exact linear/ε model of a stiff Gaussian prior: the closed-form map is the answer."""
    oracle, flow, x_T, exact = diffusion_problem(seed=21, dim=32, batch=32)
    warm = oracle.sample_latent(16, torch.Generator().manual_seed(77))
    for steps in (4, 6):
        solver = fit_weights(flow, warm, steps, history=3)
        assert solver.steps == steps and solver.t_span == (1.0, 0.0)
        for k, w in enumerate(solver.weights):
            assert len(w) == min(k + 1, 3) and sum(w) == pytest.approx(1.0, abs=1e-12)
        fitted = rel(fr.solve(flow, solver, x_T, steps=steps).x, exact)
        grid_only = rel(
            fr.solve(flow, fr.DataIPNDM(), x_T, steps=steps, spacing=fr.Fitted(solver.times)).x,
            exact,
        )
        assert fitted < 0.8 * grid_only, (steps, fitted, grid_only)


def test_no_iterations_keep_dataipndm_and_a_given_grid():
    oracle, flow, x_T, _ = diffusion_problem(seed=22, dim=8, batch=4)
    warm = oracle.sample_latent(8, torch.Generator().manual_seed(5))
    grid = fr.Fitted((1.0, 0.3, 0.05, 0.01, 0.0))
    s = fit_weights(flow, warm, 4, spacing=grid, iterations=0)
    assert s.times == grid.times
    assert s.weights == ((1.0,), (1.5, -0.5), (1.5, -0.5, 0.0), (1.5, -0.5, 0.0))
    one = fit_weights(flow, warm, 4, spacing=grid, history=1)
    assert one.weights == ((1.0,),) * 4  # history 1: DDIM, nothing to fit
    fitted = fit_weights(flow, warm, 4, spacing=grid)
    assert fitted.times == grid.times and fitted.weights != s.weights


@pytest.mark.parametrize("iterations", [2, 5, 8])
def test_fit_weights_returns_the_best_weights_it_evaluated(monkeypatch, iterations):
    """Exactly ``iterations`` objective evaluations; the first is DataIPNDM's weights, and the
    weights returned are the best evaluated on the warm-up batch, never a later, worse trial
    (here the line search's trials at 2 and 5 evaluations are worse than earlier ones)."""
    from flowrestore.integrate import weight_fitting

    seen = []
    p = weight_fitting.POWER

    def objective(err):  # the power mean of the per-sample errors (weight_fitting.POWER)
        return float(err.detach().pow(p).mean().pow(1 / p))

    def recorded(x, ref):
        err = fr.integrate.relative_error(x, ref)
        seen.append(objective(err))
        return err

    monkeypatch.setattr(weight_fitting, "relative_error", recorded)
    _, flow, y, _ = indi_problem(seed=4, dim=16, batch=8)
    grid = fr.Fitted((1.0, 0.7, 0.4, 0.15, 0.0))
    s = fit_weights(flow, y, 4, spacing=grid, iterations=iterations)
    assert len(seen) == iterations
    teacher = fr.solve(flow, fr.SemiLinearMultistep(), y, steps=64).x  # fit_grid's teacher
    base = fr.solve(flow, fr.DataIPNDM(), y, steps=4, spacing=grid).x
    assert seen[0] == pytest.approx(objective(fr.integrate.relative_error(base, teacher)))
    err = fr.integrate.relative_error(fr.solve(flow, s, y, steps=4).x, teacher)
    assert objective(err) == pytest.approx(min(seen), rel=1e-9)


def test_wrong_fit_requests_are_refused_before_any_evaluation():
    spy, flow = _toy_flow()
    y = torch.randn(2, 5, dtype=F64)
    for kwargs, match in (
        ({"history": 0}, "history"),
        ({"history": 5}, "history"),
        ({"history": True}, "history"),
        ({"iterations": -1}, "iterations"),
        ({"spacing": fr.Uniform()}, "spacing must be a Fitted"),
        ({"teacher_steps": 4}, "teacher_steps"),
    ):
        with pytest.raises(ConfigError, match=match):
            fit_weights(flow, y, 4, **kwargs)
    with pytest.raises(ConfigError, match="steps must be >= 2"):
        fit_weights(flow, y, 1)
    with pytest.raises(IncompatibleSolverError):
        fit_weights(fr.ODEFlow(lambda t, x: -x), y, 4, t_span=(1.0, 0.0))
    assert spy.calls == 0


def _diffusion_fitted(steps: int = 4):
    """A diffusion flow, noises, and a FittedMultistep with non-Adams weights on a fitted grid."""
    _, flow, x_T, _ = diffusion_problem(seed=5, dim=6, batch=3)
    times = (1.0, 0.05, 0.01, 0.002)[:steps] + (0.0,)
    weights = ((1.0,), (1.8, -0.8), (1.6, -0.9, 0.3), (1.7, -1.0, 0.3))[:steps]
    return flow, x_T, fr.FittedMultistep(weights=weights, times=times)


def test_gradient_equals_the_central_difference():
    from core.test_nfe_audit import assert_gradient_is_the_central_difference

    """``differentiable=True`` through the fitted steps (BIRD optimises through solves)."""
    flow, x_T, solver = _diffusion_fitted()
    x = x_T[1:2].clone().requires_grad_(True)
    flow = flow.restrict(torch.tensor([1]))
    assert_gradient_is_the_central_difference(
        lambda v: fr.solve(flow, solver, v, steps=4, differentiable=True).x, x
    )


def test_a_failing_sample_leaves_the_others_as_alone_and_callbacks_see_each_step():
    flow, x_T, solver = _diffusion_fitted()
    x = x_T.clone()
    x[1] = float("nan")
    sol = fr.solve(flow, solver, x, steps=4, on_failure="return")
    assert int(sol.stats.status[1]) != 0 and sol.stats.status.tolist()[0::2] == [0, 0]
    rows = torch.tensor([0, 2])
    alone = fr.solve(flow.restrict(rows), solver, x[rows], steps=4).x
    torch.testing.assert_close(sol.x[rows], alone, rtol=0, atol=0)
    seen = []
    sol = fr.solve(flow, solver, x_T, steps=4, save_at="steps",
                   callback=lambda k, t, v: seen.append((k, float(t))))  # fmt: skip
    assert [k for k, _ in seen] == [1, 2, 3, 4]
    assert [t for _, t in seen] == pytest.approx(sol.ts[1:].tolist())


def test_compiled_equals_eager():
    _, flow = _toy_flow()
    y = torch.randn(3, 5, generator=torch.Generator().manual_seed(2), dtype=F64)
    solver = fr.FittedMultistep(weights=WEIGHTS, times=TIMES)
    eager = fr.solve(flow, solver, y, steps=4).x
    compiled = fr.solve(flow, solver, y, steps=4, compile=True).x
    torch.testing.assert_close(compiled, eager, rtol=1e-12, atol=1e-12)


def test_no_host_read_inside_the_step_loop(monkeypatch):
    from core.test_syncs import _counts, _gaussian

    F, y = _gaussian()
    for steps in (3, 4):
        solver = fr.FittedMultistep(weights=WEIGHTS[:steps], times=TIMES[:steps] + (0.0,))
        run = lambda s=solver, n=steps: fr.solve(fr.InDIFlow(F), s, y, steps=n)  # noqa: E731
        inside, _, ops = _counts(monkeypatch, run)
        assert inside == 0, ops


def test_the_state_keeps_only_what_a_later_step_combines():
    """Weights using 1, 2, 1, 1 estimates: after step 0 one estimate is carried (step 1 uses
    it), after steps 1 and 2 none (no later step looks back)."""
    weights = [(1.0,), (1.5, -0.5), (1.0,), (1.0,)]
    solver = fr.FittedMultistep(weights=weights, times=(1.0, 0.7, 0.4, 0.2, 0.0))
    flow = fr.InDIFlow(lambda x, t: 0.5 * x)
    x = torch.ones(2, 3, dtype=torch.float64)
    from flowrestore.solvers.fitted import FittedState

    state = FittedState()
    grid = [1.0, 0.7, 0.4, 0.2]
    kept = []
    for k, t in enumerate(grid[:-1]):
        tt = torch.tensor(t, dtype=torch.float64)
        h = torch.tensor(grid[k + 1] - t, dtype=torch.float64)
        res = solver.step(flow, tt, x, h, state, None)
        x, state = res.x, res.state
        kept.append(len(state.values))
    assert kept == [1, 0, 0]


def test_fit_weights_on_a_part_way_span_fits_and_solves_that_span():
    """``t_span=(0.3, 0)``: the weights' differentiable solves run on the span asked (they ran on
    the flow's default span and were refused after the teacher and the grid's fit), and the
    weights returned are never worse on the warm-up batch than DataIPNDM's on the same grid,
    the teacher's answer from ``t = 0.3`` the target."""
    oracle, flow, x_T, _ = diffusion_problem(seed=23, dim=8, batch=8)
    with torch.no_grad():
        x_mid = fr.solve(flow, fr.RK4(), x_T, t_span=(1.0, 0.3), steps=200).x
    grid = fr.Fitted((1.0, 0.3, 0.05, 0.01, 0.0))
    s = fit_weights(flow, x_mid, 4, spacing=grid, t_span=(0.3, 0.0), iterations=6)
    assert s.t_span == (0.3, 0.0)
    ref = fr.solve(flow, fr.RK4(), x_mid, t_span=(0.3, 0.0), steps=400).x
    fitted = fr.solve(flow, s, x_mid, steps=4, t_span=(0.3, 0.0)).x
    start = fr.solve(flow, fr.DataIPNDM(), x_mid, t_span=(0.3, 0.0), steps=4, spacing=grid).x
    assert rel(fitted, ref) < 0.9 * rel(start, ref), (rel(fitted, ref), rel(start, ref))
