"""FlowMatchingFlow against diffusers' FlowMatchEulerDiscreteScheduler, on local folders only.

A tiny randomly initialised ``UNet2DModel`` (the velocity network) is saved with a
``FlowMatchEulerDiscreteScheduler`` and loaded back by path; ``fr.solve(flow, fr.Euler(), x_1,
grid=flow.grid_from_scheduler(s))`` must reproduce the scheduler's sampling loop (written out
below as diffusers' pipelines run it) to 1e-5 relative in float64, for ``shift`` 1 and 3 and for
dynamic shifting. A tiny ``SD3Transformer2DModel`` checks the keyword-timestep call and the
per-sample conditioning (``encoder_hidden_states``, ``pooled_projections``) of a pipeline folder.
Nothing is downloaded (``local_files_only``).
"""

from __future__ import annotations

import json
import math
import sys

import pytest
import torch

import flowrestore as fr
from flowrestore.errors import ConfigError, MissingDependencyError, ShapeError
from flowrestore.flows.flow_matching import dynamic_shift, flow_matching_config

from .helpers import tiny_unet

diffusers = pytest.importorskip("diffusers")
F64 = torch.float64


def scheduler_loop(call, scheduler, x):
    """diffusers' pipelines: ``v = model(x, t)``; ``x = scheduler.step(v, t, x)``."""
    with torch.no_grad():
        for k in scheduler.timesteps:
            x = scheduler.step(call(x, k), k, x).prev_sample
    return x


def _rel(got, want):
    return float((got - want).abs().max() / want.abs().max())


@pytest.mark.parametrize(("shift", "steps"), [(1.0, 10), (3.0, 8)])
def test_euler_reproduces_flow_match_scheduler(tmp_path, shift, steps):
    sched = diffusers.FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
    tiny_unet().save_pretrained(tmp_path)
    sched.save_pretrained(tmp_path)  # scheduler_config.json beside the model
    flow = fr.FlowMatchingFlow.from_diffusers(str(tmp_path), dtype=F64)
    assert flow.shift == shift and flow.num_train_timesteps == 1000
    x1 = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1), dtype=F64)
    sched.set_timesteps(steps)
    want = scheduler_loop(lambda x, k: flow.model(x, k).sample, sched, x1)
    grid = flow.grid_from_scheduler(sched)
    assert grid.numel() == steps + 1 and float(grid[0]) == 1.0 and float(grid[-1]) == 0.0
    got = fr.solve(flow, fr.Euler(), x1, grid=grid).x
    assert _rel(got, want) <= 1e-5, (shift, _rel(got, want))
    # diffusers' σ grid is uniform in the unshifted time u = σ/(s − (s − 1)σ)
    u = grid[:-1] / (shift - (shift - 1) * grid[:-1])
    assert torch.allclose(u, torch.linspace(1.0, float(u[-1]), steps, dtype=F64), atol=1e-6)


def test_dynamic_shifting_is_respected(tmp_path):
    """Flux-style ``use_dynamic_shifting``: the shift is ``exp(μ)``, ``μ`` from the image size."""
    sched = diffusers.FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True)
    unet = tiny_unet(1)
    seq_len = 1024
    mu = 0.5 + (1.15 - 0.5) * (seq_len - 256) / (4096 - 256)  # diffusers' calculate_shift
    flow = fr.FlowMatchingFlow.from_diffusers(unet.double(), sched, image_seq_len=seq_len)
    assert math.isclose(flow.shift, math.exp(mu), rel_tol=1e-12)
    assert fr.FlowMatchingFlow.from_diffusers(unet, sched, mu=mu).shift == flow.shift
    sched.set_timesteps(6, mu=mu)
    x1 = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(3), dtype=F64)
    want = scheduler_loop(lambda x, k: unet(x, k).sample, sched, x1)
    grid = flow.grid_from_scheduler(sched)
    assert _rel(fr.solve(flow, fr.Euler(), x1, grid=grid).x, want) <= 1e-5
    # the dynamic σ grid is the shift map with s = exp(μ) of the uniform grid from 1 to 1/T
    u = fr.Shifted(shift=flow.shift).unshift(grid[:-1])
    assert torch.allclose(u, torch.linspace(1.0, 1e-3, 6, dtype=F64), atol=1e-6)
    linear = {"use_dynamic_shifting": True, "time_shift_type": "linear"}
    assert dynamic_shift(linear, mu=2.5) == 2.5
    assert dynamic_shift(linear, mu=0.5) == 0.5  # a shift below 1 (toward t = 0) is a shift too
    with pytest.raises(ConfigError, match="mu must be > 0"):
        dynamic_shift(linear, mu=0.0)
    with pytest.raises(ConfigError, match="mu= or image_seq_len="):
        fr.FlowMatchingFlow.from_diffusers(unet, sched)
    with pytest.raises(ConfigError, match="use_dynamic_shifting schedulers only"):
        fr.FlowMatchingFlow.from_diffusers(unet, diffusers.FlowMatchEulerDiscreteScheduler(), mu=1)


