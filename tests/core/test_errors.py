"""Every bad-input class raises its typed error, with a message that says what was wrong."""

import pytest
import torch

import flowrestore as fr

from .helpers import gaussian_oracle, observations


@pytest.fixture(scope="module")
def oracle():
    return gaussian_oracle(seed=11, dim=6)


@pytest.fixture(scope="module")
def y(oracle):
    return observations(oracle, n=3)


@pytest.fixture(scope="module")
def flow(oracle):
    return fr.InDIFlow(oracle)


# ---------------------------------------------------------------- grids and time arguments
@pytest.mark.parametrize(
    "grid, match",
    [
        ([1.0, 0.5, 0.7, 0.0], "strictly monotone.*index 1"),
        ([1.0, 0.5, 0.5, 0.0], "strictly monotone"),
        ([1.5, 0.5, 0.0], r"must lie in \[0.0, 1.0\]"),
        ([1.0, 0.5, -0.1], r"must lie in \[0.0, 1.0\]"),
        ([0.0, 0.5, 1.0], "wrong direction"),
        ([1.0, float("nan"), 0.0], "finite"),
        ([1.0], "at least 2"),
        ([[1.0, 0.0]], "1-D"),
    ],
)
def test_bad_grid(flow, y, grid, match):
    with pytest.raises(fr.GridError, match=match):
        fr.solve(flow, fr.Euler(), y, grid=grid)


def test_grid_error_is_value_error(flow, y):
    with pytest.raises(ValueError):
        fr.solve(flow, fr.Euler(), y, grid=[0.0, 1.0])


def test_t_end_out_of_range_or_wrong_direction(flow, y):
    with pytest.raises(fr.GridError, match="wrong direction"):
        fr.solve(flow, fr.Euler(), y, steps=3, t_end=1.5)
    with pytest.raises(fr.GridError, match=r"must lie in \[0.0, 1.0\]"):
        fr.solve(flow, fr.Euler(), y, steps=3, t_end=-0.5)


def _bounded_flows(flow):
    """Every flow whose time is the unit interval: InDI, a diffusion model, its reverse SDE, Dirac's
    SDE and a guided flow (the last three built on identity models: only their times matter)."""
    abar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)
    diffusion = fr.DiffusionFlow(lambda x, k: torch.zeros_like(x), alphas_cumprod=abar)
    ident = lambda x, t: x  # noqa: E731
    dirac = fr.flows.DiracSDE(ident, ident, fr.schedules.Geometric(0.01, 0.5))
    guided = fr.GuidedFlow(diffusion, fr.degradations.Inpainting(torch.ones(6)), torch.zeros(3, 6))
    return {"indi": flow, "diffusion": diffusion, "diffusion-sde": diffusion.reverse_sde(),
            "dirac": dirac, "guided": guided}  # fmt: skip


@pytest.mark.parametrize("span", [(1.0005, 0.0), (1.0, -0.0005)])
def test_times_just_outside_the_unit_interval_are_refused(flow, y, span):
    for name, f in _bounded_flows(flow).items():
        solver = fr.EulerMaruyama() if name in ("diffusion-sde", "dirac") else fr.Euler()
        solver = fr.DDRMStep() if name == "guided" else solver
        with pytest.raises(fr.GridError, match=r"must lie in \[0.0, 1.0\]"):
            fr.solve(f, solver, y, t_span=span, steps=2)
        if span[0] > 1:  # the closed interval's end itself is a time
            fr.solve(f, solver, y, t_span=(1.0, 0.5), steps=2)


def test_steps_and_grid_both_given(flow, y):
    with pytest.raises(fr.ConfigError, match="grid= already fixes the times"):
        fr.solve(flow, fr.Euler(), y, steps=3, grid=[1.0, 0.5, 0.0])


def test_fixed_step_solver_without_steps(flow, y):
    with pytest.raises(fr.ConfigError, match="needs steps= or grid="):
        fr.solve(flow, fr.Heun(), y)


@pytest.mark.parametrize("steps", [0, -2, 2.5, True])
def test_bad_steps(flow, y, steps):
    with pytest.raises(fr.ConfigError, match="steps must be a positive int"):
        fr.solve(flow, fr.Euler(), y, steps=steps)


