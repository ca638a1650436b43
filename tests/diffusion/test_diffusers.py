"""DiffusionFlow against diffusers: DDIM equivalence, loading local checkpoints, optional import.

A tiny randomly initialised ``UNet2DModel`` is saved to a temporary folder with its scheduler and
loaded back by path; ``fr.solve(flow, fr.Euler(), x_T, grid=flow.grid_from_scheduler(s))`` must
reproduce ``DDIMScheduler`` (``eta=0``, ``set_alpha_to_one=True``, ``clip_sample=False``) to 1e-5
relative in float64 for every prediction type. Nothing is downloaded (``local_files_only``).
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import flowrestore as fr
from flowrestore.errors import ConfigError, MissingDependencyError

from .helpers import F64, PREDICTION_TYPES

diffusers = pytest.importorskip("diffusers")


def _tiny_unet(seed=0, out_channels=1, in_channels=1):
    torch.manual_seed(seed)
    return diffusers.UNet2DModel(
        sample_size=8,
        in_channels=in_channels,
        out_channels=out_channels,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
    )


def _ddim_reference(model, scheduler, x_T, **step_options):
    x = x_T.clone()
    with torch.no_grad():
        for k in scheduler.timesteps:
            x = scheduler.step(model(x, k).sample, k, x, eta=0.0, **step_options).prev_sample
    return x


CLIPS = {
    "clip_sample": ({"clip_sample": True, "clip_sample_range": 0.5}, fr.ClipSample(0.5)),
    "thresholding": (
        {"thresholding": True, "dynamic_thresholding_ratio": 0.9, "sample_max_value": 1.5},
        fr.DynamicThreshold(ratio=0.9, max_value=1.5),
    ),
}


@pytest.mark.parametrize("clip", list(CLIPS))
@pytest.mark.parametrize("ptype", PREDICTION_TYPES)
def test_euler_reproduces_a_clipping_ddim_scheduler(tmp_path, ptype, clip):
    """A scheduler that clips x₀ (clip_sample, or dynamic thresholding): from_diffusers carries
    the setting into the flow, and Euler on its grid is DDIM's step with ε re-derived from the
    clipped x₀ (``use_clipped_model_output=True``), to 1e-5 relative in float64. The clipping is
    active (the unclipped flow differs by far more) and DDIM's default step is refused."""
    config, expect = CLIPS[clip]
    train = diffusers.DDPMScheduler(num_train_timesteps=1000, prediction_type=ptype, **config)
    unet = _tiny_unet()
    unet.save_pretrained(tmp_path)
    train.save_pretrained(tmp_path)
    flow = fr.DiffusionFlow.from_diffusers(str(tmp_path), dtype=F64)
    assert flow.clip == expect
    x_T = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1), dtype=F64)
    ddim = diffusers.DDIMScheduler.from_config(train.config, set_alpha_to_one=True)
    ddim.set_timesteps(10)
    want = _ddim_reference(flow.model, ddim, x_T, use_clipped_model_output=True)
    grid = flow.grid_from_scheduler(ddim, use_clipped_model_output=True)
    got = fr.solve(flow, fr.Euler(), x_T, grid=grid).x
    rel = float((got - want).abs().max() / want.abs().max())
    assert rel <= 1e-5, (ptype, clip, rel)
    unclipped = fr.DiffusionFlow(
        flow.model, alphas_cumprod=flow.alphas_cumprod, prediction_type=ptype
    )
    gap = float((fr.solve(unclipped, fr.Euler(), x_T, grid=grid).x - want).abs().max())
    assert gap / float(want.abs().max()) > 1e-2, gap  # the clip changes the answer
    with pytest.raises(ConfigError, match="use_clipped_model_output=True"):
        flow.grid_from_scheduler(ddim)  # the default step (model's ε) is no ODE step
    name = "thresholding=True" if clip == "thresholding" else "clip_sample=True"
    with pytest.raises(ConfigError, match=name):
        unclipped.grid_from_scheduler(ddim, use_clipped_model_output=True)
    plain = diffusers.DDIMScheduler.from_config(train.config, clip_sample=False, thresholding=False)
    plain.set_timesteps(10)
    with pytest.raises(ConfigError, match="clip=None"):
        flow.grid_from_scheduler(plain)
    override = fr.DiffusionFlow.from_diffusers(str(tmp_path), dtype=F64, clip=None)
    assert override.clip is None and override.grid_from_scheduler(plain).numel() == 11


