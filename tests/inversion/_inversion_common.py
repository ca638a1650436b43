"""Shared test problems for tests/inversion: a sharp 32×32 mean image and the generative oracle."""

from __future__ import annotations

import numpy as np
import torch

import flowrestore as fr
from flowrestore.oracles import GaussianGenerativeOracle


def camera_mean(size: int = 32) -> torch.Tensor:
    """The cameraman (skimage.data.camera), 256×256 crop around him, block-averaged to ``size``²."""
    import skimage.data

    cam = torch.from_numpy(skimage.data.camera().astype(np.float64) / 255.0)
    crop = cam[64:320, 128:384]
    return torch.nn.functional.avg_pool2d(crop[None, None], 256 // size)[0]  # [1, size, size]


def camera_oracle(std: float = 0.02, size: int = 32):
    """Gaussian generative oracle N(camera, std²) and its exact InDI flow."""
    oracle = GaussianGenerativeOracle(mean=camera_mean(size), std=std)
    return oracle, fr.InDIFlow(oracle.posterior_mean)


def check_blind_result(res, x_true, y, widths, noise: float) -> None:
    """What BIRD must achieve on a blind Gaussian deblurring oracle problem: each width within
    5 %, the data fitted down to the noise level (RMS residual within 0.8–1.25 σ), the image closer
    to the truth than the observation by half, and the truth's mean level."""
    rel = (res.params["width"] - widths).abs() / widths
    assert (rel < 0.05).all(), res.params["width"]
    assert (res.residual_rms < 1.25 * noise).all(), res.residual_rms
    assert (res.residual_rms > 0.8 * noise).all(), res.residual_rms
    err = (res.x - x_true).flatten(1).square().mean(1).sqrt()
    obs = (y - x_true).flatten(1).square().mean(1).sqrt()
    assert (err < 0.5 * obs).all(), (err, obs)
    assert abs(float(res.x.mean()) - float(x_true.mean())) < 0.01
