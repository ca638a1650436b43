"""IPNDM: fixed-coefficient Adams–Bashforth, lower-order warm start (flowrestore/solvers/adams.py).

Checked against the published update written out here (Zhang & Chen 2023: DDIM's step with the
Adams–Bashforth combination of the last noise predictions, equal-step coefficients, lower orders
first), its data-prediction form, the declared order 2 (float64 fits on InDI's Gaussian oracle and
a diffusion model), one evaluation per step and none at ``t = 0``.
"""

from __future__ import annotations

import math

import pytest
import torch

import flowrestore as fr
from flowrestore.errors import ConfigError, IncompatibleSolverError

from .helpers import F64, diffusion_problem, fit_slope, indi_problem

AB = {
    1: [1.0],
    2: [1.5, -0.5],
    3: [23 / 12, -16 / 12, 5 / 12],
    4: [55 / 24, -59 / 24, 37 / 24, -9 / 24],
}


#: the Adams–Bashforth combinations as series of backward differences: term k's weights on
#: ``v_0, v_1, …`` (newest first) are ``γ_k (−1)^j C(k, j)``, ``γ = 1, 1/2, 5/12, 3/8``
SERIES = (
    [1.0],
    [1 / 2, -1 / 2],
    [5 / 12, -10 / 12, 5 / 12],
    [3 / 8, -9 / 8, 9 / 8, -3 / 8],
)


def _guarded(use):
    """The landing's series summed per sample up to its smallest term from the first difference
    on, its first two terms always (module docstring of flowrestore/solvers/adams.py, "The guarded
    landing"), one sample at a time."""
    rows = []
    for b in range(use[0].shape[0]):
        total, previous = 0.0, math.inf
        for k, weights in enumerate(SERIES[: len(use)]):
            term = sum(w * v[b] for w, v in zip(weights, use, strict=False))
            if k >= 2 and float(term.norm()) > previous:
                break
            total, previous = total + term, float(term.norm())
        rows.append(total)
    return torch.stack(rows)


def _unsettled(use):
    """Per sample: the landing after two steps takes the newest value alone where its series'
    second term exceeds 0.9 times its first (module docstring, "The landing after two steps")."""
    first = (SERIES[1][0] * use[0] + SERIES[1][1] * use[1]).norm(dim=1)
    second = sum(w * v for w, v in zip(SERIES[2], use, strict=True)).norm(dim=1)
    return second > 0.9 * first


def _reference(flow, x, grid, order, form, landing, corrected=False, guard=False):
    """The update of the module docstring, in plain Python over the grid: Adams–Bashforth of
    ``order`` (lower orders first), of ``landing`` on the step onto ``t = 0`` (``guard``: its
    series truncated per sample); ``corrected``: the first step redone by the trapezoid rule
    with the second step's value (taken before)."""
    hist, x0 = [], x
    for k, (t, s) in enumerate(zip(grid[:-1].tolist(), grid[1:].tolist(), strict=True)):
        tt = torch.tensor(t, dtype=F64)
        hist.insert(0, flow.drift(tt, x) if form == "velocity" else flow.denoise(tt, x))
        if corrected and k == 1:
            t0 = float(grid[0])
            mean = (hist[0] + hist[1]) / 2
            x = x0 + (t - t0) * mean if form == "velocity" else (t / t0) * x0 + (1 - t / t0) * mean
        use = hist[: landing if s == 0 else order]
        combo = sum(c * v for c, v in zip(AB[len(use)], use, strict=True))
        if guard and s == 0:
            combo = _guarded(use)
            if k == 2 and len(use) == 3:  # the landing after two steps (_unsettled)
                combo = torch.where(_unsettled(use)[:, None], use[0], combo)
        x = x + (s - t) * combo if form == "velocity" else (s / t) * x + (1 - s / t) * combo
    return x


