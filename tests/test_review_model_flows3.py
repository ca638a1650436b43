"""Second review of the flows over pretrained models (diffusion, flow matching, EDM denoisers):
findings that the first review missed, each checked against what the code must compute."""

import pytest
import torch

import flowrestore as fr
from flowrestore.errors import PredictorOutputError
from flowrestore.oracles.diffusion import linear_alphas_cumprod

F64 = torch.float64


def _doubled(x, t, **_):
    """A model that also predicts its variance: twice the input's channels."""
    return torch.cat([torch.zeros_like(x), torch.ones_like(x)], dim=1)


def test_a_model_with_twice_the_channels_names_learned_variance():
    """An ADM / improved-DDPM checkpoint built without ``learned_variance=True`` returns ``2C``
    channels; the error said only "expected the state's shape", not what to pass."""
    flow = fr.DiffusionFlow(_doubled, alphas_cumprod=linear_alphas_cumprod())
    x = torch.zeros(2, 3, 4, 4)
    with pytest.raises(PredictorOutputError, match=r"learned_variance=True.*first half"):
        flow.denoise(torch.full((2,), 0.5), x)
    # with it, the prediction half (zeros: ε̂ = 0) is kept: D = x̄
    kept = fr.DiffusionFlow(_doubled, alphas_cumprod=linear_alphas_cumprod(), learned_variance=True)
    assert torch.equal(kept.denoise(torch.full((2,), 0.5), x + 0.25), x + 0.25)
    # another wrong shape keeps the generic message
    wrong = fr.DiffusionFlow(lambda x, t: x[:, :1], alphas_cumprod=linear_alphas_cumprod())
    with pytest.raises(PredictorOutputError, match="expected the state's shape"):
        wrong.denoise(torch.full((2,), 0.5), x)


def test_a_sigma_scheduler_that_ends_at_sigma_min_is_refused_not_landed_on_zero():
    """``EulerDiscreteScheduler(final_sigmas_type="sigma_min")`` ends at ``σ_min`` (its last step
    from ``σ_min`` to ``σ_min`` moves nothing) and returns the still noisy ``x̄`` there; the grid
    added a step onto ``σ = 0``, so ``Euler`` on it was no longer the scheduler's sampler, with
    no error. With the default ``final_sigmas_type="zero"`` Euler is that sampler exactly."""
    diffusers = pytest.importorskip("diffusers")
    from flowrestore.oracles.diffusion import GaussianDiffusionOracle

    abar = linear_alphas_cumprod()
    oracle = GaussianDiffusionOracle(
        mean=torch.full((4,), 0.3, dtype=F64),
        std=torch.linspace(0.1, 1.0, 4, dtype=F64),
        alphas_cumprod=abar,
        prediction_type="epsilon",
    )
    flow = fr.DiffusionFlow(oracle, alphas_cumprod=abar)
    bad = diffusers.EulerDiscreteScheduler(use_karras_sigmas=True, final_sigmas_type="sigma_min")
    bad.set_timesteps(10)
    with pytest.raises(fr.ConfigError, match=r"final_sigmas_type='sigma_min'.*'zero'"):
        flow.grid_from_scheduler(bad)
    good = diffusers.EulerDiscreteScheduler(use_karras_sigmas=True)
    good.set_timesteps(10)
    xbar = torch.randn(3, 4, dtype=F64, generator=torch.Generator().manual_seed(0))
    xbar = xbar * good.init_noise_sigma
    y = xbar.clone()
    for t in good.timesteps:  # the scheduler's own sampler, in x̄ = x/√ᾱ
        eps = oracle(good.scale_model_input(y, t), t.double().expand(3))
        y = good.step(eps, t, y).prev_sample
    grid = flow.grid_from_scheduler(good)
    sol = fr.solve(flow, fr.Euler(), flow.from_state(xbar, float(grid[0])), grid=grid)
    assert float((sol.x - y).abs().max()) < 1e-5


def _embedding_model(x, t, class_labels):
    """A class-conditional model as a diffusers U-Net uses its labels: an embedding lookup."""
    table = torch.linspace(-1.0, 1.0, 11, dtype=x.dtype)
    return x * 0 + torch.nn.functional.embedding(class_labels, table[:, None])


