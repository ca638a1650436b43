"""README "Flow-matching and EDM models, and guided restoration" runs as written, on a local folder
with a tiny random velocity U-Net and its flow-matching scheduler (nothing is downloaded)."""

from __future__ import annotations

import pathlib
import re

import pytest
import torch

import flowrestore as fr

diffusers = pytest.importorskip("diffusers")


def _block(heading: str) -> str:
    text = (pathlib.Path(__file__).resolve().parents[2] / "README.md").read_text()
    return re.search(r"```python\n(.*?)```", text[text.index(heading) :], flags=re.S).group(1)


def test_readme_models_and_guided_example_runs(tmp_path, monkeypatch):
    block = _block("### Flow-matching and EDM models, and guided restoration")
    assert 'from_diffusers("models/rf-faces")' in block
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(
        sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16),
        layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4,
    )  # fmt: skip
    folder = tmp_path / "models" / "rf-faces"
    unet.save_pretrained(folder / "unet")
    diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0).save_pretrained(folder / "scheduler")
    (folder / "model_index.json").write_text('{"_class_name": "FlowMatchPipeline"}')
    monkeypatch.chdir(tmp_path)
    g = torch.Generator().manual_seed(1)
    mask = (torch.rand(1, 8, 8, generator=g) < 0.5).float()
    ns = {
        "torch": torch,
        "fr": fr,
        "g": g,
        "my_denoiser": lambda x, sigma: x / (1 + sigma.reshape(-1, 1, 1, 1) ** 2),
        "mask": mask,
        "y": mask * torch.rand(4, 1, 8, 8, generator=g),
    }
    exec(compile(block, "README.md", "exec"), ns)  # noqa: S102
    assert ns["flow"].shift == 3.0
    assert ns["x"].shape == (4, 1, 8, 8) and bool(torch.isfinite(ns["x"]).all())
    assert ns["bird"].latent_std == 80.0 and ns["res"].x.shape == (4, 1, 8, 8)
