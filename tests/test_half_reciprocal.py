"""Runge–Kutta stages in the reciprocal variables on float16 states (issue 16's precision rule):
a stage's time ``t s / (s + c (t − s))`` must not underflow to 0 — an evaluation of the model at
``σ = 0`` before the landing — and a half-precision solve must be as accurate as half precision
allows (the float32 solve's error plus a few ulps), not tens of percent off."""

from __future__ import annotations

import pytest
import torch

import flowrestore as fr
from flowrestore.oracles import GaussianDenoiserOracle

F64 = torch.float64


def _problem(sigma_max: float):
    g = torch.Generator().manual_seed(3)
    oracle = GaussianDenoiserOracle(
        mean=0.3 * torch.randn(16, generator=g, dtype=F64),
        std=0.2 + 0.6 * torch.rand(16, generator=g, dtype=F64),
    )
    seen = []

    def model(x, sigma):
        seen.append(float(sigma.min()))
        return oracle(x.double(), sigma.double()).to(x.dtype)

    flow = fr.DenoiserFlow(model, sigma_max=sigma_max, sigma_min=0.002)
    x = sigma_max * torch.randn(4, 16, generator=g, dtype=F64)
    return flow, x, oracle.exact_map(x, sigma_max), seen


def _rel(y, ref):
    return float(((y.double() - ref).norm(dim=1) / ref.norm(dim=1)).max())


@pytest.mark.parametrize("sigma_max", [80.0, 1000.0])
@pytest.mark.parametrize("make", [fr.Heun, fr.RK4])
def test_half_precision_stages_stay_above_zero_and_keep_the_accuracy(sigma_max, make):
    flow, x, exact, seen = _problem(sigma_max)
    full = _rel(fr.solve(flow, make(), x.float(), steps=20).x, exact)
    seen.clear()
    half = _rel(fr.solve(flow, make(), x.half(), steps=20).x, exact)
    # every evaluation before the landing (the last one) is at a positive noise level
    assert min(seen[:-1]) > 0.0
    # float16 carries ~1e-3 relative precision: 20 steps cost a few times that, not 0.35
    assert half < full + 1e-2, (half, full)
