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
