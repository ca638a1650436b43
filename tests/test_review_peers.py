"""The benchmark peers (``benchmarks/peers.py``) against independent closed forms, and the problem
construction and scoring of ``benchmarks/fewnfe_problems.py``.

Every published "ahead of" rests on the peers computing what their papers / reference code do and
being charged the evaluations they make. The reference here is a residual flow of a Gaussian prior
``N(c, diag s²)`` in σ units, whose denoiser and probability-flow map are known exactly:
``D(σ, x) = c + s²/(s² + σ²) (x − c)`` and ``x(σ') = c + √(s² + σ'²)/√(s² + σ²) (x − c)``.
"""

from __future__ import annotations

import math
import os
import pathlib
import sys

import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchmarks import fewnfe_problems as P  # noqa: E402
from benchmarks import peers  # noqa: E402

F64 = torch.float64
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # diffusers on numpy 2


def gaussian(dim: int = 6, seed: int = 0):
    """``(c, s, D, exact)`` of a Gaussian prior in σ units (module docstring)."""
    g = torch.Generator().manual_seed(seed)
    c = torch.randn(dim, generator=g, dtype=F64)
    s = 0.2 + torch.rand(dim, generator=g, dtype=F64)

    def denoise(sigma: float, x):
        return c + s * s / (s * s + sigma * sigma) * (x - c)

    def exact(x, sigma_from: float, sigma_to: float):
        return c + torch.sqrt(s * s + sigma_to**2) / torch.sqrt(s * s + sigma_from**2) * (x - c)

    return c, s, denoise, exact


class Counted:
    """A denoiser that records the σ's it is called at (its evaluations)."""

    def __init__(self, fn):
        self.fn, self.sigmas = fn, []

    def __call__(self, sigma, x):
        self.sigmas.append(float(sigma))
        return self.fn(sigma, x)


def start(c, s, sigma, batch=3, seed=1):
    return c + torch.sqrt(s * s + sigma**2) * torch.randn(
        batch, c.numel(), generator=torch.Generator().manual_seed(seed), dtype=F64
    )


# --------------------------------------------------------------------------------------- iPNDM


def reference_ipndm(denoise, x, t_steps, max_order=4):
    """zju-pi diff-sampler's ``sample_ipndm`` loop (buffer of past ε's, written out per order)."""
    buffer = []
    for t_cur, t_next in zip(t_steps[:-1], t_steps[1:], strict=True):
        d_cur = (x - denoise(t_cur, x)) / t_cur
        order = min(max_order, len(buffer) + 1)
        if order == 1:
            x = x + (t_next - t_cur) * d_cur
        elif order == 2:
            x = x + (t_next - t_cur) * (3 * d_cur - buffer[-1]) / 2
        elif order == 3:
            x = x + (t_next - t_cur) * (23 * d_cur - 16 * buffer[-1] + 5 * buffer[-2]) / 12
        else:
            x = (
                x
                + (t_next - t_cur)
                * (55 * d_cur - 59 * buffer[-1] + 37 * buffer[-2] - 9 * buffer[-3])
                / 24
            )
        buffer.append(d_cur)
        buffer = buffer[-(max_order - 1) :] if max_order > 1 else []
    return x


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_ipndm_is_the_reference_loop_and_is_charged_its_evaluations(order):
    c, s, denoise, _ = gaussian()
    x = start(c, s, 5.0)
    grid = [float(v) for v in peers.karras_sigmas(7, 0.01, 5.0)]
    counted = Counted(denoise)
    out, nfe = peers.ipndm(counted, x, grid, order=order)
    torch.testing.assert_close(out, reference_ipndm(denoise, x, grid, order), rtol=1e-13, atol=0)
    assert nfe == len(counted.sigmas) == len(grid) - 1
    assert counted.sigmas == grid[:-1]  # one evaluation per step, none at σ = 0


