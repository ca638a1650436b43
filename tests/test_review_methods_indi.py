"""Review: InDI's flow and sampler — closed forms, noise variance, seeds and batch independence,
and argument checks."""

from __future__ import annotations

import pytest
import torch

import flowrestore as fr
from flowrestore.errors import ArgumentTypeError


def test_check_outputs_must_be_a_bool():
    # "no" was accepted and read as True (outputs checked)
    with pytest.raises(ArgumentTypeError, match="check_outputs"):
        fr.InDIFlow(lambda x, t: x, check_outputs="no")
    assert fr.InDIFlow(lambda x, t: x, check_outputs=False).check_outputs is False


def _oracle():
    c = torch.tensor([0.3, -1.0], dtype=torch.float64)
    sc = torch.tensor([0.5, 2.0], dtype=torch.float64)
    orc = fr.oracles.GaussianOracle(mean=c, std=sc, noise_std=0.8)
    _, y = orc.sample(6, generator=torch.Generator().manual_seed(0))
    return orc, c, sc, y


def test_sampler_matches_the_discrete_closed_form():
    # MATH.md §2a: one step t -> s maps x - c to (x - c)(1 - δ t σ_N² / (σ_c² + t² σ_N²))
    orc, c, sc, y = _oracle()
    n = 5
    sol = fr.solve(fr.InDIFlow(orc.posterior_mean), fr.InDISampler(), y, steps=n)
    ts = torch.linspace(1, 0, n + 1, dtype=torch.float64)
    z = y - c
    for t, s in zip(ts[:-1], ts[1:], strict=True):
        z = z * (1 - (t - s) * t * 0.64 / (sc**2 + t**2 * 0.64))
    torch.testing.assert_close(sol.x, c + z, rtol=0, atol=1e-12)


def test_part_way_solves_follow_the_ode_closed_form():
    orc, c, sc, y = _oracle()
    a2 = (sc / 0.8) ** 2

    def path(t):
        return c + (y - c) * ((t**2 + a2) / (1 + a2)).sqrt()

    flow = fr.InDIFlow(orc.posterior_mean)
    for t0, t1 in ((1.0, 0.5), (0.5, 0.0), (0.7, 0.2)):
        sol = fr.solve(flow, fr.Dopri5(rtol=1e-10, atol=1e-10), path(t0), t_span=(t0, t1))
        torch.testing.assert_close(sol.x, path(t1), rtol=0, atol=1e-9)


@pytest.mark.parametrize("brownian", [False, True])
def test_seeded_sampler_is_batch_independent(brownian):
    orc, _, _, y = _oracle()
    flow = fr.InDIFlow(orc.posterior_mean)
    sampler = fr.InDISampler(eps=0.3, brownian=brownian)
    both = fr.solve(flow, sampler, y, steps=7, seeds=[10, 11, 12, 13, 14, 15])
    alone = fr.solve(flow, sampler, y[2:3], steps=7, seeds=[12])
    assert torch.equal(both.x[2:3], alone.x)
