"""Non-blind BIRD with an affine flow map reproduces the least-squares solution on the sphere.

On the Gaussian generative oracle every Runge–Kutta map is affine, ``Ψ(z) = α ⊙ z + β`` (checked
to round-off). With a fixed operator ``H``, BIRD's problem ``min_{‖z‖² = d} ‖ỹ − H(α ⊙ z + β)‖²`` is
a trust-region-type problem with ``A = H diag(α)``, ``b = ỹ − Hβ``: its solution is
``z = (AᵀA + μI)⁻¹ Aᵀb`` with ``μ > −λ_min(AᵀA)`` the root of the secular equation
``Σ_i g_i² / (λ_i + μ)² = d`` (``AᵀA = Q diag(λ) Qᵀ``, ``g = Qᵀ Aᵀ b``), solved here in float64.
Projected Adam with the tangent gradient and a cosine schedule must land on it; with the raw
gradient (BIRD's code) its fixed points are elsewhere, which the second test documents.
"""

from __future__ import annotations

import math

import pytest
import scipy.optimize
import torch

import flowrestore as fr
from flowrestore.inversion import BlindInversion
from flowrestore.oracles import GaussianGenerativeOracle

N = 6  # 6×6 images: d = 36


def _setup(uniform_std: bool = False):
    g = torch.Generator().manual_seed(0)
    c = torch.rand(1, N, N, generator=g, dtype=torch.float64)
    s = 0.05 + 0.1 * torch.rand(1, N, N, generator=g, dtype=torch.float64)
    if uniform_std:
        s = torch.full_like(s, 0.1)
    oracle = GaussianGenerativeOracle(mean=c, std=s)
    flow = fr.InDIFlow(oracle.posterior_mean)
    solve_kw = {"steps": 4, "spacing": fr.Power(2.0)}
    psi = lambda z: fr.solve(flow, fr.Euler(), z, **solve_kw).x  # noqa: E731
    beta = psi(torch.zeros(1, 1, N, N, dtype=torch.float64))
    alpha = psi(torch.ones(1, 1, N, N, dtype=torch.float64)) - beta
    zr = torch.randn(2, 1, N, N, generator=g, dtype=torch.float64)
    torch.testing.assert_close(psi(zr), alpha * zr + beta, rtol=0, atol=1e-13)
    op = fr.degradations.GaussianBlur(1.0, kernel_size=5)
    z_true = torch.randn(3, 1, N, N, generator=g, dtype=torch.float64)
    y = op(oracle.exact_map(z_true)) + 0.02 * torch.randn(
        3, 1, N, N, generator=g, dtype=torch.float64
    )
    return flow, solve_kw, op, alpha, beta, y


def _sphere_least_squares(op, alpha, beta, y):
    d = N * N
    cols = op(torch.eye(d, dtype=torch.float64).reshape(d, 1, N, N)).reshape(d, d).T
    a = cols * alpha.reshape(1, -1)
    lam, q = torch.linalg.eigh(a.T @ a)
    out = []
    for i in range(y.shape[0]):
        b = (y[i] - op(beta)[0]).reshape(-1)
        gv = q.T @ (a.T @ b)

        def secular(mu, gv=gv):
            return float((gv**2 / (lam + mu) ** 2).sum()) - d

        lo = -float(lam[0]) * (1 - 1e-12) + 1e-300
        assert secular(lo) > 0  # not the "hard case"
        hi = 1.0
        while secular(hi) > 0:
            hi *= 2
        mu = scipy.optimize.brentq(secular, lo, hi, xtol=1e-16, rtol=1e-15)
        z = q @ (gv / (lam + mu))
        assert math.isclose(float(z @ z), d, rel_tol=1e-9)
        out.append(z.reshape(1, N, N))
    return torch.stack(out)


@pytest.mark.parametrize(
    "mode,uniform_std",
    [("exact", False), ("exact", True), ("detached", True)],
    ids=["exact-per-pixel-std", "exact-uniform-std", "detached-uniform-std"],
)
def test_non_blind_inversion_reaches_the_sphere_least_squares_solution(mode, uniform_std):
    """``detached`` replaces ``J_Ψ = diag(α)`` by ``I``: the tangent fixed points are the same
    exactly when ``α`` is uniform (then the two gradients differ by a constant factor, to which
    Adam is blind); with a per-pixel ``α`` detached inversion stops elsewhere (next test)."""
    flow, solve_kw, op, alpha, beta, y = _setup(uniform_std)
    z_star = _sphere_least_squares(op, alpha, beta, y)
    inv = BlindInversion(
        flow,
        solver=fr.Euler(),
        degradation=op,
        iterations=1000,
        lr_latent=0.1,
        schedule="cosine",
        gradient=mode,
        **solve_kw,
    )
    res = inv.run(y, generator=torch.Generator().manual_seed(5))
    err = (res.latent - z_star).flatten(1).norm(dim=1) / math.sqrt(N * N)
    obj = (op(res.x) - y).flatten(1).square().sum(1)
    obj_star = (op(alpha * z_star + beta) - y).flatten(1).square().sum(1)
    assert (err < 2e-3).all(), err
    assert ((obj - obj_star) / obj_star < 1e-4).all(), (obj, obj_star)


def test_detached_is_an_approximation_when_the_jacobian_is_not_a_multiple_of_identity():
    flow, solve_kw, op, alpha, beta, y = _setup(uniform_std=False)
    z_star = _sphere_least_squares(op, alpha, beta, y)
    inv = BlindInversion(
        flow,
        solver=fr.Euler(),
        degradation=op,
        iterations=600,
        lr_latent=0.1,
        schedule="cosine",
        gradient="detached",
        **solve_kw,
    )
    res = inv.run(y, generator=torch.Generator().manual_seed(5))
    err = (res.latent - z_star).flatten(1).norm(dim=1) / math.sqrt(N * N)
    obj = (op(res.x) - y).flatten(1).square().sum(1)
    obj_star = (op(alpha * z_star + beta) - y).flatten(1).square().sum(1)
    assert (err > 0.05).all(), err
    assert (obj > obj_star).all() and ((obj - obj_star) / obj_star < 0.5).all(), (obj, obj_star)


def test_raw_latent_gradient_stalls_off_the_constrained_optimum():
    """BIRD's reference loop (Adam on the raw gradient, then rescale to the sphere) has fixed
    points where the Adam-preconditioned gradient is radial, not at the constrained minimum."""
    flow, solve_kw, op, alpha, beta, y = _setup()
    z_star = _sphere_least_squares(op, alpha, beta, y)
    inv = BlindInversion(
        flow,
        solver=fr.Euler(),
        degradation=op,
        iterations=600,
        lr_latent=0.1,
        schedule="cosine",
        tangent_gradient=False,
        **solve_kw,
    )
    res = inv.run(y, generator=torch.Generator().manual_seed(5))
    obj = (op(res.x) - y).flatten(1).square().sum(1)
    obj_star = (op(alpha * z_star + beta) - y).flatten(1).square().sum(1)
    assert ((obj - obj_star) / obj_star > 0.05).all(), (obj, obj_star)