@pytest.mark.parametrize("k", [2, 3, 4])
def test_ipndm_adams_bashforth_steps_are_exact_for_polynomial_noise(k):
    """With ``ε = p(σ)`` a polynomial of degree ``k − 1`` (``D = x − σ p(σ)``), every AB-``k`` step
    on a uniform grid integrates ``dx/dσ = p`` exactly: the error is the ``k − 1`` warm-up steps'
    alone, the same however many steps follow — a wrong AB coefficient breaks it."""
    coef = torch.tensor([0.7, -1.3, 0.9, 0.4], dtype=F64)[:k]

    def p(sig):
        return sum(float(a) * sig**j for j, a in enumerate(coef))

    def P_int(sig):
        return sum(float(a) * sig ** (j + 1) / (j + 1) for j, a in enumerate(coef))

    def denoise(sig, x):
        return x - sig * p(sig)

    x0, h, s0 = torch.zeros(1, dtype=F64), 0.05, 2.0
    errors = []
    for n in (k + 1, k + 4, k + 12):
        grid = [s0 - i * h for i in range(n + 1)]
        out, _ = peers.ipndm(denoise, x0, grid, order=k)
        errors.append(float(out - (x0 + P_int(grid[-1]) - P_int(s0))))
    assert abs(errors[0]) > 1e-8  # the warm-up steps are lower order
    assert errors[1] == pytest.approx(errors[0], abs=1e-13)
    assert errors[2] == pytest.approx(errors[0], abs=1e-13)


# ------------------------------------------------------------------------------- k-diffusion


def observed_orders(fn, **kw):
    c, s, denoise, exact = gaussian()
    x = start(c, s, 1.0)
    errs = []
    for n in (16, 32, 64):
        grid = torch.linspace(1.0, 0.05, n + 1, dtype=F64)
        out, _ = fn(denoise, x, grid, **kw)
        errs.append(float((out - exact(x, 1.0, 0.05)).norm()))
    return [math.log2(errs[i] / errs[i + 1]) for i in range(len(errs) - 1)]


@pytest.mark.parametrize(
    "fn, order",
    [
        (peers.kdiffusion_euler, 1),
        (peers.kdiffusion_heun, 2),
        (peers.kdiffusion_dpmpp_2m, 2),
        (peers.ipndm, 2),  # AB-4, but the Euler warm-up step's O(h²) error stays
    ],
    ids=["euler", "heun", "dpmpp_2m", "ipndm"],
)
def test_sigma_grid_peers_converge_at_their_order(fn, order):
    for q in observed_orders(fn):
        assert abs(q - order) < 0.25, (fn.__name__, q)


def test_heun_is_karras_algorithm_1_with_an_euler_step_onto_zero():
    c, s, denoise, _ = gaussian()
    x = start(c, s, 2.0)
    s0, s1 = 2.0, 0.3
    counted = Counted(denoise)
    out, nfe = peers.kdiffusion_heun(counted, x, [s0, s1, 0.0])
    d = (x - denoise(s0, x)) / s0
    xe = x + (s1 - s0) * d
    x1 = x + (s1 - s0) * (d + (xe - denoise(s1, xe)) / s1) / 2
    torch.testing.assert_close(out, denoise(s1, x1), rtol=1e-14, atol=1e-14)
    assert nfe == len(counted.sigmas) == 3 and counted.sigmas == [s0, s1, s1]


def test_dpmpp_2m_is_k_diffusions_update_in_log_sigma():
    """``sample_dpmpp_2m``: first step DDIM, then ``x' = (σ'/σ) x − expm1(−h) D̃`` with
    ``D̃ = (1 + 1/2r) D − D_old/2r``, ``r = h_last/h``; onto 0 the denoiser's estimate."""
    c, s, denoise, _ = gaussian()
    x = start(c, s, 3.0)
    g = [3.0, 1.0, 0.2, 0.0]
    counted = Counted(denoise)
    out, nfe = peers.kdiffusion_dpmpp_2m(counted, x, g)
    d0 = denoise(g[0], x)
    x1 = x + (g[1] - g[0]) * (x - d0) / g[0]  # DDIM = Euler in σ
    d1 = denoise(g[1], x1)
    h, h_last = math.log(g[1] / g[2]), math.log(g[0] / g[1])
    r = h_last / h
    x2 = (g[2] / g[1]) * x1 - math.expm1(-h) * ((1 + 1 / (2 * r)) * d1 - d0 / (2 * r))
    torch.testing.assert_close(out, denoise(g[2], x2), rtol=1e-14, atol=1e-14)
    assert nfe == len(counted.sigmas) == 3


