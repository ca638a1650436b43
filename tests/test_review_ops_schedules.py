"""Review tests of flowrestore.schedules (demanding-user review)."""

import numpy as np
import pytest
import torch

from flowrestore.degradations import GaussianBlurFamily
from flowrestore.errors import ConfigError
from flowrestore.schedules import Geometric, Linear, PiecewiseLinear


@pytest.mark.parametrize(
    "call",
    [
        lambda t: Linear(0.3, 3.0)(t),
        lambda t: Geometric(0.01, 0.5).derivative(t),
        lambda t: PiecewiseLinear([0.0, 0.5, 1.0], [0.1, 1.0, 4.0])(t),
        lambda t: GaussianBlurFamily(width=Linear(0.3, 1.0), kernel_size=3)(
            torch.zeros(1, 1, 4, 4), t
        ),
    ],
)
def test_a_boolean_tensor_is_not_a_time(call):
    # torch.tensor([True]) was read as t = 1 (and False as 0) without a word
    with pytest.raises(ConfigError, match="t must be a real tensor of times"):
        call(torch.tensor([True]))


@pytest.mark.parametrize("t", [np.float32(0.25), np.float64(0.25), np.int64(1)])
def test_numpy_scalar_times_are_times(t):
    # np.float32(0.25) (a time taken from a numpy grid) was refused: "t must be a float or a
    # tensor"
    from flowrestore.oracles import GaussianOracle

    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(Linear(0.3, 3.0)(t), Linear(0.3, 3.0)(float(t)))
    fam = GaussianBlurFamily(width=Linear(0.3, 1.0), kernel_size=3)
    torch.testing.assert_close(fam(x, t), fam(x, float(t)))
    oracle = GaussianOracle(noise_std=0.1, event_shape=(1, 8, 8))
    torch.testing.assert_close(oracle.posterior_mean(x, t), oracle.posterior_mean(x, float(t)))
    with pytest.raises(ConfigError, match=r"t must lie in \[0, 1\]"):
        Linear(0.3, 3.0)(np.float32(1.5))
