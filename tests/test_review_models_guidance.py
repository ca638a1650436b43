"""Classifier-free guidance weights given as numpy scalars (review finding: np.float32(2.0), e.g.
read from a config array, was an ArgumentTypeError "guidance_scale must be a real number")."""

import numpy as np
import pytest
import torch

import flowrestore as fr
from flowrestore.errors import ArgumentTypeError


def _model(x, sigma, label):
    return x * 0.25 / (0.25 + sigma.reshape(-1, 1) ** 2) + label.reshape(-1, 1)


@pytest.mark.parametrize("scale", [np.float32(2.0), np.float64(2.0), np.int64(2)])
def test_numpy_guidance_scale_equals_python_float(scale):
    kw = {"cond": {"label": torch.ones(2)}, "uncond": {"label": torch.zeros(2)}}
    ref = fr.DenoiserFlow(_model, sigma_max=80.0, guidance_scale=2.0, **kw)
    flow = fr.DenoiserFlow(
        _model, sigma_max=80.0, guidance_scale=scale, guidance_rescale=np.float32(0.0), **kw
    )
    assert flow.guidance_scale == 2.0 and type(flow.guidance_scale) is float
    x = 80.0 * torch.randn(2, 4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(
        fr.solve(flow, fr.Euler(), x, steps=3).x, fr.solve(ref, fr.Euler(), x, steps=3).x
    )


def test_non_numbers_still_refused():
    for bad in ("2", True, torch.tensor(2.0)):
        with pytest.raises(ArgumentTypeError, match="guidance_scale"):
            fr.DenoiserFlow(_model, sigma_max=80.0, guidance_scale=bad)
