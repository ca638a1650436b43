"""Models whose largest noise level is far above DDPM's linear schedule's (cosine: ``σ_max ≈
2·10⁴``): the reverse SDE samples the prior on its default grid, and a part-way solve that ends
above the reference table's top lays a grid (uniform in ``log σ``) instead of colliding points."""

from __future__ import annotations

import math

import pytest
import torch

import flowrestore as fr
from flowrestore.flows.diffusion import REFERENCE_SIGMAS

from .helpers import cosine_alphas_cumprod, gaussian_problem

N_SAMPLES = 6000


def _cosine():
    return gaussian_problem("v_prediction", dim=4, std=(0.3, 1.0), abar=cosine_alphas_cumprod())


@pytest.mark.parametrize(
    ("make", "steps", "bias"), [(fr.SRA1, 50, 0.0), (fr.EulerMaruyama, 200, 0.05)]
)
def test_reverse_sde_of_a_cosine_model_samples_the_prior(make, steps, bias):
    oracle, flow = _cosine()
    assert flow.sigma_max > 100 * REFERENCE_SIGMAS[-1]
    x_T = oracle.sample_latent(N_SAMPLES, torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(1)
    out = fr.solve(flow.reverse_sde(), make(), x_T, steps=steps, generator=gen).x
    se = oracle.std / N_SAMPLES**0.5
    assert ((out.mean(0) - oracle.mean).abs() < 5 * se).all()
    # the variance within Monte-Carlo error (5 σ) plus Euler–Maruyama's weak-order bias at 200
    # steps; on the ODE's grid the first step, σ_max → ~100, gave 1.3–2.1× (EM) and 6–24× (SRA1)
    ratio = out.var(0) / oracle.std**2
    assert ((ratio - 1).abs() < 5 * (2 / N_SAMPLES) ** 0.5 + bias).all(), ratio


def test_reverse_sde_grid_is_the_flows_below_the_reference_top():
    oracle, flow = gaussian_problem("epsilon", dim=2)  # DDPM's linear schedule: the table itself
    assert flow.reverse_sde().default_spacing() == flow.default_spacing()
    _, cos = _cosine()
    sde_grid = cos.reverse_sde().default_spacing()(40, 1.0, 0.0) * cos.sigma_max
    # no step spans more than a factor 3 of σ above the table's top; the ODE's first one does
    top = REFERENCE_SIGMAS[-1]
    hi = sde_grid[sde_grid > top]
    assert float((hi[:-1] / hi[1:]).max()) < 3.0
    ode_grid = cos.default_spacing()(40, 1.0, 0.0) * cos.sigma_max
    assert float(ode_grid[0] / ode_grid[1]) > 100


@pytest.mark.parametrize("t_end", [0.05, 0.3])
def test_part_way_solve_above_the_reference_table_is_uniform_in_log_sigma(t_end):
    oracle, flow = _cosine()
    x = oracle.sample_latent(8, torch.Generator().manual_seed(2))
    sol = fr.solve(flow, fr.IPNDM(), x, steps=6, t_span=(1.0, t_end), save_at="steps")
    want = torch.tensor([math.exp(math.log(t_end) * k / 6) for k in range(7)], dtype=torch.float64)
    torch.testing.assert_close(sol.ts, want)
    fine = fr.solve(flow, fr.RK4(), x, steps=200, t_span=(1.0, t_end)).x
    rel = (sol.x - fine).flatten(1).norm(dim=1) / fine.flatten(1).norm(dim=1)
    assert float(rel.max()) < 1e-3, rel


def test_sde_reference_levels_continue_the_table_only_above_its_top():
    """``sde_reference_levels``: the table itself for a model whose ``σ_max`` is at or below
    the table's top (nothing to continue, no repeated level), else continued geometrically to
    ``σ_max``; strictly increasing, ending at ``σ_max`` (time 1) once it is continued."""
    from flowrestore.flows.diffusion import reference_levels, sde_reference_levels

    top = REFERENCE_SIGMAS[-1]
    for sigma_max in (top / 2, top):
        assert sde_reference_levels(sigma_max) == reference_levels(sigma_max)
    for sigma_max in (top, top * (1 + 1e-7), top * 3, top * 1e4):
        levels = sde_reference_levels(sigma_max)
        assert all(a < b for a, b in zip(levels[:-1], levels[1:], strict=True))
        assert levels[-1] == pytest.approx(1.0, abs=1e-15) or sigma_max < top
