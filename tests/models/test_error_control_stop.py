"""Error control on the EDM and flow-matching flows stops where the tolerance asks (math.md §9).

A residual flow is singular at ``t = 0``: an error-controlled solve stops at the flow's
``preferred_t_min(rtol)`` and lands from there in one step onto the clean estimate, an error of
``O(σ_stop²)`` in the data's units. For a Gaussian prior ``N(c, s²)`` every quantity is closed form
(:mod:`flowrestore.oracles.flow_matching`): the exact state at the stop is the oracle's flow map,
the landing step is its denoiser there, and the exact answer its map to 0. Before the EDM flow
declared its stop, the controller's default ``t = min(1e-2, √rtol/10)`` was ``σ = 0.8`` at
``σ_max = 80``: relative errors 2.9e-2 at ``rtol = 1e-4`` (0.50 at ``σ_max = 1000``).
"""

from __future__ import annotations

import math

import pytest
import torch

import flowrestore as fr
from flowrestore.oracles import GaussianDenoiserOracle, GaussianFlowMatchingOracle
from flowrestore.oracles.diffusion import linear_alphas_cumprod

from .helpers import F64

MEAN = torch.zeros(8, dtype=F64)
STD = torch.linspace(0.2, 1.0, 8, dtype=F64)


def _rel(x, ref) -> float:
    return float((x - ref).abs().max() / ref.abs().max())


def _noise(n=4, seed=0):
    return torch.randn(n, 8, generator=torch.Generator().manual_seed(seed), dtype=F64)


@pytest.mark.parametrize("sigma_max", [80.0, 1000.0])
@pytest.mark.parametrize("rtol", [1e-4, 1e-6])
def test_denoiser_flow_adaptive_solve_meets_its_tolerance(sigma_max, rtol):
    """``Dopri5(rtol, atol=rtol)`` on the exact EDM denoiser lands within ``10·rtol`` (relative,
    max norm) of the closed-form flow map. The bound: the landing from ``σ_stop = √rtol/10``
    costs ``σ_stop²/(2 s²) ≤ rtol/8`` for ``s ≥ 0.2`` (below), and the controlled part's global
    error is what a DiffusionFlow reaches on its exact oracle under the same controller,
    1.6–5.4 × rtol on the linear and cosine schedules (``σ_max`` 157 and 2·10⁴, rtol 1e-3 to
    1e-6); 10 leaves headroom over both. Measured here: 1.6, 1.6, 2.7 and 7.2 × rtol."""
    oracle = GaussianDenoiserOracle(mean=MEAN, std=STD)
    flow = fr.DenoiserFlow(oracle, sigma_max=sigma_max, sigma_min=0.002)
    x_T = sigma_max * _noise()
    sol = fr.solve(flow, fr.Dopri5(rtol=rtol, atol=rtol), x_T)
    err = _rel(sol.x, oracle.exact_map(x_T, sigma_max))
    assert err <= 10 * rtol, err


@pytest.mark.parametrize("sigma_min", [0.002, 0.0])
@pytest.mark.parametrize("rtol", [1e-2, 1e-4, 1e-6])
def test_denoiser_flow_landing_from_its_stop_is_within_the_tolerance(sigma_min, rtol):
    """From the exact state at ``σ_stop = t_min σ_max`` the landing step (the denoiser there) is
    within ``rtol/4`` of the exact answer (closed form; ``s ≥ 0.2``), and the stop is the
    documented ``min(σ_cap, √rtol/10)``: ``σ_cap = σ_min`` (the smallest trained level, as a
    diffusion model's ``σ_0``), ``1e-2`` when ``σ_min = 0``."""
    oracle = GaussianDenoiserOracle(mean=MEAN, std=STD)
    flow = fr.DenoiserFlow(oracle, sigma_max=80.0, sigma_min=sigma_min)
    t_min = flow.preferred_t_min(rtol)
    cap = sigma_min if sigma_min > 0 else 1e-2
    assert t_min == pytest.approx(min(cap, math.sqrt(rtol) / 10) / 80.0, rel=1e-12)
    x_T = 80.0 * _noise()
    s = t_min * 80.0
    landed = oracle(oracle.exact_map(x_T, 80.0, s), s)
    assert _rel(landed, oracle.exact_map(x_T, 80.0)) <= rtol / 4
    assert 0 < flow.preferred_t_min(0.0) < 1e-9  # rtol = 0 (atol only): never t = 0


@pytest.mark.parametrize("rtol", [1e-2, 1e-4, 1e-6])
def test_flow_matching_flow_declares_the_same_stop(rtol):
    """Flow matching's time is its noise level near 0 (``x_t ≈ x_0 + t ε``), so its stop is
    ``t = min(1e-2, √rtol/10)``, declared by the flow; landing from the exact state there is
    within ``rtol/4`` of the exact map (``D = x − t v``, closed form)."""
    oracle = GaussianFlowMatchingOracle(mean=MEAN, std=STD)
    flow = fr.FlowMatchingFlow(oracle, shift=3.0)
    t_min = flow.preferred_t_min(rtol)
    assert t_min == pytest.approx(min(1e-2, math.sqrt(rtol) / 10), rel=1e-12)
    z = _noise()
    x_s = oracle.exact_map(z, 1.0, t_min)
    landed = flow.denoise(torch.tensor(t_min, dtype=F64), x_s)
    assert _rel(landed, oracle.exact_map(z)) <= rtol / 4


def test_reverse_sde_declares_its_flows_stop():
    """DiffusionSDE lives in its flow's time and lands the same way: the same stop."""
    from flowrestore.oracles import GaussianDiffusionOracle

    abar = linear_alphas_cumprod()
    oracle = GaussianDiffusionOracle(mean=MEAN, std=STD, alphas_cumprod=abar)
    flow = fr.DiffusionFlow(oracle, alphas_cumprod=abar)
    for rtol in (1e-3, 1e-6):
        assert flow.reverse_sde().preferred_t_min(rtol) == flow.preferred_t_min(rtol)
