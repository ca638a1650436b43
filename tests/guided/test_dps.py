"""DPS (Chung, Kim, Mccann, Klasky & Ye, ICLR 2023) on the linear-Gaussian problem (math.md §10).

* On a DDPM model DPS is the paper's Algorithm 1: the ancestral step with ``ᾱ`` over a timestep
  subsequence, then ``x ← x − ζ ∇_{x_t} ‖y − A x̂_0(x_t)‖`` in the model's VP variable. The loop
  below writes it out with the gradient in closed form (the exact model's ``x̂_0`` is affine:
  ``∇ = −J Aᵀ r/‖r‖``, ``J = a σ_c²/(a² σ_c² + b²)``), independently of the solver's autograd.
* ``ζ = 0`` with ``η = 0`` is the unguided model's DDIM, i.e. Euler on the model flow.
* The paper proves no posterior property (its Theorem 1 bounds a Jensen gap); its distance to the
  posterior and its data fit are measured below.
"""

from __future__ import annotations

import pytest
import torch

import flowrestore as fr

from .helpers import F64, SHAPE, model_flows, operators, posterior, prior, start

SIGMA_Y = 0.1


@pytest.mark.parametrize("op_name", ["inpainting", "downsample"])
def test_diffusion_model_runs_algorithm_1(op_name):
    op, zeta = operators()[op_name], 0.5
    mean, std = prior(op_name)
    model = model_flows(mean, std)["diffusion"]
    abar, var = model.alphas_cumprod, std.expand(SHAPE) ** 2
    _, y = posterior(op_name, op, mean=mean, std=std, noise_std=SIGMA_Y).sample(
        2, generator=torch.Generator().manual_seed(1)
    )
    ts = [999, 799, 599, 399, 199, 99, 19]
    x_T = start("diffusion", 2, 6)
    x, g = x_T.clone(), torch.Generator().manual_seed(9)
    for i, k in enumerate(ts):
        a_t = abar[k]
        a_s = abar[ts[i + 1]] if i + 1 < len(ts) else torch.tensor(1.0, dtype=F64)
        a, b = a_t.sqrt(), (1 - a_t).sqrt()
        jac = a * var / (a * a * var + b * b)
        x0 = mean + jac * (x - a * mean)  # the exact x̂_0(x_t)
        r = y - op.A(x0)
        norm = r.flatten(1).norm(dim=1).reshape(-1, 1, 1, 1)
        grad = -jac * op.A_adjoint(r) / norm
        alpha, beta = a_t / a_s, 1 - a_t / a_s  # DDPM's α_t, β_t between consecutive steps
        mean_prev = (a_s.sqrt() * beta * x0 + alpha.sqrt() * (1 - a_s) * x) / (1 - a_t)
        z = torch.randn(x.shape, generator=g, dtype=F64)
        x = mean_prev + ((1 - a_s) / (1 - a_t) * beta).sqrt() * z - zeta * grad
    flow = fr.GuidedFlow(model, op, y, noise_std=SIGMA_Y)
    sol = fr.solve(flow, fr.DPSStep(zeta=zeta), x_T, grid=model.grid_from_timesteps(ts),
                   generator=torch.Generator().manual_seed(9))  # fmt: skip
    torch.testing.assert_close(sol.x, x, rtol=1e-8, atol=1e-9)
    assert sol.records["data_consistency"].shape == (len(ts), 2)


def test_no_guidance_and_no_noise_is_the_models_ddim():
    op = operators()["blur"]
    mean, std = prior("blur")
    y = torch.zeros(2, *SHAPE, dtype=F64)
    for name, model in model_flows(mean, std).items():
        x1 = start(name, 2, 4)
        want = fr.solve(model, fr.Euler(), x1, steps=6).x
        got = fr.solve(fr.GuidedFlow(model, op, y), fr.DPSStep(zeta=0.0, eta=0.0), x1, steps=6).x
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


#: measured (n = 500, 100 steps, ζ = 1, η = 1, σ_y = 0.1, flow-matching model):
#: ``rms(mean − μ_post)/rms(σ_post)`` and mean ``‖y − A x̂‖²/(m σ_y²)`` (the posterior's: 1.23
#: inpainting, 1.11 downsampling). DPS over-fits the measurement on the block means (0.11 of the
#: noise level) and is 6–11 % of a posterior standard deviation off its mean.
MEASURED = {"inpainting": (0.0608, 0.742), "downsample": (0.1131, 0.107)}


@pytest.mark.parametrize("op_name", list(MEASURED))
def test_distance_to_the_posterior(op_name):
    """No theorem: twice the measured distance; the data fit within 0.7–1.4 × the measured."""
    op, n = operators()[op_name], 500
    mean, std = prior(op_name)
    oracle = posterior(op_name, op, mean=mean, std=std, noise_std=SIGMA_Y)
    _, y = oracle.sample(1, generator=torch.Generator().manual_seed(7))
    flow = fr.GuidedFlow(model_flows(mean, std)["flow_matching"], op, y, noise_std=SIGMA_Y)
    x = fr.solve(flow, fr.DPSStep(zeta=1.0), start("flow_matching", n, 3), steps=100,
                 generator=torch.Generator().manual_seed(1)).x  # fmt: skip
    post_sd = oracle.posterior_var().mean().sqrt()
    dist = float((x.mean(0) - oracle.posterior_mean(y)[0]).pow(2).mean().sqrt() / post_sd)
    fit = float((y - op.A(x)).flatten(1).pow(2).sum(1).mean()) / (y.numel() * SIGMA_Y**2)
    want_dist, want_fit = MEASURED[op_name]
    assert dist < 2 * want_dist, dist
    assert 0.7 * want_fit < fit < 1.4 * want_fit, fit


