"""The reference U-Net: shapes for any size, time conditioning, config rebuild."""

import pytest
import torch

from flowrestore.errors import ConfigError, ShapeError
from flowrestore.training.unet import UNet


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    m = UNet(in_channels=3, base_channels=8, channel_mults=(1, 2, 2), num_res_blocks=1)
    with torch.no_grad():  # leave the identity initialisation so outputs depend on x and t
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m


@pytest.mark.parametrize("hw", [(16, 16), (32, 24), (17, 23), (5, 3), (1, 1)])
def test_output_shape_equals_input(net, hw):
    x = torch.rand(2, 3, *hw)
    assert net(x, torch.tensor([0.1, 0.9])).shape == x.shape


def test_channels_last_features_give_the_standard_layouts_answer(net):
    """On the CPU the features run channels-last; the output comes back in the standard layout and
    agrees with a float64 copy of the network (where the order of the sums does not matter) to
    float32 round-off."""
    x = torch.rand(3, 3, 20, 28)
    t = torch.tensor([0.2, 0.5, 0.9])
    wide = UNet(**net.config)
    wide.load_state_dict(net.state_dict())
    wide.double()
    with torch.no_grad():
        out = net(x, t)
        ref = wide(x.double(), t)
    assert out.is_contiguous() and out.dtype == torch.float32
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)


def test_time_conditioning_and_scalar_t(net):
    x = torch.rand(2, 3, 16, 16)
    a = net(x, torch.tensor([0.2, 0.2]))
    assert torch.allclose(a, net(x, 0.2))
    assert not torch.allclose(a, net(x, torch.tensor([0.8, 0.8])))
    with pytest.raises(ShapeError, match="t must be"):
        net(x, torch.rand(3))
    with pytest.raises(ShapeError, match="x must be"):
        net(torch.rand(2, 1, 16, 16), torch.rand(2))


def test_residual_init_is_identity_and_config_rebuilds():
    m = UNet(base_channels=8, channel_mults=(1, 2))
    x = torch.rand(2, 3, 8, 8)
    assert torch.equal(m(x, torch.rand(2)), x)
    m2 = UNet(**m.config)
    m2.load_state_dict(m.state_dict())
    assert m2.config == m.config
    assert 100_000 <= sum(p.numel() for p in UNet().parameters()) <= 300_000
    with pytest.raises(ConfigError, match="channel_mults"):
        UNet(channel_mults=())
    with pytest.raises(ConfigError, match="residual"):
        UNet(in_channels=3, out_channels=1)


def test_timestep_embedding_is_the_sinusoid_padded_to_odd_widths():
    """``[cos(s t f_k), sin(s t f_k)]`` with ``f_k = P^(−k/half)``; an odd width gets one zero."""
    import math

    from flowrestore.training.unet import timestep_embedding

    t = torch.tensor([0.1, 0.7])
    for dim in (6, 7):
        e = timestep_embedding(t, dim, scale=10.0, max_period=100.0)
        assert e.shape == (2, dim)
        f = torch.tensor([100.0 ** (-k / 3) for k in range(3)])
        a = 10.0 * t[:, None] * f[None, :]
        torch.testing.assert_close(e[:, :6], torch.cat([a.cos(), a.sin()], dim=1))
        if dim % 2:
            assert torch.equal(e[:, 6], torch.zeros(2))
    assert math.isclose(float(timestep_embedding(torch.tensor([0.0]), 4)[0, 0]), 1.0)


def test_time_scale_may_be_any_positive_number():
    """``time_scale`` (the embedding's ``s``) is any positive finite number: 1 keeps ``t``."""
    m = UNet(base_channels=8, channel_mults=(1, 2), time_scale=1.0)
    assert m(torch.rand(1, 3, 8, 8), torch.rand(1)).shape == (1, 3, 8, 8)
    UNet(base_channels=8, channel_mults=(1, 2), time_scale=0.5)
    for bad in (0.0, -1.0, float("inf"), True):
        with pytest.raises(ConfigError, match="time_scale"):
            UNet(base_channels=8, channel_mults=(1, 2), time_scale=bad)