def test_tolerances_with_steps(flow, y):
    """Dopri5() steps a fixed grid with steps=; Dopri5(rtol=...) asked for error control."""
    with pytest.raises(fr.ConfigError, match=r"configures error control, but steps="):
        fr.solve(flow, fr.Dopri5(rtol=1e-4), y, steps=10)
    with pytest.raises(fr.ConfigError, match=r"controller= already sets the steps"):
        fr.solve(flow, fr.Dopri5(), y, steps=10, controller=fr.PIController())
    sol = fr.solve(flow, fr.Dopri5(), y, steps=10)
    assert sol.stats.steps.tolist() == [10] * y.shape[0] and int(sol.stats.rejected.sum()) == 0


def test_flow_without_span(y):
    with pytest.raises(fr.ConfigError, match="no default time span"):
        fr.solve(fr.ODEFlow(lambda t, x: -x), fr.Euler(), y, steps=3)


def test_save_at_not_on_grid(flow, y):
    with pytest.raises(fr.GridError, match="not a point of the step grid"):
        fr.solve(flow, fr.Euler(), y, steps=4, save_at=[0.3])


# ---------------------------------------------------------------- predictor outputs
@pytest.mark.parametrize(
    "bad, match",
    [
        (lambda x, t: x[:, :3], r"returned shape \(3, 3\), expected the state's shape \(3, 6\)"),
        (lambda x, t: x.float(), "returned dtype torch.float32, expected torch.float64"),
        (lambda x, t: torch.empty_like(x, device="meta"), "returned device meta, expected cpu"),
        (lambda x, t: x.tolist(), "must return a torch.Tensor, got list"),
    ],
)
@pytest.mark.parametrize(
    "solver", [fr.Euler(), fr.Dopri5(), fr.InDISampler()], ids=["Euler", "Dopri5", "InDISampler"]
)
def test_predictor_wrong_output(y, bad, match, solver):
    kw = {} if solver.adaptive else {"steps": 3}
    with pytest.raises(fr.PredictorOutputError, match=match):
        fr.solve(fr.InDIFlow(bad), solver, y, **kw)


def test_odeflow_wrong_output(y):
    with pytest.raises(fr.PredictorOutputError, match="f returned shape"):
        fr.solve(fr.ODEFlow(lambda t, x: x.sum(1)), fr.RK4(), y, t_span=(0.0, 1.0), steps=2)


# ---------------------------------------------------------------- non-finite values
def _nan_below(oracle, t_bad):
    return lambda x, t: oracle(x, t) * torch.where(t < t_bad, float("nan"), 1.0)[:, None]


@pytest.mark.parametrize(
    "solver, match",
    [
        (fr.Euler(), r"step 3 of 4 \(t=0.5 -> 0.25\)"),
        (fr.InDISampler(), r"step 3 of 4 \(t=0.5 -> 0.25\)"),
        (fr.Heun(), r"step 2 of 4 \(t=0.75 -> 0.5\)"),  # its second stage sits at the step's end
    ],
    ids=["Euler", "InDISampler", "Heun"],
)
def test_non_finite_predictor_fixed_step(oracle, y, solver, match):
    # grid 1, .75, .5, .25, 0: the predictor turns NaN from t = 0.5
    with pytest.raises(fr.NonFiniteError, match=match):
        fr.solve(fr.InDIFlow(_nan_below(oracle, 0.6)), solver, y, steps=4)


def test_non_finite_state_fixed_step(flow, y):
    bad = y.clone()
    bad[1, 0] = float("inf")
    calls = []
    spy = fr.InDIFlow(lambda x, t: calls.append(t) or flow.predictor(x, t))
    # issue 19: found before the first step, nothing evaluated (it was found after step 1)
    with pytest.raises(fr.NonFiniteError, match=r"x_start is non-finite .* samples \[1\] at t=1,"):
        fr.solve(spy, fr.Euler(), bad, steps=4)
    assert calls == []
    sol = fr.solve(flow, fr.Euler(), bad, steps=4, on_failure="return")
    assert sol.stats.status.tolist() == [0, 3, 0]
    assert sol.status == "non_finite"


def test_non_finite_adaptive(oracle, y):
    with pytest.raises(
        fr.NonFiniteError, match=r"non-finite .* in step \[\d+.*at t=\[0\.[67]"
    ) as e:
        fr.solve(fr.InDIFlow(_nan_below(oracle, 0.6)), fr.Dopri5(), y)
    # the failing step is the one after each sample's accepted steps
    failing = [int(k) + 1 for k in e.value.solution.stats.steps]
    assert f"in step {failing}" in str(e.value)