def test_clip_options_are_typed():
    abar = diffusers.DDPMScheduler().alphas_cumprod
    for bad in ({"clip": 1.0}, {"clip": True}):
        with pytest.raises(ConfigError, match="clip must be"):
            fr.DiffusionFlow(lambda x, k: x, alphas_cumprod=abar, **bad)
    for make in (
        lambda: fr.ClipSample(0.0),
        lambda: fr.ClipSample(float("inf")),
        lambda: fr.DynamicThreshold(ratio=0.0),
        lambda: fr.DynamicThreshold(max_value=0.5),
    ):
        with pytest.raises(ConfigError):
            make()


@pytest.mark.parametrize("ptype", PREDICTION_TYPES)
def test_euler_reproduces_ddim_scheduler(tmp_path, ptype):
    train = diffusers.DDPMScheduler(
        num_train_timesteps=1000, prediction_type=ptype, clip_sample=False
    )
    _tiny_unet().save_pretrained(tmp_path)
    train.save_pretrained(tmp_path)  # scheduler_config.json beside the model
    flow = fr.DiffusionFlow.from_diffusers(str(tmp_path), dtype=F64)
    assert flow.prediction_type == ptype and flow.clip is None
    x_T = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1), dtype=F64)
    for spacing, n in (("leading", 10), ("trailing", 8)):
        ddim = diffusers.DDIMScheduler.from_config(
            train.config, set_alpha_to_one=True, clip_sample=False, timestep_spacing=spacing
        )
        ddim.set_timesteps(n)
        want = _ddim_reference(flow.model, ddim, x_T)
        grid = flow.grid_from_scheduler(ddim)
        assert grid.numel() == n + 1 and float(grid[-1]) == 0.0
        got = fr.solve(flow, fr.Euler(), x_T, grid=grid).x
        rel = float((got - want).abs().max() / want.abs().max())
        assert rel <= 1e-5, (ptype, spacing, rel)


@pytest.mark.parametrize("beta_schedule", ["linear", "squaredcos_cap_v2"])
def test_a_zero_terminal_snr_checkpoint_loads_and_reproduces_ddim(tmp_path, beta_schedule):
    """``rescale_betas_zero_snr=True`` (ᾱ_{T−1} = 0): the v-model loads, its σ_max is diffusers'
    stand-in (Euler's 4096 where 2⁻²⁴ lies below the last finite ᾱ), the package's rescaling is
    diffusers', and Euler on DDIM's trailing grid reproduces DDIM from pure noise up to that
    stand-in (``√ᾱ`` of 2⁻¹² or less in the first clean estimate)."""
    from flowrestore.oracles.diffusion import zero_terminal_snr

    config = {
        "num_train_timesteps": 1000,
        "beta_schedule": beta_schedule,
        "prediction_type": "v_prediction",
        "rescale_betas_zero_snr": True,
        "clip_sample": False,
    }
    train = diffusers.DDPMScheduler(**config)
    assert float(train.alphas_cumprod[-1]) == 0.0
    _tiny_unet(2).save_pretrained(tmp_path)
    train.save_pretrained(tmp_path)
    flow = fr.DiffusionFlow.from_diffusers(str(tmp_path), dtype=F64)
    plain = diffusers.DDPMScheduler(**{**config, "rescale_betas_zero_snr": False})
    torch.testing.assert_close(
        zero_terminal_snr(plain.alphas_cumprod.double())[:-1],
        train.alphas_cumprod.double()[:-1],
        rtol=1e-5,
        atol=1e-12,
    )
    if beta_schedule == "squaredcos_cap_v2":  # 2⁻²⁴ below the last finite ᾱ: diffusers' level
        euler = diffusers.EulerDiscreteScheduler.from_config(train.config)
        euler.set_timesteps(10)
        assert flow.sigma_max == pytest.approx(float(euler.sigmas.max()), rel=1e-6)
    ddim = diffusers.DDIMScheduler.from_config(
        train.config, set_alpha_to_one=True, timestep_spacing="trailing"
    )
    ddim.set_timesteps(8)
    x_T = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1), dtype=F64)
    want = _ddim_reference(flow.model, ddim, x_T)
    got = fr.solve(flow, fr.Euler(), x_T, grid=flow.grid_from_scheduler(ddim)).x
    rel = float((got - want).abs().max() / want.abs().max())
    assert rel <= 2.0**-12, rel