@pytest.mark.parametrize("order", [1, 2, 3, 4])
@pytest.mark.parametrize("form", ["velocity", "data"])
def test_matches_the_published_update(order, form):
    """The default landing combines as many values as the other steps (``ab_order``); without
    the start corrector, the published update on any flow; by default, uncorrected on a
    diffusion model (a noise level's time) and corrected on InDI in the velocity form with
    ``ab_order ≥ 2`` (module docstring, "The corrected start"); the landing guarded on the
    diffusion model in the velocity form ("The guarded landing")."""
    landing = order
    assert fr.IPNDM(ab_order=order, form=form).landing_order == landing
    _, flow, x_T, _ = diffusion_problem("cosine", "v_prediction", dim=6, batch=3)
    grid = flow.default_spacing()(7, 1.0, 0.0)
    guard = form == "velocity"
    assert fr.IPNDM(ab_order=order, form=form).guards_landing(flow) is guard
    x = flow.to_state(x_T, 1.0)
    want = _reference(flow, x, grid, order, form, landing, guard=guard)
    for corrector in (None, False):
        solver = fr.IPNDM(ab_order=order, form=form, start_corrector=corrector)
        got = fr.solve(flow, solver, x_T, grid=grid).x
        torch.testing.assert_close(got, flow.from_state(want, 0.0), rtol=1e-10, atol=1e-10)
    published = fr.IPNDM(ab_order=order, form=form, landing_guard=False)
    got = fr.solve(flow, published, x_T, grid=grid).x
    want = _reference(flow, x, grid, order, form, landing)
    torch.testing.assert_close(got, flow.from_state(want, 0.0), rtol=1e-10, atol=1e-10)
    _, iflow, y, _ = indi_problem(dim=6, batch=3)
    grid = fr.StartRefined(2.0)(6, 1.0, 0.0)
    published = fr.IPNDM(ab_order=order, form=form, start_corrector=False)
    got = fr.solve(iflow, published, y, grid=grid).x
    torch.testing.assert_close(got, _reference(iflow, y, grid, order, form, landing))
    corrected = form == "velocity" and order >= 2
    assert fr.IPNDM(ab_order=order, form=form).corrects_start(iflow) is corrected
    got = fr.solve(iflow, fr.IPNDM(ab_order=order, form=form), y, grid=grid).x
    want = _reference(iflow, y, grid, order, form, landing, corrected=corrected)
    torch.testing.assert_close(got, want)
    forced = fr.IPNDM(ab_order=order, form=form, start_corrector=True)
    for f, start, g in ((iflow, y, grid), (flow, x_T, flow.default_spacing()(7, 1.0, 0.0))):
        got = fr.solve(f, forced, start, grid=g).x
        x = f.to_state(start, 1.0) if f is flow else start
        guard = f is flow and form == "velocity"
        want = _reference(f, x, g, order, form, landing, corrected=True, guard=guard)
        if f is flow:
            want = f.from_state(want, 0.0)
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(("order", "landing"), [(3, 3), (2, 4), (4, 1), (3, 2)])
def test_landing_order_is_the_last_steps_combination(order, landing):
    """Every (ab_order, landing_order) pair, both forms; a solve that ends before ``t = 0``
    never uses the landing combination."""
    _, flow, x_T, _ = diffusion_problem("linear", "epsilon", dim=6, batch=3)
    grid = flow.default_spacing()(6, 1.0, 0.0)
    for form in ("velocity", "data"):
        solver = fr.IPNDM(ab_order=order, form=form, landing_order=landing)
        got = fr.solve(flow, solver, x_T, grid=grid).x
        want = _reference(flow, flow.to_state(x_T, 1.0), grid, order, form, landing)
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
        part = grid[:-1]
        got = fr.solve(flow, solver, x_T, grid=part).x
        want = _reference(flow, flow.to_state(x_T, 1.0), part, order, form, order)
        torch.testing.assert_close(got, flow.from_state(want, float(part[-1])))


