"""IPNDM's analytic first step (``start_estimate``; flowrestore/solvers/adams.py, "The analytic
first step"): at a pure-noise start the model's clean estimate is the data's mean, so the first
step may take it instead of evaluating the model.

Checked where that is exact — a flow-matching model at ``t = 1`` (``x_1`` is the noise alone, so
``E[x_0 | x_1] = E[x_0]``): the solve equals the evaluated one and costs one evaluation less —
and on exact diffusion models, where the estimate at ``σ_max`` moves by ``O(s²/σ_max)`` over the
inputs: ``steps=N + 1`` at ``N`` evaluations is as accurate as the evaluated ``N + 1`` steps,
and the published ``m = 0`` is not, for data whose mean is not 0.
"""

from __future__ import annotations

import pytest
import torch

import flowrestore as fr
from flowrestore.errors import ConfigError, IncompatibleSolverError, ShapeError
from flowrestore.oracles import GaussianFlowMatchingOracle

from .helpers import F64, diffusion_problem, indi_problem, rel


def _flow_matching(seed=5, dim=6):
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(dim, generator=g, dtype=F64)
    oracle = GaussianFlowMatchingOracle(
        mean=mean, std=0.2 + torch.rand(dim, generator=g, dtype=F64)
    )
    return mean, fr.FlowMatchingFlow(oracle, shift=3.0), torch.randn(4, dim, generator=g, dtype=F64)


def _counting(flow):
    """Count the flow's evaluations (drift and denoise calls)."""
    calls = {"n": 0}
    for name in ("drift", "denoise"):
        method = getattr(flow, name)

        def counted(t, x, method=method):
            calls["n"] += 1
            return method(t, x)

        setattr(flow, name, counted)
    return calls


SOLVERS = {
    "IPNDM": lambda **kw: fr.IPNDM(**kw),
    "DataIPNDM": lambda **kw: fr.DataIPNDM(**kw),
    "SemiLinearMultistep": lambda **kw: fr.SemiLinearMultistep(**kw),
    "UniPC": lambda **kw: fr.UniPC(**kw),
}


@pytest.mark.parametrize("name", list(SOLVERS))
@pytest.mark.parametrize("steps", [3, 5, 8])
def test_exact_estimate_gives_the_evaluated_solve_for_one_evaluation_less(name, steps):
    """On flow matching the clean estimate at ``t = 1`` is the prior mean for every input: the
    first step with ``start_estimate=mean`` is the evaluated one, to round-off, and the model is
    called ``steps − 1`` times (``Solution.stats.nfe`` says so too) — for IPNDM in both forms,
    ``SemiLinearMultistep`` and ``UniPC`` (whose corrector reuses the first value)."""
    make = SOLVERS[name]
    mean, flow, x = _flow_matching()
    torch.testing.assert_close(flow.denoise(torch.tensor(1.0, dtype=F64), x), mean.expand_as(x))
    calls = _counting(flow)
    want = fr.solve(flow, make(), x, steps=steps)
    assert calls["n"] == steps and int(want.stats.nfe.max()) == steps
    calls["n"] = 0
    got = fr.solve(flow, make(start_estimate=mean), x, steps=steps)
    assert calls["n"] == steps - 1
    assert got.stats.nfe.tolist() == [steps - 1] * 4
    torch.testing.assert_close(got.x, want.x, rtol=1e-12, atol=1e-12)
    # a number broadcasts like a tensor; another estimate gives another answer
    shifted = fr.solve(flow, make(start_estimate=mean + 0.5), x, steps=steps)
    assert rel(shifted.x, want.x) > 1e-3
    zero = fr.solve(flow, make(start_estimate=0.0), x, steps=steps)
    same = fr.solve(flow, make(start_estimate=torch.zeros(1, 6, dtype=F64)), x, steps=steps)
    torch.testing.assert_close(zero.x, same.x, rtol=0, atol=0)
    solver = make(start_estimate=mean)
    assert solver.linear_form().start_estimate is None and "start_estimate=" in repr(solver)
    assert make().linear_form().start_estimate is None


