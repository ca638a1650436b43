"""The model-flow protocol every model flow declares, and DiffusionFlow's per-sample conditioning.

* ``state_coefficients(t) -> (α, σ)``: the state is ``x_t = α_t x_0 + σ_t ε``. Checked against the
  closed form (docs/math.md §8–§10): for a Gaussian prior ``N(c, s²)`` the exact model's clean
  estimate must be ``E[x_0 | x_t] = c + α s² (x_t − α c)/(α² s² + σ²)`` with the flow's own
  ``(α, σ)``, at several times, for the diffusion, flow-matching and EDM flows.
* ``input_scale(t) -> k``: the network sees ``state / k`` (``√(1 + σ²)`` for a diffusion model's
  ``x̄ = x/√ᾱ``, 1 otherwise): a spy network records what it is given.
* ``cond=``: a class-conditional diffusers ``UNet2DModel`` (``num_class_embeds``) saved as a
  pipeline and loaded by path reproduces diffusers' DDIM loop with ``class_labels`` (≤ 1e-5
  relative, float64); each row follows its own label.
"""

from __future__ import annotations

import pytest
import torch

import flowrestore as fr
from flowrestore.errors import ConfigError, ShapeError
from flowrestore.oracles import (
    GaussianDenoiserOracle,
    GaussianDiffusionOracle,
    GaussianFlowMatchingOracle,
)
from flowrestore.oracles.diffusion import linear_alphas_cumprod

from .helpers import F64, prior, tiny_unet

TIMES = (0.9, 0.5, 0.13, 0.02)


def _flows(c, sc):
    abar = linear_alphas_cumprod()
    return {
        "diffusion": fr.DiffusionFlow(
            GaussianDiffusionOracle(mean=c, std=sc, alphas_cumprod=abar), alphas_cumprod=abar
        ),
        "flow_matching": fr.FlowMatchingFlow(GaussianFlowMatchingOracle(mean=c, std=sc)),
        "denoiser": fr.DenoiserFlow(GaussianDenoiserOracle(mean=c, std=sc), sigma_max=80.0),
    }


@pytest.mark.parametrize("name", ["diffusion", "flow_matching", "denoiser"])
def test_state_coefficients_are_the_exact_models_noising(name):
    c, sc = prior(dim=12, seed=3)
    flow = _flows(c, sc)[name]
    g = torch.Generator().manual_seed(4)
    x = torch.randn(3, 12, generator=g, dtype=F64) * 5
    for t in TIMES:
        tt = torch.tensor(t, dtype=F64)
        alpha, sigma = flow.state_coefficients(tt)
        want = c + alpha * sc**2 * (x - alpha * c) / (alpha**2 * sc**2 + sigma**2)
        torch.testing.assert_close(flow.denoise(tt, x), want, rtol=1e-9, atol=1e-12)
    per_sample = torch.tensor(TIMES[:3], dtype=F64)
    alpha, sigma = flow.state_coefficients(per_sample)
    assert alpha.shape == sigma.shape == (3,)  # one pair per sample


def test_input_scale_is_what_the_network_sees():
    seen = []

    def spy(x, step, **cond):
        seen.append(x.clone())
        return torch.zeros_like(x)

    x = torch.randn(2, 5, generator=torch.Generator().manual_seed(0), dtype=F64)
    abar = linear_alphas_cumprod()
    flows = {
        "diffusion": fr.DiffusionFlow(spy, alphas_cumprod=abar),
        "flow_matching": fr.FlowMatchingFlow(spy),
        "denoiser": fr.DenoiserFlow(spy, sigma_max=80.0),
    }
    for name, flow in flows.items():
        for t in (0.7, 0.05):
            tt = torch.tensor(t, dtype=F64)
            seen.clear()
            flow.denoise(tt, x)
            k = flow.input_scale(tt)
            torch.testing.assert_close(seen[0], x / k, rtol=1e-12, atol=0)
            if name == "diffusion":  # the VP input x = x̄ √ᾱ, √ᾱ = 1/√(1 + σ²)
                sigma = t * flow.sigma_max
                torch.testing.assert_close(k, torch.tensor((1 + sigma**2) ** 0.5, dtype=F64))
                torch.testing.assert_close(flow.from_state(x, t), x / k)
            else:
                assert float(k) == 1.0
    for flow in flows.values():
        assert type(flow).per_sample_fields == ("cond", "uncond")