@pytest.mark.parametrize("form", ["velocity", "data"])
def test_order_two_on_the_oracles(form):
    """Global order 2 for ``ab_order ≥ 2`` (first-order warm start), 1 for ``ab_order = 1``;
    on InDI in the velocity form, whose first step is corrected by default (order 2 locally
    3), order 3 for ``ab_order ≥ 3`` (the second step, Adams–Bashforth 2, is then the lowest)."""
    oracle, flow, y, exact = indi_problem(dim=16, batch=3)
    levels = [16, 32, 64, 128, 256]
    for ab, want in ((1, 1), (2, 2), (4, 2)):
        corrector = False if form == "velocity" and ab == 4 else None
        solver = fr.IPNDM(ab_order=ab, form=form, start_corrector=corrector)
        errs = [float((fr.solve(flow, solver, y, steps=n).x - exact).abs().max()) for n in levels]
        if form == "data" and want == 2:
            # the exponential step's local errors O(h³/t_k) sum to O(h² log N) on InDI's
            # uniform grid (measured local slopes 1.40, 1.58, 1.69, 1.75 → 2): the order of
            # e / log N is 2
            errs = [e / math.log(n) for e, n in zip(errs, levels, strict=True)]
        assert abs(fit_slope(levels, errs, 1e-13) - want) <= 0.2, (ab, errs)
        assert solver.order == want
    if form == "velocity":
        fine = [64, 128, 256, 512, 1024]
        for ab in (3, 4):
            errs = [
                float((fr.solve(flow, fr.IPNDM(ab_order=ab), y, steps=n).x - exact).abs().max())
                for n in fine
            ]
            assert abs(fit_slope(fine, errs, 1e-13) - 3) <= 0.2, (ab, errs)
    _, dflow, x_T, dexact = diffusion_problem("linear", "epsilon", dim=16, batch=3)
    levels = [32, 64, 128, 256, 512]
    errs = [
        float((fr.solve(dflow, fr.IPNDM(form=form), x_T, steps=n).x - dexact).abs().max())
        for n in levels
    ]
    assert abs(fit_slope(levels, errs, 1e-12) - 2) <= 0.25, errs


def test_one_evaluation_per_step_none_at_zero():
    oracle, _, y, _ = indi_problem(dim=4, batch=2)
    seen = []

    def spy(x, t):
        seen.append(t.clone())
        return oracle.posterior_mean(x, t)

    for form in ("velocity", "data"):
        seen.clear()
        sol = fr.solve(fr.InDIFlow(spy), fr.IPNDM(form=form), y, steps=6)
        assert len(seen) == 6 and int(sol.stats.nfe.max()) == 6
        assert bool((torch.cat(seen) > 0).all())


def test_configuration_and_pairings_are_checked():
    with pytest.raises(ConfigError, match="ab_order"):
        fr.IPNDM(ab_order=5)
    with pytest.raises(ConfigError, match="form"):
        fr.IPNDM(form="noise")
    with pytest.raises(ConfigError, match="landing_order"):
        fr.IPNDM(landing_order=0)
    for bad in (1, "yes"):
        with pytest.raises(ConfigError, match="start_corrector"):
            fr.IPNDM(start_corrector=bad)
        with pytest.raises(ConfigError, match="landing_guard"):
            fr.IPNDM(landing_guard=bad)
    ode = fr.ODEFlow(lambda t, x: -x)
    x = torch.ones(2, 3, dtype=F64)
    sol = fr.solve(ode, fr.IPNDM(), x, t_span=(0.0, 1.0), steps=64)  # any ODE: velocity form
    torch.testing.assert_close(
        sol.x, x * torch.exp(torch.tensor(-1.0, dtype=F64)), atol=1e-3, rtol=0
    )
    with pytest.raises(IncompatibleSolverError):
        fr.solve(ode, fr.IPNDM(form="data"), x, t_span=(0.0, 1.0), steps=4)


def test_the_default_landing_beats_order_four_on_a_multimodal_prior():
    """Why ``IPNDM()`` lands with its own order 3, not the reference iPNDM's 4 (module docstring
    of flowrestore/solvers/adams.py): on a Gaussian prior order 4 is 2 % ahead at 4 NFE, but on a
    multimodal one — an exact EDM denoiser of an 8-component Gaussian mixture, where the posterior
    switches between components during the solve, as on real data — the order-4 extrapolation
    is 1.5–1.8× less accurate at 4–6 NFE (``python -m benchmarks.multimodal``; the published
    landings, unguarded). Median sample's relative error to a 400-step RK4 solve; a prior seed
    the benchmark does not use."""
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
    from benchmarks.multimodal import mixture

    oracle = mixture(7, 0.3, 0.1, 0.5, k=8, dim=64)
    flow = fr.DenoiserFlow(oracle, sigma_max=80.0, sigma_min=0.002)
    x = 80.0 * torch.randn(64, 64, generator=torch.Generator().manual_seed(8), dtype=F64)
    ref = fr.solve(flow, fr.RK4(), x, steps=400).x

    def err(solver, n):
        out = fr.solve(flow, solver, x, steps=n).x
        return float(((out - ref).norm(dim=1) / ref.norm(dim=1)).median())

    for n in (4, 5, 6):
        own = err(fr.IPNDM(landing_guard=False), n)
        four = err(fr.IPNDM(landing_order=4, landing_guard=False), n)
        assert own * 1.2 < four, (n, own, four)


