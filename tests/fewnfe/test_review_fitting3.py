"""Review (third pass) of the few-NFE fitting tools: what a user of ``fit_weights``,
``choose_solver`` and ``estimate_start`` would hit, and GITS' dynamic programming against a
brute-force search over every path of a small teacher grid."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import flowrestore as fr
from flowrestore.errors import NonFiniteError
from flowrestore.integrate import choose_solver, estimate_start, fit_weights
from flowrestore.integrate.gits import dp_path

from .helpers import F64, diffusion_problem


class _Scaled(torch.nn.Module):
    """A clean-image predictor with a trainable parameter (a network the caller trains)."""

    def __init__(self):
        super().__init__()
        self.p = torch.nn.Parameter(torch.tensor(1.0, dtype=F64))

    def forward(self, x, t):
        return torch.tanh(x) * self.p * (1 + 0.3 * t[:, None])


def test_fit_weights_leaves_no_gradient_on_the_models_parameters_or_the_batch():
    """Only the weights are fitted: a trainable model's ``.grad`` (which the caller's next
    optimiser step would apply) and the warm-up batch's stay untouched."""
    model = _Scaled()
    flow = fr.InDIFlow(model)
    y = torch.randn(4, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    y.requires_grad_()
    s = fit_weights(flow, y, 3, spacing=fr.Fitted((1.0, 0.6, 0.2, 0.0)), teacher_steps=8)
    assert s.weights != ((1.0,), (1.5, -0.5), (1.5, -0.5, 0.0))  # it did fit
    assert model.p.grad is None
    assert y.grad is None


def test_fit_weights_refuses_when_no_trial_solves_the_batch_finitely():
    """A model that fails at a point of the given grid (not of the teacher's): every trial,
    DataIPNDM's weights first, is non-finite; the fit says so instead of returning
    DataIPNDM's weights as if fitted."""

    def F(x, t):
        out = torch.tanh(x) * (1 + 0.3 * t[:, None])
        bad = ((t - 0.37).abs() < 1e-6)[:, None]
        return torch.where(bad, torch.full_like(out, math.nan), out)

    flow = fr.InDIFlow(F)
    y = torch.randn(3, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    with pytest.raises(NonFiniteError, match=r"fit_weights.*non-finite"):
        fit_weights(flow, y, 3, spacing=fr.Fitted((1.0, 0.37, 0.1, 0.0)), teacher_steps=8)


def test_choose_solver_skips_a_candidate_whose_start_estimate_its_checks_refuse():
    """A ``start_estimate`` candidate on a span that does not start from pure noise, or whose
    estimate does not broadcast to the batch, is skipped with the reason (as a candidate the
    flow refuses), before the teacher's solve: not an error after it."""
    _, flow, x_T, _ = diffusion_problem(dim=4, batch=4)
    est = estimate_start(flow, x_T)
    calls = {"n": 0}
    plain = flow.denoise

    def counted(t, x):
        calls["n"] += 1
        return plain(t, x)

    part_way = fr.DataIPNDM(start_estimate=est)
    wrong_shape = fr.DataIPNDM(start_estimate=est[:, :2])
    flow.denoise = counted
    with pytest.raises(fr.errors.ConfigError, match="no candidate solves"):
        choose_solver(flow, x_T, 4, candidates=[part_way], teacher_steps=16, t_span=(0.5, 0.0))
    assert calls["n"] == 0
    choice = choose_solver(
        flow, x_T, 4, candidates=[part_way, fr.Euler()], teacher_steps=16, t_span=(0.5, 0.0)
    )
    assert isinstance(choice.solver, fr.Euler)
    assert [c for c, _ in choice.skipped] == [part_way]
    assert "start_estimate" in choice.skipped[0][1] and "t=0.5" in choice.skipped[0][1]
    choice = choose_solver(flow, x_T, 4, candidates=[wrong_shape, fr.Euler()], teacher_steps=16)
    assert [c for c, _ in choice.skipped] == [wrong_shape]
    assert "does not broadcast" in choice.skipped[0][1]


def test_choose_solver_power_mean_at_a_large_power_neither_underflows_nor_ties():
    """``dx/dt = −x/2`` over ``[0, 1]``: every sample's relative error is the solver's
    amplification factor against ``e^{−1/2}`` (Euler: ``(1 − 1/8)^4``, Heun with 2 steps:
    ``(1 − 1/4 + 1/32)^2``), so the power mean at any power is that error. At power 400 the
    errors' powers underflow (``0.03^400``), which scored both 0 and let the tie pick Euler."""
    flow = fr.ODEFlow(lambda t, x: -0.5 * x)
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(3), dtype=F64)
    exact = math.exp(-0.5)
    euler = abs((1 - 0.5 / 4) ** 4 - exact) / exact
    heun = abs((1 - 0.25 + 0.25**2 / 2) ** 2 - exact) / exact
    choice = choose_solver(
        flow, x, 4, candidates=[fr.Euler(), fr.Heun()], t_span=(0.0, 1.0), power=400
    )
    scores = {type(c).__name__: (n, used, s) for c, n, used, s in choice.errors}
    assert scores["Euler"][:2] == (4, 4) and scores["Heun"][:2] == (2, 4)
    assert scores["Euler"][2] == pytest.approx(euler, rel=1e-6)
    assert scores["Heun"][2] == pytest.approx(heun, rel=1e-6)
    assert isinstance(choice.solver, fr.Heun)


def test_estimate_start_refuses_a_non_finite_batch_before_the_evaluation():
    _, flow, x_T, _ = diffusion_problem(dim=4, batch=4)
    calls = {"n": 0}
    plain = flow.denoise

    def counted(t, x):
        calls["n"] += 1
        return plain(t, x)

    flow.denoise = counted
    bad = x_T.clone()
    bad[2, 1] = math.nan
    with pytest.raises(NonFiniteError, match=r"x_warmup.*samples \[2\]"):
        estimate_start(flow, bad)
    assert calls["n"] == 0


@pytest.mark.parametrize("seed", range(4))
def test_dp_path_is_the_cheapest_path_of_a_brute_force_search(seed):
    """Every ``N``-step path ``0 < i_1 < … < M`` costed as ``first[i_1] + Σ triples[i_{n−1}, i_n,
    i_{n+1}]``: the dynamic programme finds the minimum (ties aside), and ``None`` exactly when
    every path is infinite."""
    g = torch.Generator().manual_seed(seed)
    for m in range(2, 7):
        first = torch.rand(m + 1, generator=g, dtype=F64)
        first[0] = math.inf
        tri = torch.rand(m + 1, m + 1, m + 1, generator=g, dtype=F64)
        k, i, j = torch.meshgrid(*(torch.arange(m + 1),) * 3, indexing="ij")
        tri[~((k < i) & (i < j))] = math.inf
        tri[torch.rand(tri.shape, generator=g) < 0.3 * (seed % 2)] = math.inf

        def cost(p, first=first, tri=tri):
            triples = zip(p, p[1:], p[2:], strict=False)
            return float(first[p[1]]) + sum(float(tri[a, b, c]) for a, b, c in triples)

        for n in range(1, m + 1):
            paths = [[0, *c, m] for c in itertools.combinations(range(1, m), n - 1)]
            best = min(cost(p) for p in paths)
            got = dp_path(first, tri, n)
            if not math.isfinite(best):
                assert got is None, (m, n)
                continue
            assert got is not None and len(got) == n + 1 and (got[0], got[-1]) == (0, m)
            assert all(b > a for a, b in zip(got, got[1:], strict=False))
            assert cost(got) == pytest.approx(best, rel=1e-12), (m, n)


def test_choose_spacing_refuses_what_the_candidates_solves_would_before_the_teacher():
    """A ``start_estimate`` solver on a span that does not start from pure noise, an estimate
    that does not broadcast to the batch, a solver tied to its own grid, a solver that is not
    one: refused before the teacher's solve (they failed after it, or with an AttributeError)."""
    from flowrestore.integrate import choose_spacing

    oracle, _, x_T, _ = diffusion_problem(dim=4, batch=4)
    calls = {"n": 0}

    def model(x, t):
        calls["n"] += 1
        return oracle(x, t)

    flow = fr.DiffusionFlow(model, alphas_cumprod=oracle.alphas_cumprod, prediction_type="epsilon")
    est = estimate_start(flow, x_T)
    calls["n"] = 0
    own = fr.FittedMultistep(weights=((1.0,), (1.5, -0.5)), times=(1.0, 0.1, 0.0))
    kw = dict(steps=[2], teacher_steps=16)
    for solver, extra, err, match in (
        (fr.DataIPNDM(start_estimate=est), {"t_span": (0.5, 0.0)}, fr.errors.ConfigError, "t=0.5"),
        (fr.DataIPNDM(start_estimate=est[:, :2]), {}, fr.errors.ShapeError, "broadcast"),
        (own, {}, fr.errors.ConfigError, "FittedMultistep"),
        ("Euler", {"steps": None}, fr.errors.ArgumentTypeError, "solver must be"),
    ):
        with pytest.raises(err, match=match):
            choose_spacing(flow, solver, x_T, **{**kw, **extra})
    assert calls["n"] == 0


def test_fit_weights_refuses_a_given_grid_of_another_step_count_before_any_evaluation():
    """The weights are fitted on the grid given: one of another step count was interpolated
    to the solve's (e.g. ``fit_grid``'s ``steps``-step grid with ``start_estimate``, whose
    solve has ``steps + 1`` steps), and the weights fitted on a grid nobody asked for."""
    calls = {"n": 0}

    def F(x, t):
        calls["n"] += 1
        return torch.tanh(x)

    flow = fr.InDIFlow(F)
    y = torch.randn(3, 2, generator=torch.Generator().manual_seed(2), dtype=F64)
    with pytest.raises(fr.errors.ConfigError, match=r"spacing is a 4-step grid.*3 steps"):
        fit_weights(flow, y, 3, spacing=fr.Fitted((1.0, 0.5, 0.2, 0.05, 0.0)), teacher_steps=8)
    assert calls["n"] == 0
    _, dflow, x_T, _ = diffusion_problem(dim=4, batch=4)
    est = estimate_start(dflow, x_T)
    with pytest.raises(fr.errors.ConfigError, match=r"3-step grid.*4 steps.*start_estimate"):
        fit_weights(dflow, x_T, 3, spacing=fr.Fitted((1.0, 0.1, 0.01, 0.0)), start_estimate=est)


def test_fit_grid_is_deterministic_and_leaves_the_global_rng_and_threads_alone():
    """Same warm-up inputs, same grid; the caller's RNG stream and thread count unchanged; the
    result a plain spacing that round-trips through its times."""
    from flowrestore.integrate import fit_grid

    _, flow, x_T, _ = diffusion_problem(dim=4, batch=4)
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = fit_grid(flow, fr.DataIPNDM(), x_T, 3, teacher_steps=16, refine=8, linearise=True)
    assert torch.equal(torch.rand(3), expected)
    b = fit_grid(flow, fr.DataIPNDM(), x_T, 3, teacher_steps=16, refine=8, linearise=True)
    assert a == b and torch.get_num_threads() == threads
    again = fr.Fitted(tuple(a.times))
    out = fr.solve(flow, fr.DataIPNDM(), x_T, steps=3, spacing=again).x
    assert torch.equal(out, fr.solve(flow, fr.DataIPNDM(), x_T, steps=3, spacing=a).x)


def test_fit_grids_rejects_a_fit_that_fails_on_the_check_inputs_and_keeps_the_others(
    monkeypatch,
):
    """A fitted grid whose solve of an unseen input is not finite scores ``inf`` and is not
    kept; it used to raise out of ``fit_grids``, losing the fits of the other step counts."""
    from flowrestore.integrate import fit_grids, fit_table

    def F(x, t):  # fails at t = 0.2371 only, a time neither the default grids nor RK4's reach
        out = torch.tanh(x) * (1 + 0.3 * t[:, None])
        bad = ((t - 0.2371).abs() < 1e-9)[:, None]
        return torch.where(bad, torch.full_like(out, math.nan), out)

    flow = fr.InDIFlow(F)
    g = torch.Generator().manual_seed(4)
    y, y_check = (
        torch.randn(3, 2, generator=g, dtype=F64),
        torch.randn(3, 2, generator=g, dtype=F64),
    )
    grids = {2: fr.Fitted((1.0, 0.2371, 0.0)), 3: fr.Fitted((1.0, 0.6, 0.3, 0.0))}
    monkeypatch.setattr(fit_table, "fit_grid", lambda flow, solver, x, n, **kw: grids[n])
    records = []
    out = fit_grids(flow, fr.Euler(), y, [2, 3], x_check=y_check, log=records.append)
    assert records[0]["fits"] == {"default": math.inf} and records[0]["kept"] is None
    assert math.isfinite(records[0]["default"])
    assert records[1]["kept"] == "default" and out is not None
    assert dict(out.times) == {3: grids[3].times}


def test_choose_solver_skips_a_refused_candidate_beside_one_of_its_class_with_another_estimate():
    """Two candidates of one class with different ``start_estimate`` tensors: the refused one is
    skipped (it was looked up with ``==``, which compares the tensors and raised)."""
    _, flow, x_T, _ = diffusion_problem(dim=4, batch=4)
    est = estimate_start(flow, x_T)
    good, bad = fr.DataIPNDM(start_estimate=est), fr.DataIPNDM(start_estimate=est[:, :2])
    choice = choose_solver(flow, x_T, 4, candidates=[good, bad], teacher_steps=16)
    assert choice.solver is good and [c for c, _ in choice.skipped] == [bad]
    assert choice.nfe == 4 and choice.steps == 5  # the analytic first step: 5 steps, 4 evaluations


def test_a_frozen_dataclass_flow_is_fitted_as_its_mutable_twin():
    """The fit's evaluation savings shadow methods on the flow instance; a frozen dataclass
    flow (which ``solve`` takes) made ``fit_grid`` and ``fit_weights`` raise
    ``FrozenInstanceError``. It is fitted without them, to the same grid and weights."""
    import dataclasses

    from flowrestore.flows.base import ResidualFlow
    from flowrestore.integrate import fit_grid

    class Toy(ResidualFlow):
        def denoise(self, t, x):
            return torch.tanh(x) * (1 + 0.3 * t.reshape(-1, 1))

    Frozen = dataclasses.dataclass(frozen=True)(type("Frozen", (Toy,), {}))
    x = torch.randn(3, 2, generator=torch.Generator().manual_seed(5), dtype=F64)
    kw = dict(teacher_steps=12, refine=4)
    assert fit_grid(Frozen(), fr.DataIPNDM(), x, 3, **kw) == fit_grid(
        Toy(), fr.DataIPNDM(), x, 3, **kw
    )
    grid = fr.Fitted((1.0, 0.5, 0.2, 0.0))
    a = fit_weights(Frozen(), x, 3, spacing=grid, teacher_steps=12, iterations=3)
    b = fit_weights(Toy(), x, 3, spacing=grid, teacher_steps=12, iterations=3)
    assert a.weights == b.weights


def test_dp_path_treats_a_nan_cost_as_no_step():
    """Every step costs 1 but one triple, off the best paths, is NaN (an undefined error): the
    3-step path of cost 3 is still found (the NaN spread through ``min`` and made it ``None``)."""
    m = 4
    first = torch.tensor([math.inf, 1.0, 1.0, 1.0, 1.0], dtype=F64)
    k, i, j = torch.meshgrid(*(torch.arange(m + 1),) * 3, indexing="ij")
    tri = torch.where((k < i) & (i < j), 1.0, math.inf).to(F64)
    tri[0, 1, 3] = math.nan
    path = dp_path(first, tri, 3)
    assert path is not None and len(path) == 4 and (path[0], path[-1]) == (0, m)
    assert path[:3] != [0, 1, 3]
    assert dp_path(first, tri, 2) is not None
