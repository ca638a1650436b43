"""Issue 16: ``fr.integrate.choose_spacing`` picks the spacing a flow should declare for one
solver from warm-up inputs — start-refined where the field changes fastest near ``t = 1`` (a
trained restoration predictor), uniform for an exact Gaussian posterior mean of moderate stds,
end-refined where all of the change lies near ``t = 0`` (small stds: as a trained denoiser)."""

from __future__ import annotations

import math

import pytest
import torch

import flowrestore as fr
from flowrestore.errors import ConfigError, IncompatibleSolverError, NonFiniteError
from flowrestore.integrate import choose_spacing
from flowrestore.oracles import GaussianOracle

F64 = torch.float64


def _gaussian_flow():
    g = torch.Generator().manual_seed(3)
    std = 0.5 + torch.rand(32, generator=g, dtype=F64)
    orc = GaussianOracle(mean=torch.randn(32, generator=g, dtype=F64), std=std, noise_std=0.8)
    _, y = orc.sample(8, generator=g)
    return fr.InDIFlow(orc.posterior_mean), y


def _steep_flow(k: float = 8.0, a: float = 2.0):
    """``F(x, t) = c + (x − c)(1 − a t^k)``: ``dx/dt = a t^{k−1} (x − c)``, solved by
    ``x(t) − c = (y − c) exp(a (t^k − 1)/k)`` — all of the change lies near ``t = 1``."""
    c = torch.linspace(-1, 1, 16, dtype=F64)

    def predictor(x, t):
        return c + (x - c) * (1 - a * t.reshape(-1, 1) ** k)

    y = torch.randn(8, 16, dtype=F64, generator=torch.Generator().manual_seed(4))
    exact = c + (y - c) * math.exp(-a / k)
    return fr.InDIFlow(predictor), y, exact


def test_the_corrected_start_does_better_on_uniform_steps_than_start_refinement_without_it():
    """``IPNDM()`` on InDI corrects its first (Euler) step with the second step's value
    (flowrestore/solvers/adams.py, "The corrected start"): on this field, all of whose change
    lies near ``t = 1``, its uniform grid scores below the best spacing the tool finds for the
    uncorrected solver (measured 0.0046 vs 0.0156), so that is what the tool chooses for it."""
    flow, y, _ = _steep_flow()
    corrected = choose_spacing(flow, fr.IPNDM(), y)
    plain = choose_spacing(flow, fr.IPNDM(start_corrector=False), y)
    assert isinstance(corrected.spacing, fr.Uniform), corrected
    best = min(e for _, e in corrected.errors)
    assert best * 2 < min(e for _, e in plain.errors), (corrected, plain)


