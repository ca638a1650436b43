"""from_diffusers refuses conditioning the network cannot take at construction, with the name of
the argument, instead of a bare TypeError from inside the network at the first evaluation (review
findings). Nothing reaches a hub: the networks are built here."""

import os

import pytest
import torch

import flowrestore as fr
from flowrestore.errors import ConfigError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
diffusers = pytest.importorskip("diffusers")


def _unet(**kw):
    torch.manual_seed(0)
    return diffusers.UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D",) * 2,
        up_block_types=("UpBlock2D",) * 2,
        norm_num_groups=4,
        **kw,
    )


def _text_unet():
    torch.manual_seed(0)
    return diffusers.UNet2DConditionModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        norm_num_groups=4,
        cross_attention_dim=8,
        attention_head_dim=2,
    )


def _ddpm():
    return diffusers.DDPMScheduler(clip_sample=False)


def _fm():
    return diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)


@pytest.mark.parametrize(
    "load", [lambda m, **k: fr.DiffusionFlow.from_diffusers(m, _ddpm(), **k),
             lambda m, **k: fr.FlowMatchingFlow.from_diffusers(m, _fm(), **k)],
)  # fmt: skip
def test_text_conditioned_unet_without_its_embeddings_is_refused_when_built(load):
    # was: TypeError "forward() missing 1 required positional argument: 'encoder_hidden_states'"
    # at the first evaluation of the solve
    with pytest.raises(ConfigError, match="encoder_hidden_states"):
        load(_text_unet())
    flow = load(_text_unet(), cond={"encoder_hidden_states": torch.randn(2, 3, 8)})
    x = fr.solve(flow, fr.Euler(), torch.randn(2, 1, 8, 8), steps=2).x
    assert x.shape == (2, 1, 8, 8)


def test_keyword_the_network_does_not_take_is_refused_when_built():
    # was: TypeError "forward() got an unexpected keyword argument 'labels'" at the first step
    with pytest.raises(ConfigError, match="labels"):
        fr.DiffusionFlow.from_diffusers(_unet(), _ddpm(), cond={"labels": torch.zeros(2)})
    flow = fr.DiffusionFlow.from_diffusers(
        _unet(num_class_embeds=3), _ddpm(), cond={"class_labels": torch.tensor([0, 2])}
    )
    assert fr.solve(flow, fr.Euler(), torch.randn(2, 1, 8, 8), steps=2).x.shape == (2, 1, 8, 8)


def test_a_network_taking_any_keyword_is_not_second_guessed():
    class Any(torch.nn.Module):
        def forward(self, x, timestep, **kwargs):
            return torch.zeros_like(x)

    flow = fr.DiffusionFlow.from_diffusers(Any(), _ddpm(), cond={"whatever": torch.zeros(2)})
    assert fr.solve(flow, fr.Euler(), torch.randn(2, 1, 4, 4), steps=2).x.shape == (2, 1, 4, 4)


def test_alphas_cumprod_beside_a_scheduler_is_a_config_error():
    # was: TypeError "got multiple values for keyword argument 'alphas_cumprod'"
    with pytest.raises(ConfigError, match="alphas_cumprod"):
        fr.DiffusionFlow.from_diffusers(_unet(), _ddpm(), alphas_cumprod=_ddpm().alphas_cumprod)


@pytest.mark.parametrize(("text", "what"), [("{not json", "JSON"), ("[1, 2]", "list")])
@pytest.mark.parametrize("which", ["model", "scheduler"])
def test_unreadable_config_file_is_a_config_error_naming_it(tmp_path, text, what, which):
    # was: json.JSONDecodeError (no file named) / AttributeError "'list' object has no attribute
    # 'get'", though the module promises a ConfigError naming every missing or broken piece
    good = tmp_path / "good"
    diffusers.DDPMPipeline(unet=_unet(), scheduler=_ddpm()).save_pretrained(good)
    bad = tmp_path / "bad"
    bad.mkdir()
    name = "config.json" if which == "model" else "scheduler_config.json"
    (bad / name).write_text(text)
    model, scheduler = (bad, good / "scheduler") if which == "model" else (good / "unet", bad)
    with pytest.raises(ConfigError, match=name) as info:
        fr.DiffusionFlow.from_diffusers(model, scheduler)
    assert what in str(info.value)


@pytest.mark.parametrize(
    "schedule", [{}, {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}]
)
def test_zero_snr_euler_scheduler_loads_like_ddpm(schedule):
    # EulerDiscreteScheduler stores the zero terminal ᾱ as 2⁻²⁴, above the previous entry on the
    # linear schedule: a v-model was refused ("must decrease strictly"), and on scaled_linear an
    # ε-model was accepted where the same schedule from DDPMScheduler is refused
    def model(x, t):
        return torch.zeros_like(x)

    euler = diffusers.EulerDiscreteScheduler(
        rescale_betas_zero_snr=True, prediction_type="v_prediction", **schedule
    )
    ddpm = diffusers.DDPMScheduler(
        rescale_betas_zero_snr=True, prediction_type="v_prediction", **schedule
    )
    a = fr.DiffusionFlow.from_diffusers(model, euler)
    b = fr.DiffusionFlow.from_diffusers(model, ddpm, clip=None)
    torch.testing.assert_close(a.alphas_cumprod, b.alphas_cumprod, rtol=1e-6, atol=0)
    with pytest.raises(ConfigError, match="zero-terminal-SNR"):
        fr.DiffusionFlow.from_diffusers(
            model, diffusers.EulerDiscreteScheduler(rescale_betas_zero_snr=True, **schedule)
        )