def test_dynamic_shift_falls_back_on_diffusers_defaults():
    """A saved config without some keys means diffusers' defaults: the shift of a bare
    ``{"use_dynamic_shifting": True}`` and the timesteps and shift of ``{}`` are the class
    defaults' (read from its signature)."""
    import inspect

    sig = inspect.signature(diffusers.FlowMatchEulerDiscreteScheduler.__init__).parameters
    full = {k: sig[k].default for k in sig if k != "self"}
    for seq_len in (256, 1024, 4096):
        want = dynamic_shift(full, image_seq_len=seq_len)
        assert dynamic_shift({"use_dynamic_shifting": True}, image_seq_len=seq_len) == want
    # likewise the training timesteps and the fixed shift of a bare config
    want = {"num_train_timesteps": full["num_train_timesteps"], "shift": float(full["shift"])}
    assert flow_matching_config({}) == want


def _sd3_pipeline_folder(root):
    torch.manual_seed(0)
    model = diffusers.SD3Transformer2DModel(
        sample_size=8, patch_size=2, in_channels=4, num_layers=1, attention_head_dim=8,
        num_attention_heads=2, joint_attention_dim=16, caption_projection_dim=16,
        pooled_projection_dim=8, out_channels=4, pos_embed_max_size=16,
    )  # fmt: skip
    model.save_pretrained(root / "transformer")
    sched = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)
    sched.save_pretrained(root / "scheduler")
    index = {"_class_name": "StableDiffusion3Pipeline", "transformer": ["diffusers", "x"]}
    (root / "model_index.json").write_text(json.dumps(index))
    return model.double(), sched


def test_transformer_pipeline_folder_with_conditioning(tmp_path):
    """A transformer's timestep is passed by keyword; ``cond`` reaches it row by row."""
    model, sched = _sd3_pipeline_folder(tmp_path)
    g = torch.Generator().manual_seed(4)
    cond = {
        "encoder_hidden_states": torch.randn(2, 3, 16, generator=g, dtype=F64),
        "pooled_projections": torch.randn(2, 8, generator=g, dtype=F64),
    }
    flow = fr.FlowMatchingFlow.from_diffusers(tmp_path, dtype=F64, cond=cond)
    assert flow.shift == 3.0 and flow.network is not None
    x1 = torch.randn(2, 4, 8, 8, generator=g, dtype=F64)
    sched.set_timesteps(5)
    want = scheduler_loop(lambda x, k: model(x, timestep=k.expand(2), **cond).sample, sched, x1)
    got = fr.solve(flow, fr.Euler(), x1, grid=flow.grid_from_scheduler(sched)).x
    assert _rel(got, want) <= 1e-5
    # refused before any evaluation (the flow's per-sample fields are checked against x_start)
    with pytest.raises(ShapeError, match=r"encoder_hidden_states.*batch size 1.*\(2, 3, 16\)"):
        fr.solve(flow, fr.Euler(), x1[:1], steps=2)
    with pytest.raises(ShapeError, match="encoder_hidden_states.*2 rows.*evaluated on 1"):
        flow.denoise(torch.ones(1, dtype=F64), x1[:1])  # a direct call is checked too


def test_loading_errors_name_what_is_missing(tmp_path):
    with pytest.raises(ConfigError, match="never downloads") as err:
        fr.FlowMatchingFlow.from_diffusers("stabilityai/stable-diffusion-3-medium")
    assert "stabilityai/stable-diffusion-3-medium" in str(err.value)
    tiny_unet().save_pretrained(tmp_path / "bare")
    with pytest.raises(ConfigError, match="no scheduler found"):
        fr.FlowMatchingFlow.from_diffusers(tmp_path / "bare")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="not a diffusers model folder"):
        fr.FlowMatchingFlow.from_diffusers(tmp_path / "empty")
    (tmp_path / "bare" / "diffusion_pytorch_model.safetensors").unlink()
    diffusers.FlowMatchEulerDiscreteScheduler().save_pretrained(tmp_path / "bare")
    with pytest.raises(ConfigError, match="could not load UNet2DModel"):
        fr.FlowMatchingFlow.from_diffusers(tmp_path / "bare")
    with pytest.raises(ConfigError, match="needs a FlowMatchEulerDiscreteScheduler"):
        fr.FlowMatchingFlow.from_diffusers(tiny_unet(), diffusers.DDPMScheduler())
    inverted = diffusers.FlowMatchEulerDiscreteScheduler(invert_sigmas=True)
    with pytest.raises(ConfigError, match="invert_sigmas"):
        fr.FlowMatchingFlow.from_diffusers(tiny_unet(), inverted)
    flow = fr.FlowMatchingFlow.from_diffusers(
        tiny_unet(), dict(diffusers.FlowMatchEulerDiscreteScheduler().config)
    )
    with pytest.raises(ConfigError, match="set_timesteps"):
        flow.grid_from_scheduler(diffusers.FlowMatchEulerDiscreteScheduler())
    stochastic = diffusers.FlowMatchEulerDiscreteScheduler(stochastic_sampling=True)
    stochastic.set_timesteps(4)
    with pytest.raises(ConfigError, match="stochastic_sampling"):
        flow.grid_from_scheduler(stochastic)


def test_missing_diffusers_names_the_extra(monkeypatch, tmp_path):
    tiny_unet().save_pretrained(tmp_path)
    diffusers.FlowMatchEulerDiscreteScheduler().save_pretrained(tmp_path)
    monkeypatch.setitem(sys.modules, "diffusers", None)
    with pytest.raises(MissingDependencyError, match=r"flowrestore\[diffusers\]"):
        fr.FlowMatchingFlow.from_diffusers(tmp_path)