@pytest.mark.parametrize("ptype", ["epsilon", "v_prediction"])
def test_a_model_that_learns_its_variance_loads_and_reproduces_ddim(tmp_path, ptype):
    """ADM / improved-DDPM checkpoints (``variance_type="learned_range"``) output twice the input's
    channels, the prediction first: from_diffusers keeps that half, as diffusers' DDPMScheduler
    and pipelines do, and Euler then reproduces DDIM driven by the prediction half (RGB, as
    those checkpoints are: the split is by the input's channel count, not a fixed one)."""
    c = 3
    train = diffusers.DDPMScheduler(
        num_train_timesteps=1000,
        prediction_type=ptype,
        variance_type="learned_range",
        clip_sample=False,
    )
    net = _tiny_unet(3, out_channels=2 * c, in_channels=c)
    net.save_pretrained(tmp_path)
    train.save_pretrained(tmp_path)
    flow = fr.DiffusionFlow.from_diffusers(str(tmp_path), dtype=F64)
    assert flow.learned_variance and "learned_variance=True" in repr(flow)
    x_T = torch.randn(2, c, 8, 8, generator=torch.Generator().manual_seed(1), dtype=F64)
    ddim = diffusers.DDIMScheduler.from_config(
        train.config, set_alpha_to_one=True, timestep_spacing="trailing"
    )
    ddim.set_timesteps(8)
    first_half = lambda x, k: flow.model(x, k).sample[:, :c]  # noqa: E731
    want = _ddim_reference(lambda x, k: type("O", (), {"sample": first_half(x, k)}), ddim, x_T)
    got = fr.solve(flow, fr.Euler(), x_T, grid=flow.grid_from_scheduler(ddim)).x
    assert float((got - want).abs().max() / want.abs().max()) <= 1e-5
    # the same network without the split is refused at its first evaluation, naming the shapes
    plain = fr.DiffusionFlow(flow.model, alphas_cumprod=flow.alphas_cumprod, prediction_type=ptype)
    with pytest.raises(fr.PredictorOutputError, match="shape"):
        fr.solve(plain, fr.Euler(), x_T, steps=2)
    # and a split asked of a model whose output has the input's channels is refused too
    single = _tiny_unet(3, out_channels=c, in_channels=c).double()
    wrong = fr.DiffusionFlow(
        single, alphas_cumprod=flow.alphas_cumprod, prediction_type=ptype, learned_variance=True
    )
    with pytest.raises(fr.PredictorOutputError, match="twice"):
        fr.solve(wrong, fr.Euler(), x_T, steps=2)
    with pytest.raises(fr.ConfigError, match="learned_variance"):
        fr.DiffusionFlow(single, alphas_cumprod=flow.alphas_cumprod, learned_variance="yes")
    # a network with the input's channels keeps its whole output
    assert not fr.DiffusionFlow.from_diffusers(single, train, dtype=F64).learned_variance


def test_a_text_conditioned_unet_with_learned_variance_loads_from_a_pipeline_folder(tmp_path):
    """DeepFloyd IF's kind of network: a ``UNet2DConditionModel`` (cross-attention on
    ``encoder_hidden_states``) with a learned variance, in a pipeline folder; Euler on DDIM's grid
    reproduces DDIM driven by its prediction half with the same embeddings, row by row."""
    torch.manual_seed(4)
    net = diffusers.UNet2DConditionModel(
        sample_size=8,
        in_channels=1,
        out_channels=2,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        norm_num_groups=4,
        cross_attention_dim=8,
        attention_head_dim=2,
    )
    train = diffusers.DDPMScheduler(
        num_train_timesteps=1000, variance_type="learned_range", clip_sample=False
    )
    diffusers.DDPMPipeline(unet=net, scheduler=train).save_pretrained(tmp_path)
    emb = torch.randn(2, 3, 8, generator=torch.Generator().manual_seed(2), dtype=F64)
    flow = fr.DiffusionFlow.from_diffusers(
        str(tmp_path), dtype=F64, cond={"encoder_hidden_states": emb}
    )
    assert flow.learned_variance
    ddim = diffusers.DDIMScheduler.from_config(
        train.config, set_alpha_to_one=True, timestep_spacing="trailing"
    )
    ddim.set_timesteps(8)
    x_T = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1), dtype=F64)

    def prediction(x, k):
        out = flow.model(x, k, encoder_hidden_states=emb).sample[:, :1]
        return type("O", (), {"sample": out})

    want = _ddim_reference(prediction, ddim, x_T)
    got = fr.solve(flow, fr.Euler(), x_T, grid=flow.grid_from_scheduler(ddim)).x
    assert float((got - want).abs().max() / want.abs().max()) <= 1e-5