@pytest.mark.parametrize(("schedule", "ptype"), [("linear", "epsilon"), ("cosine", "v_prediction")])
@pytest.mark.parametrize("form", ["velocity", "data"])
def test_one_more_step_for_free_on_exact_diffusion_models(schedule, ptype, form):
    """At ``σ_max`` the exact model's estimate is the prior mean up to ``O(s²/σ_max)``: with the
    mean, ``N`` evaluations reach the accuracy of ``N + 1`` evaluated steps (within 2 %), ahead
    of the evaluated ``N`` steps by at least 1.08×; the published ``m = 0`` (Zhou et al. 2024)
    is at least 1.5× less accurate than the mean on this prior (its mean is not 0)."""
    oracle, flow, x_T, ref = diffusion_problem(schedule, ptype, dim=32, batch=16)
    for n in (4, 6):
        more = rel(fr.solve(flow, fr.IPNDM(form=form), x_T, steps=n + 1).x, ref)
        fewer = rel(fr.solve(flow, fr.IPNDM(form=form), x_T, steps=n).x, ref)
        sol = fr.solve(flow, fr.IPNDM(form=form, start_estimate=oracle.mean), x_T, steps=n + 1)
        assert int(sol.stats.nfe.max()) == n
        got = rel(sol.x, ref)
        zero = rel(fr.solve(flow, fr.IPNDM(form=form, start_estimate=0.0), x_T, steps=n + 1).x, ref)
        assert got <= 1.02 * more, (n, got, more)
        assert 1.08 * got <= fewer, (n, got, fewer)
        assert zero >= 1.5 * got, (n, zero, got)


def test_refused_before_any_evaluation():
    """InDI starts from the degraded image, whose clean estimate depends on it: refused, as is an
    estimate that does not broadcast to the state, before the flow is evaluated; values that are
    not a finite number or floating tensor are refused at construction."""
    oracle, flow, y, _ = indi_problem(dim=6, batch=3)
    calls = _counting(flow)
    for make in SOLVERS.values():
        with pytest.raises(IncompatibleSolverError, match="start_estimate"):
            fr.solve(flow, make(start_estimate=oracle.mean), y, steps=4)
    mean, fm, x = _flow_matching()
    fm_calls = _counting(fm)
    for shape in ((5,), (2, 4, 6)):  # no broadcast at all; one to a larger shape than the state
        for make in SOLVERS.values():
            with pytest.raises(ShapeError, match=r"start_estimate.*\(4, 6\)"):
                fr.solve(fm, make(start_estimate=torch.zeros(shape, dtype=F64)), x, steps=4)
    assert calls["n"] == 0 and fm_calls["n"] == 0
    for bad in (
        float("nan"),
        float("inf"),
        True,
        "mean",
        torch.zeros(3, dtype=torch.long),
        torch.tensor([0.0, float("nan")]),
    ):
        for make in SOLVERS.values():
            with pytest.raises(ConfigError, match="start_estimate"):
                make(start_estimate=bad)
    assert fr.IPNDM(start_estimate=0).start_estimate == 0


def test_linear_form_and_repr():
    """``fit_grid`` fits the solver with every step evaluated (:meth:`IPNDM.linear_form` drops
    the estimate); the repr names it."""
    solver = fr.DataIPNDM(start_estimate=torch.zeros(6, dtype=F64))
    assert solver.linear_form().start_estimate is None
    assert "start_estimate=" in repr(solver)
    assert "start_estimate" not in repr(fr.DataIPNDM())


def test_estimate_start_is_the_models_mean_estimate_at_the_start():
    """:func:`flowrestore.integrate.estimate_start`: the batch mean of the model's clean estimate
    at the flow's start, ``[1, *event]``, from one evaluation — on flow matching the prior mean
    exactly, on an exact diffusion model the closed form ``c + s²/(s² + σ_max²)(x̄ − c)``
    averaged over the batch (x̄ the start state); flows without a noise start and batches of one
    are refused before any evaluation."""
    from flowrestore.integrate import estimate_start

    mean, flow, x = _flow_matching()
    calls = _counting(flow)
    got = estimate_start(flow, x)
    assert calls["n"] == 1 and got.shape == (1, 6)
    torch.testing.assert_close(got, mean.unsqueeze(0), rtol=1e-12, atol=1e-12)
    oracle, dflow, x_T, _ = diffusion_problem("linear", "epsilon", dim=8, batch=16)
    state = dflow.to_state(x_T, 1.0)
    c, s2, sigma = oracle.mean, oracle.std**2, dflow.sigma_max
    want = (c + s2 / (s2 + sigma**2) * (state - c)).mean(0, keepdim=True)
    torch.testing.assert_close(estimate_start(dflow, x_T), want, rtol=1e-9, atol=1e-12)
    assert float((want - c).abs().max()) > 1e-5  # the estimate is not the prior mean itself
    _, iflow, y, _ = indi_problem(dim=6, batch=3)
    icalls = _counting(iflow)
    with pytest.raises(IncompatibleSolverError, match="pure noise"):
        estimate_start(iflow, y)
    for bad in (x[:1], x[0], "noise"):  # one noise, no batch axis, not a tensor
        with pytest.raises(ConfigError, match="at least 2"):
            estimate_start(flow, bad)
    assert icalls["n"] == 0 and calls["n"] == 1
    two = estimate_start(flow, x[:2])  # the smallest batch accepted
    torch.testing.assert_close(two, mean.unsqueeze(0), rtol=1e-12, atol=1e-12)


