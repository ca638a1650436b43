"""DDRM (Kawar, Elad, Ermon & Song 2022) on the linear-Gaussian problem (docs/math.md §10).

What the paper proves and what is tested:

* its update (eqs. 7–8) is a Gaussian Markov chain per spectral coefficient; with the exact model
  of a Gaussian prior diagonal in the operator's basis the clean estimate is affine per
  coefficient, so the law of DDRM's output given ``y`` follows in closed form by propagating mean
  and variance through eqs. 7–8 (written out below from the paper, independently of the solver).
  The samples' mean and variance must match it (``test_output_law_is_the_papers_chain``);
* with a noiseless measurement and ``η_b = 1`` its last step (``σ = 0 ≥ σ_y/s_i``) puts every
  observed coefficient on ``ȳ``: ``A x̂ = y`` exactly;
* its Theorem 1 is about training (a DDPM-optimal model is DDRM-optimal for ``η = 1``, a
  particular ``η_b``), not about sampling the posterior: DDRM is *not* exact here. With ``η = 1``
  the unobserved coefficients take ``x_s = x̂_0 + σ_s z``, whose variance is wrong by
  ``σ_c² σ_t²/(σ_c² + σ_t²)`` each step; the measured distances to the posterior are below.
"""

from __future__ import annotations

import math

import pytest
import torch
from known_noise import FixedNoise

import flowrestore as fr
from flowrestore.degradations import GaussianBlur
from flowrestore.flows.spectral import spectral_form

from .helpers import F64, SHAPE, model_flows, operators, posterior, prior, start

SIGMA_Y = 0.1
COEFFICIENTS = {  # the state x_t = α_t x_0 + σ_t ε of each model flow, and its start variance
    "flow_matching": (lambda t: (1 - t, t), lambda: 1.0),
    "denoiser": (lambda t: (1.0, 80.0 * t), lambda: 80.0**2),
}


def _eq8(c, d, z, at_st, as_ss, sv, ybar, eta, eta_b, sy):
    """DDRM's eq. 8 per spectral coefficient ``c`` of ``x_t``, in the state ``x = α x̄`` (``x̄``
    the paper's variable): ``d`` the clean estimate's coefficient, ``z`` the step's normal."""
    (at, st), (as_, ss) = at_st, as_ss
    q = math.sqrt(1 - eta**2)
    unobserved = as_ * d + q * ss * (c - at * d) / st + eta * ss * z
    weak = as_ * d + q * ss * (ybar - d) * sv / sy + eta * ss * z
    strong = (
        as_ * ((1 - eta_b) * d + eta_b * ybar)
        + (ss * ss - (as_ * eta_b * sy / sv.clamp_min(1e-300)) ** 2).clamp_min(0).sqrt() * z
    )
    is_weak = sv * ss < sy * as_
    return torch.where(sv > 0, torch.where(is_weak, weak, strong), unobserved)


def _chain_moments(form, op, mean, std, y, grid, coef, start_var, eta, eta_b, sy):
    """Mean and variance of DDRM's output per spectral coefficient, from eqs. 7–8."""
    like = torch.zeros(1, *SHAPE, dtype=F64)
    sv = form.singular_values(like).expand(like.shape)
    yu = form.project_measurement(y, like)
    ybar = torch.where(sv > 0, yu / sv.clamp_min(1e-300), torch.zeros_like(yu))
    mu, var_c = form.to_spectral(mean[None]), (std.expand(SHAPE) ** 2)[None]

    def update(c, z, t, s):  # eq. 8 with the exact E[x_0 | x_t] of the Gaussian prior
        at, st = coef(t)
        d = mu + var_c * at / (at * at * var_c + st * st) * (c - at * mu)
        return _eq8(c, d, z, (at, st), coef(s), sv, ybar, eta, eta_b, sy)

    a1, s1 = coef(float(grid[0]))  # eq. 7: observed coefficients above the noise level
    strong = (sv > 0) & (sv * s1 >= sy * a1)  # start around ȳ, the others keep x_start
    var1 = (s1 * s1 - (a1 * sy / sv.clamp_min(1e-300)) ** 2).clamp_min(0)
    m = torch.where(strong, a1 * ybar, torch.zeros_like(yu))
    v = torch.where(strong, var1, start_var + 0 * sv)
    zero, one = torch.zeros_like(yu), torch.ones_like(yu)
    for t, s in zip(grid[:-1].tolist(), grid[1:].tolist(), strict=True):
        b = update(zero, zero, t, s)
        a, g = (update(one, zero, t, s) - b).real, (update(zero, one, t, s) - b).real
        m, v = a * m + b, a * a * v + g * g
    return m, v


