"""Fitted grids (docs/math.md §11; flowrestore/integrate/fitting.py, integrate/gits.py).

* wrong requests are refused before any evaluation (an SDE solver on InDI's flow, a stochastic
  or error-controlled solver, a bad budget);
* the dynamic programme returns the path of least summed cost (brute force on small cases);
* the teacher-forced symbolic solve is exact where its linearisation is: on an isotropic Gaussian
  (``∂D/∂x = α I``) it reproduces the real solve's error along any grid;
* a fitted grid beats the flow's default grid on inputs it did not see, and is reusable.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import flowrestore as fr
from flowrestore.errors import ConfigError, IncompatibleSolverError
from flowrestore.integrate import fit_grid
from flowrestore.integrate.gits import dp_path, symbolic_cost

from .helpers import F64, diffusion_problem, indi_problem


class _Counter:
    def __init__(self, f):
        self.f, self.calls = f, 0

    def __call__(self, x, t):
        self.calls += 1
        return self.f(x, t)


def test_wrong_requests_are_refused_before_any_evaluation():
    oracle, _, y, _ = indi_problem(dim=4, batch=2)
    spy = _Counter(oracle.posterior_mean)
    flow = fr.InDIFlow(spy)
    with pytest.raises(IncompatibleSolverError, match="EulerMaruyama"):
        fit_grid(flow, fr.EulerMaruyama(), y, 4)
    with pytest.raises(ConfigError, match="stochastic"):
        fit_grid(flow, fr.InDISampler(eps=0.1), y, 4)
    with pytest.raises(ConfigError, match="error control"):
        fit_grid(flow, fr.Dopri5(rtol=1e-3), y, 4)
    with pytest.raises(ConfigError, match="teacher_steps"):
        fit_grid(flow, fr.Euler(), y, 8, teacher_steps=8)
    with pytest.raises(ConfigError, match="steps"):
        fit_grid(flow, fr.Euler(), y, 0)
    with pytest.raises(ConfigError, match="t_span"):
        fit_grid(fr.ODEFlow(lambda t, x: -x), fr.Euler(), y, 4)
    with pytest.raises(ConfigError, match="linearise"):
        fit_grid(flow, fr.Euler(), y, 4, linearise=1)
    assert spy.calls == 0


def test_dynamic_programme_finds_the_cheapest_path():
    """Against brute force over every path of 1–4 steps (1: the single step ``[0, m]``)."""
    g = torch.Generator().manual_seed(0)
    m = 7
    first = torch.rand(m + 1, generator=g, dtype=F64)
    first[0] = math.inf
    tri = torch.rand(m + 1, m + 1, m + 1, generator=g, dtype=F64)
    k, i, j = torch.meshgrid(*[torch.arange(m + 1)] * 3, indexing="ij")
    tri[~((k < i) & (i < j))] = math.inf

    def cost(path):
        return first[path[1]] + sum(
            tri[path[n - 1], path[n], path[n + 1]] for n in range(1, len(path) - 1)
        )

    for steps in (1, 2, 3, 4):
        paths = [[0, *p, m] for p in itertools.combinations(range(1, m), steps - 1)]
        assert dp_path(first, tri, steps) == min(paths, key=cost), steps


def test_symbolic_solve_is_exact_for_an_isotropic_gaussian():
    """``D`` affine with ``∂D/∂x = α(t) I``: the linearised teacher forcing is the real solve —
    of the solver's linear form (``IPNDM()`` without its guarded landing, a per-sample choice the
    coefficients cannot model: the guard acts on one of these grids, 0.038 vs 0.048)."""
    assert fr.IPNDM().linear_form() == fr.IPNDM(landing_guard=False)
    heun = fr.Heun()
    assert heun.linear_form() is heun
    _, flow, x_T, _ = diffusion_problem("linear", "epsilon", dim=8, batch=4, std=torch.tensor(0.3))
    for solver in (fr.SemiLinearMultistep(), fr.Euler(), fr.Heun(), fr.IPNDM()):
        grid_t = flow.default_spacing()(24, 1.0, 0.0)
        sol = fr.solve(flow, fr.SemiLinearMultistep(), x_T, grid=grid_t, save_at="steps")
        states = [flow.to_state(sol.trajectory[m], float(grid_t[m])) for m in range(25)]
        cost = symbolic_cost(flow, solver, grid_t, states)
        assert cost.solver == solver.linear_form()  # what the coefficients can model
        for idx in ([0, 5, 11, 17, 24], [0, 3, 9, 14, 20, 22, 24]):
            real = fr.solve(flow, solver.linear_form(), x_T, grid=grid_t[idx]).x
            want = float((real - sol.x).norm() / sol.x.norm())
            assert cost.path(idx) == pytest.approx(want, rel=1e-6)
        if not isinstance(solver, fr.Euler):
            continue
        # the dynamic programme's tables: a single-step solver's cost of t_i → t_j is its real
        # step from the teacher's X_i, whatever the previous point k; the first step's from X_0
        triples, first = cost.triples(), cost.first_steps()
        for k, i, j in ((0, 5, 11), (3, 9, 14), (7, 20, 24), (1, 2, 3)):
            want = _step_error(flow, solver, grid_t, states, i, j)
            assert float(triples[k, i, j]) == pytest.approx(want, rel=1e-6)
        for j in (5, 24):
            want = _step_error(flow, solver, grid_t, states, 0, j)
            assert float(first[j]) == pytest.approx(want, rel=1e-6)


def test_only_the_first_step_of_the_symbolic_costs_is_the_solves_first():
    """``IPNDM()`` on InDI corrects its first step only (flowrestore/solvers/adams.py): its cost
    of ``t_k → t_i → t_j`` from the teacher's ``X_k`` is the uncorrected solver's for ``k > 0``
    (those steps are never a solve's first) and differs from it for ``k = 0``; a real solve along
    a grid (``path``) is the corrected one."""
    oracle, flow, y, _ = indi_problem(seed=2, dim=8, batch=4)
    grid_t = torch.linspace(1.0, 0.0, 13, dtype=F64)
    sol = fr.solve(flow, fr.RK4(), y, grid=grid_t, save_at="steps")
    states = [sol.trajectory[m] for m in range(13)]
    plain = fr.IPNDM(start_corrector=False)
    cost_on = symbolic_cost(flow, fr.IPNDM(), grid_t, states)
    cost_off = symbolic_cost(flow, plain, grid_t, states)
    on, off = cost_on.triples(), cost_off.triples()
    later = torch.isfinite(off[1:])
    assert bool(later.any())
    torch.testing.assert_close(on[1:][later], off[1:][later], rtol=1e-12, atol=0)
    first = torch.isfinite(off[0]) & (torch.arange(13) > 1)[None, :]
    assert bool(((on[0] - off[0]).abs()[first] > 1e-6 * off[0][first]).all())
    torch.testing.assert_close(cost_off.first_steps(), cost_on.first_steps())
    idx = [0, 2, 5, 9, 12]
    real = fr.solve(flow, fr.IPNDM(), y, grid=grid_t[idx]).x
    other = fr.solve(flow, plain, y, grid=grid_t[idx]).x
    assert cost_on.path(idx) != cost_off.path(idx)
    assert not torch.equal(real, other)


def _step_error(flow, solver, grid_t, states, i, j) -> float:
    """Relative error of the solver's one real step ``t_i → t_j`` from the teacher's ``X_i``."""
    x_i = flow.from_state(states[i], float(grid_t[i]))
    real = fr.solve(flow, solver, x_i, grid=grid_t[[i, j]]).x
    target = flow.from_state(states[j], float(grid_t[j]))
    return float((real - target).norm() / target.norm())


@pytest.mark.parametrize(
    "problem,solver",
    [
        ("linear", fr.Euler()),
        ("linear", fr.Heun()),
        ("cosine", fr.IPNDM(form="data")),
        ("indi", fr.RK4()),  # numeric costs (stages off the grid)
    ],
    ids=["diffusion-euler", "diffusion-heun", "diffusion-ipndm", "indi-rk4"],
)
def test_fitted_grid_beats_the_default_on_unseen_inputs(problem, solver):
    if problem == "indi":
        oracle, flow, _, _ = indi_problem(seed=3, dim=16, batch=2)
        _, warm = oracle.sample(16, generator=torch.Generator().manual_seed(10))
        _, test = oracle.sample(32, generator=torch.Generator().manual_seed(11))
        exact = oracle.ode_solution(test, 0.0)
        steps, kw = 2, {"teacher_steps": 24}
    else:
        oracle, flow, _, _ = diffusion_problem(problem, "epsilon", seed=3, dim=16)
        warm = oracle.sample_latent(16, torch.Generator().manual_seed(10))
        test = oracle.sample_latent(32, torch.Generator().manual_seed(11))
        exact = oracle.exact_map(test)
        steps, kw = 5, {}
    fitted = fit_grid(flow, solver, warm, steps, **kw)
    assert isinstance(fitted, fr.Fitted) and len(fitted.times) == steps + 1
    err_fit = float((fr.solve(flow, solver, test, steps=steps, spacing=fitted).x - exact).norm())
    err_def = float((fr.solve(flow, solver, test, steps=steps).x - exact).norm())
    assert err_fit < 0.9 * err_def, (err_fit, err_def)
    again = fitted(2 * steps, 1.0, 0.0)  # reusable at other step counts (interpolated)
    assert again.numel() == 2 * steps + 1 and bool((again.diff() < 0).all())


@pytest.mark.parametrize("problem", ["indi", "diffusion"])
def test_symbolic_costs_reuse_the_teachers_clean_estimates(problem):
    """The teacher's own evaluations ``D(X_m, t_m)`` are reused: the costs then cost ``M``
    evaluations (the probes), not ``2M``, and are the same costs; ``flow.denoise`` is restored."""
    from flowrestore.integrate.endpoint import default_spacing
    from flowrestore.integrate.fitting import _teacher_solve

    if problem == "indi":
        _, flow, x, _ = indi_problem(seed=4, dim=8, batch=3)
    else:
        _, flow, x, _ = diffusion_problem("linear", "epsilon", seed=4, dim=8, batch=3)
    teacher = fr.SemiLinearMultistep()
    grid_t = default_spacing(flow, teacher, 0.0)(16, 1.0, 0.0)
    sol, states, seen = _teacher_solve(flow, teacher, x, grid_t)
    assert "denoise" not in vars(flow) and len(seen) == int(sol.stats.nfe.max()) == 16
    calls = []
    plain = flow.denoise
    flow.denoise = lambda t, z: calls.append(1) or plain(t, z)
    try:
        reused = symbolic_cost(flow, fr.IPNDM(), grid_t, states, seen)
        n_reused = len(calls)
        fresh = symbolic_cost(flow, fr.IPNDM(), grid_t, states)
        n_fresh = len(calls) - n_reused
        symbolic_cost(flow, fr.IPNDM(), grid_t, states, seen, linearise=False)
    finally:
        del flow.denoise
    # the probes only (one per teacher point); everything; nothing (plain teacher forcing)
    assert (n_reused, n_fresh, len(calls) - n_reused - n_fresh) == (16, 32, 0)
    for idx in ([0, 4, 9, 13, 16], [0, 2, 7, 11, 14, 16]):
        assert reused.path(idx) == pytest.approx(fresh.path(idx), rel=1e-5)


def test_only_estimates_taken_at_the_teachers_states_are_reused():
    """A teacher with stages inside its steps (RK4) records nothing (its stage estimates are not
    the ``D(X_m, t_m)`` the costs need, and holding them would multiply the fit's memory); an
    estimate whose input norm differs from ``‖X_m‖`` is not reused."""
    from flowrestore.integrate.endpoint import default_spacing
    from flowrestore.integrate.fitting import _teacher_solve
    from flowrestore.integrate.gits import _recorded

    _, flow, x, _ = indi_problem(seed=4, dim=8, batch=3)
    grid_t = default_spacing(flow, fr.RK4(), 0.0)(8, 1.0, 0.0)
    assert _teacher_solve(flow, fr.RK4(), x, grid_t)[2] == []
    grid_t = default_spacing(flow, fr.SemiLinearMultistep(), 0.0)(8, 1.0, 0.0)
    _, states, seen = _teacher_solve(flow, fr.SemiLinearMultistep(), x, grid_t)
    assert _recorded(seen, float(grid_t[3]), states[3]) is seen[3][2]
    assert _recorded(seen, float(grid_t[3]), states[3] * (1 + 1e-5)) is None
    assert _recorded(seen, float(grid_t[3]), states[4]) is None


def test_teacher_solve_restores_the_flow_on_failure():
    from flowrestore.integrate.fitting import _teacher_solve

    _, flow, x, _ = indi_problem(seed=4, dim=8, batch=3)
    with pytest.raises(fr.FlowRestoreError):
        _teacher_solve(flow, fr.SemiLinearMultistep(), x[:, :3], torch.tensor([1.0, 2.0]))
    assert "denoise" not in vars(flow)


@pytest.mark.parametrize("solver", [fr.SemiLinearMultistep(), fr.IPNDM(), fr.Heun()])
def test_the_start_is_evaluated_once_per_fit_and_changes_nothing(solver, monkeypatch):
    """Every verification and refinement solve starts from the warm-up batch at ``t_0``: its first
    estimate (or drift) there is taken once per fit, not once per solve, and the fitted grid is
    the one a fit evaluating every solve's start gets; the flow's methods are restored."""
    import contextlib

    from flowrestore.integrate import fitting

    oracle, base, _, _ = diffusion_problem("linear", "epsilon", seed=3, dim=16)
    warm = oracle.sample_latent(16, torch.Generator().manual_seed(10))
    at_start, calls = [], []

    def model(x, k):
        calls.append(1)
        k = torch.as_tensor(k).reshape(-1)
        at_start.append(bool((k == k.max()).all()) and float(k.max()) >= 999 - 1e-6)
        return oracle(x, k)

    flow = fr.DiffusionFlow(model, alphas_cumprod=base.alphas_cumprod)
    fitted = fit_grid(flow, solver, warm, 4, refine=12)
    memo_calls, memo_starts = len(calls), sum(at_start)
    assert not {"to_state", "denoise", "velocity", "drift"} & set(vars(flow))
    # the teacher's own first evaluation, and at most one more for a solver stepping the drift
    assert 1 <= memo_starts <= 2
    calls.clear()
    at_start.clear()
    monkeypatch.setattr(fitting, "_start_memo", lambda *a: contextlib.nullcontext())
    plain = fit_grid(flow, solver, warm, 4, refine=12)
    assert plain.times == fitted.times
    # without the memo each of the ≥ 12 refinement solves evaluates the start again
    assert sum(at_start) >= memo_starts + 12 and len(calls) >= memo_calls + 12


def test_the_start_memo_reads_no_device_value_in_the_step_loop():
    """The memo decides on the host (the start's identity, the state's shape): a solve of the
    warm-up batch inside it has exactly the syncs of the same solve outside it (the planning's and
    the final checks', none in the step loop), served from the memo or not."""
    from syncs import SyncCounter

    from flowrestore.integrate.fitting import _start_memo

    # a predictor that is a plain tensor expression (the oracles validate their t on the host)
    flow = fr.InDIFlow(lambda x, t: 0.6 * x + 0.2 * t[:, None] + 0.1)
    x = torch.randn(4, 16, generator=torch.Generator().manual_seed(3), dtype=F64)
    grid = fr.Power(1.5)(5, 1.0, 0.0)
    for solver in (fr.SemiLinearMultistep(), fr.IPNDM(), fr.Heun()):
        with SyncCounter() as plain:
            want = fr.solve(flow, solver, x, grid=grid).x
        with _start_memo(flow, solver, x, None):
            first = fr.solve(flow, solver, x, grid=grid).x  # fills the memo
            with SyncCounter() as memo:
                got = fr.solve(flow, solver, x, grid=grid).x  # served from it
        # the plain solve's own reads are its planning and final checks (tests/core/test_syncs.py)
        assert memo.count == plain.count, (solver, memo.ops, plain.ops)
        assert torch.equal(got, want) and torch.equal(first, want)


def test_a_fitted_grid_meets_issue_10s_gaussian_goal_on_an_unseen_instance():
    """Issue 10's goal, relative error ≤ 1e-4 at 6 NFE on InDI's Gaussian oracle, with a grid
    fitted on 16 warm-up draws (``refine=256``, as the few-NFE benchmark's group (d) chose on its
    validation split) for the multistep defaults: the best of them on 32 other draws of an
    instance in neither split, against the closed-form ODE solution (the default grids are at
    3.8e-4 there for ``IPNDM()``, whose first step is corrected, 1.2e-3 or worse for the other
    two: none meets the goal)."""
    s = 6001
    std = 0.5 + torch.rand(256, generator=torch.Generator().manual_seed(s), dtype=F64)
    mean = torch.randn(256, generator=torch.Generator().manual_seed(s + 1), dtype=F64)
    oracle = fr.oracles.GaussianOracle(mean=mean, std=std, noise_std=0.8)
    _, y = oracle.sample(32, generator=torch.Generator().manual_seed(s + 2))
    _, warm = oracle.sample(16, generator=torch.Generator().manual_seed(s + 3))
    flow, exact = fr.InDIFlow(oracle.posterior_mean), oracle.ode_solution(y, 0.0)

    def error(x):
        return float((x - exact).norm() / (exact - mean).norm())

    fitted, default = {}, {}
    for solver in (fr.IPNDM(), fr.DataIPNDM(), fr.SemiLinearMultistep()):
        grid = fit_grid(flow, solver, warm, 6, refine=256)(6, 1.0, 0.0)
        fitted[repr(solver)] = error(fr.solve(flow, solver, y, grid=grid).x)
        default[repr(solver)] = error(fr.solve(flow, solver, y, steps=6).x)
    assert min(default.values()) > 2e-4, default
    assert min(fitted.values()) <= 1e-4, fitted


@pytest.mark.parametrize("solver", [fr.RK4(), fr.Midpoint()], ids=repr)
def test_a_one_step_fit_of_a_solver_with_stages_off_the_grid(solver):
    """With ``steps=1`` the only step lands on ``t = 0``, which a Runge–Kutta solver takes
    without its stages; the symbolic costs must still be refused for it (its other steps evaluate
    between the teacher's points) instead of failing inside the fit."""
    oracle, flow, _, _ = indi_problem(seed=3, dim=16, batch=2)
    _, warm = oracle.sample(8, generator=torch.Generator().manual_seed(10))
    fitted = fit_grid(flow, solver, warm, 1, teacher_steps=8, refine=0)
    assert fitted.times == (1.0, 0.0)
    two = fit_grid(flow, solver, warm, 2, teacher_steps=8, refine=0)
    assert len(two.times) == 3 and 0.0 < two.times[1] < 1.0


def test_numeric_costs_are_each_steps_real_error_from_the_teachers_state():
    """Where the symbolic costs do not apply (RK4's stages leave the grid), ``c[i, j]`` is the
    real relative error of one step ``t_i → t_j`` from the teacher's ``X_i``, for every
    ``i < j`` (adjacent teacher points included), and no cost for ``j ≤ i``."""
    from flowrestore.integrate.fitting import _numeric_costs, _teacher_solve

    oracle, flow, _, _ = indi_problem(seed=3, dim=8, batch=2)
    _, warm = oracle.sample(4, generator=torch.Generator().manual_seed(10))
    grid_t = fr.Uniform()(6, 1.0, 0.0)
    _, states, _ = _teacher_solve(flow, fr.SemiLinearMultistep(), warm, grid_t)
    cost = _numeric_costs(flow, fr.RK4(), grid_t, states)
    for i, j in itertools.product(range(7), range(7)):
        if j <= i:
            assert cost[i, j] == math.inf
            continue
        want = _step_error(flow, fr.RK4(), grid_t, states, i, j)
        assert float(cost[i, j]) == pytest.approx(want)


def test_the_fit_is_the_linear_forms():
    """``fit_grid`` fits the solver's linear form: ``IPNDM()``'s guarded landing (a per-sample
    choice that switches on a stiff mixture's warm-up batch) is left out of the symbolic costs, the
    verification and the refinement alike, so its fitted grid is the unguarded update's."""
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
    from benchmarks.multimodal import make_flow, mixture

    flow, _, _ = make_flow("linear/eps", mixture(31, 1.0, 0.02, 0.2, k=8, dim=32))
    warm = torch.randn(16, 32, generator=torch.Generator().manual_seed(31), dtype=F64)
    guarded = fit_grid(flow, fr.IPNDM(), warm, 5, refine=16)(5, 1.0, 0.0)
    published = fit_grid(flow, fr.IPNDM(landing_guard=False), warm, 5, refine=16)(5, 1.0, 0.0)
    assert torch.equal(guarded, published)
    # the guard does act on this batch: the two solvers differ on the fitted grid
    x = [
        fr.solve(flow, s, warm, grid=guarded).x for s in (fr.IPNDM(), fr.IPNDM(landing_guard=False))
    ]
    assert not torch.equal(*x)


def test_the_default_grid_is_snapped_to_the_teachers_points_or_dropped_on_a_collision():
    """The local search's start from the default grid: each point moved to the nearest teacher
    point, the ends pinned to the teacher's; two points on one teacher point: no start."""
    from flowrestore.integrate.fitting import _snap

    teacher = torch.linspace(1.0, 0.0, 11, dtype=F64)
    assert _snap(torch.tensor([0.98, 0.62, 0.27, 0.01], dtype=F64), teacher) == [0, 4, 7, 10]
    assert _snap(torch.tensor([1.0, 0.52, 0.49, 0.0], dtype=F64), teacher) is None


def test_fit_grids_takes_distinct_step_counts_from_one():
    from flowrestore.integrate.fit_table import _counts

    assert _counts([1, 3, 2]) == (1, 3, 2)
    for bad in ([0, 2], [2, 2], [], [True], 3):
        with pytest.raises(ConfigError, match="distinct ints >= 1"):
            _counts(bad)


def test_local_search_moves_single_points_by_one_or_two_teacher_points():
    """``local_search`` tries each interior point at ±1 and ±2 (in order) and keeps a move that
    lowers the cost: a cost whose only improving move is −2 (±1 are worse), or +2, is found;
    one three points away is not (a local search, not a global one)."""
    from flowrestore.integrate.gits import local_search

    for target in (3, 7):

        def cost(p, target=target):  # noqa: E306 - distance of the middle point, ±1 penalised
            d = abs(p[1] - target)
            return 10.0 if d == 1 else float(d)

        seen = {}
        assert local_search(cost, [0, 5, 10], rounds=3, seen=seen) == [0, target, 10]
        assert (0, 4, 10) in seen  # -1 was tried too
    far = local_search(lambda p: float(abs(p[1] - 8)) + 5 * (p[1] in (6, 7, 9)), [0, 5, 10], 3)
    assert far == [0, 5, 10]
