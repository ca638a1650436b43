"""DiffPIR (Zhu et al., CVPR 2023) on the linear-Gaussian problem (docs/math.md §10).

* The proximal step ``argmin_x ‖y − A x‖² + ρ ‖x − x_0‖²`` is the exact MAP of the Gaussian data
  term around ``x_0``: checked against the normal equations ``(AᵀA + ρ I) x = Aᵀ y + ρ x_0``
  solved densely with the operator's matrix.
* ``ζ = 0`` is Euler on :class:`~flowrestore.DiffPIRFlow` (the model's probability-flow ODE with
  ``D`` replaced by the proximal estimate); any ``ζ`` on a diffusion model is the paper's
  Algorithm 1, written out below in the model's VP variable with ``ᾱ`` and the dense prox.
* The paper proves no posterior property; its distances to the posterior are measured below.
"""

from __future__ import annotations

import pytest
import torch

import flowrestore as fr
from flowrestore.degradations import GaussianBlur

from .helpers import F64, SHAPE, dense, model_flows, operators, posterior, prior, start

SIGMA_Y = 0.1


def dense_prox(op, y, x0, rho):
    """``(AᵀA + ρ I)⁻¹ (Aᵀ y + ρ x_0)`` with the dense matrix of ``op`` (per sample ρ)."""
    A = dense(op.A, SHAPE)
    out = []
    for i in range(x0.shape[0]):
        lhs = A.T @ A + rho[i] * torch.eye(A.shape[1], dtype=F64)
        rhs = A.T @ y[i].flatten() + rho[i] * x0[i].flatten()
        out.append(
            torch.linalg.lstsq(lhs, rhs).solution if rho[i] == 0 else torch.linalg.solve(lhs, rhs)
        )
    return torch.stack(out).reshape(x0.shape)


@pytest.mark.parametrize("op_name", ["inpainting", "downsample", "blur"])
def test_proximal_step_is_the_gaussian_map(op_name):
    op = operators()[op_name]
    mean, std = prior(op_name)
    g = torch.Generator().manual_seed(4)
    y = op.A(torch.randn(3, *SHAPE, generator=g, dtype=F64)) + 0.1 * torch.randn(
        3, *op.A(torch.zeros(1, *SHAPE, dtype=F64)).shape[1:], generator=g, dtype=F64
    )
    flow = fr.DiffPIRFlow(model_flows(mean, std)["flow_matching"], op, y, noise_std=0.1, lam=2.0)
    x0 = torch.randn(3, *SHAPE, generator=g, dtype=F64)
    t = torch.tensor([0.2, 0.5, 0.9], dtype=F64)
    rho = 2.0 * 0.1**2 * ((1 - t) / t) ** 2  # ρ_t = λ σ_y²/σ̃_t², σ̃ = t/(1 − t) for flow matching
    torch.testing.assert_close(flow.prox(x0, t), dense_prox(op, y, x0, rho), rtol=1e-9, atol=1e-10)
    if op_name == "inpainting":  # σ_y = 0: hard consistency on the observed pixels
        exact = fr.DiffPIRFlow(model_flows(mean, std)["flow_matching"], op, y, noise_std=0.0)
        got = exact.prox(x0, t)
        torch.testing.assert_close(op.A(got), y * op.mask)
        torch.testing.assert_close(got * (1 - op.mask), x0 * (1 - op.mask))