def test_pipeline_folder_and_objects(tmp_path):
    scheduler = diffusers.DDPMScheduler(num_train_timesteps=500, prediction_type="v_prediction")
    pipe = diffusers.DDPMPipeline(unet=_tiny_unet(), scheduler=scheduler)
    pipe.save_pretrained(tmp_path / "pipe")
    flow = fr.DiffusionFlow.from_diffusers(tmp_path / "pipe")
    assert flow.prediction_type == "v_prediction" and flow.num_train_timesteps == 500
    torch.testing.assert_close(flow.alphas_cumprod, scheduler.alphas_cumprod.to(F64))
    unet_only = fr.DiffusionFlow.from_diffusers(tmp_path / "pipe" / "unet")  # ../scheduler
    torch.testing.assert_close(unet_only.alphas_cumprod, flow.alphas_cumprod)
    from_objects = fr.DiffusionFlow.from_diffusers(pipe)
    assert from_objects.model is pipe.unet
    by_config = fr.DiffusionFlow.from_diffusers(
        _tiny_unet(), dict(scheduler.config), prediction_type="epsilon"
    )
    assert by_config.prediction_type == "epsilon"
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    assert fr.solve(flow, fr.Heun(), x, steps=3).x.shape == x.shape


def test_loading_errors_are_typed_and_never_download(tmp_path):
    with pytest.raises(ConfigError, match="never downloads") as err:
        fr.DiffusionFlow.from_diffusers("google/ddpm-cifar10-32")
    assert "google/ddpm-cifar10-32" in str(err.value)
    with pytest.raises(ConfigError, match="no scheduler found"):
        fr.DiffusionFlow.from_diffusers(_tiny_unet())
    _tiny_unet().save_pretrained(tmp_path / "bare")
    with pytest.raises(ConfigError, match="no scheduler found"):
        fr.DiffusionFlow.from_diffusers(tmp_path / "bare")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="not a diffusers model folder"):
        fr.DiffusionFlow.from_diffusers(tmp_path / "empty")


def test_grid_from_scheduler_refuses_what_it_cannot_reproduce():
    train = diffusers.DDPMScheduler(num_train_timesteps=1000, clip_sample=False)
    flow = fr.DiffusionFlow.from_diffusers(lambda x, k: x, train)
    ddim = diffusers.DDIMScheduler.from_config(train.config, timestep_spacing="trailing")
    with pytest.raises(ConfigError, match="set_timesteps"):
        flow.grid_from_scheduler(diffusers.DDIMScheduler.from_config(train.config))
    ddim.set_timesteps(3)  # 999 → 666 by DDIM's rule, then it restarts at 332 (not 333)
    with pytest.raises(ConfigError, match="no single grid"):
        flow.grid_from_scheduler(ddim)
    assert flow.grid_from_scheduler(ddim, check=False).numel() == 4
    other = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear")
    other.set_timesteps(10)
    with pytest.raises(ConfigError, match="differs from the flow's"):
        flow.grid_from_scheduler(other)


def test_missing_diffusers_names_the_extra(monkeypatch, tmp_path):
    _tiny_unet().save_pretrained(tmp_path)
    diffusers.DDPMScheduler().save_pretrained(tmp_path)
    monkeypatch.setitem(sys.modules, "diffusers", None)  # import diffusers -> ImportError
    with pytest.raises(MissingDependencyError, match=r"flowrestore\[diffusers\]"):
        fr.DiffusionFlow.from_diffusers(tmp_path)
    with pytest.raises(ImportError):  # also an ImportError
        fr.DiffusionFlow.from_diffusers(tmp_path)


