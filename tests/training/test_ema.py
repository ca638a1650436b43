"""EMA of the weights: the shadow after n updates is the closed-form weighted average."""

import pytest
import torch
from torch import nn

from flowrestore.training.ema import EMA


def _model(value: float) -> nn.Module:
    m = nn.Linear(2, 1)
    with torch.no_grad():
        m.weight.fill_(value)
        m.bias.fill_(-value)
    m.register_buffer("count", torch.tensor(0))
    return m


@pytest.mark.parametrize("warmup", [False, True])
def test_shadow_after_n_updates_is_the_closed_form_average(warmup):
    """With weights θ_0 at construction and θ_k at update k (decays d_k), the shadow is
    Π_k d_k · θ_0 + Σ_k (1 − d_k) Π_{j>k} d_j · θ_k: each update keeps d_k of the shadow and
    adds 1 − d_k of the weights (d_k = min(decay, (1 + k)/(10 + k)) with warm-up)."""
    decay = 0.9
    model = _model(1.0)
    ema = EMA(model, decay=decay, warmup=warmup)
    thetas = [1.0] + [float(k) ** 2 for k in range(1, 8)]
    decays = []
    for k, theta in enumerate(thetas[1:]):
        with torch.no_grad():
            model.weight.fill_(theta)
            model.bias.fill_(-theta)
        model.count += 1
        decays.append(min(decay, (1 + k) / (10 + k)) if warmup else decay)
        assert ema.current_decay() == pytest.approx(decays[-1], abs=0)
        ema.update(model)
    expected = thetas[0]
    for theta, d in zip(thetas[1:], decays, strict=True):
        expected = d * expected + (1 - d) * theta
    closed = 1.0
    for d in decays:
        closed *= d
    closed *= thetas[0]
    for k, theta in enumerate(thetas[1:]):
        w = 1 - decays[k]
        for d in decays[k + 1 :]:
            w *= d
        closed += w * theta
    assert closed == pytest.approx(expected, rel=1e-12)
    shadow = ema.shadow
    assert torch.allclose(shadow["weight"], torch.full((1, 2), closed), rtol=1e-6, atol=0)
    assert torch.allclose(shadow["bias"], torch.full((1,), -closed), rtol=1e-6, atol=0)
    assert int(shadow["count"]) == 7  # buffers are copied, not averaged
    target = _model(0.0)
    ema.copy_to(target)
    assert torch.equal(target.weight, shadow["weight"])


@pytest.mark.parametrize("decay", [1.0, -0.01, 1.5, "0.9"])
def test_decay_outside_zero_one_is_refused(decay):
    """``decay`` in ``[0, 1)``: 1 would freeze the shadow at the initial weights forever."""
    from flowrestore.errors import ConfigError

    with pytest.raises(ConfigError, match="decay"):
        EMA(_model(1.0), decay=decay)
    EMA(_model(1.0), decay=0.0)


def test_buffers_are_copied_not_averaged():
    """The module docstring's promise: BatchNorm's running statistics are copied into the shadow."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    ema = EMA(model, decay=0.9, warmup=False)
    model.train()
    model(torch.randn(16, 3) + 5.0)  # moves running_mean away from 0
    with torch.no_grad():
        model[0].weight.add_(1.0)
    ema.update(model)
    for k in ("1.running_mean", "1.running_var", "1.num_batches_tracked"):
        assert torch.equal(ema.shadow[k], model.state_dict()[k]), k
    w = model.state_dict()["0.weight"]
    assert not torch.equal(ema.shadow["0.weight"], w)  # parameters are still averaged