def test_zeta_zero_is_euler_on_the_flow():
    op = operators()["downsample"]
    mean, std = prior("downsample")
    _, y = posterior("downsample", op, mean=mean, std=std, noise_std=SIGMA_Y).sample(
        2, generator=torch.Generator().manual_seed(1)
    )
    for name, model in model_flows(mean, std).items():
        flow = fr.DiffPIRFlow(model, op, y, noise_std=SIGMA_Y, lam=3.0)
        x1 = start(name, 2, 5)
        a = fr.solve(flow, fr.Euler(), x1, steps=7).x
        b = fr.solve(flow, fr.DiffPIRStep(zeta=0.0), x1, steps=7).x
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("zeta", [0.0, 0.3])
def test_diffusion_model_runs_algorithm_1(zeta):
    """The paper's loop on a DDPM model (ε-prediction, integer timesteps, VP ``x``): the same
    result from ``fr.solve(DiffPIRFlow, DiffPIRStep(ζ), x_T, grid=flow.model.grid_from_timesteps)``
    with the same noise draws."""
    op, lam = operators()["inpainting"], 2.0
    mean, std = prior("inpainting")
    model = model_flows(mean, std)["diffusion"]
    eps_model, abar = model.model, model.alphas_cumprod
    _, y = posterior("inpainting", op, mean=mean, std=std, noise_std=SIGMA_Y).sample(
        2, generator=torch.Generator().manual_seed(1)
    )
    ts = torch.tensor([999, 749, 499, 249, 99, 9])
    x_T = start("diffusion", 2, 6)
    x, g = x_T.clone(), torch.Generator().manual_seed(9)
    for i, k in enumerate(ts.tolist()):
        a = abar[k]
        a_prev = abar[ts[i + 1]] if i + 1 < len(ts) else torch.tensor(1.0, dtype=F64)
        x0 = (x - (1 - a).sqrt() * eps_model(x, float(k))) / a.sqrt()
        rho = lam * SIGMA_Y**2 / ((1 - a) / a)  # ρ_t = λ σ_n² / σ̄_t²
        x0 = dense_prox(op, y, x0, rho.expand(2))
        eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
        z = torch.randn(x.shape, generator=g, dtype=F64)
        x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * ((1 - zeta) ** 0.5 * eps + zeta**0.5 * z)
    flow = fr.DiffPIRFlow(model, op, y, noise_std=SIGMA_Y, lam=lam)
    got = fr.solve(flow, fr.DiffPIRStep(zeta=zeta), x_T, grid=model.grid_from_timesteps(ts),
                   generator=torch.Generator().manual_seed(9)).x  # fmt: skip
    torch.testing.assert_close(got, x, rtol=1e-8, atol=1e-9)


#: measured (n = 2000, 20 steps, λ = 1, σ_y = 0.1, flow-matching model, Euler = ζ = 0; ζ = 0.3):
#: ``rms(mean − μ_post)/rms(σ_post)`` and mean ``‖y − A x̂‖²/(m σ_y²)`` (the posterior's: 1.23
#: inpainting, 1.11 downsampling). The sample variance is 0.75–0.85 of the posterior's (median).
MEASURED = {
    ("inpainting", 0.0): (0.0275, 1.081),
    ("inpainting", 0.3): (0.0221, 1.075),
    ("downsample", 0.0): (0.0464, 0.677),
    ("downsample", 0.3): (0.0371, 0.706),
}


@pytest.mark.parametrize(("op_name", "zeta"), list(MEASURED))
def test_distance_to_the_posterior(op_name, zeta):
    """No theorem: twice the measured distance; the data fit within 0.7–1.4 × the measured."""
    op, n = operators()[op_name], 2000
    mean, std = prior(op_name)
    oracle = posterior(op_name, op, mean=mean, std=std, noise_std=SIGMA_Y)
    _, y = oracle.sample(1, generator=torch.Generator().manual_seed(7))
    flow = fr.DiffPIRFlow(model_flows(mean, std)["flow_matching"], op, y, noise_std=SIGMA_Y)
    solver = fr.Euler() if zeta == 0 else fr.DiffPIRStep(zeta=zeta)
    x = fr.solve(flow, solver, start("flow_matching", n, 3), steps=20,
                 generator=torch.Generator().manual_seed(1)).x  # fmt: skip
    post_sd = oracle.posterior_var().mean().sqrt()
    dist = float((x.mean(0) - oracle.posterior_mean(y)[0]).pow(2).mean().sqrt() / post_sd)
    fit = float((y - op.A(x)).flatten(1).pow(2).sum(1).mean()) / (y.numel() * SIGMA_Y**2)
    want_dist, want_fit = MEASURED[(op_name, zeta)]
    assert dist < 2 * want_dist, dist
    assert 0.7 * want_fit < fit < 1.4 * want_fit, fit


def test_operator_without_svd_is_refused_when_built():
    calls = []

    def model(x, timestep):
        calls.append(1)
        return x

    y = torch.zeros(1, *SHAPE, dtype=F64)
    with pytest.raises(fr.IncompatibleOperatorError, match="DiffPIR.*GaussianBlur"):
        fr.DiffPIRFlow(fr.FlowMatchingFlow(model), GaussianBlur(1.0), y, noise_std=0.1)
    assert calls == []
    flow = fr.DiffPIRFlow(fr.FlowMatchingFlow(model), operators()["blur"], y, noise_std=0.1)
    with pytest.raises(fr.IncompatibleSolverError, match="DiffPIRStep steps DiffPIRFlow"):
        fr.solve(fr.GuidedFlow(flow.model, flow.operator, y), fr.DiffPIRStep(), y, steps=2)
    for bad in ({"lam": 0.0}, {"lam": float("inf")}, {"noise_std": -1.0}):
        with pytest.raises(fr.ConfigError):
            fr.DiffPIRFlow(flow.model, flow.operator, y, **{"noise_std": 0.1, **bad})
    with pytest.raises(fr.ConfigError, match="zeta"):
        fr.DiffPIRStep(zeta=1.5)