def test_flowrestore_imports_without_diffusers():
    code = (
        "import sys; sys.modules['diffusers'] = None\n"
        "import torch, flowrestore as fr\n"
        "from flowrestore.oracles.diffusion import linear_alphas_cumprod as lin\n"
        "flow = fr.DiffusionFlow(lambda x, k: 0 * x, alphas_cumprod=lin())\n"
        "print(fr.solve(flow, fr.Euler(), torch.ones(1, 2), steps=2).x.shape)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "torch.Size([1, 2])" in out.stdout


def _readme_block(heading: str) -> str:
    """The first python block of README.md after ``heading``."""
    import pathlib
    import re

    text = (pathlib.Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text[text.index(heading) :]
    return re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)


def _pipeline_folder(root, ptype):
    """A tiny DDPM pipeline saved as ``root/models/ddpm-faces``; returns its scheduler."""
    scheduler = diffusers.DDPMScheduler(num_train_timesteps=1000, prediction_type=ptype)
    pipe = diffusers.DDPMPipeline(unet=_tiny_unet(), scheduler=scheduler)
    pipe.save_pretrained(root / "models" / "ddpm-faces")
    return scheduler


def test_readme_diffusers_example_runs(tmp_path, monkeypatch):
    """README "Pretrained diffusion models" runs as written on a local pipeline folder."""
    block = _readme_block("### Pretrained diffusion models")
    assert 'from_diffusers("models/ddpm-faces")' in block
    scheduler = _pipeline_folder(tmp_path, "epsilon")
    monkeypatch.chdir(tmp_path)
    unet = _tiny_unet(1)
    ns = {
        "torch": torch,
        "fr": fr,
        "g": torch.Generator().manual_seed(0),
        "my_model": lambda x, k: unet(x, k).sample,
        "abar": scheduler.alphas_cumprod,
    }
    exec(compile(block, "README.md", "exec"), ns)  # noqa: S102
    assert ns["x"].shape == ns["x_T"].shape == (4, 1, 24, 24)
    assert bool(torch.isfinite(ns["x"]).all())
    assert ns["flow"].prediction_type == "v_prediction"


def test_readme_bird_on_diffusion_example_runs(tmp_path, monkeypatch):
    """README "On a pretrained diffusion model" (BIRD) runs on a local pipeline folder (with 2
    iterations instead of 600: the numbers come from examples/bird_diffusion.py)."""
    block = _readme_block("**On a pretrained diffusion model.**")
    assert "iterations=600" in block
    _pipeline_folder(tmp_path, "v_prediction")
    monkeypatch.chdir(tmp_path)
    y = torch.rand(2, 1, 24, 24, generator=torch.Generator().manual_seed(0))
    ns = {"torch": torch, "fr": fr, "g": torch.Generator().manual_seed(1), "y": y}
    exec(compile(block.replace("iterations=600", "iterations=2"), "README.md", "exec"), ns)  # noqa: S102
    res = ns["res"]
    assert res.x.shape == ns["y"].shape and res.iterations == 2
    assert 0.3 <= float(res.params["width"].min()) <= float(res.params["width"].max()) <= 3.0


@pytest.mark.parametrize("name", ["DDIMScheduler", "DDPMScheduler"])
def test_a_config_that_omits_clipping_keys_gets_diffusers_defaults(name):
    """A saved scheduler config may omit ``dynamic_thresholding_ratio``, ``sample_max_value``
    or ``clip_sample_range`` (older diffusers): the clipping read from it is the one diffusers'
    own defaults give."""
    from flowrestore.flows.estimates import ClipSample, DynamicThreshold, clip_from_config

    cls = getattr(diffusers, name)
    for flag, keys in (
        ("thresholding", ("dynamic_thresholding_ratio", "sample_max_value")),
        ("clip_sample", ("clip_sample_range",)),
    ):
        other = "clip_sample" if flag == "thresholding" else "thresholding"
        full = dict(cls(**{flag: True, other: False}).config)
        short = {k: v for k, v in full.items() if k not in keys}
        assert clip_from_config(short) == clip_from_config(full)
        want = (
            DynamicThreshold(full["dynamic_thresholding_ratio"], full["sample_max_value"])
            if flag == "thresholding"
            else ClipSample(full["clip_sample_range"])
        )
        assert clip_from_config(short) == want
