"""Shared problems for tests/guided: operators with a closed-form SVD, dense matrices of operators,
and a linear-Gaussian problem with the exact model flows of its prior (docs/math.md §10)."""

from __future__ import annotations

import torch

import flowrestore as fr
from flowrestore.degradations import Blur, Downsample, GaussianBlur, Inpainting
from flowrestore.oracles import (
    GaussianDenoiserOracle,
    GaussianDiffusionOracle,
    GaussianFlowMatchingOracle,
    LinearGaussianPosterior,
)
from flowrestore.oracles.diffusion import linear_alphas_cumprod

F64 = torch.float64
SHAPE = (1, 8, 8)


def random_mask(shape=SHAPE, seed=0, keep=0.5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g, dtype=F64) < keep).to(F64)


def operators(shape=SHAPE):
    """``name -> operator`` for each family with a closed-form SVD."""
    return {
        "inpainting": Inpainting(random_mask(shape)),
        "downsample": Downsample(2),
        "blur": GaussianBlur(1.0, kernel_size=5, padding="circular"),
    }


def skewed_blur(shape=SHAPE):
    """A circular blur by an asymmetric 3×5 kernel (it tells correlation from convolution)."""
    k = torch.rand(3, 5, generator=torch.Generator().manual_seed(3), dtype=F64)
    return Blur(k / k.sum(), padding="circular")


def dense(fn, shape) -> torch.Tensor:
    """The matrix of a linear map on images of ``shape`` (columns: images of basis vectors)."""
    n = int(torch.tensor(shape).prod())
    basis = torch.eye(n, dtype=F64).reshape(n, *shape)
    return fn(basis).reshape(n, -1).T


def posterior(name: str, operator, *, mean, std, noise_std, shape=SHAPE):
    """The closed-form posterior of ``N(mean, std²)`` under ``operator`` (its oracle form)."""
    if name == "inpainting":
        return LinearGaussianPosterior.masked(
            mean=mean, std=std, mask=operator.mask, noise_std=noise_std, event_shape=shape
        )
    if name == "downsample":
        return LinearGaussianPosterior.block_average(
            mean=mean, std=std, factor=operator.factor, noise_std=noise_std, event_shape=shape
        )
    kernel = operator.kernel if isinstance(operator, Blur) else operator.kernel(dtype=F64)
    kernel = kernel if kernel.dim() == 2 else kernel[:, None] * kernel[None, :]
    return LinearGaussianPosterior.circular_blur(
        mean=mean, std=std, kernel=kernel, noise_std=noise_std, event_shape=shape
    )


def prior(name: str, shape=SHAPE, seed=0):
    """A prior the posterior oracle accepts for ``name``: per-pixel std (inpainting), std constant
    on 2×2 blocks (downsampling), one std (blur); random means."""
    g = torch.Generator().manual_seed(seed)
    mean = 0.5 * torch.randn(shape, generator=g, dtype=F64)
    if name == "inpainting":  # (any other name: a circular blur)
        std = 0.2 + 0.6 * torch.rand(shape, generator=g, dtype=F64)
    elif name == "downsample":
        blocks = 0.2 + 0.6 * torch.rand(shape[0], shape[1] // 2, shape[2] // 2, generator=g)
        std = blocks.to(F64).repeat_interleave(2, -2).repeat_interleave(2, -1)
    else:
        std = torch.tensor(0.5, dtype=F64)
    return mean, std


def model_flows(mean, std, shape=SHAPE, wrap=lambda name, model: model):
    """The exact model flows of ``N(mean, std²)``: diffusion (ε, linear schedule), flow
    matching and EDM denoiser (σ_max = 80); ``wrap(name, model)`` may wrap each model."""
    std = std.expand(shape) if std.dim() == 0 else std
    abar = linear_alphas_cumprod()
    diff = wrap("diffusion", GaussianDiffusionOracle(mean=mean, std=std, alphas_cumprod=abar))
    fm = wrap("flow_matching", GaussianFlowMatchingOracle(mean=mean, std=std))
    den = wrap("denoiser", GaussianDenoiserOracle(mean=mean, std=std))
    return {
        "diffusion": fr.DiffusionFlow(diff, alphas_cumprod=abar),
        "flow_matching": fr.FlowMatchingFlow(fm),
        "denoiser": fr.DenoiserFlow(den, sigma_max=80.0),
    }


def start(model_name: str, n: int, seed: int, shape=SHAPE) -> torch.Tensor:
    """Noise at t = 1 in the model's own coordinates (σ_max·n for the EDM denoiser)."""
    z = torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed), dtype=F64)
    return 80.0 * z if model_name == "denoiser" else z
