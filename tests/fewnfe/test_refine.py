"""The refinement step of ``fit_grid`` (flowrestore/integrate/refine.py).

* the logit parametrisation is a bijection onto strictly monotone grids with the span's ends;
* the search spends at most its budget of solves, and returns the best grid it solved: never
  worse than its start on the warm-up batch, and on an exact diffusion model (whose answer is
  known in closed form) at least 2× better than the flow's default grid on unseen inputs;
* ``fit_grid``'s ``refine`` is checked before any evaluation and ``refine=0`` skips the step.
"""

from __future__ import annotations

import pytest
import torch

import flowrestore as fr
from flowrestore.errors import ConfigError
from flowrestore.integrate import fit_grid
from flowrestore.integrate.refine import grid_from_logits, logits_from_grid, refine_grid

from .helpers import F64, diffusion_problem, rel


def test_logits_are_a_bijection_onto_monotone_grids():
    for t0, t1 in ((1.0, 0.0), (0.8, 0.1), (0.0, 2.0)):
        grid = fr.Power(1.7)(6, t0, t1)
        back = grid_from_logits(logits_from_grid(grid), t0, t1)
        torch.testing.assert_close(back, grid.double(), rtol=1e-12, atol=1e-12)
    z = torch.randn(5, generator=torch.Generator().manual_seed(0), dtype=F64) * 4
    g = grid_from_logits(z, 1.0, 0.0)
    assert g.numel() == 7 and float(g[0]) == 1.0 and float(g[-1]) == 0.0
    assert bool((g.diff() < 0).all())
    # the ratios of successive normalised times are the sigmoids of the logits
    torch.testing.assert_close(g[1:-1] / g[:-2], torch.sigmoid(z))


def _problem():
    oracle, flow, _, _ = diffusion_problem("cosine", "v_prediction", seed=5, dim=16)
    warm = oracle.sample_latent(16, torch.Generator().manual_seed(20))
    test = oracle.sample_latent(32, torch.Generator().manual_seed(21))
    return oracle, flow, warm, test


def test_refinement_keeps_the_budget_and_never_loses():
    oracle, flow, warm, _ = _problem()
    teacher = oracle.exact_map(warm)
    calls = []
    counted = fr.DiffusionFlow(
        lambda x, k: calls.append(1) or oracle(x, k),
        alphas_cumprod=flow.alphas_cumprod,
        prediction_type="v_prediction",
    )
    start = flow.default_spacing()(5, 1.0, 0.0)
    solver = fr.IPNDM()
    got = refine_grid(counted, solver, warm, teacher, start, budget=20)
    assert len(calls) <= 20 * 5
    before = rel(fr.solve(flow, solver, warm, grid=start).x, teacher)
    after = rel(fr.solve(flow, solver, warm, grid=got).x, teacher)
    assert after <= before
    calls.clear()
    assert torch.equal(refine_grid(counted, solver, warm, teacher, start, budget=1), start)
    assert len(calls) == 5  # budget 1: the start's own solve


def test_refined_fit_halves_the_default_error_on_unseen_inputs():
    oracle, flow, warm, test = _problem()
    exact = oracle.exact_map(test)
    solver = fr.IPNDM()
    plain = fit_grid(flow, solver, warm, 5, refine=0)
    refined = fit_grid(flow, solver, warm, 5)
    err = {
        name: rel(fr.solve(flow, solver, test, steps=5, spacing=sp).x, exact)
        for name, sp in (("default", None), ("plain", plain), ("refined", refined))
    }
    assert err["refined"] <= 0.5 * err["default"], err
    assert err["refined"] < err["plain"], err


def test_refine_is_checked_before_any_evaluation():
    oracle, flow, warm, _ = _problem()
    with pytest.raises(ConfigError, match="refine"):
        fit_grid(flow, fr.IPNDM(), warm, 4, refine=-1)
    with pytest.raises(ConfigError, match="refine"):
        fit_grid(flow, fr.IPNDM(), warm, 4, refine=2.5)


def test_the_objective_is_the_mean_relative_error_of_the_warm_up_batch():
    """The refinement minimises the plain mean over the warm-up samples of ``‖x − x_ref‖/‖x_ref‖``
    (chosen on the validation split over a power mean that weighs the worst samples more)."""
    from flowrestore.integrate.refine import _error

    oracle, flow, warm, _ = _problem()
    teacher = oracle.exact_map(warm)
    grid = flow.default_spacing()(4, 1.0, 0.0)
    x = fr.solve(flow, fr.IPNDM(), warm, grid=grid).x
    per = (x - teacher).flatten(1).norm(dim=1) / teacher.flatten(1).norm(dim=1)
    assert float(per.max()) > 1.5 * float(per.min())  # the samples differ: a power mean would too
    got = _error(flow, fr.IPNDM(), warm, teacher, grid)
    assert got == pytest.approx(float(per.mean()), rel=1e-9)