def test_non_finite_start_adaptive_fails_fast(flow, y):
    """Regression: a NaN sample used to step with NaN times until max_steps."""
    bad = y.clone()
    bad[2, 3] = float("nan")
    with pytest.raises(fr.NonFiniteError, match=r"samples \[2\] at t=1, found before the fir") as e:
        fr.solve(flow, fr.Dopri5(), bad)
    assert e.value.solution.stats.status.tolist() == [0, 0, 3]
    assert int(e.value.solution.stats.nfe.sum()) == 0
    sol = fr.solve(flow, fr.Dopri5(), bad, on_failure="return")
    assert sol.stats.status.tolist() == [0, 0, 3]
    assert int(sol.stats.nfe[2]) <= 2
    ok = fr.solve(flow, fr.Dopri5(), y[:2])
    assert torch.equal(sol.x[:2], ok.x)


def test_non_finite_posterior_mean_output(oracle, y):
    """Regression: the posterior-mean evaluation after the loop returned NaN silently."""
    pred = _nan_below(oracle, 0.3)
    with pytest.raises(fr.NonFiniteError, match="posterior-mean estimate at t=0.25 .*Euler"):
        fr.solve(fr.InDIFlow(pred), fr.Euler(), y, steps=3, t_end=0.25, output="posterior_mean")


def test_non_finite_torchdiffeq(oracle, y):
    with pytest.raises(fr.NonFiniteError, match=r"step 2 of 4 .*Torchdiffeq\('rk4'\)"):
        fr.solve(fr.InDIFlow(_nan_below(oracle, 0.3)), fr.Torchdiffeq("rk4"), y, steps=4)


# ---------------------------------------------------------------- adaptive failures
def test_step_size_underflow(flow, y):
    solver = fr.Dopri5(rtol=1e-10, atol=1e-12, min_step=0.2)
    with pytest.raises(fr.StepSizeUnderflowError, match="min_step=0.2"):
        fr.solve(flow, solver, y)
    sol = fr.solve(flow, solver, y, on_failure="return")
    assert sol.status == "step_size_underflow"
    assert bool((sol.stats.status == 2).all())


def test_max_steps(flow, y):
    solver = fr.Dopri5(rtol=1e-10, atol=1e-12, max_steps=5)
    with pytest.raises(fr.MaxStepsReachedError, match="max_steps=5") as info:
        fr.solve(flow, solver, y)
    partial = info.value.solution
    assert partial is not None and bool((partial.stats.status == 1).all())
    sol = fr.solve(flow, solver, y, on_failure="return")
    assert sol.status == "max_steps_reached"
    assert sol.stats.status.tolist() == [1, 1, 1]
    assert bool((sol.t_final > 0.5).all()), "partial solution stops where the budget ran out"
    assert bool((sol.stats.steps + sol.stats.rejected == 5).all())
    assert torch.equal(sol.x, partial.x)


def test_max_steps_only_for_the_hard_sample(oracle):
    y = observations(oracle, n=3)
    y[0] = oracle.mean + 1e-6 * (y[0] - oracle.mean)  # easy
    sol = fr.solve(
        fr.InDIFlow(oracle), fr.Dopri5(rtol=1e-9, atol=1e-12, max_steps=8), y, on_failure="return"
    )
    assert sol.stats.status[0] == 0 and bool((sol.stats.status[1:] == 1).all())


# ---------------------------------------------------------------- configuration and types
def test_bfloat16_with_adaptive(flow, y):
    with pytest.raises(fr.ConfigError, match="bfloat16"):
        fr.solve(flow, fr.Dopri5(), y.bfloat16())
    with pytest.raises(fr.ConfigError, match="float16"):
        fr.solve(flow, fr.Bosh3(), y.half())