def _mixture_diffusion(seed, spread, lo, hi):
    """An exact linear/ε DDPM of a Gaussian mixture (``benchmarks.multimodal``'s priors; seeds
    it does not use), 64 noises and a 400-step RK4 reference."""
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
    from benchmarks.multimodal import make_flow, mixture

    flow, scale, _ = make_flow("linear/eps", mixture(seed, spread, lo, hi, k=8, dim=64))
    x = scale * torch.randn(64, 64, generator=torch.Generator().manual_seed(seed), dtype=F64)
    return flow, x, fr.solve(flow, fr.RK4(), x, steps=400).x


def test_the_guarded_landing_where_the_series_grows():
    """Where the posterior commits to one of well-separated stiff components during the solve
    (component stds 0.02–0.2), the landing's Adams–Bashforth series grows and the published
    landing overshoots, behind Euler at 4–5 steps; truncated at its smallest term (the default
    on a diffusion model) it is 2× more accurate at 4–5 steps and 1.4× at 6 (median sample;
    still behind Euler at 3–5: what limits it, module docstring). Where every
    series shrinks (a Gaussian prior) the guard changes nothing (module docstring of
    flowrestore/solvers/adams.py, "The guarded landing")."""
    flow, x, ref = _mixture_diffusion(21, 1.0, 0.02, 0.2)

    def err(solver, n):
        out = fr.solve(flow, solver, x, steps=n).x
        return float(((out - ref).norm(dim=1) / ref.norm(dim=1)).median())

    for n, gain in ((4, 1.8), (5, 1.8), (6, 1.25)):
        guarded, published = err(fr.IPNDM(), n), err(fr.IPNDM(landing_guard=False), n)
        assert guarded * gain < published, (n, guarded, published)
    assert err(fr.IPNDM(landing_guard=False), 4) > err(fr.Euler(), 4)
    _, gflow, x_T, _ = diffusion_problem("linear", "epsilon", dim=16, batch=16, seed=3)
    for n in range(3, 11):
        got = fr.solve(gflow, fr.IPNDM(), x_T, steps=n).x
        assert torch.equal(got, fr.solve(gflow, fr.IPNDM(landing_guard=False), x_T, steps=n).x)


def test_the_landing_is_guarded_only_on_reciprocal_noise_levels():
    """The default guards in the velocity form where the flow's time is a noise level with
    reciprocal stages (a diffusion model, an EDM denoiser with its default stages), not on flow
    matching, EDM's own σ stages, InDI or a plain ODE, nor in the data form; on a flow-matching
    mixture whose landing series grows, the default is the published update bit for bit."""
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
    from benchmarks.multimodal import make_flow, mixture

    prior = mixture(23, 1.0, 0.02, 0.2, k=8, dim=64)
    fm, _, _ = make_flow("fm-shift3", prior)
    edm = fr.DenoiserFlow(prior, sigma_max=80.0, sigma_min=0.002)
    edm_sigma = fr.DenoiserFlow(prior, sigma_max=80.0, sigma_min=0.002, stages="sigma")
    _, diffusion, _, _ = diffusion_problem(dim=4, batch=2)
    _, indi, _, _ = indi_problem(dim=4, batch=2)
    ode = fr.ODEFlow(lambda t, x: -x)
    default = fr.IPNDM()
    assert [default.guards_landing(f) for f in (diffusion, edm)] == [True, True]
    assert not any(default.guards_landing(f) for f in (fm, edm_sigma, indi, ode))
    assert not fr.DataIPNDM().guards_landing(diffusion)
    assert fr.DataIPNDM(landing_guard=True).guards_landing(diffusion)
    assert fr.IPNDM(landing_guard=True).guards_landing(fm)
    assert not fr.IPNDM(landing_guard=False).guards_landing(edm)
    x = torch.randn(64, 64, generator=torch.Generator().manual_seed(23), dtype=F64)
    changed = 0
    for n in (3, 4, 5):
        published = fr.solve(fm, fr.IPNDM(landing_guard=False), x, steps=n).x
        assert torch.equal(fr.solve(fm, fr.IPNDM(), x, steps=n).x, published)
        guarded = fr.solve(fm, fr.IPNDM(landing_guard=True), x, steps=n).x
        changed += not torch.equal(guarded, published)
    assert changed > 0