diffusers = pytest.importorskip("diffusers")


def _class_unet(seed=0):
    return tiny_unet(seed, num_class_embeds=3)


def _ddim_with_labels(model, scheduler, x, labels):
    """diffusers' DDIM loop (eta = 0) with ``class_labels``, as its pipelines run it."""
    with torch.no_grad():
        for k in scheduler.timesteps:
            out = model(x, k, class_labels=labels).sample
            x = scheduler.step(out, k, x, eta=0.0).prev_sample
    return x


@pytest.mark.parametrize("ptype", ["epsilon", "v_prediction"])
def test_class_conditional_unet_reproduces_ddim_with_labels(tmp_path, ptype):
    train = diffusers.DDPMScheduler(
        num_train_timesteps=1000, prediction_type=ptype, clip_sample=False
    )
    with torch.no_grad():  # a random embedding large enough that labels change the output
        unet = _class_unet()
        unet.class_embedding.weight.mul_(20)
    diffusers.DDPMPipeline(unet=unet, scheduler=train).save_pretrained(tmp_path / "pipe")
    labels = torch.tensor([2, 0, 1])
    flow = fr.DiffusionFlow.from_diffusers(
        tmp_path / "pipe", dtype=F64, cond={"class_labels": labels}
    )
    x_T = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(1), dtype=F64)
    ddim = diffusers.DDIMScheduler.from_config(train.config, set_alpha_to_one=True)
    ddim.set_timesteps(10)
    grid = flow.grid_from_scheduler(ddim)
    want = _ddim_with_labels(flow.model, ddim, x_T, labels)
    got = fr.solve(flow, fr.Euler(), x_T, grid=grid).x
    rel = float((got - want).abs().max() / want.abs().max())
    assert rel <= 1e-5, rel
    # the labels matter, and each row follows its own
    other = _ddim_with_labels(flow.model, ddim, x_T, labels.roll(1))
    assert float((other - want).abs().max() / want.abs().max()) > 1e-2
    for i in range(3):
        alone = fr.DiffusionFlow.from_diffusers(
            tmp_path / "pipe", dtype=F64, cond={"class_labels": labels[i : i + 1]}
        )
        row = fr.solve(alone, fr.Euler(), x_T[i : i + 1], grid=grid).x
        torch.testing.assert_close(row, got[i : i + 1], rtol=1e-10, atol=1e-12)


def test_class_conditional_unet_refuses_missing_or_mismatched_labels(tmp_path):
    _class_unet().save_pretrained(tmp_path)
    diffusers.DDPMScheduler().save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match=r"class-conditional.*cond=\{'class_labels'"):
        fr.DiffusionFlow.from_diffusers(tmp_path)
    with pytest.raises(ConfigError, match="class-conditional"):
        fr.FlowMatchingFlow.from_diffusers(tmp_path, diffusers.FlowMatchEulerDiscreteScheduler())
    flow = fr.DiffusionFlow.from_diffusers(tmp_path, cond={"class_labels": torch.tensor([0, 1])})
    with pytest.raises(ShapeError, match=r"class_labels.*batch size 3.*\(2,\)"):
        fr.solve(flow, fr.Euler(), torch.randn(3, 1, 8, 8), steps=2)
    with pytest.raises(ConfigError, match="cond must be a dict"):
        fr.DiffusionFlow(flow.model, alphas_cumprod=flow.alphas_cumprod, cond=torch.tensor([0]))
