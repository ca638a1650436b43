"""Shared problems for tests/diffusion: schedules, Gaussian diffusion oracles, order fitting.

Ground truth is closed form only (docs/math.md §8): for ``x_0 ~ N(c, diag σ_c²)`` and
``x̄ = x/√ᾱ = x_0 + σ ε`` the clean estimate is ``D = c + σ_c² (x̄ − c)/(σ_c² + σ²)`` and the
probability-flow solution is ``x̄(σ) = c + √(σ_c² + σ²) z`` with ``z`` constant.
"""

from __future__ import annotations

import numpy as np
import torch

import flowrestore as fr
from flowrestore.oracles.diffusion import GaussianDiffusionOracle, linear_alphas_cumprod

F64 = torch.float64
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


def log_snr(abar: torch.Tensor) -> torch.Tensor:
    """``λ = log(ᾱ/(1 − ᾱ))``, computed here independently of the package."""
    return torch.log(abar / (1 - abar))


def cosine_alphas_cumprod(T: int = 1000, s: float = 0.008) -> torch.Tensor:
    """Nichol & Dhariwal's cosine schedule (betas clipped at 0.999, as diffusers does)."""
    f = lambda u: np.cos((u / T + s) / (1 + s) * np.pi / 2) ** 2  # noqa: E731
    betas = np.minimum(1 - f(np.arange(1, T + 1)) / f(np.arange(T)), 0.999)
    return torch.from_numpy(np.cumprod(1 - betas))


def gaussian_problem(prediction_type="epsilon", dim=48, seed=0, abar=None, std=(0.1, 0.8)):
    """A Gaussian diffusion oracle with random mean and per-coordinate σ_c, and its flow."""
    g = torch.Generator().manual_seed(seed)
    c = 0.5 * torch.randn(dim, generator=g, dtype=F64)
    sc = std[0] + (std[1] - std[0]) * torch.rand(dim, generator=g, dtype=F64)
    abar = linear_alphas_cumprod() if abar is None else abar
    oracle = GaussianDiffusionOracle(
        mean=c, std=sc, alphas_cumprod=abar, prediction_type=prediction_type
    )
    flow = fr.DiffusionFlow(oracle, alphas_cumprod=abar, prediction_type=prediction_type)
    return oracle, flow


def clean_estimate(oracle, xbar: torch.Tensor, sigma) -> torch.Tensor:
    """``E[x_0 | x̄]`` at noise level ``σ`` (scalar or ``[B]``), from the closed form."""
    s = torch.as_tensor(sigma, dtype=xbar.dtype).reshape(-1, *([1] * (xbar.dim() - 1)))
    c, var = oracle.mean, oracle.std**2
    return c + var * (xbar - c) / (var + s * s)


def fit_order(levels, errs, floor: float) -> float:
    """Least-squares slope of log(err) vs log(1/N) over ≥ 5 levels above the round-off floor."""
    h = 1.0 / np.asarray(levels, dtype=float)
    e = np.asarray(errs, dtype=float)
    keep = e > floor
    if keep.sum() < 5:
        raise AssertionError(f"fewer than 5 levels above round-off {floor:.2e}: errors {e}")
    return float(np.polyfit(np.log(h[keep]), np.log(e[keep]), 1)[0])


def camera_mean(size: int = 32) -> torch.Tensor:
    """The cameraman (skimage.data.camera) around him, block-averaged to ``[1, size, size]``."""
    import skimage.data

    cam = torch.from_numpy(skimage.data.camera().astype(np.float64) / 255.0)
    crop = cam[64:320, 128:384]
    return torch.nn.functional.avg_pool2d(crop[None, None], 256 // size)[0]


def unipc_on_grid(sigmas: torch.Tensor, **config):
    """diffusers' ``UniPCMultistepScheduler(num_train_timesteps=1000, **config)`` set to step
    on ``sigmas`` (float64, decreasing): its step index drives it, the timesteps are labels."""
    import pytest

    diffusers = pytest.importorskip("diffusers")
    sched = diffusers.UniPCMultistepScheduler(num_train_timesteps=1000, **config)
    n = len(sigmas) - 1
    sched.set_timesteps(n)
    sched.sigmas = sigmas.clone()
    sched.timesteps = torch.arange(n, 0, -1) * 10
    sched.set_begin_index(0)
    return sched


def syncs_per_step(flow, solver, grid: torch.Tensor, x: torch.Tensor):
    """Run ``solver`` by hand over ``grid`` from the state ``x``; returns the host syncs of each
    step (counted on CPU with a TorchDispatchMode: the same ops sync on CUDA) and the end state."""
    from syncs import SyncCounter

    from flowrestore.noise import GeneratorNoise
    from flowrestore.solvers import Context

    ctx = Context(noise=GeneratorNoise(torch.Generator().manual_seed(0)))
    x, state = solver.init(flow, grid[0], x, ctx)
    counts = []
    for t, s in zip(grid[:-1], grid[1:], strict=True):
        with SyncCounter() as sc:
            out = solver.step(flow, t, x, s - t, state, ctx)
        x, state = out.x, out.state
        counts.append(sc.count)
    return counts, x
