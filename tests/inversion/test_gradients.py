"""Gradients through the few-step solve (what BIRD backpropagates through) match finite differences.

``torch.autograd.gradcheck`` in float64 on a tiny problem, for every fixed-step solver, including
the final denoising step of Heun/RK4 on the singular InDI flow; then through the whole BIRD
objective (blur width and latent); and the meaning of ``gradient="detached"``.
"""

from __future__ import annotations

import pytest
import torch

import flowrestore as fr
from flowrestore.inversion import BlindInversion, Param, project_sphere

_SIDE = (2, 3)  # tiny images [B, 1, 2, 3]: gradcheck perturbs every input
SOLVERS = [fr.Euler(), fr.Midpoint(), fr.Heun(), fr.RK4(), fr.InDISampler(eps=0.0)]


def _predictor(weight: torch.Tensor):
    """A smooth non-linear (not affine) clean-image predictor F(x, t)."""
    n = weight.shape[0]
    c = torch.linspace(0.1, 0.9, n, dtype=torch.float64).reshape(1, 1, *_SIDE)

    def predictor(x, t):
        tb = t.reshape(-1, 1, 1, 1)
        mix = (x.reshape(x.shape[0], n) @ weight.T).reshape(x.shape)
        return (1 - tb) * torch.tanh(x + 0.3 * mix) + tb * c + 0.2 * tb * (1 - tb) * torch.sin(x)

    return predictor


@pytest.mark.parametrize("solver", SOLVERS, ids=lambda s: type(s).__name__)
def test_gradcheck_through_solve(solver):
    g = torch.Generator().manual_seed(0)
    weight = (0.3 * torch.randn(6, 6, generator=g, dtype=torch.float64)).requires_grad_(True)
    z = torch.randn(2, 1, *_SIDE, generator=g, dtype=torch.float64, requires_grad=True)

    def f(z, weight):
        flow = fr.InDIFlow(_predictor(weight))
        return fr.solve(flow, solver, z, steps=3, spacing=fr.Power(2.0), differentiable=True).x

    assert torch.autograd.gradcheck(f, (z, weight), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_solve_is_not_differentiable_by_default():
    flow = fr.InDIFlow(_predictor(torch.zeros(6, 6, dtype=torch.float64)))
    z = torch.randn(1, 1, *_SIDE, dtype=torch.float64, requires_grad=True)
    assert not fr.solve(flow, fr.Heun(), z, steps=3).x.requires_grad


def test_gradcheck_through_the_bird_objective():
    """d/d(z, width) of ||y − G_width(Ψ(z))||² with per-sample widths."""
    g = torch.Generator().manual_seed(1)
    flow = fr.InDIFlow(_predictor(0.3 * torch.randn(6, 6, generator=g, dtype=torch.float64)))
    y = torch.rand(2, 1, *_SIDE, generator=g, dtype=torch.float64)
    z = torch.randn(2, 1, *_SIDE, generator=g, dtype=torch.float64, requires_grad=True)
    width = torch.tensor([0.7, 1.3], dtype=torch.float64, requires_grad=True)

    def objective(z, width):
        x = fr.solve(flow, fr.Heun(), z, steps=3, differentiable=True).x
        op = fr.degradations.GaussianBlur(width, kernel_size=3)
        return (op(x) - y).square().flatten(1).mean(1)

    assert torch.autograd.gradcheck(objective, (z, width), eps=1e-6, atol=1e-7, rtol=1e-5)


def _one_step_gradients(mode, tangent=False):
    g = torch.Generator().manual_seed(2)
    flow = fr.InDIFlow(_predictor(0.3 * torch.randn(6, 6, generator=g, dtype=torch.float64)))
    y = torch.rand(2, 1, *_SIDE, generator=g, dtype=torch.float64)
    z0 = project_sphere(torch.randn(2, 1, *_SIDE, generator=g, dtype=torch.float64))
    inv = BlindInversion(
        flow,
        solver=fr.Euler(),
        steps=3,
        iterations=1,
        gradient=mode,
        tangent_gradient=tangent,
        degradation=fr.BlindOperator(
            fr.degradations.GaussianBlur, width=Param(1.0, bounds=(0.1, 2.0)), kernel_size=3
        ),
    )
    gz, gp = inv.gradients(y, z0, {"width": torch.ones(2, dtype=torch.float64)})
    return flow, y, z0, (gz, gp["width"])


def test_detached_gradient_is_the_image_gradient_passed_straight_through():
    flow, y, z0, (gz, gw) = _one_step_gradients("detached")
    z = z0.clone()
    x = fr.solve(flow, fr.Euler(), z, steps=3).x.requires_grad_(True)
    width = torch.ones(2, dtype=torch.float64, requires_grad=True)
    loss = (fr.degradations.GaussianBlur(width, kernel_size=3)(x) - y).square().flatten(1).mean(1)
    gx, gw_ref = torch.autograd.grad(loss.sum(), (x, width))
    torch.testing.assert_close(gz, gx, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(gw, gw_ref, rtol=1e-12, atol=1e-15)


def test_exact_gradient_is_the_chain_rule_through_solve():
    flow, y, z0, (gz, gw) = _one_step_gradients("exact")
    z = z0.clone().requires_grad_(True)
    width = torch.ones(2, dtype=torch.float64, requires_grad=True)
    x = fr.solve(flow, fr.Euler(), z, steps=3, differentiable=True).x
    loss = (fr.degradations.GaussianBlur(width, kernel_size=3)(x) - y).square().flatten(1).mean(1)
    gz_ref, gw_ref = torch.autograd.grad(loss.sum(), (z, width))
    torch.testing.assert_close(gz, gz_ref, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(gw, gw_ref, rtol=1e-12, atol=1e-15)
    _, _, _, (gz_det, _) = _one_step_gradients("detached")
    assert not torch.allclose(gz, gz_det)


def test_tangent_gradient_removes_the_radial_component():
    _, _, z0, (gz, _) = _one_step_gradients("exact")
    _, _, _, (gt, _) = _one_step_gradients("exact", tangent=True)
    radial = (gz * z0).sum((1, 2, 3), keepdim=True) / z0.square().sum((1, 2, 3), keepdim=True)
    torch.testing.assert_close(gt, gz - radial * z0, rtol=1e-12, atol=1e-15)
    assert (gt * z0).sum((1, 2, 3)).abs().max() < 1e-12