@pytest.mark.parametrize("flow_class", ["diffusion", "flow_matching", "denoiser"])
def test_uncond_of_another_dtype_is_refused_before_any_evaluation(flow_class):
    """The conditional and unconditional keywords are concatenated into one batch: a float null
    label next to int64 class labels turned both into floats and the embedding lookup failed
    inside the network at the first step; float32 negative-prompt embeddings next to float16
    prompt embeddings sent a float32 batch. Refused at construction, naming the keyword."""
    make = {
        "diffusion": lambda **kw: fr.DiffusionFlow(
            _embedding_model, alphas_cumprod=linear_alphas_cumprod(), **kw
        ),
        "flow_matching": lambda **kw: fr.FlowMatchingFlow(_embedding_model, **kw),
        "denoiser": lambda **kw: fr.DenoiserFlow(_embedding_model, sigma_max=80.0, **kw),
    }[flow_class]
    labels = torch.tensor([3, 7])
    with pytest.raises(fr.ConfigError, match=r"uncond\['class_labels'\] is torch\.float32"):
        make(
            cond={"class_labels": labels},
            uncond={"class_labels": torch.full((2,), 10.0)},
            guidance_scale=2.0,
        )
    # the same null label as an int64: guided output u + w (c − u) with w = 2, u = table[10] = 1
    flow = make(
        cond={"class_labels": labels},
        uncond={"class_labels": torch.full((2,), 10)},
        guidance_scale=2.0,
    )
    t = torch.full((2,), 0.5)
    out = flow.call_model(torch.zeros(2, 1), t)
    c = torch.tensor([-0.4, 0.4])  # table[3], table[7]
    assert torch.allclose(out[:, 0], 1.0 + 2.0 * (c - 1.0))


def test_a_swapped_scheduler_that_never_clips_gives_an_unclipped_flow():
    """``EulerDiscreteScheduler.from_config(ddpm.config)`` (swapping a pixel-space pipeline's
    sampler) keeps ``clip_sample=True`` in its config although its ``step`` never clips: the flow
    clipped ``D`` to [−1, 1] and ``grid_from_scheduler`` called Euler on it the scheduler's
    sampler. Only a scheduler class that takes the switch clips."""
    diffusers = pytest.importorskip("diffusers")
    ddpm = diffusers.DDPMScheduler(clip_sample=True, thresholding=False)
    big = lambda x, t: torch.full_like(x, 5.0)  # an x₀-model far outside [−1, 1]  # noqa: E731
    kw = {"prediction_type": "sample", "dtype": F64}
    assert fr.DiffusionFlow.from_diffusers(big, ddpm, **kw).clip == fr.ClipSample(1.0)
    for name in ("EulerDiscreteScheduler", "PNDMScheduler", "DPMSolverMultistepScheduler"):
        swapped = getattr(diffusers, name).from_config(ddpm.config)
        flow = fr.DiffusionFlow.from_diffusers(big, swapped, **kw)
        assert flow.clip is None, name
        x = torch.zeros(2, 3, dtype=F64)
        assert torch.equal(flow.denoise(torch.full((2,), 0.5, dtype=F64), x), x + 5.0)
    # a switch the class does take is kept: DPM-Solver's dynamic thresholding
    dpm = diffusers.DPMSolverMultistepScheduler(thresholding=True, sample_max_value=2.0)
    assert fr.DiffusionFlow.from_diffusers(big, dpm, **kw).clip == fr.DynamicThreshold(
        max_value=2.0
    )
    # and grid_from_scheduler takes the swapped Euler scheduler as the unclipped sampler it is
    euler = diffusers.EulerDiscreteScheduler.from_config(ddpm.config)
    euler.set_timesteps(5)
    grid = fr.DiffusionFlow.from_diffusers(big, euler, **kw).grid_from_scheduler(euler)
    assert grid[0] == 1.0 and grid[-1] == 0.0


@pytest.mark.parametrize("name", ["FlowMatchHeunDiscreteScheduler", "FlowMatchLCMScheduler"])
def test_the_other_rectified_flow_schedulers_of_diffusers_load(name):
    """diffusers' Heun and LCM flow-matching schedulers share the Euler one's model convention
    (``timestep = σ·T``, ``shift``); a model saved with one was refused as having no
    flow-matching scheduler. The flow calls the model at the scheduler's own timesteps."""
    diffusers = pytest.importorskip("diffusers")
    sched = getattr(diffusers, name)(shift=3.0, num_train_timesteps=500)
    seen = []
    model = lambda x, timestep: (seen.append(timestep), torch.zeros_like(x))[1]  # noqa: E731
    flow = fr.FlowMatchingFlow.from_diffusers(model, sched)
    assert (flow.num_train_timesteps, flow.shift) == (500, 3.0)
    sched.set_timesteps(4)
    sigma = sched.sigmas[:1].double()
    flow.velocity(sigma, torch.zeros(1, 2, dtype=F64))
    assert torch.allclose(seen[0], sched.timesteps[:1].double(), rtol=1e-6)
    with pytest.raises(fr.ConfigError, match="needs a FlowMatchEulerDiscreteScheduler"):
        fr.FlowMatchingFlow.from_diffusers(model, diffusers.EulerDiscreteScheduler())


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_the_clean_estimate_at_t_zero_is_the_state_not_nan(prediction_type):
    """At ``σ = 0`` the log-SNR extension's timestep is ``−∞``; a network's sinusoidal timestep
    embedding made it NaN, so ``flow.denoise(0, x)`` was NaN although ``D = x̄ − σ ε̂`` (ε) and
    ``a² x̄ − σ a v̂`` (v, ``a = 1``) are ``x̄`` there. A row at ``t = 0`` next to one at
    ``t > 0`` keeps the other row's value; a NaN time stays NaN."""
    abar = linear_alphas_cumprod()

    def embedded(x, timestep):  # diffusers' get_timestep_embedding, one frequency
        return x * 0 + torch.cos(timestep * 1e-2)[:, None]

    flow = fr.DiffusionFlow(embedded, alphas_cumprod=abar, prediction_type=prediction_type)
    x = torch.tensor([[0.3, -1.2], [0.7, 2.0]], dtype=F64)
    d = flow.denoise(torch.tensor([0.0, 0.5], dtype=F64), x)
    assert torch.equal(d[0], x[0])
    assert torch.equal(d[1], flow.denoise(torch.tensor([0.5, 0.5], dtype=F64), x)[1])
    ts = flow.timestep(torch.tensor([0.0, float("nan")], dtype=F64))
    assert ts[0] == 0 and torch.isnan(ts[1])