def test_fitted_multistep_takes_the_estimate_on_its_first_step():
    """:class:`~flowrestore.FittedMultistep` with ``start_estimate``: on flow matching (exact
    estimate at ``t = 1``) the evaluated solve, to round-off, for one evaluation less
    (``evaluations``); refused on InDI and with a wrong shape before any evaluation."""
    mean, flow, x = _flow_matching()
    weights = ((1.0,), (1.5, -0.5), (1.2, -0.1, -0.1), (1.5, -0.5, 0.0))
    times = (1.0, 0.7, 0.4, 0.1, 0.0)
    plain = fr.FittedMultistep(weights=weights, times=times)
    given = fr.FittedMultistep(weights=weights, times=times, start_estimate=mean)
    assert (plain.evaluations, given.evaluations, given.steps) == (4, 3, 4)
    calls = _counting(flow)
    want = fr.solve(flow, plain, x, steps=4)
    calls["n"] = 0
    got = fr.solve(flow, given, x, steps=4)
    assert calls["n"] == 3 and got.stats.nfe.tolist() == [3] * 4
    torch.testing.assert_close(got.x, want.x, rtol=1e-12, atol=1e-12)
    assert "start_estimate=" in repr(given)
    _, iflow, y, _ = indi_problem(dim=6, batch=3)
    icalls = _counting(iflow)
    with pytest.raises(IncompatibleSolverError, match="start_estimate"):
        fr.solve(
            iflow, fr.FittedMultistep(weights=weights, times=times, start_estimate=0.0), y, steps=4
        )
    calls["n"] = 0
    bad = fr.FittedMultistep(weights=weights, times=times, start_estimate=torch.zeros(2, 6))
    with pytest.raises(ShapeError, match="start_estimate"):
        fr.solve(flow, bad, x, steps=4)
    assert icalls["n"] == 0 and calls["n"] == 0
    with pytest.raises(ConfigError, match="start_estimate"):
        fr.FittedMultistep(weights=weights, times=times, start_estimate=float("nan"))


def test_fit_weights_with_the_estimate_fits_one_more_step(monkeypatch):
    """``fit_weights(..., start_estimate=m)``: a grid of ``steps + 1`` steps whose solve costs
    ``steps`` evaluations; never worse on the warm-up batch than ``DataIPNDM(start_estimate=m)``
    on the same grid (the fit starts from its weights); at 3 evaluations on an exact diffusion
    model's unseen noises at least 5× more accurate than the fit without it (the extra step is
    worth most at the fewest evaluations: measured 20×; from 4 on the two are within the fits'
    spread, benchmarks/RESULTS.md); refused on InDI."""
    from flowrestore.integrate import estimate_start, fit_weights, relative_error

    oracle, flow, x_T, exact = diffusion_problem("linear", "epsilon", seed=21, dim=32, batch=32)
    warm = oracle.sample_latent(16, torch.Generator().manual_seed(77))
    m = estimate_start(flow, warm)
    teacher = fr.solve(flow, fr.SemiLinearMultistep(), warm, steps=64).x  # fit_grid's teacher
    from flowrestore.integrate import weight_fitting

    costs = []  # evaluations of each differentiable solve the weights are fitted through

    def recorded(*args, **kwargs):
        sol = fr.solve(*args, **kwargs)
        costs.append(int(sol.stats.nfe.max()))
        return sol

    monkeypatch.setattr(weight_fitting, "solve", recorded)
    for steps in (3, 5):
        costs.clear()
        solver = fit_weights(flow, warm, steps, start_estimate=m)
        assert costs and set(costs) == {steps}, costs  # the fit solves with the estimate too
        assert (solver.steps, solver.evaluations) == (steps + 1, steps)
        assert solver.start_estimate is m
        sol = fr.solve(flow, solver, x_T, steps=solver.steps)
        assert int(sol.stats.nfe.max()) == steps
        base = fr.DataIPNDM(start_estimate=m)
        grid = fr.Fitted(solver.times)
        p = fr.integrate.weight_fitting.POWER
        on_warm = relative_error(fr.solve(flow, solver, warm, steps=steps + 1).x, teacher)
        base_x = fr.solve(flow, base, warm, steps=steps + 1, spacing=grid).x
        base_warm = relative_error(base_x, teacher)
        assert on_warm.pow(p).mean() <= base_warm.pow(p).mean() * (1 + 1e-9)
        if steps == 3:
            without = fit_weights(flow, warm, steps)
            got = rel(sol.x, exact)
            other = rel(fr.solve(flow, without, x_T, steps=steps).x, exact)
            assert got < 0.2 * other, (steps, got, other)
    _, iflow, y, _ = indi_problem(dim=6, batch=3)
    with pytest.raises(IncompatibleSolverError, match="start_estimate"):
        fit_weights(iflow, y, 3, start_estimate=0.0)
    with pytest.raises(ConfigError, match="start_estimate"):
        fit_weights(flow, warm, 3, start_estimate="mean")