@pytest.mark.parametrize(
    ("op_name", "model_name", "eta", "sigma_start"),
    [("inpainting", "flow_matching", 0.85, None), ("downsample", "flow_matching", 0.5, None),
     ("blur", "flow_matching", 0.85, None), ("inpainting", "denoiser", 1.0, None),
     ("inpainting", "denoiser", 0.85, 0.15)],
)  # fmt: skip
def test_output_law_is_the_papers_chain(op_name, model_name, eta, sigma_start):
    """From t = 1, or from the noise level ``sigma_start`` (there eq. 7's variance
    ``σ² − σ_y²/s²`` differs from ``σ²``: 0.0125 against 0.0225)."""
    op, n, steps, eta_b = operators()[op_name], 4000, 12, 0.8
    mean, std = prior(op_name)
    oracle = posterior(op_name, op, mean=mean, std=std, noise_std=SIGMA_Y)
    _, y = oracle.sample(1, generator=torch.Generator().manual_seed(7))
    model = model_flows(mean, std)[model_name]
    flow = fr.GuidedFlow(model, op, y, noise_std=SIGMA_Y)
    coef, start_var = COEFFICIENTS[model_name]
    x_start, var0 = start(model_name, n, 3), start_var()
    t0 = 1.0
    if sigma_start is not None:  # a solve from a low noise level: 4 steps from σ = sigma_start
        t0, steps, var0 = sigma_start / 80.0, 4, sigma_start**2
        x_start = x_start / 80.0 * sigma_start
    grid = model.default_spacing()(steps, t0, 0.0)
    sol = fr.solve(flow, fr.DDRMStep(eta=eta, eta_b=eta_b), x_start, grid=grid,
                   generator=torch.Generator().manual_seed(1))  # fmt: skip
    form = spectral_form(op)
    m, v = _chain_moments(form, op, mean, std, y, grid, coef, var0, eta, eta_b, SIGMA_Y)
    c = form.to_spectral(sol.x)
    em = c.mean(0, keepdim=True)
    ev = (c - em).abs().pow(2).mean(0, keepdim=True)
    z = (em - m).abs() / (v / n).sqrt()
    assert float(z.max()) < 4.5, float(z.max())
    ratio = ev / v
    assert float((ratio - 1).abs().max()) < 5 * (2 / n) ** 0.5, (ratio.min(), ratio.max())