def test_guidance_lowers_the_residual_and_refusals():
    op = operators()["inpainting"]
    mean, std = prior("inpainting")
    oracle = posterior("inpainting", op, mean=mean, std=std, noise_std=SIGMA_Y)
    _, y = oracle.sample(1, generator=torch.Generator().manual_seed(7))
    model = model_flows(mean, std)["flow_matching"]
    flow = fr.GuidedFlow(model, op, y, noise_std=SIGMA_Y)
    x1 = start("flow_matching", 64, 3)
    res = {}
    for zeta in (0.0, 1.0):
        sol = fr.solve(flow, fr.DPSStep(zeta=zeta), x1, steps=30,
                       generator=torch.Generator().manual_seed(1))  # fmt: skip
        res[zeta] = float(sol.records["data_consistency"][-1].mean())
    assert res[1.0] < 0.5 * res[0.0], res
    with pytest.raises(fr.IncompatibleOperatorError, match="operator"):
        fr.GuidedFlow(model, "blur", y)
    with pytest.raises(TypeError, match="DiffusionFlow, FlowMatchingFlow or DenoiserFlow"):
        fr.GuidedFlow(fr.ODEFlow(lambda t, x: x), op, y)
    with pytest.raises(fr.IncompatibleSolverError, match="DPSStep steps GuidedFlow"):
        fr.solve(model, fr.DPSStep(), x1, steps=2)
    with pytest.raises(fr.ConfigError, match="zeta"):
        fr.DPSStep(zeta=-1.0)
    with pytest.raises(fr.ShapeError, match="measurement has 3 rows"):
        fr.solve(fr.GuidedFlow(model, op, y.expand(3, *SHAPE)), fr.DPSStep(), x1, steps=2)


def test_a_differentiable_dps_solve_has_the_discrete_solves_gradient():
    """``differentiable=True`` differentiates DPS's measurement gradient too (create_graph): the
    gradient with respect to a blur width (a blind problem's unknown) is the central difference
    of the same seeded solve. Without it the correction was a constant to autograd."""
    mean, std = prior("blur")
    model = model_flows(mean, std)["diffusion"]
    y = operators()["blur"].A(start("diffusion", 1, 5) * 0 + mean)
    x = start("diffusion", 1, 3)

    def run(width):
        op = fr.degradations.GaussianBlur(width, kernel_size=5, padding="circular")
        flow = fr.GuidedFlow(model, op, y, noise_std=0.05)
        return fr.solve(flow, fr.DPSStep(zeta=0.5), x, steps=4, seeds=[1], differentiable=True).x

    width = torch.tensor([1.2], dtype=F64, requires_grad=True)
    w = torch.randn(x.shape, generator=torch.Generator().manual_seed(0), dtype=F64)
    (g,) = torch.autograd.grad((run(width) * w).sum(), width)
    with torch.no_grad():
        e = 1e-6
        fd = ((run(width + e) * w).sum() - (run(width - e) * w).sum()) / (2 * e)
    assert float(g) == pytest.approx(float(fd), rel=1e-5)


@pytest.mark.parametrize("solver", [fr.DPSStep(), fr.DDRMStep()], ids=repr)
def test_dps_and_ddrm_refuse_a_diffpir_flow_before_evaluating(solver):
    """DPS and DDRM step with the model's own clean estimate: on a DiffPIRFlow its proximal step
    (``lam``) would be silently ignored, so the pairing is refused before any evaluation, naming
    the solvers of each flow."""
    mean, std = prior("inpainting")
    model = model_flows(mean, std)["diffusion"]
    op = operators()["inpainting"]
    y = op.A(mean.expand(2, *SHAPE))
    flow = fr.DiffPIRFlow(model, op, y, noise_std=0.05, lam=7.0)
    calls = []
    flow.model_denoise = lambda t, x: calls.append(t) or model.denoise(t, x)
    name = type(solver).__name__
    with pytest.raises(fr.IncompatibleSolverError, match=rf"{name}.*DiffPIRStep.*GuidedFlow"):
        fr.solve(flow, solver, start("diffusion", 2, 0), steps=3)
    assert calls == []


@pytest.mark.parametrize("solver", [fr.DPSStep(), fr.DDRMStep(), fr.Euler()], ids=repr)
def test_a_measurement_of_the_wrong_shape_is_refused_before_evaluating(solver):
    """A measurement that is not ``A x`` for images of ``x_start``'s shape (a full-size ``y``
    with a 2× downsampling; a 9×9 image a factor 2 does not divide) is a ShapeError naming the
    shapes, raised before the model is evaluated — not a raw torch error at the first step."""
    from flowrestore.degradations import Downsample

    for shape, y_shape in [(SHAPE, (2, *SHAPE)), ((1, 9, 9), (2, 1, 4, 4))]:
        mean, std = torch.zeros(shape, dtype=F64), torch.full(shape, 0.5, dtype=F64)
        model = model_flows(mean, std, shape)["diffusion"]
        y = torch.zeros(y_shape, dtype=F64)
        kind = fr.DiffPIRFlow if isinstance(solver, fr.Euler) else fr.GuidedFlow
        flow = kind(model, Downsample(2), y, noise_std=0.05)
        calls = []
        flow.model_denoise = lambda t, x: calls.append(t) or model.denoise(t, x)  # noqa: B023
        match = r"\(2, 1, 8, 8\).*\(2, 1, 4, 4\)" if shape == SHAPE else r"\(9, 9\).*factor=2"
        with pytest.raises(fr.ShapeError, match=match):
            fr.solve(flow, solver, start("diffusion", 2, 0, shape), steps=3)
        assert calls == []
