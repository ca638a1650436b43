"""InDI and Dirac losses against hand computation on tiny inputs (docs/math.md §1 and §3)."""

import math

import pytest
import torch

from flowrestore.errors import ConfigError, ShapeError
from flowrestore.training.losses import (
    dirac_components,
    dirac_dsm_loss,
    dirac_ir_loss,
    indi_components,
    indi_loss,
)

X = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]], [[[0.0, -1.0], [0.5, 2.0]]]], dtype=torch.float64)
Y = torch.tensor([[[[2.0, 0.0], [1.0, 4.0]]], [[[1.0, 1.0], [-0.5, 0.0]]]], dtype=torch.float64)


def predictor(x, t):
    return 0.5 * x + t.reshape(-1, 1, 1, 1)


def hand_indi(t, noise, eps, brownian, p):
    """Loop over every coordinate with Python floats."""
    total = []
    for b in range(2):
        tb = float(t[b])
        et = 0.0 if eps == 0 else (eps / math.sqrt(tb) if brownian else eps)
        errs = []
        for i in range(2):
            for j in range(2):
                x, y = float(X[b, 0, i, j]), float(Y[b, 0, i, j])
                n = 0.0 if noise is None else float(noise[b, 0, i, j])
                xt = (1 - tb) * x + tb * y + tb * et * n
                f = 0.5 * xt + tb
                errs.append(abs(f - x) if p == 1 else (f - x) ** 2)
        total.append(sum(errs) / 4)
    return sum(total) / 2, total


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("eps,brownian", [(0.0, False), (0.3, False), (0.3, True)])
def test_indi_loss_matches_hand_computation(p, eps, brownian):
    comps = indi_components(
        X, Y, eps=eps, brownian=brownian, generator=torch.Generator().manual_seed(3)
    )
    # The draws are t first (float64 uniforms) then the noise, from the same generator.
    g = torch.Generator().manual_seed(3)
    t_ref = torch.rand(2, generator=g, dtype=torch.float64)
    assert torch.equal(comps.t, t_ref)
    if eps > 0:
        assert torch.equal(comps.noise, torch.randn(X.shape, generator=g, dtype=torch.float64))
    else:
        assert comps.noise is None
    loss = indi_loss(
        predictor, X, Y, p=p, eps=eps, brownian=brownian, generator=torch.Generator().manual_seed(3)
    )
    expected, per = hand_indi(t_ref, comps.noise, eps, brownian, p)
    assert float(loss) == pytest.approx(expected, rel=1e-12, abs=1e-14)
    per_loss = indi_loss(
        predictor,
        X,
        Y,
        p=p,
        eps=eps,
        brownian=brownian,
        generator=torch.Generator().manual_seed(3),
        reduction="none",
    )
    assert per_loss.tolist() == pytest.approx(per, rel=1e-12)


def test_indi_xt_endpoints_and_brownian_at_zero():
    c = indi_components(
        X,
        Y,
        t=torch.tensor([0.0, 1.0], dtype=torch.float64),
        eps=0.5,
        brownian=True,
        generator=torch.Generator().manual_seed(0),
    )
    assert torch.equal(c.x_t[0], X[0])  # t = 0: clean, no 0/0 from eps/sqrt(t)
    assert torch.allclose(c.x_t[1], Y[1] + 0.5 * c.noise[1])


def test_indi_loss_errors():
    with pytest.raises(ConfigError, match="p must be"):
        indi_loss(predictor, X, Y, p=3)
    with pytest.raises(ShapeError, match="y must have the shape"):
        indi_loss(predictor, X, Y[:, :, :1])
    with pytest.raises(ConfigError, match="reduction"):
        indi_loss(predictor, X, Y, reduction="avg")
    with pytest.raises(ShapeError, match="predictor output"):
        indi_loss(lambda x, t: x[:, :, :1], X, Y)
    with pytest.raises(ShapeError, match=r"x must be a tensor \[B, \.\.\.\]"):  # no batch axis
        indi_loss(predictor, X[0, 0, 0], Y[0, 0, 0])


H = torch.tensor([[[[1.0, 0.5], [0.2, 0.0]]]], dtype=torch.float64)


def A(x, t):
    """Diagonal family A_t = (1 - t) I + t diag(H)."""
    tb = t.reshape(-1, 1, 1, 1)
    return ((1 - tb) + tb * H) * x


def sigma(t):
    return 0.1 + 0.2 * t


def phi(y, t):
    return 2.0 * y - t.reshape(-1, 1, 1, 1)


def hand_dirac(t, z, lookahead):
    per = []
    for b in range(2):
        tb = float(t[b])
        tau = max(tb - lookahead, 0.0)
        s = 0.1 + 0.2 * tb
        acc = 0.0
        for i in range(2):
            for j in range(2):
                h = float(H[0, 0, i, j])
                x0 = float(X[b, 0, i, j])
                yt = ((1 - tb) + tb * h) * x0 + s * float(z[b, 0, i, j])
                pred = 2.0 * yt - tb
                d = ((1 - tau) + tau * h) * (pred - x0)
                acc += d * d
        per.append(acc / 4 / s**2)
    return sum(per) / 2


@pytest.mark.parametrize("lookahead", [0.0, 0.3, 1.0])
def test_dirac_losses_match_hand_computation(lookahead):
    g = torch.Generator().manual_seed(11)
    t_ref = torch.rand(2, generator=g, dtype=torch.float64)
    z_ref = torch.randn(X.shape, generator=g, dtype=torch.float64)
    comps = dirac_components(
        X, A=A, sigma=sigma, lookahead=lookahead, generator=torch.Generator().manual_seed(11)
    )
    assert torch.equal(comps.t, t_ref) and torch.equal(comps.noise, z_ref)
    assert torch.allclose(comps.tau, torch.clamp(t_ref - lookahead, min=0))
    assert torch.allclose(comps.weight, 1 / (0.1 + 0.2 * t_ref) ** 2)
    expected = hand_dirac(t_ref, z_ref, lookahead)
    ir = dirac_ir_loss(
        phi, X, A=A, sigma=sigma, lookahead=lookahead, generator=torch.Generator().manual_seed(11)
    )
    assert float(ir) == pytest.approx(expected, rel=1e-12)
    if lookahead == 0.0:
        dsm = dirac_dsm_loss(phi, X, A=A, sigma=sigma, generator=torch.Generator().manual_seed(11))
        assert float(dsm) == pytest.approx(expected, rel=1e-12)


def test_dirac_errors():
    with pytest.raises(ConfigError, match="lookahead"):
        dirac_ir_loss(phi, X, A=A, sigma=sigma, lookahead=1.5)
    with pytest.raises(ShapeError, match="sigma"):
        dirac_dsm_loss(phi, X, A=A, sigma=lambda t: torch.zeros(2, dtype=t.dtype))