@pytest.mark.parametrize(
    "flow_, solver, match",
    [
        (
            fr.ODEFlow(lambda t, x: -x),
            fr.InDISampler(),
            "InDISampler steps InDIFlow flows, but ODEFlow is not one; use Euler",
        ),
        (fr.ODEFlow(lambda t, x: -x), fr.ColdDiffusionSampler(), "steps InDIFlow flows"),
        (
            fr.SDEFlow(lambda t, x: -x, lambda t, x: x),
            fr.Euler(),
            "Euler steps ODE flows, but SDEFlow is not one; use EulerMaruyama",
        ),
        (fr.SDEFlow(lambda t, x: -x, lambda t, x: x), fr.Dopri5(), "steps ODE flows"),
    ],
)
def test_incompatible_solver(y, flow_, solver, match):
    kw = {} if solver.adaptive else {"steps": 3}
    with pytest.raises(fr.IncompatibleSolverError, match=match):
        fr.solve(flow_, solver, y, t_span=(1.0, 0.0), **kw)


def test_posterior_mean_needs_denoiser(y):
    with pytest.raises(fr.ConfigError, match="posterior_mean"):
        fr.solve(
            fr.ODEFlow(lambda t, x: -x),
            fr.Euler(),
            y,
            t_span=(0.0, 1.0),
            steps=2,
            output="posterior_mean",
        )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"output": "mean"}, "output must be one of"),
        ({"on_failure": "ignore"}, "on_failure must be one of"),
        ({"seeds": [1, 2]}, "one entry per sample"),
        ({"generator": torch.Generator(), "seeds": [1, 2, 3]}, "at most one of"),
    ],
)
def test_bad_options(flow, y, kwargs, match):
    with pytest.raises(fr.ConfigError, match=match):
        fr.solve(flow, fr.Euler(), y, steps=2, **kwargs)


def test_non_flow_and_non_solver(flow, y):
    with pytest.raises(TypeError, match=r"flow must be a flowrestore Flow, got function.*ODEFlow"):
        fr.solve(lambda t, x: x, fr.Euler(), y, steps=2)
    with pytest.raises(TypeError, match="solver must be a flowrestore Solver instance"):
        fr.solve(flow, "euler", y, steps=2)
    with pytest.raises(TypeError, match="solver must be a flowrestore Solver instance"):
        fr.solve(flow, fr.Euler, y, steps=2)
    with pytest.raises(TypeError, match="x_start must be a torch.Tensor"):
        fr.solve(flow, fr.Euler(), [[1.0] * 6], steps=2)
    with pytest.raises(TypeError, match="floating-point"):
        fr.solve(flow, fr.Euler(), torch.ones(2, 6, dtype=torch.long), steps=2)
    with pytest.raises(TypeError, match="predictor must be callable"):
        fr.InDIFlow(3)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: fr.Dopri5(rtol=-1.0), r"rtol must be a finite number >= 0, got -1.0"),
        (lambda: fr.Dopri5(rtol=0.0, atol=0.0), "cannot both be 0"),
        (lambda: fr.Bosh3(max_steps=0), "max_steps must be a positive int"),
        (lambda: fr.Dopri5(t_min=0.0), r"t_min must be in \(0, 1\)"),
        (lambda: fr.Dopri5(dfactor=2.0), "dfactor"),
        (lambda: fr.InDISampler(eps=-0.1), "eps must be a non-negative"),
        (lambda: fr.Power(rho=0.5), "rho must be a finite number >= 1"),
        (lambda: fr.Torchdiffeq("leapfrog"), "torchdiffeq method"),
    ],
)
def test_bad_solver_configuration(make, match):
    with pytest.raises(fr.ConfigError, match=match):
        make()


def test_a_forward_default_span_sets_the_direction():
    """A flow whose default span runs forward (a user's ``ODEFlow`` subclass from 0 to 1)
    refuses a backward span, as a backward default refuses a forward one."""

    class Forward(fr.ODEFlow):
        default_span = (0.0, 1.0)

    flow = Forward(lambda t, x: -x)
    x = torch.ones(2, 3, dtype=torch.float64)
    sol = fr.solve(flow, fr.Euler(), x, steps=4)
    assert sol.ts.tolist() == [1.0] and sol.t_final.tolist() == [1.0, 1.0]  # the end time alone
    sol = fr.solve(flow, fr.Euler(), x, steps=2, t_span=(0.2, 0.7))
    assert sol.ts.tolist() == [pytest.approx(0.7)]
    with pytest.raises(fr.GridError, match="wrong direction: it must be increasing"):
        fr.solve(flow, fr.Euler(), x, steps=2, t_span=(1.0, 0.0))
