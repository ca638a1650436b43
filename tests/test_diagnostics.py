"""check_endpoint tells a residual flow with a limit at t = 0 from one without (docs/math.md §7)."""

import math

import pytest
import torch

import flowrestore as fr


@pytest.fixture(scope="module")
def oracle():
    std = 0.5 + torch.rand(32, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    orc = fr.oracles.GaussianOracle(std=std, noise_std=0.8)
    _, y = orc.sample(6, generator=torch.Generator().manual_seed(1))
    return orc, y


def test_exact_posterior_mean_has_a_limit(oracle):
    orc, y = oracle
    rep = fr.check_endpoint(fr.InDIFlow(orc.posterior_mean), y)
    assert rep.has_limit and rep.t_min is None and rep.cost_db is None
    # x − D = t x'(t) and x'(0) = 0 on this oracle (x_t is even in t): the residual falls like t²
    assert rep.slope == pytest.approx(2.0, abs=0.1)
    assert all(
        b > a for a, b in zip(rep.change_db, rep.change_db[1:], strict=False)
    )  # the answer converges
    assert "has a limit" in str(rep)


@pytest.mark.parametrize("offset", [1e-3, 1e-2])
def test_constant_offset_has_no_limit_and_the_cost_is_the_log_drift(oracle, offset):
    orc, y = oracle
    bad = fr.InDIFlow(lambda x, t: orc.posterior_mean(x, t) + offset)
    rep = fr.check_endpoint(bad, y)
    assert not rep.has_limit and abs(rep.slope) < 0.1
    assert rep.residual[-1] == pytest.approx(offset, rel=0.01)
    # D − x → offset: the drift offset/t moves the answer by offset·ln(10) per decade
    expected = 20 * math.log10(1.0 / (offset * math.log(10)))
    assert rep.cost_db == pytest.approx(expected, abs=1.0)
    assert rep.t_min is not None and rep.t_min >= 1e-2
    assert "No limit" in str(rep)


def test_velocity_unet_is_well_posed_by_construction():
    """F = x − t v: F − x = −t v exactly, so the residual is O(t) for any weights."""
    from flowrestore.training import UNet

    torch.manual_seed(0)
    net = UNet(velocity=True, time_scale=10.0, base_channels=8)
    for p in net.parameters():
        p.data.normal_(0.0, 0.05)
    x = torch.rand(2, 3, 16, 16)
    t = torch.tensor([1e-3, 0.5])
    with torch.no_grad():
        torch.testing.assert_close(net(x, t), x - t.view(-1, 1, 1, 1) * net.velocity(x, t))
        flow = fr.InDIFlow(net)
        torch.testing.assert_close(flow.drift(t, x), net.velocity(x, t))  # no (x − F)/t division
        rep = fr.check_endpoint(flow, x, steps_per_decade=4)
    assert rep.has_limit and rep.slope > 0.8
    with pytest.raises(fr.ConfigError, match="built with velocity=False"):
        UNet(velocity=False).velocity(x, t)


def test_check_endpoint_errors(oracle):
    orc, y = oracle
    with pytest.raises(fr.ConfigError, match="residual flow"):
        fr.check_endpoint(fr.ODEFlow(lambda t, x: -x), y)
    with pytest.raises(fr.ConfigError, match="decreasing"):
        fr.check_endpoint(fr.InDIFlow(orc.posterior_mean), y, times=(1e-1, 1e-2, 1e-2, 1e-3))
    with pytest.raises(fr.ConfigError, match="at least 4"):
        fr.check_endpoint(fr.InDIFlow(orc.posterior_mean), y, times=(1e-1, 1e-2, 1e-3))
    # four times are enough (the documented minimum)
    rep = fr.check_endpoint(fr.InDIFlow(orc.posterior_mean), y, times=(1e-1, 1e-2, 1e-3, 1e-4))
    assert rep.has_limit
    fr.check_endpoint(fr.InDIFlow(orc.posterior_mean), y, steps_per_decade=2)  # the minimum
    with pytest.raises(fr.ConfigError, match="steps_per_decade"):
        fr.check_endpoint(fr.InDIFlow(orc.posterior_mean), y, steps_per_decade=1)


def test_the_measurement_follows_the_exact_flow_on_the_documented_grid(oracle):
    """The solve behind the report: ``steps_per_decade`` Midpoint steps per decade (at least 2 per
    interval between measuring times), so ``2 Σ max(2, ⌈16 log10(a/b)⌉)`` evaluations plus one
    denoising per measuring time; its states follow the closed-form ODE solution, so each
    residual is the exact trajectory's to 2e-5 (measured 5.7e-6; 3.4e-4 with 4 steps a decade)."""
    orc, y = oracle
    calls = []

    def counted(x, t):
        calls.append(1)
        return orc.posterior_mean(x, t)

    rep = fr.check_endpoint(fr.InDIFlow(counted), y)
    knots = [1.0, *rep.times]
    steps = sum(
        max(2, math.ceil(16 * math.log10(a / b))) for a, b in zip(knots, knots[1:], strict=False)
    )
    assert len(calls) == 2 * steps + len(rep.times)
    for t, r in zip(rep.times, rep.residual, strict=True):
        x = orc.ode_solution(y, t)
        exact = float(
            (x - orc.posterior_mean(x, torch.tensor(t, dtype=torch.float64))).abs().mean()
        )
        assert r == pytest.approx(exact, rel=2e-5), t