@pytest.mark.parametrize("op_name", ["inpainting", "downsample"])
@pytest.mark.parametrize("t, s", [(0.5, 0.3), (0.05, 0.03)])  # strong, then weak coefficients
def test_one_step_and_the_start_are_eqs_7_and_8_with_their_noise(op_name, t, s):
    """With a known normal ``z`` one DDRM step is eq. 8 and the start eq. 7, to round-off: the
    noise terms too, which the chain's moments above only see to a few per cent."""
    op, eta, eta_b = operators()[op_name], 0.85, 0.8
    mean, std = prior(op_name)
    model = model_flows(mean, std)["flow_matching"]
    coef = COEFFICIENTS["flow_matching"][0]
    _, y = posterior(op_name, op, mean=mean, std=std, noise_std=SIGMA_Y).sample(
        2, generator=torch.Generator().manual_seed(7)
    )
    flow = fr.GuidedFlow(model, op, y, noise_std=SIGMA_Y)
    form = spectral_form(op)
    x = start("flow_matching", 2, 3) * t + (1 - t) * mean
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(4), dtype=F64)
    ctx = fr.Context(noise=FixedNoise(z))
    solver = fr.DDRMStep(eta=eta, eta_b=eta_b)
    tt = torch.tensor(t, dtype=F64)
    got = solver.step(flow, tt, x, torch.tensor(s - t, dtype=F64), None, ctx).x
    sv = form.singular_values(x).expand(x.shape)
    ybar = torch.where(sv > 0, form.project_measurement(y, x) / sv.clamp_min(1e-300), 0 * sv)
    d = form.to_spectral(flow.model_denoise(tt, x))
    c, zs = form.to_spectral(x), form.to_spectral(z)
    want = _eq8(c, d, zs, coef(t), coef(s), sv, ybar, eta, eta_b, SIGMA_Y)
    torch.testing.assert_close(form.to_spectral(got), want, rtol=1e-10, atol=1e-12)
    # eq. 7: observed coefficients above the noise level start around ȳ, the others keep x
    x1, _ = solver.init(flow, tt, x, ctx)
    a1, s1 = coef(t)
    strong = (sv > 0) & (sv * s1 >= SIGMA_Y * a1)
    std1 = (s1 * s1 - (a1 * SIGMA_Y / sv.clamp_min(1e-300)) ** 2).clamp_min(0).sqrt()
    want1 = torch.where(strong, a1 * ybar + std1 * zs, c)
    torch.testing.assert_close(form.to_spectral(x1), want1, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("op_name", ["inpainting", "downsample", "blur"])
@pytest.mark.parametrize("model_name", ["diffusion", "flow_matching", "denoiser"])
def test_noiseless_measurement_is_matched_exactly(op_name, model_name):
    op = operators()[op_name]
    mean, std = prior(op_name)
    oracle = posterior(op_name, op, mean=mean, std=std, noise_std=0.0)
    _, y = oracle.sample(2, generator=torch.Generator().manual_seed(5))
    flow = fr.GuidedFlow(model_flows(mean, std)[model_name], op, y, noise_std=0.0)
    x = fr.solve(flow, fr.DDRMStep(eta=0.85, eta_b=1.0), start(model_name, 2, 1), steps=8,
                 generator=torch.Generator().manual_seed(2)).x  # fmt: skip
    assert float((op.A(x) - y).abs().max()) < 1e-10 * float(y.abs().max())
    y_far = fr.solve(flow, fr.DDRMStep(eta=0.85, eta_b=0.5), start(model_name, 2, 1), steps=8,
                     generator=torch.Generator().manual_seed(2)).x  # fmt: skip
    assert float((op.A(y_far) - y).abs().max()) > 1e-3  # η_b < 1 does not pin it


#: measured (n = 2000, 20 steps, η = 0.85, η_b = 1, σ_y = 0.1, default grids):
#: ``rms(mean − μ_post)/rms(σ_post)`` and mean ``‖y − A x̂‖²/(m σ_y²)``; the posterior's own
#: ``E‖y − A x‖²/(m σ_y²)`` for this ``y`` is 1.23 (inpainting) and 1.11 (downsampling).
#: DDRM's sample variance is 0.48–0.65 of the posterior's (median): η < 1 under-disperses.
MEASURED = {
    ("inpainting", "flow_matching"): (0.0179, 0.969),
    ("inpainting", "diffusion"): (0.0143, 0.816),
    ("downsample", "flow_matching"): (0.0231, 0.497),
    ("downsample", "diffusion"): (0.0267, 0.657),
}


@pytest.mark.parametrize(("op_name", "model_name"), list(MEASURED))
def test_distance_to_the_posterior(op_name, model_name):
    """No theorem bounds DDRM's bias on this problem: the tolerances are twice the measured
    distance, and the data fit within 0.7–1.4 × the measured one (it must not diverge from the
    noise level: DDRM fits the measurement to 0.5–1 × m σ_y², the posterior to 1.1–1.2)."""
    op, n = operators()[op_name], 2000
    mean, std = prior(op_name)
    oracle = posterior(op_name, op, mean=mean, std=std, noise_std=SIGMA_Y)
    _, y = oracle.sample(1, generator=torch.Generator().manual_seed(7))
    flow = fr.GuidedFlow(model_flows(mean, std)[model_name], op, y, noise_std=SIGMA_Y)
    x = fr.solve(flow, fr.DDRMStep(), start(model_name, n, 3), steps=20,
                 generator=torch.Generator().manual_seed(1)).x  # fmt: skip
    post_sd = oracle.posterior_var().mean().sqrt()
    dist = float((x.mean(0) - oracle.posterior_mean(y)[0]).pow(2).mean().sqrt() / post_sd)
    fit = float((y - op.A(x)).flatten(1).pow(2).sum(1).mean()) / (y.numel() * SIGMA_Y**2)
    want_dist, want_fit = MEASURED[(op_name, model_name)]
    assert dist < 2 * want_dist, dist
    assert 0.7 * want_fit < fit < 1.4 * want_fit, fit


def test_operator_without_svd_is_refused_before_any_evaluation():
    calls = []

    def model(x, timestep):
        calls.append(1)
        return x

    flow_model = fr.FlowMatchingFlow(model)
    y = torch.zeros(1, *SHAPE, dtype=F64)
    flow = fr.GuidedFlow(flow_model, GaussianBlur(1.0), y, noise_std=0.1)  # reflect padding
    with pytest.raises(fr.IncompatibleOperatorError, match="DDRM.*GaussianBlur.*circular"):
        fr.solve(flow, fr.DDRMStep(), torch.zeros(1, *SHAPE, dtype=F64), steps=3)
    assert calls == []
    with pytest.raises(fr.IncompatibleSolverError, match="DDRMStep steps GuidedFlow"):
        fr.solve(flow_model, fr.DDRMStep(), torch.zeros(1, *SHAPE, dtype=F64), steps=3)
    with pytest.raises(fr.IncompatibleSolverError, match="Euler"):
        fr.solve(flow, fr.Euler(), torch.zeros(1, *SHAPE, dtype=F64), steps=3)
    for bad in ({"eta": 1.5}, {"eta_b": -0.1}, {"eta": True}):
        with pytest.raises(fr.ConfigError):
            fr.DDRMStep(**bad)


def test_restrict_keeps_a_shared_measurement_and_selects_per_sample_ones():
    """``GuidedFlow.restrict`` (the loop's view of the samples still running): one measurement
    for the whole batch is kept as is; one per sample follows the rows."""
    op = operators()["inpainting"]
    mean, std = prior("inpainting")
    oracle = posterior("inpainting", op, mean=mean, std=std, noise_std=SIGMA_Y)
    _, y = oracle.sample(3, generator=torch.Generator().manual_seed(5))
    model = model_flows(mean, std)["diffusion"]
    rows = torch.tensor([2, 0])
    shared = fr.GuidedFlow(model, op, y[:1], noise_std=SIGMA_Y).restrict(rows)
    assert torch.equal(shared.measurement, y[:1])
    each = fr.GuidedFlow(model, op, y, noise_std=SIGMA_Y).restrict(rows)
    assert torch.equal(each.measurement, y[rows])
