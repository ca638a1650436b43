"""Review tests of flowrestore.noise (demanding-user review)."""

import pytest
import torch

import flowrestore as fr
from flowrestore.errors import GridError
from flowrestore.noise import BrownianIncrements


def test_brownian_path_replays_on_a_float32_solve():
    # the loop's times are in the state's dtype: 0.1 in float32 is 0.10000000149, which the fine
    # float64 grid refused ("not a point of the fine Brownian grid") for any float32 state
    flow = fr.SDEFlow(lambda t, x: -x, lambda t, x: torch.ones_like(x), noise_type="additive")
    fine = torch.linspace(0, 1, 41, dtype=torch.float64)
    path = BrownianIncrements.sample(fine, (3, 4), generator=torch.Generator().manual_seed(0))
    x64 = fr.solve(
        flow, fr.EulerMaruyama(), torch.zeros(3, 4, dtype=torch.float64), grid=fine[::4], noise=path
    ).x
    x32 = fr.solve(flow, fr.EulerMaruyama(), torch.zeros(3, 4), grid=fine[::4], noise=path).x
    torch.testing.assert_close(x32.double(), x64, rtol=1e-5, atol=1e-6)
    # a time that is not on the fine grid is still refused
    with pytest.raises(GridError, match="not a point of the fine Brownian grid"):
        path.increment(torch.tensor(0.0), torch.tensor(0.01), torch.zeros(3, 4))


@pytest.mark.parametrize("device", ["gpu", 3.5])
def test_per_sample_noise_checks_its_device_when_built(device):
    # an invalid device was accepted and failed (untyped RuntimeError / TypeError) at the first
    # draw, inside a solve's steps
    from flowrestore.errors import ConfigError
    from flowrestore.noise import PerSampleNoise

    with pytest.raises(ConfigError, match="device must be"):
        PerSampleNoise([1, 2], device=device)


def test_per_sample_noise_on_the_cpu_device_object():
    from flowrestore.noise import PerSampleNoise

    a = PerSampleNoise([1, 2], device=torch.device("cpu")).normal(torch.zeros(2, 3))
    b = PerSampleNoise([1, 2]).normal(torch.zeros(2, 3))
    assert torch.equal(a, b)