def test_karras_sigmas_are_edms_schedule_then_zero():
    n, lo, hi, rho = 6, 0.002, 80.0, 7.0
    sig = peers.karras_sigmas(n, lo, hi, rho)
    assert sig.shape == (n + 1,) and float(sig[-1]) == 0.0
    for i in range(n):
        want = (hi ** (1 / rho) + i / (n - 1) * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho
        assert float(sig[i]) == pytest.approx(want, rel=1e-12)
    assert float(sig[0]) == pytest.approx(hi) and float(sig[n - 1]) == pytest.approx(lo)


# ---------------------------------------------------------------------------------- diffusers


def test_diffusers_dpmpp_2m_on_a_grid_is_k_diffusions_dpmpp_2m():
    """Two independent implementations of DPM-Solver++(2M) (diffusers' VP scheduler fed the σ
    grid, k-diffusion's loop in the residual state) agree to float32; both charged N."""
    pytest.importorskip("diffusers")
    c, s, denoise, exact = gaussian()
    x = start(c, s, 5.0)
    grid = peers.karras_sigmas(7, 0.01, 5.0)
    counted = Counted(denoise)
    a, nfe = peers.diffusers_solve("dpm++", 2, counted, x, grid)
    b, _ = peers.kdiffusion_dpmpp_2m(denoise, x, grid)
    assert nfe == len(counted.sigmas) == 7
    assert float((a - b).norm() / b.norm()) < 1e-6
    # UniPC: one evaluation per step, none at σ = 0; onto 0 the last estimate is the answer
    counted = Counted(denoise)
    u, nfe = peers.diffusers_solve("unipc", 3, counted, x, grid)
    assert nfe == len(counted.sigmas) == 7 and min(counted.sigmas) > 0
    fine = peers.karras_sigmas(40, 1e-3, 5.0)
    u = peers.diffusers_solve("unipc", 3, denoise, x, fine)[0]
    assert float((u - exact(x, 5.0, 0.0)).norm() / exact(x, 5.0, 0.0).norm()) < 1e-4
    one, _ = peers.diffusers_solve("unipc", 2, denoise, x, [5.0, 0.0])
    torch.testing.assert_close(one, denoise(5.0, x), rtol=1e-5, atol=1e-5)


def test_betas_of_rebuild_the_schedule():
    abar = P.cosine_alphas_cumprod()
    rebuilt = torch.cumprod(1 - peers.betas_of(abar), 0)
    torch.testing.assert_close(rebuilt, abar, rtol=1e-12, atol=0)


def test_cosine_schedule_is_diffusers_squaredcos_cap_v2():
    diffusers = pytest.importorskip("diffusers")
    ref = diffusers.DDPMScheduler(beta_schedule="squaredcos_cap_v2").alphas_cumprod.double()
    torch.testing.assert_close(P.cosine_alphas_cumprod(), ref, rtol=1e-5, atol=1e-8)


def test_diffusers_own_defaults_count_calls_start_at_t_and_land_where_configured():
    """Own-default samplers: charged the model calls they make, first called at the last trained
    timestep; one step lands on the model's clean estimate (final σ = 0: DDIM's
    ``set_alpha_to_one``, ``final_sigmas_type="zero"``) — except DEIS, whose scheduler has no zero
    final σ: its DDIM step stops at the first trained level, ``√ᾱ₀ (x̄ + (σ₀ − σ_T) ε̂)``. With
    more steps on the exact model every one approaches the closed-form map."""
    pytest.importorskip("diffusers")
    from flowrestore.oracles.diffusion import GaussianDiffusionOracle, linear_alphas_cumprod

    abar = linear_alphas_cumprod()
    c = torch.linspace(-0.5, 0.5, 5, dtype=F64)
    sd = torch.linspace(0.3, 1.0, 5, dtype=F64)
    a_T, a_0 = math.sqrt(float(abar[-1])), math.sqrt(float(abar[0]))
    for ptype in ("epsilon", "v_prediction", "sample"):
        oracle = GaussianDiffusionOracle(mean=c, std=sd, alphas_cumprod=abar, prediction_type=ptype)
        x_T = oracle.sample_latent(4, torch.Generator().manual_seed(3))
        exact = oracle.exact_map(x_T)
        calls = []

        def model(x, k, oracle=oracle, calls=calls):
            calls.append(float(k[0]))
            return oracle(x, k)

        for label in peers.SCHEDULERS:
            calls.clear()
            x, nfe = peers.diffusers_sample(label, model, x_T, 1, abar, ptype)
            assert nfe == len(calls) == 1 and calls == [999.0], label
            if label == "DEIS-3":
                s_T, s_0 = (math.sqrt((1 - a * a) / (a * a)) for a in (a_T, a_0))
                want = a_0 * (x_T / a_T + (s_0 - s_T) * oracle.epsilon(x_T, 999))
            else:
                want = oracle.clean(x_T, 999)
            # float32 inside the scheduler, from a state x̄_T of size σ_T ≈ 157: ~1e-5 absolute
            torch.testing.assert_close(x, want, rtol=0, atol=2e-4, msg=label)
            calls.clear()
            x, nfe = peers.diffusers_sample(label, model, x_T, 50, abar, ptype)
            assert nfe == len(calls) == 50 and calls[0] == 999.0, label
            assert float((x - exact).norm() / exact.norm()) < 0.05, (ptype, label)


def test_diffusers_flow_sample_counts_calls_and_reaches_the_map():
    """diffusers' flow-matching schedulers on a Gaussian velocity model: the model is called at
    the scheduler's σ·1000, once per step; on a grid from 1 to 0 they reach ``c + s x₁``."""
    pytest.importorskip("diffusers")
    c = torch.linspace(-0.5, 0.5, 5, dtype=torch.float32)
    s = torch.linspace(0.3, 1.0, 5, dtype=torch.float32)

    def velocity(x, t):
        tt = (t / 1000).reshape(-1, 1)
        var = (1 - tt) ** 2 * s * s + tt * tt
        m = x - (1 - tt) * c
        return tt / var * m - (c + (1 - tt) * s * s / var * m)

    x1 = torch.randn(4, 5, generator=torch.Generator().manual_seed(5))
    exact = c + s * x1
    calls = []

    def model(x, t):
        calls.append(float(t[0]))
        return velocity(x, t)

    grid = torch.linspace(1.0, 0.0, 41, dtype=F64)
    for label in peers.FLOW_SCHEDULERS:
        calls.clear()
        x, nfe = peers.diffusers_flow_sample(label, model, x1, 40, 1.0, grid=grid)
        assert nfe == len(calls) == 40 and calls[1] == pytest.approx(975.0, rel=1e-5)
        assert float((x - exact).norm() / exact.norm()) < 5e-3, label
    with pytest.raises(ValueError, match="grid"):
        peers.diffusers_flow_sample("UniPC-2", model, x1, 40, 1.0, grid=grid[::2])


# --------------------------------------------------------------------------- fewnfe_problems


def test_oracle_instances_reference_is_the_flow_map():
    """(a)'s reference is the probability-flow map of the instance's own flow: a fine
    k-diffusion DPM++ 2M solve through the instance's denoiser on the flow's state lands on it."""
    prob = P.diffusion_oracles("linear", "epsilon", "val", dim=6, batch=3, seeds=(7,))
    inst = prob.instances[0]
    flow = inst.flow
    xs = flow.to_state(inst.x, 1.0)
    grid = torch.cat(
        [torch.logspace(math.log10(flow.sigma_max), -4, 400, dtype=F64), torch.zeros(1, dtype=F64)]
    )
    out, _ = peers.kdiffusion_dpmpp_2m(inst.denoise, xs, grid)
    x0 = flow.from_state(out, 0.0)
    assert float((x0 - inst.ref).norm() / inst.ref.norm()) < 1e-4


def _seed_streams(problem_seeds, derived):
    return {s + k for s in problem_seeds for k in derived}


def test_validation_and_test_splits_are_disjoint():
    for seeds, derived in (
        (P.DIFFUSION_SEEDS, (0, 1000)),
        (P.DDPM_SEEDS, (0,)),
        (P.GAUSS_SEEDS, (0, 1, 2)),
        (P.MIX_SEEDS, (0, 1000)),
    ):
        assert not _seed_streams(seeds["val"], derived) & _seed_streams(seeds["test"], derived)
    photos = {k: {c[0] for c in v} for k, v in P.CROPS.items()}
    assert not photos["val"] & photos["test"]
    assert not photos["extra"] & (photos["val"] | photos["test"])
    from flowrestore.training.data import TRAINING_IMAGES

    for v in photos.values():
        assert not v & set(TRAINING_IMAGES)
    with pytest.raises(ValueError, match="chelsea"):
        P.crop_images((("chelsea", 1.0, 0, 0),))
    with pytest.raises(ValueError, match="lfw_subset:3"):
        P.crop_images((("lfw_subset:3", 4.0, 0, 0),))


def test_scores_take_the_worst_sample_and_keep_nan():
    ref = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=F64)
    inst = P.Instance(flow=None, x=ref, ref=ref, denoise=None)
    prob = P.Problem("p", "rel", False, [inst])
    x = ref + torch.tensor([[0.1, 0.0], [0.0, 0.1]], dtype=F64)
    assert P.score(prob, inst, x) == pytest.approx(0.1)  # 0.1/1 vs 0.1/2: the worse
    assert math.isnan(P.score(prob, inst, x * math.nan))
    assert P.worse("rel", 0.1, 0.2) == 0.2 and P.worse("psnr", 30.0, 20.0) == 20.0
    assert math.isnan(P.worse("rel", math.nan, 0.1))


