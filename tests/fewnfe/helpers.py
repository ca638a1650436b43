"""Problems shared by the few-step tests (issue 16): exact diffusion models of stiff Gaussian priors
under DDPM's linear schedule and the cosine schedule (and both rescaled to zero terminal SNR),
and InDI's Gaussian oracle.

Ground truth is closed form (docs/math.md §2a, §8); schedules are computed here independently of
the package.
"""

from __future__ import annotations

import numpy as np
import torch

import flowrestore as fr
from flowrestore.oracles.diffusion import GaussianDiffusionOracle

F64 = torch.float64


def linear_abar(T: int = 1000) -> torch.Tensor:
    """DDPM's linear β schedule, ``ᾱ_k = Π (1 − β_j)``, β from 1e-4 to 0.02."""
    return torch.cumprod(1 - torch.linspace(1e-4, 0.02, T, dtype=F64), 0)


def cosine_abar(T: int = 1000, s: float = 0.008) -> torch.Tensor:
    """Nichol & Dhariwal's cosine schedule, β clipped at 0.999 (``σ_max ≈ 2·10⁴``)."""
    f = lambda u: np.cos((u / T + s) / (1 + s) * np.pi / 2) ** 2  # noqa: E731
    betas = np.minimum(1 - f(np.arange(1, T + 1)) / f(np.arange(T)), 0.999)
    return torch.from_numpy(np.cumprod(1 - betas))


def zsnr_abar(abar: torch.Tensor) -> torch.Tensor:
    """Lin et al.'s zero-terminal-SNR rescaling (their Algorithm 1): ``√ᾱ`` shifted so that its
    last value is 0 and scaled so that its first is kept; ``ᾱ_{T−1} = 0`` exactly."""
    a = abar.sqrt()
    out = ((a - a[-1]) * a[0] / (a[0] - a[-1])) ** 2
    out[-1] = 0.0
    return out


def diffusion_problem(schedule="linear", ptype="epsilon", seed=0, dim=32, batch=8, std=None):
    """A stiff Gaussian prior (std in [0.05, 1] unless ``std`` is given), its exact model, the
    flow, noises ``x_T`` and the closed-form probability-flow answer. ``schedule``: ``"linear"``,
    ``"cosine"``, ``"scaled_linear"``, or one with ``"-zsnr"`` (rescaled to zero terminal SNR)."""
    g = torch.Generator().manual_seed(seed)
    c = 0.5 * torch.randn(dim, generator=g, dtype=F64)
    sc = 0.05 + 0.95 * torch.rand(dim, generator=g, dtype=F64) if std is None else std
    if schedule.startswith("scaled_linear"):  # Stable Diffusion's: σ_max ≈ 14.6, below DDPM's
        abar = torch.cumprod(1 - torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=F64) ** 2, 0)
    else:
        abar = linear_abar() if schedule.startswith("linear") else cosine_abar()
    abar = zsnr_abar(abar) if schedule.endswith("-zsnr") else abar
    oracle = GaussianDiffusionOracle(mean=c, std=sc, alphas_cumprod=abar, prediction_type=ptype)
    flow = fr.DiffusionFlow(oracle, alphas_cumprod=abar, prediction_type=ptype)
    x_T = oracle.sample_latent(batch, torch.Generator().manual_seed(seed + 1))
    return oracle, flow, x_T, oracle.exact_map(x_T)


def indi_problem(seed=0, dim=64, batch=8):
    """InDI's Gaussian denoising oracle (docs/math.md §2a): observations and the exact x(0)."""
    g = torch.Generator().manual_seed(seed)
    std = 0.5 + torch.rand(dim, generator=g, dtype=F64)
    mean = torch.randn(dim, generator=g, dtype=F64)
    oracle = fr.oracles.GaussianOracle(mean=mean, std=std, noise_std=0.8)
    _, y = oracle.sample(batch, generator=g)
    return oracle, fr.InDIFlow(oracle.posterior_mean), y, oracle.ode_solution(y, 0.0)


def rel(x: torch.Tensor, ref: torch.Tensor) -> float:
    """Worst per-sample relative error."""
    num = (x - ref).flatten(1).norm(dim=1)
    return float((num / ref.flatten(1).norm(dim=1)).max())


def fit_slope(levels, errs, floor: float) -> float:
    """Least-squares slope of log(err) against log(1/N) over the levels above ``floor``."""
    e = np.asarray(errs, dtype=float)
    keep = e > floor
    if keep.sum() < 4:
        raise AssertionError(f"fewer than 4 levels above round-off {floor:.2e}: {e}")
    h = 1.0 / np.asarray(levels, dtype=float)
    return float(np.polyfit(np.log(h[keep]), np.log(e[keep]), 1)[0])