def test_the_steep_flows_closed_form_holds():
    """The test flow is what its docstring says: a fine solve matches the closed form."""
    flow, y, exact = _steep_flow()
    x0 = fr.solve(flow, fr.RK4(), y, steps=400).x
    torch.testing.assert_close(x0, exact, rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize(
    "solver", [fr.Euler(), fr.IPNDM(start_corrector=False), fr.Midpoint(), fr.Heun()], ids=repr
)
def test_a_field_that_changes_near_the_start_gets_a_start_refined_spacing(solver):
    """Start-refined; for Midpoint and Heun laid exactly (``fr.Unrefined``): the loop's end
    rules would take steps from the start, where all of this field's change lies. (``IPNDM()``
    corrects its first step on InDI instead: next test.)"""
    flow, y, _ = _steep_flow()
    choice = choose_spacing(flow, solver, y)
    base = choice.spacing
    if solver.stage_fractions != (0.0,):
        assert isinstance(base, fr.Unrefined), choice
        base = base.base
    assert isinstance(base, fr.StartRefined), choice
    assert base.rho >= (2.0 if solver.stage_fractions == (0.0,) else 1.5)
    scores = dict((repr(s), e) for s, e in choice.errors)
    assert scores[repr(choice.spacing)] == min(scores.values())
    assert scores[repr(fr.Uniform())] > 1.5 * scores[repr(choice.spacing)]


def _near_zero_flow():
    """InDI denoising of a Gaussian prior with stds in [0.02, 0.1] under noise 1: the posterior
    mean changes most at ``t ≈ std``, near the clean end (as a trained denoiser's does). Warm-up
    batch, other inputs and their exact answers."""
    g = torch.Generator().manual_seed(5)
    std = 0.02 + 0.08 * torch.rand(32, generator=g, dtype=F64)
    orc = GaussianOracle(mean=torch.randn(32, generator=g, dtype=F64), std=std, noise_std=1.0)
    _, y = orc.sample(8, generator=g)
    _, other = orc.sample(16, generator=g)
    return orc, y, other, orc.ode_solution(other, 0.0)


@pytest.mark.parametrize("solver", [fr.Euler(), fr.IPNDM(), fr.DataIPNDM(), fr.Heun()], ids=repr)
def test_a_field_that_changes_near_the_end_gets_an_end_refined_spacing(solver):
    """``Power`` (steps shrinking toward ``t = 0``) is chosen, and declared it is at least 1.6×
    more accurate than uniform steps on inputs the choice never saw (measured 1.9–9.5×)."""
    orc, y, other, exact = _near_zero_flow()
    choice = choose_spacing(fr.InDIFlow(orc.posterior_mean), solver, y).spacing
    base = choice.base if isinstance(choice, fr.Unrefined) else choice
    assert isinstance(base, fr.Power) and base.rho >= 1.5, choice

    def error(spacing, steps):
        flow = fr.InDIFlow(orc.posterior_mean, spacings={type(solver): spacing})
        x = fr.solve(flow, solver, other, steps=steps).x
        return float((x - exact).norm() / (exact - orc.mean).norm())

    for steps in (4, 6):
        assert error(choice, steps) * 1.6 < error(fr.Uniform(), steps), steps


def test_a_candidate_the_loops_end_rules_would_change_is_also_tried_as_given():
    """Euler and the multistep solvers lay every candidate as given: one score each; Heun's
    (denoising landing) and Midpoint's (Euler-matched end) are also scored ``Unrefined``, right
    after their refined twin."""
    flow, y, _ = _steep_flow()
    cands = (fr.Uniform(), fr.StartRefined(rho=2.0, closing_pair=False))
    for solver, twins in ((fr.Euler(), False), (fr.IPNDM(), False), (fr.Heun(), True)):
        tried = [c for c, _ in choose_spacing(flow, solver, y, candidates=cands).errors]
        want = [x for c in cands for x in ((c, fr.Unrefined(c)) if twins else (c,))]
        assert tried == want


@pytest.mark.parametrize("solver", [fr.Euler(), fr.DataIPNDM(), fr.Midpoint()])
def test_an_exact_gaussian_posterior_mean_gets_uniform_steps(solver):
    """Uniform as laid (Midpoint: laid exactly, as on an InDI flow that declares nothing)."""
    flow, y = _gaussian_flow()
    choice = choose_spacing(flow, solver, y).spacing
    assert choice in (fr.Uniform(), fr.Unrefined(fr.Uniform()))
    declared = fr.InDIFlow(flow.predictor, spacings={type(solver): choice})
    grid = fr.solve(declared, solver, y, steps=4, save_at="steps").ts
    torch.testing.assert_close(grid, torch.linspace(1, 0, 5, dtype=F64))


def test_the_choice_declared_is_what_the_solve_then_lays():
    """Declaring the choice reproduces the scored solve: its error to a fine solve is the
    candidate's score at that step count."""
    flow, y, _ = _steep_flow()
    choice = choose_spacing(flow, fr.Heun(), y, steps=(5,))
    assert choice.spacing != fr.Uniform()
    declared = fr.InDIFlow(flow.predictor, spacings={fr.Heun: choice.spacing})
    ref = fr.solve(flow, fr.SemiLinearMultistep(), y, steps=64).x
    x = fr.solve(declared, fr.Heun(), y, steps=5).x
    err = float(fr.integrate.relative_error(x, ref).mean())
    assert err == pytest.approx(dict(choice.errors)[choice.spacing], rel=1e-12)


class _Counting:
    def __init__(self):
        self.calls = 0

    def __call__(self, x, t):
        self.calls += 1
        return x


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"steps": ()}, ConfigError, "steps must be a non-empty"),
        ({"steps": (4, 0)}, ConfigError, "steps must hold ints >= 1, got 0"),
        ({"steps": (64,)}, ConfigError, "smaller than teacher_steps"),
        ({"candidates": fr.Uniform()}, ConfigError, "candidates must be a non-empty"),
        ({"candidates": (fr.Uniform(), 2.0)}, ConfigError, "Spacing objects, got 2.0"),
        ({"solver": fr.InDISampler(eps=0.1)}, ConfigError, "stochastic"),
        ({"solver": fr.EulerMaruyama()}, IncompatibleSolverError, "EulerMaruyama"),
    ],
)
def test_wrong_requests_are_refused_before_any_evaluation(kwargs, error, match):
    predictor = _Counting()
    flow = fr.InDIFlow(predictor)
    solver = kwargs.pop("solver", fr.Euler())
    with pytest.raises(error, match=match):
        choose_spacing(flow, solver, torch.zeros(2, 3), **kwargs)
    assert predictor.calls == 0


def test_a_solver_that_fails_on_every_candidate_is_reported(monkeypatch):
    import flowrestore.integrate.choose as choose

    real = choose.solve

    def failing(flow, solver, x, *, grid):
        if grid.numel() == 65:  # the teacher's solve
            return real(flow, solver, x, grid=grid)
        raise NonFiniteError("state became NaN")

    monkeypatch.setattr(choose, "solve", failing)
    flow, y = _gaussian_flow()
    with pytest.raises(NonFiniteError, match="failed on the warm-up batch with every candidate"):
        choose_spacing(flow, fr.Euler(), y)


