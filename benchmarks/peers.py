"""What a user would pick instead, driven on the same residual flow: diffusers' DPM-Solver++ (2M,
3M, data prediction) and UniPC, and a k-diffusion-style Heun sampler.

InDI's ODE ``dx/dt = (x − D(x, t))/t`` is the EDM-form probability-flow ODE with ``σ = t`` and
denoiser ``D = F`` (docs/math.md §8). diffusers' multistep schedulers work internally with
``σ = sqrt((1 − ᾱ)/ᾱ)`` and the VP state ``x_vp = α x`` (``α = 1/sqrt(1 + σ²)``), so they run on
any grid of σ values: :func:`diffusers_solve` sets the scheduler's ``sigmas`` to the grid (ending at
0), feeds the denoiser's output as an ``x₀`` prediction (``prediction_type="sample"``) and converts
the state on the way in and out. The schedulers' own choices are kept (``lower_order_final``, the
first-order last step onto ``σ = 0``; they compute in float32). diffusers is a benchmark-only
dependency (``pip install -e ".[diffusers]"``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

Denoiser = Callable[[float, Tensor], Tensor]


def diffusers_solve(
    kind: str, order: int, denoise: Denoiser, x: Tensor, sigmas
) -> tuple[Tensor, int]:
    """Run diffusers' ``"dpm++"`` or ``"unipc"`` scheduler of ``order`` on the grid ``sigmas``.

    ``sigmas`` decrease to 0; ``denoise(σ, x)`` is the clean estimate at ``σ`` of the residual-form
    state ``x``. Returns the state at ``σ = 0`` and the number of denoiser evaluations.
    """
    from diffusers import DPMSolverMultistepScheduler, UniPCMultistepScheduler

    if kind == "dpm++":
        sched = DPMSolverMultistepScheduler(
            num_train_timesteps=1000,
            prediction_type="sample",
            algorithm_type="dpmsolver++",
            solver_order=order,
        )
    elif kind == "unipc":
        sched = UniPCMultistepScheduler(
            num_train_timesteps=1000, prediction_type="sample", solver_order=order, predict_x0=True
        )
    else:
        raise ValueError(f"kind must be 'dpm++' or 'unipc', got {kind!r}")
    grid = [float(s) for s in sigmas]
    n = len(grid) - 1
    sched.set_timesteps(n)
    sched.sigmas = torch.tensor(grid, dtype=torch.float32)
    sched.timesteps = torch.arange(n, 0, -1) * 10  # distinct labels; the step index drives it
    sched.set_begin_index(0)

    def alpha(s: float) -> float:
        return 1.0 / math.sqrt(1.0 + s * s)

    state = x * alpha(grid[0])
    for i, label in enumerate(sched.timesteps):
        d = denoise(grid[i], state / alpha(grid[i]))
        state = sched.step(d.to(state.dtype), label, state).prev_sample
    return state, n


def kdiffusion_heun(denoise: Denoiser, x: Tensor, sigmas) -> tuple[Tensor, int]:
    """k-diffusion's ``sample_heun`` (Karras et al. 2022, Alg. 1 without churn): Heun steps in σ,
    the last step onto ``σ = 0`` an Euler step. Returns the result and the evaluations."""
    grid = [float(s) for s in sigmas]
    nfe = 0
    for s, s_next in zip(grid[:-1], grid[1:], strict=True):
        d = (x - denoise(s, x)) / s
        nfe += 1
        x_next = x + (s_next - s) * d
        if s_next > 0:
            d2 = (x_next - denoise(s_next, x_next)) / s_next
            nfe += 1
            x_next = x + (s_next - s) * (d + d2) / 2
        x = x_next
    return x, nfe


def karras_sigmas(n: int, sigma_min: float = 0.002, sigma_max: float = 1.0, rho: float = 7.0):
    """EDM's σ schedule ``(σ_max^{1/ρ} + k/(n−1) (σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ``, then 0."""
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    s = (hi + ramp * (lo - hi)) ** rho
    return torch.cat([s, torch.zeros(1, dtype=torch.float64)])