def test_guarded_combination_in_closed_form():
    """Per sample: every term kept while the terms shrink from the first difference on (the
    Adams–Bashforth combination); cut before the first term ``k ≥ 2`` larger than the one before
    it, and every later one with it; the first difference always kept (order 2 at least)."""
    from flowrestore.solvers.adams import guarded_combination

    v = lambda *a: torch.tensor(a, dtype=F64).reshape(-1, 1)  # noqa: E731  (one value per sample)
    # newest first, four samples: shrinking terms (1, 0.05, 0): AB3; the second-difference term
    # 5/12 · 5 > the first's 1/2: AB2; a first difference 4 times the value: kept, and the second
    # term 5/12 · 4 ≤ 2: AB3; the second term 5/12 · 3 > 1/2 cut, the third 3/8 · 2 ≤ 5/4 with it
    values = (v(1.0, 1.0, 1.0, 1.0), v(0.9, 2.0, 5.0, 0.0), v(0.8, -2.0, 5.0, 2.0))
    got = guarded_combination(values)
    ab3 = lambda a, b, c: 23 / 12 * a - 16 / 12 * b + 5 / 12 * c  # noqa: E731
    want = v(ab3(1.0, 0.9, 0.8), 1.5 - 1.0, ab3(1.0, 5.0, 5.0), 1.5)
    torch.testing.assert_close(got[:3], want[:3], rtol=1e-14, atol=1e-14)
    four = (*values, v(0.0, 0.0, 0.0, 5.0))
    torch.testing.assert_close(guarded_combination(four)[3], v(1.5)[0], rtol=1e-14, atol=1e-14)
    # two values: Adams–Bashforth 2 whatever their sizes
    torch.testing.assert_close(guarded_combination((v(1.0), v(5.0))), v(1.5 - 2.5))
    # on the boundary of each comparison, 3e-4 (relative) inside and outside: kept / cut
    for d in (-3e-4, 3e-4):
        cut = d > 0
        # k = 2: (5/12)|v_0 − 2 v_1 + v_2| against 1/2 (the first two terms 1 and 1/2)
        v2 = 1.2 * (1 + d) - 1.0
        got = guarded_combination((v(1.0), v(0.0), v(v2)))
        torch.testing.assert_close(got, v(1.5 if cut else 23 / 12 + 5 / 12 * v2))
        # k = 3: (3/8)|∇³v| against 5/24 (the first three terms 1, 1/2, 5/24)
        v3 = 5 / 9 * (1 + d) - 0.5
        got = guarded_combination((v(1.0), v(0.0), v(-0.5), v(v3)))
        three = 23 / 12 + 5 / 12 * -0.5
        torch.testing.assert_close(got, v(three if cut else 55 / 24 + 37 / 24 * -0.5 - 9 / 24 * v3))


def test_the_start_is_not_corrected_where_time_is_a_noise_level():
    """Flow matching declares a log-SNR time (``log_snr``, not ``reciprocal``) and a flow may ask
    for reciprocal stages alone: the default is the published update on both, as on a diffusion
    model (both; previous tests), and on a plain ODE (neither) the corrected one (module
    docstring, "The corrected start")."""
    from flowrestore.oracles import GaussianFlowMatchingOracle

    g = torch.Generator().manual_seed(5)
    oracle = GaussianFlowMatchingOracle(
        mean=torch.randn(6, generator=g, dtype=F64),
        std=0.2 + torch.rand(6, generator=g, dtype=F64),
    )
    flow = fr.FlowMatchingFlow(oracle, shift=3.0)
    x = torch.randn(3, 6, generator=g, dtype=F64)
    got = fr.solve(flow, fr.IPNDM(), x, steps=5).x
    want = fr.solve(flow, fr.IPNDM(start_corrector=False), x, steps=5).x
    assert torch.equal(got, want)
    assert not torch.equal(fr.solve(flow, fr.IPNDM(start_corrector=True), x, steps=5).x, want)
    from flowrestore.flows.base import TimeVariable

    class Reciprocal(fr.InDIFlow):  # a residual flow that asks for reciprocal stages only
        def time_variable(self):
            return TimeVariable(reciprocal=True)

    oracle, _, y, _ = indi_problem(dim=6, batch=3)
    rflow = Reciprocal(oracle.posterior_mean)
    got = fr.solve(rflow, fr.IPNDM(), y, steps=5).x
    assert torch.equal(got, fr.solve(rflow, fr.IPNDM(start_corrector=False), y, steps=5).x)
    ode = fr.ODEFlow(lambda t, x: -x * (1 + t.reshape(-1, 1)))
    grid = torch.linspace(0.0, 1.0, 5, dtype=F64)
    got = fr.solve(ode, fr.IPNDM(), x, grid=grid).x
    want = _reference(ode, x, grid, 3, "velocity", 3, corrected=True)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("steps", [3, 4])