def test_compiled_solves_take_each_estimate():
    """``fr.solve(..., compile=True)`` caches its compiled step loop by the solver's ``repr``,
    which names a tensor estimate by shape only: two estimates of the same shape must still
    give the eager answers (the tensor is an input of the compiled loop, not a constant)."""
    mean, flow, x = _flow_matching()
    for make in (SOLVERS["DataIPNDM"], SOLVERS["UniPC"]):
        for m in (mean.unsqueeze(0), mean.unsqueeze(0) - 1.0):
            eager = fr.solve(flow, make(start_estimate=m), x, steps=4).x
            compiled = fr.solve(flow, make(start_estimate=m), x, steps=4, compile=True).x
            torch.testing.assert_close(compiled, eager, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "kw",
    [
        {"steps": 6, "t_span": (0.3, 0.0)},
        {"grid": torch.linspace(0.3, 0.0, 7, dtype=F64)},
        {"steps": 6, "t_span": (0.999, 0.0)},
    ],
    ids=["t_span", "grid", "just-below-the-start"],
)
def test_a_solve_that_starts_part_way_is_refused_before_any_evaluation(kw):
    """The estimate is the clean estimate at the flow's pure-noise start (``t = 1``): a solve
    from ``t = 0.3`` (``t_span=`` or ``grid=``) has an input-dependent clean estimate there, so
    ``start_estimate`` would be wrong (measured 12× worse on flow matching): refused with a
    :class:`ConfigError` naming it and the start, before the flow is evaluated — for every solver
    that takes the option, ``FittedMultistep`` and ``fit_weights`` included. From ``t = 1`` it
    still runs."""
    from flowrestore.integrate import fit_weights

    mean, flow, x = _flow_matching()
    calls = _counting(flow)
    for make in SOLVERS.values():
        with pytest.raises(ConfigError, match=r"start_estimate.*starts at t=0\.(3|999)\b"):
            fr.solve(flow, make(start_estimate=mean), x, **kw)
    oracle, dflow, x_T, _ = diffusion_problem(dim=6, batch=2)
    dcalls = _counting(dflow)
    with pytest.raises(ConfigError, match="start_estimate"):
        fr.solve(dflow, fr.DataIPNDM(start_estimate=oracle.mean), x_T, **kw)
    weights = ((1.0,), (1.5, -0.5), (1.2, -0.1, -0.1))
    fitted = fr.FittedMultistep(
        weights=weights, times=(1.0, 0.6, 0.2, 0.0), t_span=(0.3, 0.0), start_estimate=mean
    )
    with pytest.raises(ConfigError, match=r"start_estimate.*t=0\.3"):
        fr.solve(flow, fitted, x, steps=3, t_span=(0.3, 0.0))
    with pytest.raises(ConfigError, match=r"start_estimate.*t=0\.3"):
        fit_weights(flow, x, 3, t_span=(0.3, 0.0), start_estimate=mean)
    assert calls["n"] == 0 and dcalls["n"] == 0
    for make in SOLVERS.values():  # from the pure-noise start, by t_span or grid
        fr.solve(flow, make(start_estimate=mean), x, steps=3, t_span=(1.0, 0.0))
        fr.solve(flow, make(start_estimate=mean), x, grid=torch.linspace(1, 0, 4, dtype=F64))
