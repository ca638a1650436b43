"""The trained predictors' value-range guard (``flowrestore.methods.flows``): a start state is
refused when a value lies more than half of the predictor's range outside it, before anything is
evaluated; the boundary itself passes, and the 8-bit hint appears only past twice the top."""

from __future__ import annotations

import pytest
import torch

import flowrestore as fr
from flowrestore.errors import ConfigError
from flowrestore.methods.flows import PredictorDiracSDE, PredictorInDIFlow, check_value_range


def _x(lo, hi):
    x = torch.full((1, 1, 4, 4), 0.5 * (lo + hi), dtype=torch.float64)
    x[0, 0, 0, 0], x[0, 0, 1, 1] = lo, hi
    return x


@pytest.mark.parametrize("value_range", [(0.0, 1.0), (-1.0, 1.0), (0.25, 0.75)])
def test_half_the_range_either_side_passes_and_no_more(value_range):
    lo, hi = value_range
    m = 0.5 * (hi - lo)
    check_value_range(_x(lo - m, hi + m), value_range)  # the boundary itself passes
    for bad in (_x(lo - m, hi + m + 1e-3), _x(lo - m - 1e-3, hi + m)):
        with pytest.raises(ConfigError, match="nothing was evaluated"):
            check_value_range(bad, value_range, name="net")


def test_the_8_bit_hint_starts_past_twice_the_top():
    with pytest.raises(ConfigError, match="divide by 255"):
        check_value_range(_x(0.0, 4.5), (0.0, 2.0))
    with pytest.raises(ConfigError) as err:
        check_value_range(_x(0.0, 3.5), (0.0, 2.0))  # refused (> 3), but not 8-bit-like (< 4)
    assert "255" not in str(err.value)
    with pytest.raises(ConfigError, match="NaN or infinite"):
        check_value_range(_x(0.0, float("nan")), (0.0, 1.0))


def test_predictor_flows_default_to_images_in_0_1_and_refuse_before_evaluating():
    calls = []

    def predictor(x, t):
        calls.append(1)
        return x

    blur = fr.degradations.GaussianBlurFamily(kernel_size=3, width=fr.schedules.Linear(0.3, 1.0))
    flows = [
        PredictorInDIFlow(predictor),
        PredictorDiracSDE(predictor, blur, fr.schedules.Geometric(0.01, 0.05)),
    ]
    for flow in flows:
        with pytest.raises(ConfigError, match=r"\[0, 1\]"):
            fr.solve(flow, fr.Euler() if flow is flows[0] else fr.EulerMaruyama(),
                     _x(0.0, 1.5005), steps=2)  # fmt: skip
        assert calls == []
    fr.solve(flows[0], fr.Euler(), _x(-0.5, 1.5), steps=2)
    assert calls


def test_the_inputs_noise_widens_the_margin_by_six_stds():
    lo, hi, sigma = 0.0, 1.0, 0.25
    m = 0.5 + 6 * sigma  # 2.0: the boundary exact in float32 too
    check_value_range(_x(lo - m, hi + m), (lo, hi), noise_std=sigma)
    for bad in (_x(lo - m, hi + m + 1e-3), _x(lo - m - 1e-3, hi + m)):
        with pytest.raises(ConfigError, match="nothing was evaluated"):
            check_value_range(bad, (lo, hi), noise_std=sigma)
    with pytest.raises(ConfigError):
        check_value_range(_x(lo - m, hi + m), (lo, hi))  # without the noise: refused


def test_a_denoisers_flow_takes_its_own_degraded_images():
    """A denoiser trained at σ = 0.2 sees inputs far outside [0, 1]: the flow built for it from a
    checkpoint's metadata (as ``flow_for`` builds it) accepts what its degradation makes; a Dirac
    model's margin is its ``σ_max``'s."""
    from flowrestore.methods.spec import ModelSpec

    def network(x, t):
        return x

    spec = ModelSpec.of({"method": "indi", "task": "denoise", "task_params": {"sigma": 0.2}})
    flow = spec.flow(network)
    assert flow.noise_std == 0.2
    x = torch.zeros(2, 3, 64, 64, dtype=torch.float64)  # black images: the worst case below 0
    y = spec.observe(x, generator=torch.Generator().manual_seed(0))
    assert float(y.min()) < -0.5  # outside the noiseless margin
    fr.solve(flow, fr.Euler(), y, steps=1)
    dirac = {"sigma_min": 0.01, "sigma_max": 0.3}
    meta = {"method": "dirac", "task": "denoise", "task_params": {"sigma": 0.2}, "dirac": dirac}
    assert ModelSpec.of(meta).flow(network).noise_std == 0.3