@pytest.mark.parametrize("model_name", ["diffusion", "flow_matching", "denoiser"])
def test_guided_flows_stop_error_control_where_their_model_does(model_name):
    """A guided flow lives in its model's time and lands onto ``t = 0`` the way the model's flow
    does, so error control stops at the model's ``preferred_t_min`` (before: the controller's
    default, ``σ = 0.16`` on the diffusion model at ``rtol = 1e-4``)."""
    op = operators()["inpainting"]
    mean, std = prior("inpainting")
    model = model_flows(mean, std)[model_name]
    y = op.A(mean.expand(1, *SHAPE))
    for flow in (fr.GuidedFlow(model, op, y), fr.DiffPIRFlow(model, op, y, noise_std=0.1)):
        for rtol in (1e-3, 1e-6):
            assert flow.preferred_t_min(rtol) == model.preferred_t_min(rtol)


@pytest.mark.parametrize("model_name", ["diffusion", "denoiser"])
def test_diffpir_adaptive_solve_meets_its_tolerance(model_name):
    """``Dopri5(rtol=1e-6)`` on DiffPIR's ODE lands within ``10·rtol`` (relative, max norm) of a
    converged fixed-grid solve (RK4, 800 steps; 400 steps differ from it by 2e-8), the bound of
    the plain model flows' tolerance tests (tests/models/test_error_control_stop.py). Measured:
    1.3 and 1.2 × rtol; with the controller's default stop 1300 and 340 × rtol."""
    op = operators()["inpainting"]
    mean, std = prior("inpainting")
    g = torch.Generator().manual_seed(1)
    y = op.A(mean + std * torch.randn(2, *SHAPE, generator=g, dtype=F64))
    y = y + SIGMA_Y * torch.randn(y.shape, generator=g, dtype=F64)
    flow = fr.DiffPIRFlow(model_flows(mean, std)[model_name], op, y, noise_std=SIGMA_Y)
    x1 = start(model_name, 2, 5)
    ref = fr.solve(flow, fr.RK4(), x1, steps=800).x
    x = fr.solve(flow, fr.Dopri5(rtol=1e-6, atol=1e-6), x1).x
    err = float((x - ref).abs().max() / ref.abs().max())
    assert err <= 1e-5, err


@pytest.mark.parametrize("op_name", ["inpainting", "blur"])
def test_adaptive_solve_with_per_sample_operators_equals_each_sample_alone(op_name):
    """Per-sample control steps the rows still running (``GuidedFlow.restrict``): an operator with
    one mask (or blur width) per sample is restricted with them, and every row is solved as if
    alone."""
    from flowrestore.oracles import GaussianDiffusionOracle
    from flowrestore.oracles.diffusion import linear_alphas_cumprod

    from .helpers import random_mask

    abar = linear_alphas_cumprod()
    oracle = GaussianDiffusionOracle(
        mean=torch.zeros(SHAPE, dtype=F64),
        std=torch.full(SHAPE, 0.5, dtype=F64),
        alphas_cumprod=abar,
    )
    model = fr.DiffusionFlow(oracle, alphas_cumprod=abar)
    if op_name == "inpainting":
        params = random_mask((4, *SHAPE), seed=5)
        params[0] = 1.0  # fully observed: this row finishes before the others
        make = fr.degradations.Inpainting
    else:
        params = torch.tensor([0.0, 0.7, 1.2, 2.0], dtype=F64)
        make = lambda w: GaussianBlur(w, kernel_size=5, padding="circular")  # noqa: E731
    g = torch.Generator().manual_seed(1)
    op = make(params)
    y = op(0.5 * torch.randn(4, *SHAPE, generator=g, dtype=F64))
    x1 = torch.randn(4, *SHAPE, generator=g, dtype=F64)
    solver = fr.Dopri5(rtol=1e-6, atol=1e-6)
    flow = fr.DiffPIRFlow(model, op, y, noise_std=0.01)
    out = fr.solve(flow, solver, x1).x
    for i in range(4):
        alone = fr.DiffPIRFlow(model, make(params[i : i + 1]), y[i : i + 1], noise_std=0.01)
        ref = fr.solve(alone, solver, x1[i : i + 1]).x
        torch.testing.assert_close(out[i : i + 1], ref, rtol=1e-12, atol=1e-12)
