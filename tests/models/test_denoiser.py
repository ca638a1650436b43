"""DenoiserFlow against k-diffusion's samplers and EDM's Algorithm 1, and its orders (math.md §9).

The reference loops below are k-diffusion's ``sample_euler`` / ``sample_heun`` (``s_churn = 0``)
and ``get_sigmas_karras``, written out from ``k_diffusion/sampling.py``: ``to_d(x, σ, D) =
(x − D)/σ``; Heun's correction is skipped when the next σ is 0 (Karras et al. 2022, Algorithm 1:
"if t_{i+1} ≠ 0"). The model is a random ``UNet2DModel`` behind EDM's preconditioning
(``c_skip``, ``c_out``, ``c_in``, ``c_noise = ln(σ)/4``, σ_data = 0.5), float64. Orders on the exact
Gaussian denoiser with plain ``steps=N`` and ``sigma_min = 0`` (the grid then runs down to σ = 0):
Euler 1, Heun 2, RK4 4, Midpoint ≥ 2, SemiLinearMultistep ≥ 3, each − 0.2.
"""

from __future__ import annotations

import pytest
import torch

import flowrestore as fr
from flowrestore.errors import ConfigError
from flowrestore.oracles import GaussianDenoiserOracle

from .helpers import F64, fit_order, prior

diffusers = pytest.importorskip("diffusers")
SIGMA_MAX, SIGMA_MIN = 80.0, 0.002


def get_sigmas_karras(n, sigma_min, sigma_max, rho=7.0):
    """k-diffusion's ``get_sigmas_karras`` (with ``append_zero``), float64."""
    ramp = torch.linspace(0, 1, n, dtype=F64)
    min_inv_rho, max_inv_rho = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros([1])])


def to_d(x, sigma, denoised):
    return (x - denoised) / sigma


def sample_euler(model, x, sigmas):
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        d = to_d(x, sigmas[i], denoised)
        x = x + d * (sigmas[i + 1] - sigmas[i])
    return x


def sample_heun(model, x, sigmas):
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        d = to_d(x, sigmas[i], denoised)
        dt = sigmas[i + 1] - sigmas[i]
        if sigmas[i + 1] == 0:
            x = x + d * dt  # Euler method
        else:
            x_2 = x + d * dt
            denoised_2 = model(x_2, sigmas[i + 1] * s_in)
            d_2 = to_d(x_2, sigmas[i + 1], denoised_2)
            x = x + (d + d_2) / 2 * dt
    return x


def edm_denoiser(seed=0, sigma_data=0.5):
    """EDM's preconditioned denoiser around a random U-Net (Karras et al. 2022, Table 1)."""
    torch.manual_seed(seed)
    unet = diffusers.UNet2DModel(
        sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16),
        layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4,
    ).double()  # fmt: skip

    @torch.no_grad()
    def model(x, sigma):
        s = sigma.reshape(-1, 1, 1, 1)
        c_skip = sigma_data**2 / (s**2 + sigma_data**2)
        c_out = s * sigma_data / (s**2 + sigma_data**2).sqrt()
        c_in = 1 / (s**2 + sigma_data**2).sqrt()
        return c_skip * x + c_out * unet(c_in * x, sigma.log() / 4).sample

    return model


@pytest.mark.parametrize("steps", [1, 2, 7, 18])
def test_matches_k_diffusion_euler_and_heun(steps):
    model = edm_denoiser()
    flow = fr.DenoiserFlow(model, sigma_max=SIGMA_MAX, sigma_min=SIGMA_MIN, stages="sigma")
    sigmas = get_sigmas_karras(steps, SIGMA_MIN, SIGMA_MAX)
    grid = flow.edm_grid(steps)
    torch.testing.assert_close(grid * SIGMA_MAX, sigmas, rtol=1e-13, atol=0)
    x_T = SIGMA_MAX * torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1), dtype=F64)
    for ours, theirs in ((fr.Euler, sample_euler), (fr.Heun, sample_heun)):
        want = theirs(model, x_T, sigmas)
        got = fr.solve(flow, ours(), x_T, grid=grid).x
        rel = float((got - want).abs().max() / want.abs().max())
        assert rel <= 1e-6, (ours.__name__, steps, rel)
    # Euler is the same step in either kind of stages; Heun's reciprocal stages are not EDM's
    plain = fr.DenoiserFlow(model, sigma_max=SIGMA_MAX, sigma_min=SIGMA_MIN)
    torch.testing.assert_close(
        fr.solve(plain, fr.Euler(), x_T, grid=grid).x, sample_euler(model, x_T, sigmas)
    )
    if steps > 1:
        other = fr.solve(plain, fr.Heun(), x_T, grid=grid).x
        assert float((other - sample_heun(model, x_T, sigmas)).abs().max()) > 1e-3


