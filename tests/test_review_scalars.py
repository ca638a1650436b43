"""Numpy scalars where a config takes a number (a scheduler config read with numpy hands them
over), and bools where a flag is asked for: taken as the Python values they stand for, or refused
by name — never read as something else."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import flowrestore as fr
from flowrestore.errors import ArgumentTypeError

diffusers = pytest.importorskip("diffusers")


def test_flow_matching_takes_a_numpy_timestep_count_as_the_int_it_is():
    seen = []

    def model(x, timestep):
        seen.append(timestep)
        return torch.zeros_like(x)

    flow = fr.FlowMatchingFlow(model, num_train_timesteps=np.int64(500))
    assert flow.num_train_timesteps == 500 and type(flow.num_train_timesteps) is int
    flow.velocity(torch.tensor([0.5]), torch.zeros(1, 2))
    assert float(seen[0][0]) == 250.0  # timestep = σ·T


def test_clip_sample_and_dynamic_threshold_take_numpy_floats():
    clip = fr.ClipSample(np.float32(0.5))
    assert clip.range == 0.5 and type(clip.range) is float
    torch.testing.assert_close(
        clip(torch.tensor([-2.0, 0.25, 2.0])), torch.tensor([-0.5, 0.25, 0.5])
    )
    dyn = fr.DynamicThreshold(ratio=np.float32(0.5), max_value=np.float64(2.0))
    assert dyn.ratio == 0.5 and dyn.max_value == 2.0


@pytest.mark.parametrize("name", ["check", "use_clipped_model_output"])
def test_grid_from_scheduler_flags_must_be_bools(name):
    ddim = diffusers.DDIMScheduler(clip_sample=False)
    ddim.set_timesteps(5)
    flow = fr.DiffusionFlow(lambda x, k: x, alphas_cumprod=ddim.alphas_cumprod)
    with pytest.raises(ArgumentTypeError, match=name):
        flow.grid_from_scheduler(ddim, **{name: "no"})
    assert flow.grid_from_scheduler(ddim, **{name: False}).numel() == 6