def test_a_non_finite_sample_of_the_mixture_counts_as_wrong():
    """A NaN answer has no nearest centre: torch's ``min`` names centre 0 for it, which must not
    score as landing right when the reference centre is 0."""
    import flowrestore as fr

    mix = fr.oracles.DiracMixture(
        centers=torch.tensor([[0.0, 0.0], [5.0, 5.0]], dtype=F64),
        weights=torch.ones(2, dtype=F64),
        H=torch.ones(2, dtype=F64),
        noise_std=1.0,
    )
    ref_centre = torch.tensor([0, 1, 0])
    inst = P.Instance(flow=None, x=None, ref=ref_centre, denoise=None, extra={"mixture": mix})
    prob = P.Problem("m", "wrong", False, [inst])
    x = torch.tensor([[0.1, 0.0], [5.0, 4.9], [0.0, 0.1]], dtype=F64)
    assert P.score(prob, inst, x) == 0.0
    x[0, 1] = math.nan
    x[2, 0] = math.inf
    assert P.score(prob, inst, x) == 2.0
    with pytest.raises(ValueError, match="kind"):
        P.score(P.Problem("m", "bogus", False, [inst]), inst, x)


def test_own_default_schedulers_are_configured_as_labelled():
    """Each own-default row runs the scheduler and order its label names, with the model's
    prediction type, a first-order last step (``lower_order_final``) and, where the scheduler has
    the option, a final σ of 0."""
    pytest.importorskip("diffusers")
    from flowrestore.oracles.diffusion import linear_alphas_cumprod

    abar = linear_alphas_cumprod()
    want = {
        "DDIM (trailing)": ("DDIMScheduler", None),
        "DPM-Solver++ 2M": ("DPMSolverMultistepScheduler", 2),
        "DPM-Solver++ 3M": ("DPMSolverMultistepScheduler", 3),
        "UniPC-2": ("UniPCMultistepScheduler", 2),
        "UniPC-3": ("UniPCMultistepScheduler", 3),
        "DEIS-3": ("DEISMultistepScheduler", 3),
    }
    assert set(want) == set(peers.SCHEDULERS)
    for label, (cls, order) in want.items():
        sched = peers.make_scheduler(label, abar, "v_prediction")
        cfg = sched.config
        assert type(sched).__name__ == cls and cfg.prediction_type == "v_prediction", label
        assert cfg.num_train_timesteps == 1000
        torch.testing.assert_close(sched.alphas_cumprod.double(), abar, rtol=1e-5, atol=1e-9)
        if order is None:
            assert cfg.timestep_spacing == "trailing" and cfg.set_alpha_to_one
            continue
        assert cfg.solver_order == order and cfg.lower_order_final, label
        if "final_sigmas_type" in cfg:
            assert cfg.final_sigmas_type == "zero", label
        if cls == "DPMSolverMultistepScheduler":
            assert cfg.algorithm_type == "dpmsolver++", label