def test_heun_has_edm_algorithm_1_structure():
    """Heun evaluates at every t_i of the grid but the final 0 and corrects at every t_{i+1} ≠ 0:
    ``2N − 1`` evaluations, the last step Euler onto σ = 0 (the model never sees σ = 0)."""
    seen = []

    def model(x, sigma):
        seen.append(float(sigma[0]))
        return 0.5 * x

    steps = 6
    flow = fr.DenoiserFlow(model, sigma_max=SIGMA_MAX, sigma_min=SIGMA_MIN, stages="sigma")
    sol = fr.solve(flow, fr.Heun(), torch.ones(1, 3, dtype=F64), grid=flow.edm_grid(steps))
    assert int(sol.stats.nfe.max()) == 2 * steps - 1 == len(seen)
    sig = get_sigmas_karras(steps, SIGMA_MIN, SIGMA_MAX).tolist()
    want = [sig[0]] + [s for s in sig[1:-1] for _ in range(2)]
    assert seen == pytest.approx(want, rel=1e-12)
    # each step is Algorithm 1's: x_{i+1} = x_i + (t_{i+1} − t_i)(d_i + d'_i)/2, d = (x − D)/t
    x = torch.ones(1, 3, dtype=F64)
    for t, s in zip(sig[:-2], sig[1:-1], strict=True):
        d = (x - 0.5 * x) / t
        x2 = x + (s - t) * d
        x = x + (s - t) * (d + (x2 - 0.5 * x2) / s) / 2
    torch.testing.assert_close(sol.x, 0.5 * x)  # the last step: Euler onto 0 = D(x)


@pytest.mark.parametrize("stages", ["reciprocal", "sigma"])
@pytest.mark.parametrize(
    ("name", "make", "declared"),
    [("Euler", fr.Euler, 1), ("Midpoint", fr.Midpoint, 2), ("Heun", fr.Heun, 2),
     ("RK4", fr.RK4, 4), ("SemiLinearMultistep", fr.SemiLinearMultistep, 3)],
)  # fmt: skip
def test_declared_order_with_plain_steps(name, make, declared, stages):
    c, sc = prior(dim=24)
    oracle = GaussianDenoiserOracle(mean=c, std=sc)
    flow = fr.DenoiserFlow(oracle, sigma_max=SIGMA_MAX, stages=stages)  # down to σ = 0
    x_T = SIGMA_MAX * torch.randn(3, 24, generator=torch.Generator().manual_seed(1), dtype=F64)
    exact = oracle.exact_map(x_T, SIGMA_MAX)
    # the default grid's last positive point enters its table's linear first segment once
    # N² > 1000 (``NoiseLevels``), and RK4's end refinement (last point ~N^{-2.5}) takes until
    # N ≈ 256 to be on its end law: the orders are asymptotic from there
    levels = [256, 362, 512, 724, 1024]
    errs = [float((fr.solve(flow, make(), x_T, steps=n).x - exact).abs().max()) for n in levels]
    slope = fit_order(levels, errs, 1e3 * torch.finfo(F64).eps * float(exact.abs().max()))
    if name in ("Midpoint", "SemiLinearMultistep"):
        assert slope >= declared - 0.2, (name, slope, errs)
    else:
        assert abs(slope - declared) <= 0.2, (name, slope, errs)


def test_edm_grid_converges_to_its_landing_error():
    """With σ_min > 0 a refined solve converges to RK4's split landing from the exact state at
    σ_min (closed form: ``D = D(x(σ_min), σ_min)``, ``x_s = x(σ_min)/3 + 2D/3``, ``x_0 =
    (D(x_s, σ_min/3) − D/3)/(2/3)``): EDM's grid has an error floor."""
    c, sc = prior(dim=12, std=(0.05, 0.3))
    oracle = GaussianDenoiserOracle(mean=c, std=sc)
    sigma_min = 0.05
    flow = fr.DenoiserFlow(oracle, sigma_max=SIGMA_MAX, sigma_min=sigma_min, stages="sigma")
    x_T = SIGMA_MAX * torch.randn(2, 12, generator=torch.Generator().manual_seed(3), dtype=F64)
    at_min = oracle.exact_map(x_T, SIGMA_MAX, sigma_min)
    d = oracle(at_min, sigma_min)
    landed = (oracle(at_min / 3 + 2 * d / 3, sigma_min / 3) - d / 3) / (2 / 3)
    got = fr.solve(flow, fr.RK4(), x_T, grid=flow.edm_grid(256)).x  # RK4's own error: ~1e-8
    torch.testing.assert_close(got, landed, rtol=0, atol=1e-7)
    assert float((landed - oracle.exact_map(x_T, SIGMA_MAX)).abs().max()) > 1e-3