def test_what_the_flow_lays_today_is_scored_first_and_kept_when_no_candidate_beats_it():
    """RK4 on an InDI flow that declares nothing lays ``Power(2)`` (its denoising landing): among
    candidates that do not lay it, it is scored first, laid exactly; among the defaults it is
    ``Power(2)``'s exact twin and Euler's uniform grid is a candidate: neither is scored twice.
    With only a poor candidate the default is kept, and declaring it lays what the flow laid
    before."""
    flow, y = _gaussian_flow()
    today = fr.Unrefined(fr.Power(rho=2.0))
    few = (fr.Uniform(), fr.StartRefined(rho=2.0, closing_pair=False))
    assert choose_spacing(flow, fr.RK4(), y, candidates=few).errors[0][0] == today
    # the default candidates include Power(2), whose exact twin lays it: scored once, in place
    tried = [s for s, _ in choose_spacing(flow, fr.RK4(), y).errors]
    assert tried.count(today) == 1 and tried.index(today) > 0
    assert [s for s, _ in choose_spacing(flow, fr.Euler(), y).errors].count(fr.Uniform()) == 1
    poor = (fr.StartRefined(rho=4.0, closing_pair=False),)
    for solver in (fr.Euler(), fr.RK4(), fr.SemiLinearMultistep()):
        choice = choose_spacing(flow, solver, y, candidates=poor)
        assert len(choice.errors) >= 2 and choice.errors[0][1] < choice.errors[1][1], choice
        declared = fr.InDIFlow(flow.predictor, spacings={type(solver): choice.spacing})
        for n in (3, 6):
            laid = fr.solve(declared, solver, y, steps=n, save_at="steps").ts
            want = fr.solve(flow, solver, y, steps=n, save_at="steps").ts
            torch.testing.assert_close(laid, want)


def test_by_default_the_score_spends_four_to_eight_evaluations_whatever_the_solver():
    """4, 6, 8 steps of a one-evaluation solver, 2, 3, 4 of Midpoint and Heun, 1, 2 of RK4: the
    few-NFE regime, not 4–8 steps of a four-stage solver (17–33 evaluations)."""
    from flowrestore.integrate.choose import budget_steps

    want = {fr.Euler: (4, 6, 8), fr.IPNDM: (4, 6, 8), fr.Midpoint: (2, 3, 4), fr.Heun: (2, 3, 4)}
    want[fr.RK4] = (1, 2)
    assert {cls: budget_steps(cls()) for cls in want} == want
    flow, y = _gaussian_flow()
    default = choose_spacing(flow, fr.RK4(), y).errors
    assert default == choose_spacing(flow, fr.RK4(), y, steps=(1, 2)).errors
    assert default != choose_spacing(flow, fr.RK4(), y, steps=(4, 6, 8)).errors


def test_a_diffusion_models_own_noise_level_grid_is_kept_when_it_wins():
    """On an exact diffusion model (DDPM's linear schedule) no candidate in ``t`` lays the flow's
    noise-level grid; it is scored first, wins, and is what the choice declares."""
    from flowrestore.integrate.endpoint import generic_spacing
    from flowrestore.oracles.diffusion import GaussianDiffusionOracle, linear_alphas_cumprod

    mean, std = torch.linspace(-0.3, 0.3, 5, dtype=F64), torch.linspace(0.1, 0.8, 5, dtype=F64)
    o = GaussianDiffusionOracle(mean=mean, std=std, alphas_cumprod=linear_alphas_cumprod())
    flow = fr.DiffusionFlow(o, alphas_cumprod=o.alphas_cumprod)
    x = torch.randn(8, 5, generator=torch.Generator().manual_seed(0), dtype=F64) * flow.latent_std
    choice = choose_spacing(flow, fr.IPNDM(), x)
    own = fr.Unrefined(generic_spacing(flow, fr.IPNDM(), 0.0))
    assert choice.errors[0][0] == own and choice.spacing == own
    assert dict(choice.errors)[fr.Uniform()] > 2 * choice.errors[0][1]


def test_a_candidates_score_is_the_geometric_mean_of_its_batch_errors():
    """The score ``choice.errors`` reports is the geometric mean over the step counts of the
    warm-up batch's mean relative error, here against the steep flow's closed form (the teacher
    agrees with it to ~1e-7)."""
    flow, y, exact = _steep_flow()
    counts = (2, 5)
    choice = choose_spacing(flow, fr.Euler(), y, candidates=(fr.Uniform(),), steps=counts)
    (spacing, score), *_ = [e for e in choice.errors if e[0] == fr.Uniform()]
    errs = []
    for n in counts:
        x = fr.solve(flow, fr.Euler(), y, steps=n, spacing=fr.Uniform()).x
        errs.append(float(((x - exact).norm(dim=1) / exact.norm(dim=1)).mean()))
    assert math.isclose(score, math.sqrt(errs[0] * errs[1]), rel_tol=1e-4)