def test_the_landing_after_two_steps_takes_the_last_value_where_the_history_is_unsettled(steps):
    """On a stiff multimodal prior (an exact EDM denoiser of an 8-component Gaussian mixture,
    stds 0.02–0.2) the landing after two steps takes the newest value alone for the samples
    whose series' second term exceeds 0.9 times the first, the guarded combination for the
    others; after three steps or more the guarded landing is unchanged (module docstring of
    flowrestore/solvers/adams.py, "The landing after two steps")."""
    from benchmarks.multimodal import mixture

    oracle = mixture(5, 1.0, 0.02, 0.2, k=8, dim=16)
    flow = fr.DenoiserFlow(oracle, sigma_max=80.0, sigma_min=0.002)
    x_T = 80.0 * torch.randn(32, 16, generator=torch.Generator().manual_seed(3), dtype=F64)
    grid = flow.default_spacing()(steps, 1.0, 0.0)
    x = flow.to_state(x_T, 1.0)
    got = fr.solve(flow, fr.IPNDM(), x_T, grid=grid).x
    want = flow.from_state(_reference(flow, x, grid, 3, "velocity", 3, guard=True), 0.0)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    if steps == 3:  # both branches taken: the newest value alone, and the guarded series
        last = fr.solve(flow, fr.IPNDM(landing_order=1), x_T, grid=grid).x
        alone = (got - last).norm(dim=1) == 0
        assert 0 < int(alone.sum()) < x_T.shape[0]


def test_the_unsettled_history_threshold_is_nine_tenths_of_the_first_term():
    """Values ``(a, 0, b)`` (newest first): first term ``a/2``, second ``(5/12)|a + b|``; the
    newest value alone just above 0.9 times the first, the guarded series just below."""
    from flowrestore.solvers.adams import guarded_combination

    a = torch.ones(2, 3, dtype=F64)
    ratio = torch.tensor([0.9 * (1 + 1e-4), 0.9 * (1 - 1e-4)], dtype=F64)
    b = (ratio * 6 / 5 - 1)[:, None] * a  # (5/12)|a + b| = ratio · a/2
    values = (a, torch.zeros_like(a), b)
    got = guarded_combination(values, unsettled_start=True)
    torch.testing.assert_close(got[0], a[0])
    torch.testing.assert_close(got[1], guarded_combination(values)[1])
    assert not torch.allclose(guarded_combination(values)[1], a[1])
    with pytest.raises(ValueError, match="three values"):
        guarded_combination(values[:2], unsettled_start=True)


@pytest.mark.parametrize(("ab_order", "landing_order"), [(1, 1), (2, 2), (3, 3), (3, 4), (4, 2)])
def test_the_history_keeps_only_the_values_the_next_step_combines(ab_order, landing_order):
    """After each step the state holds ``max(ab_order, landing_order) − 1`` values (one image-sized
    tensor each: an extra one is memory a large batch pays for nothing)."""
    from dataclasses import dataclass, field

    @dataclass(repr=False)
    class Counting(fr.IPNDM):
        kept: list = field(default_factory=list)

        def step(self, flow, t, x, h, state, ctx):
            out = super().step(flow, t, x, h, state, ctx)
            self.kept.append(len(out.state.values))
            return out

    flow, x_t = diffusion_problem("linear", "epsilon")[1:3]
    solver = Counting(ab_order=ab_order, landing_order=landing_order)
    fr.solve(flow, solver, x_t, steps=8)
    keep = max(ab_order, landing_order) - 1
    assert max(solver.kept) == keep and solver.kept[-1] == keep