def test_configuration():
    with pytest.raises(ConfigError, match="sigma_min < sigma_max"):
        fr.DenoiserFlow(lambda x, s: x, sigma_max=1.0, sigma_min=2.0)
    with pytest.raises(ConfigError, match="sigma_max"):
        fr.DenoiserFlow(lambda x, s: x, sigma_max=float("inf"))
    with pytest.raises(TypeError, match="callable"):
        fr.DenoiserFlow(None, sigma_max=1.0)
    with pytest.raises(ConfigError, match="steps"):
        fr.DenoiserFlow(lambda x, s: x, sigma_max=1.0).edm_grid(0)
    with pytest.raises(ConfigError, match="stages"):
        fr.DenoiserFlow(lambda x, s: x, sigma_max=1.0, stages="t")
    seen = {}

    def model(x, sigma, class_labels):
        seen["labels"] = class_labels
        return x

    labels = torch.tensor([1, 2])
    flow = fr.DenoiserFlow(model, sigma_max=10.0, cond={"class_labels": labels})
    fr.solve(flow, fr.Euler(), torch.ones(2, 2), steps=2)
    assert seen["labels"] is labels and flow.network is model
    a, s = flow.state_coefficients(torch.tensor(0.5))
    assert float(a) == 1.0 and float(s) == 5.0


@pytest.mark.parametrize(
    ("sigma_min", "sigma_max"), [(0.0, 80.0), (0.002, 80.0), (0.0292, 14.6), (0.0, 500.0)]
)
def test_default_grid_is_a_diffusion_models_noise_levels(sigma_min, sigma_max):
    """The default ``steps=N`` grid is a diffusion model's (issue 16): DDIM's quadratic timesteps
    ``(τ* + 1)(1 − k/N)² − 1`` of DDPM's linear schedule as noise levels, ``τ*`` the continuous
    DDPM timestep of σ_max (capped at the last, 999: from σ_max above DDPM's 157 the first step
    goes onto DDPM's grid), whatever ``σ_min`` (checked where the timesteps are ≥ 0)."""
    from flowrestore.oracles.diffusion import linear_alphas_cumprod

    ddpm = fr.DiffusionFlow(lambda x, k: x, alphas_cumprod=linear_alphas_cumprod())
    tau_star = min(999.0, float(ddpm.timestep(torch.tensor(sigma_max, dtype=F64))))
    flow = fr.DenoiserFlow(lambda x, sig: x, sigma_max=sigma_max, sigma_min=sigma_min)
    for n in (3, 6, 10, 31):
        sol = fr.solve(flow, fr.Euler(), torch.ones(1, 2, dtype=F64), steps=n, save_at="steps")
        sig = sol.ts * sigma_max
        assert float(sig[0]) == pytest.approx(sigma_max) and float(sig[-1]) == 0.0
        tau = (tau_star + 1) * (1 - torch.arange(1, n, dtype=F64) / n) ** 2 - 1
        on = tau >= 0
        want = ddpm.sigma_at(tau[on])
        torch.testing.assert_close(sig[1:-1][on], want, rtol=1e-9, atol=0)


@pytest.mark.parametrize("stages", ["reciprocal", "sigma"])
def test_no_host_sync_in_a_denoiser_step_or_landing(stages):
    """Every Runge–Kutta step on the flow (reciprocal or σ stages; 0-d and per-sample ``[B]``
    times) and the landing onto σ = 0 read no device value (issue 17's rule). The model is a
    plain callable (the exact denoiser of ``N(0, I)``), so every counted sync would be the flow's
    or the solver's."""
    from syncs import SyncCounter

    from flowrestore.integrate.endpoint import land
    from flowrestore.noise import GeneratorNoise
    from flowrestore.solvers import Context

    def model(x, sigma):
        return x / (1 + sigma.reshape(-1, 1) ** 2)

    flow = fr.DenoiserFlow(model, sigma_max=SIGMA_MAX, sigma_min=SIGMA_MIN, stages=stages)
    x = SIGMA_MAX * torch.randn(3, 6, generator=torch.Generator().manual_seed(2), dtype=F64)
    ctx = Context(noise=GeneratorNoise(torch.Generator().manual_seed(0)))
    times = [
        (torch.tensor(0.6, dtype=F64), torch.tensor(-0.2, dtype=F64)),
        (torch.tensor([0.9, 0.4, 0.05], dtype=F64), torch.tensor([-0.1, -0.2, -0.01], dtype=F64)),
    ]
    for solver in (fr.Euler(), fr.Midpoint(), fr.Heun(), fr.RK4()):
        for t, h in times:
            _, state = solver.init(flow, t, x, ctx)
            step = solver.step(flow, t, x, h, state, ctx)  # warm-up
            with SyncCounter() as sc:
                step = solver.step(flow, t, x, h, state, ctx)
                landed = land(flow, solver, t + h, step.x, step.state, ctx)
            assert sc.count == 0, (type(solver).__name__, t.dim(), dict(sc.ops))
            assert torch.isfinite(landed.x).all()


def test_t_of_sigma_is_the_noise_level_over_sigma_max():
    flow = fr.DenoiserFlow(lambda x, s: x, sigma_max=SIGMA_MAX, sigma_min=SIGMA_MIN)
    assert flow.t_of_sigma(SIGMA_MAX) == 1.0
    assert flow.t_of_sigma(20.0) == pytest.approx(0.25, rel=1e-15)
    assert flow.t_of_sigma(0.0) == 0.0
