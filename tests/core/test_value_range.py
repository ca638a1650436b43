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
