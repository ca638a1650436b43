"""What a user would pick instead, run side by side with flowrestore in ``benchmarks/fewnfe.py``.

Two ways to drive a peer:

* **On its own defaults** (:func:`diffusers_sample`): a diffusers scheduler built for the model's
  schedule and prediction type, ``set_timesteps(N)`` and the scheduler's own loop
  ``x = sched.step(model(x, t), t, x).prev_sample`` — exactly what a diffusers user runs (DDIM,
  DPM-Solver++ 2M/3M, UniPC-2/3, DEIS-3; ``final_sigmas_type="zero"`` where the scheduler has it;
  DEIS has no such option: its last step stops at the first trained level, ``σ(t = 0)``, not 0).
* **On a given σ grid** (:func:`diffusers_solve`, :func:`ipndm`, :func:`kdiffusion_euler`,
  :func:`kdiffusion_heun`, :func:`kdiffusion_dpmpp_2m`): every residual flow
  ``dx/dσ = (x − D(x, σ))/σ`` (InDI with ``σ = t``, a diffusion model in its scaled state
  ``x̄ = x/√ᾱ`` with ``σ = √((1 − ᾱ)/ᾱ)``; docs/math.md §8) is driven through a denoiser
  ``denoise(σ, x) → D``. diffusers' multistep schedulers work with the VP state ``α x`` (``α =
  1/√(1 + σ²)``): :func:`diffusers_solve` sets their ``sigmas`` to the grid, feeds ``D`` as an
  ``x₀`` prediction and converts the state on the way in and out.

**iPNDM** (:func:`ipndm`) is written here from the paper — Zhang & Chen 2023, "Fast sampling of
diffusion models with exponential integrator" (DEIS), §"improved PNDM": PNDM's linear multistep
on the noise prediction in DDIM's exponential-integrator form, ``x̄_{k+1} = x̄_k + (σ_{k+1} − σ_k)
ε̄_k`` with ``ε̄_k`` the Adams–Bashforth combination of the last noise predictions
``ε = (x̄ − D)/σ`` (fixed-step coefficients up to order 4: ``(3, −1)/2``, ``(23, −16, 5)/12``,
``(55, −59, 37, −9)/24``), and the Runge–Kutta warm start replaced by the lower-order
Adams–Bashforth steps. diffusers' ``IPNDMScheduler`` is a different method (it steps in
Karras' angle ``arctan σ``).

**k-diffusion** (Crowson; its package needs torchvision) is reproduced by its three loops from
``k_diffusion/sampling.py``: ``sample_euler``, ``sample_heun`` (Euler for the last step onto 0) and
``sample_dpmpp_2m``, on ``get_sigmas_karras`` (EDM's ρ = 7 schedule, then 0).

diffusers is a benchmark-only dependency (``pip install -e ".[diffusers]"``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

Denoiser = Callable[[float, Tensor], Tensor]

#: label -> (diffusers scheduler class name, its options), each on its own defaults otherwise
SCHEDULERS = {
    "DDIM (trailing)": ("DDIMScheduler", {"timestep_spacing": "trailing", "clip_sample": False}),
    "DPM-Solver++ 2M": ("DPMSolverMultistepScheduler", {"solver_order": 2}),
    "DPM-Solver++ 3M": ("DPMSolverMultistepScheduler", {"solver_order": 3}),
    "UniPC-2": ("UniPCMultistepScheduler", {"solver_order": 2}),
    "UniPC-3": ("UniPCMultistepScheduler", {"solver_order": 3}),
    "DEIS-3": ("DEISMultistepScheduler", {"solver_order": 3}),
}


def betas_of(alphas_cumprod: Tensor) -> Tensor:
    """The ``β_k = 1 − ᾱ_k/ᾱ_{k−1}`` of a schedule (what a diffusers scheduler is built from)."""
    abar = alphas_cumprod.double()
    return 1 - abar / torch.cat([torch.ones(1, dtype=abar.dtype), abar[:-1]])


def make_scheduler(label: str, alphas_cumprod: Tensor, prediction_type: str, clip_range=None):
    """The diffusers scheduler of ``label`` (:data:`SCHEDULERS`) for this schedule and model.

    ``clip_range``: the checkpoint's ``clip_sample_range`` when its scheduler config clips the
    clean estimate (a trained pixel-space DDPM; ``None``: an exact model, unclipped). Of these
    schedulers only DDIM has ``clip_sample``; a diffusers user gets it from the checkpoint."""
    import diffusers

    name, options = SCHEDULERS[label]
    cls = getattr(diffusers, name)
    if clip_range is not None and "clip_sample" in options:
        options = {**options, "clip_sample": True, "clip_sample_range": float(clip_range)}
    return cls(
        num_train_timesteps=alphas_cumprod.numel(),
        trained_betas=betas_of(alphas_cumprod).tolist(),
        prediction_type=prediction_type,
        **options,
    )


def diffusers_sample(
    label: str, model, x_T: Tensor, steps: int, alphas_cumprod, prediction_type, clip_range=None
):
    """A diffusers user's sampler: scheduler ``label`` on its own defaults (with the checkpoint's
    ``clip_sample``, :func:`make_scheduler`), ``steps`` model calls from ``x_T`` (the model's
    state at the last trained timestep). Returns ``(x_0, NFE)``."""
    sched = make_scheduler(label, alphas_cumprod, prediction_type, clip_range)
    sched.set_timesteps(steps)
    x = x_T
    nfe = 0
    for t in sched.timesteps:
        k = torch.full((x.shape[0],), float(t), dtype=x.dtype)
        out = model(x, k)
        out = getattr(out, "sample", out)
        nfe += 1
        x = sched.step(out.to(x.dtype), t, x).prev_sample.to(x.dtype)
    return x, nfe


#: diffusers' multistep schedulers on a flow-matching velocity model (``use_flow_sigmas=True``)
FLOW_SCHEDULERS = {
    "DPM-Solver++ 2M": ("DPMSolverMultistepScheduler", {"solver_order": 2}),
    "DPM-Solver++ 3M": ("DPMSolverMultistepScheduler", {"solver_order": 3}),
    "UniPC-2": ("UniPCMultistepScheduler", {"solver_order": 2}),
    "UniPC-3": ("UniPCMultistepScheduler", {"solver_order": 3}),
}


def diffusers_flow_sample(label: str, model, x_1: Tensor, steps: int, shift: float, grid=None):
    """A diffusers user's flow-matching sampler: scheduler ``label`` (:data:`FLOW_SCHEDULERS`)
    with ``use_flow_sigmas=True``, ``prediction_type="flow_prediction"`` and the model's shift on
    its own defaults (``set_timesteps(steps)``, final σ = 0), or on ``grid`` (σ's from 1 to 0,
    float64; a start at 1 is moved to ``1 − 10⁻⁶`` as diffusers moves its own);
    ``model(x, timestep)`` the velocity, called at the scheduler's exact ``σ·T`` (its integer
    ``timesteps`` would put the model off the σ the step assumes). Returns ``(x_0, NFE)``."""
    import diffusers

    name, options = FLOW_SCHEDULERS[label]
    sched = getattr(diffusers, name)(
        num_train_timesteps=1000,
        prediction_type="flow_prediction",
        use_flow_sigmas=True,
        flow_shift=shift,
        **options,
    )
    sched.set_timesteps(steps)
    if grid is not None:
        sigmas = torch.as_tensor(grid, dtype=torch.float64).clone()
        if sigmas.shape != (steps + 1,):
            raise ValueError(
                f"grid must hold steps + 1 = {steps + 1} σ's from 1 to 0, got shape "
                f"{tuple(sigmas.shape)}"
            )
        sigmas[0] = min(float(sigmas[0]), 1 - 1e-6)
        sched.sigmas = sigmas
        sched.timesteps = torch.arange(steps, 0, -1) * 10  # labels: the step index drives it
        sched.set_begin_index(0)
    x, nfe = x_1, 0
    for i, t in enumerate(sched.timesteps):
        sigma = float(sched.sigmas[i]) * 1000
        out = model(x, torch.full((x.shape[0],), sigma, dtype=x.dtype))
        nfe += 1
        x = sched.step(getattr(out, "sample", out).to(x.dtype), t, x).prev_sample.to(x.dtype)
    return x, nfe


def diffusers_solve(
    kind: str, order: int, denoise: Denoiser, x: Tensor, sigmas
) -> tuple[Tensor, int]:
    """Run diffusers' ``"dpm++"`` or ``"unipc"`` scheduler of ``order`` on the grid ``sigmas``.

    ``sigmas`` decrease to 0; ``denoise(σ, x)`` is the clean estimate at ``σ`` of the residual-form
    state ``x``. Returns the state at ``σ = 0`` and the number of denoiser evaluations. The
    schedulers' own choices are kept (``lower_order_final``: a first-order last step onto 0 and
    lower orders on the steps just before it). The grid reaches them in float32 (and
    DPM-Solver's step casts the state to float32): agreement with a float64 solve is ~1e-7.
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


#: Adams–Bashforth coefficients for equal steps, newest first (iPNDM's multistep, order 1–4)
AB_COEFFICIENTS = (
    (1.0,),
    (3 / 2, -1 / 2),
    (23 / 12, -16 / 12, 5 / 12),
    (55 / 24, -59 / 24, 37 / 24, -9 / 24),
)


def ipndm(denoise: Denoiser, x: Tensor, sigmas, order: int = 4) -> tuple[Tensor, int]:
    """iPNDM (module docstring): Adams–Bashforth on ``ε = (x − D)/σ`` in the DDIM form, lower
    orders for the first steps; one evaluation per step, none at ``σ = 0``."""
    grid = [float(s) for s in sigmas]
    eps: list[Tensor] = []
    for s, s_next in zip(grid[:-1], grid[1:], strict=True):
        eps.insert(0, (x - denoise(s, x)) / s)
        k = min(order, len(eps))
        combo = sum(c * e for c, e in zip(AB_COEFFICIENTS[k - 1], eps, strict=False))
        x = x + (s_next - s) * combo
        del eps[order - 1 :]
    return x, len(grid) - 1


def kdiffusion_euler(denoise: Denoiser, x: Tensor, sigmas) -> tuple[Tensor, int]:
    """k-diffusion's ``sample_euler`` (no churn): ``x ← x + (σ' − σ)(x − D)/σ``."""
    grid = [float(s) for s in sigmas]
    for s, s_next in zip(grid[:-1], grid[1:], strict=True):
        x = x + (s_next - s) * (x - denoise(s, x)) / s
    return x, len(grid) - 1


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


def kdiffusion_dpmpp_2m(denoise: Denoiser, x: Tensor, sigmas) -> tuple[Tensor, int]:
    """k-diffusion's ``sample_dpmpp_2m``: DPM-Solver++(2M) in ``λ = −log σ``, first order for the
    first step and the step onto ``σ = 0``."""
    grid = [float(s) for s in sigmas]
    old = None
    for i, (s, s_next) in enumerate(zip(grid[:-1], grid[1:], strict=True)):
        d = denoise(s, x)
        if old is None or s_next == 0:
            x = (s_next / s) * x - math.expm1(-_h(s, s_next)) * d
        else:
            r = _h(grid[i - 1], s) / _h(s, s_next)
            x = (s_next / s) * x - math.expm1(-_h(s, s_next)) * (
                (1 + 1 / (2 * r)) * d - old / (2 * r)
            )
        old = d
    return x, len(grid) - 1


def _h(s: float, s_next: float) -> float:
    """``λ(σ') − λ(σ)`` with ``λ = −log σ`` (``∞`` onto 0)."""
    return math.inf if s_next == 0 else math.log(s / s_next)


def karras_sigmas(n: int, sigma_min: float = 0.002, sigma_max: float = 1.0, rho: float = 7.0):
    """EDM's σ schedule ``(σ_max^{1/ρ} + k/(n−1) (σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ``, then 0
    (k-diffusion's ``get_sigmas_karras``): ``n`` steps."""
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    s = (hi + ramp * (lo - hi)) ** rho
    return torch.cat([s, torch.zeros(1, dtype=torch.float64)])