class _HalfTextNet(torch.nn.Module):
    """A float16 network with a text projection, as a diffusers U-Net's cross-attention: its
    ``encoder_hidden_states`` must be in its dtype (a float32 one fails in the matmul)."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(2, 1, bias=False).half()
        with torch.no_grad():
            self.proj.weight.fill_(0.5)

    def forward(self, x, timestep, encoder_hidden_states):
        return x * 0 + self.proj(encoder_hidden_states)  # [B, 1] next to x's [B, 1]


def test_float32_conditioning_reaches_a_float16_network_in_its_dtype():
    """A float16 network stepped on a float16 state got float32 prompt embeddings uncast (only a
    float32 state had its conditioning cast) and failed inside the network; the embeddings are
    cast to the network's dtype, as they were for a float32 state."""
    emb = torch.tensor([[1.0, 3.0], [2.0, -4.0]])  # float32, e.g. from a float32 text encoder
    flow = fr.FlowMatchingFlow(_HalfTextNet(), cond={"encoder_hidden_states": emb})
    for dtype in (torch.float16, torch.float32):
        out = flow.predict(torch.full((2,), 0.5, dtype=dtype), torch.zeros(2, 1, dtype=dtype))
        assert out.dtype == dtype
        assert torch.equal(out[:, 0].float(), torch.tensor([2.0, -1.0]))  # 0.5 (e₁ + e₂)


def test_a_class_conditional_dit_without_class_labels_is_refused_at_construction():
    """A DiT has no ``class_embedding`` attribute (its label embedder sits in the ada-norm
    blocks): without ``class_labels`` it was accepted and failed at the first evaluation with
    ``TypeError: embedding(): argument 'indices' ... must be Tensor, not NoneType``."""
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    dit = diffusers.DiTTransformer2DModel(
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        out_channels=8,
        num_layers=1,
        sample_size=8,
        patch_size=2,
        num_embeds_ada_norm=10,
    )
    sched = diffusers.DDIMScheduler(clip_sample=False)
    with pytest.raises(fr.ConfigError, match=r"class-conditional.*class_labels"):
        fr.DiffusionFlow.from_diffusers(dit, sched)
    flow = fr.DiffusionFlow.from_diffusers(dit, sched, cond={"class_labels": torch.tensor([3])})
    assert flow.learned_variance  # 8 = 2 × 4 output channels: the prediction half is kept
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    assert flow.denoise(torch.full((1,), 0.5), x).shape == x.shape


def test_heun_on_a_flow_match_heun_schedulers_grid_is_its_sampler():
    """``FlowMatchHeunDiscreteScheduler.sigmas`` lists every inner level twice (one per Heun
    stage) and was refused as not strictly monotone; its steps are the distinct levels, and
    ``fr.Heun()`` on them is the scheduler's sampler (Heun, the last step onto 0 Euler)."""
    diffusers = pytest.importorskip("diffusers")
    from flowrestore.oracles.flow_matching import GaussianFlowMatchingOracle

    oracle = GaussianFlowMatchingOracle(
        mean=torch.full((4,), 0.3, dtype=F64), std=torch.linspace(0.1, 1.0, 4, dtype=F64)
    )
    sched = diffusers.FlowMatchHeunDiscreteScheduler(shift=3.0)
    sched.set_timesteps(6)
    flow = fr.FlowMatchingFlow.from_diffusers(oracle, sched)
    x = torch.randn(3, 4, dtype=F64, generator=torch.Generator().manual_seed(0))
    y = x.clone()
    for t in sched.timesteps:
        y = sched.step(oracle(y, t.double().expand(3)), t, y).prev_sample
    grid = flow.grid_from_scheduler(sched)
    assert grid.numel() == 7 and bool((grid.diff() < 0).all())
    sol = fr.solve(flow, fr.Heun(), x, grid=grid)
    assert float((sol.x - y).abs().max()) < 1e-6
