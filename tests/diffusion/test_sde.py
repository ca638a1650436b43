"""The reverse-time SDE of a diffusion model (DiffusionFlow.reverse_sde) samples the prior.

On the exact ε-model of ``N(c, diag σ_c²)``, started from the model's noise ``x_T ~ N(0, I)``, the
samples at ``t = 0`` must have mean ``c`` and variance ``σ_c²`` (the initial law's mismatch with the
true marginal at ``σ_max`` is contracted by ``σ_c²/σ_max²``, negligible). SRA1 within Monte-Carlo
error at 50 steps; Euler–Maruyama's variance bias halves when the steps double (weak order 1).
"""

from __future__ import annotations

import pytest
import torch

import flowrestore as fr

from .helpers import gaussian_problem

N_SAMPLES = 4000


def _moments(solver, steps, seed=1):
    oracle, flow = gaussian_problem("epsilon", dim=4, std=(0.3, 1.0))
    x_T = oracle.sample_latent(N_SAMPLES, torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(seed)
    out = fr.solve(flow.reverse_sde(), solver, x_T, steps=steps, generator=gen).x
    return oracle, out.mean(0), out.var(0)


def test_sra1_samples_the_prior():
    oracle, mean, var = _moments(fr.SRA1(), 50)
    se = oracle.std / N_SAMPLES**0.5
    assert ((mean - oracle.mean).abs() < 5 * se).all(), (mean - oracle.mean) / se
    ratio = var / oracle.std**2
    assert ((ratio - 1).abs() < 5 * (2 / N_SAMPLES) ** 0.5).all(), ratio


def test_euler_maruyama_weak_order_one():
    oracle, _, var25 = _moments(fr.EulerMaruyama(), 25)
    _, _, var50 = _moments(fr.EulerMaruyama(), 50)
    bias25 = float((var25 / oracle.std**2).mean() - 1)
    bias50 = float((var50 / oracle.std**2).mean() - 1)
    assert 1.4 < bias25 / bias50 < 2.8, (bias25, bias50)


def test_sde_shares_the_flow_states_and_refuses_ode_solvers():
    _, flow = gaussian_problem("v_prediction", dim=4)
    sde = flow.reverse_sde()
    x = torch.randn(2, 4, dtype=torch.float64)
    torch.testing.assert_close(sde.to_state(x, 0.3), flow.to_state(x, 0.3))
    t = torch.tensor(0.3, dtype=torch.float64)
    torch.testing.assert_close(sde.drift(t, x), 2 * flow.drift(t, x))
    assert float(sde.diffusion(t, x)) == pytest.approx(flow.sigma_max * 0.6**0.5, rel=1e-12)
    with pytest.raises(fr.IncompatibleSolverError):
        fr.solve(sde, fr.Heun(), x, steps=2)


def test_torchsde_lands_like_sra1_on_the_singular_end():
    """torchsde's ``"srk"`` on additive noise is SRA1: drift stages at ``c = 0, 3/4``, none at
    the step's end, so on the reverse SDE it lands on ``t = 0`` by its own step, as SRA1 does,
    and the two agree pathwise to the end. ``"midpoint"`` (stages 0, 1/2) lands by its own step
    too (two evaluations per step, none extra); ``"heun"`` (a stage at ``c = 1``) by the
    denoising step (one more)."""
    pytest.importorskip("torchsde")
    _, flow = gaussian_problem("epsilon", dim=4, std=(0.3, 1.0))
    sde = flow.reverse_sde()
    x_T = torch.randn(3, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    grid = torch.linspace(1.0, 0.0, 9, dtype=torch.float64) ** 2
    path = fr.integrate.BrownianIncrements.sample(
        grid, x_T.shape, generator=torch.Generator().manual_seed(1)
    )
    ours = fr.solve(sde, fr.SRA1(), x_T, grid=grid, noise=path, save_at="steps")
    theirs = fr.solve(sde, fr.Torchsde("srk"), x_T, grid=grid, noise=path, save_at="steps")
    torch.testing.assert_close(theirs.trajectory, ours.trajectory, rtol=1e-10, atol=1e-10)
    assert theirs.stats.nfe.tolist() == [24] * 3  # torchsde evaluates SRA1's first stage twice
    mid = fr.solve(sde, fr.Torchsde("midpoint"), x_T, grid=grid, noise=path)
    heun = fr.solve(sde, fr.Torchsde("heun"), x_T, grid=grid, noise=path)
    assert mid.stats.nfe.tolist() == [16] * 3 and heun.stats.nfe.tolist() == [15] * 3


def test_torchsde_srk_on_diagonal_noise_refuses_a_flow_singular_at_zero():
    """SRID2 (``"srk"`` on diagonal noise) evaluates the drift at the step's end."""
    pytest.importorskip("torchsde")

    class Singular(fr.SDEFlow):
        singular_at_zero = True

    flow = Singular(lambda t, x: -x, lambda t, x: 0.1 * x, noise_type="diagonal")
    with pytest.raises(fr.IncompatibleSolverError, match="srk"):
        fr.solve(flow, fr.Torchsde("srk"), torch.ones(2, 3), grid=[1.0, 0.0])
    fr.solve(flow, fr.Torchsde("milstein"), torch.ones(2, 3), grid=[1.0, 0.5])


def test_the_sde_and_the_ode_run_only_on_the_models_time_range():
    """Times are noise levels over ``σ_max``: both flows refuse a span past ``t = 1`` (the
    model's largest training noise) or below 0, naming the range."""
    _, flow = gaussian_problem("epsilon", dim=4)
    x = torch.randn(2, 4, dtype=torch.float64)
    for f, solver in ((flow, fr.Euler()), (flow.reverse_sde(), fr.EulerMaruyama())):
        assert tuple(f.time_range) == (0.0, 1.0)
        for span in ((1.0005, 0.0), (1.0, -0.001)):
            with pytest.raises(fr.GridError, match=r"must lie in \[0.0, 1.0\]"):
                fr.solve(f, solver, x, t_span=span, steps=2, generator=torch.Generator())
