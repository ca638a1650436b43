"""The discrete updates of the guided-restoration baselines, as solvers of the one loop.

All step a guided flow (:mod:`flowrestore.flows.guided`) from ``t`` to ``s = t + h`` in its model's
state ``x_t = α_t x_0 + σ_t ε``, with ``ε̂ = (x_t − α_t x̂_0)/σ_t`` the noise a clean estimate
``x̂_0`` implies, and take their own last step onto ``t = 0`` (every evaluation is at a step's
start). Each records ``‖y − A x̂_0‖`` per step as ``Solution.records["data_consistency"]``.

* :class:`DPSStep` — diffusion posterior sampling (Chung, Kim, Mccann, Klasky & Ye, ICLR 2023,
  Algorithm 1): the model's ancestral step ``x'_s = α_s D + √(σ_s² − ς²) ε̂ + ς z`` (``η = 1``: the
  DDPM posterior ``q(x_s | x_t, x_0 = D)``, ``ς² = σ_s² (1 − (α_t σ_s/(α_s σ_t))²)``; ``η = 0``:
  DDIM), then the measurement step ``x_s = x'_s − ζ ∇_{x_t} ‖y − A D(x_t)‖`` — the normalised
  step of the official code (Algorithm 1's ``ζ_i ∇‖y − A D‖²`` with ``ζ_i = ζ/(2‖y − A D‖)``),
  the gradient taken through the model by autograd, in the model's own coordinates (for a
  diffusion model the VP ``x``, so ``ζ`` means what it means in the paper). The norm is each
  sample's own (the official code takes one norm over the whole batch, which ties every
  sample's step size to the others').
* :class:`DDRMStep` — denoising diffusion restoration models (Kawar, Elad, Ermon & Song, NeurIPS
  2022, eqs. 7–8) in the spectral space of ``A = U S Vᵀ``: per coefficient ``i`` with ``x̄_0 =
  Vᵀ D``, ``ȳ = S⁺ Uᵀ y``, the unobserved ones (``s_i = 0``) take DDIM-η's step
  ``α_s x̄_0 + √(1 − η²) σ_s ε̂ + η σ_s z``; observed ones whose target noise level is below the
  measurement's (``σ_s/α_s < σ_y/s_i``) move toward ``ȳ``,
  ``α_s x̄_0 + √(1 − η²) σ_s (ȳ − x̄_0) s_i/σ_y + η σ_s z``; the others are drawn around the
  measurement, ``α_s ((1 − η_b) x̄_0 + η_b ȳ) + √(σ_s² − α_s² η_b² σ_y²/s_i²) z``. The start
  (eq. 7) replaces the observed coefficients with ``σ_1/α_1 ≥ σ_y/s_i`` by
  ``α_1 ȳ + √(σ_1² − α_1² σ_y²/s_i²) z``.
* :class:`DiffPIRStep` — DiffPIR's sampling step (Zhu et al., CVPR 2023, Algorithm 1) on a
  :class:`~flowrestore.DiffPIRFlow`: ``x_s = α_s x̂_0 + σ_s (√(1 − ζ) ε̂ + √ζ z)`` with ``x̂_0`` the
  flow's proximal estimate; ``ζ = 0`` is exactly Euler on the flow (tested).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from flowrestore.errors import ConfigError, IncompatibleSolverError, describe, finite_number
from flowrestore.flows.base import Flow, bcast
from flowrestore.flows.guided import DiffPIRFlow, GuidedFlow
from flowrestore.flows.spectral import nonzero
from flowrestore.solvers.base import Context, Solver, StepResult
from flowrestore.solvers.dirac import CONSISTENCY_RECORD

__all__ = ["DDRMStep", "DPSStep", "DiffPIRStep"]


def _fraction(value, name: str) -> float:
    """``value`` as a float in ``[0, 1]`` (numpy scalars welcome), else a :class:`ConfigError`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
        raise ConfigError(f"{name} must be a number in [0, 1], got {describe(value)}")
    return float(value)


def _coeffs(flow: GuidedFlow, t: Tensor, s: Tensor, x: Tensor):
    """``(α_t, σ_t, α_s, σ_s)`` broadcastable against ``x``."""
    (at, st), (as_, ss) = flow.coefficients(t), flow.coefficients(s)
    return bcast(at, x), bcast(st, x), bcast(as_, x), bcast(ss, x)


def ancestral(x, x0, coeffs, eta: float, z):
    """DDIM-η's step ``α_s x_0 + √(σ_s² − ς²) ε̂ + ς z``, ``ς = η σ_s √(1 − (α_t σ_s/(α_s σ_t))²)``
    (``η = 1``: the DDPM posterior; ``η = 0``: deterministic, DDIM)."""
    at, st, as_, ss = coeffs
    eps = (x - at * x0) / st
    if eta == 0:
        return as_ * x0 + ss * eps
    ratio = (at * ss / (as_ * st)).clamp(max=1.0)
    var = (eta * ss) ** 2 * (1 - ratio * ratio)
    return as_ * x0 + (ss * ss - var).clamp_min(0).sqrt() * eps + var.sqrt() * z


class _GuidedStep(Solver):
    """Shared declarations: one evaluation at the step's start, its own step onto 0."""

    flow_types: ClassVar[tuple[type, ...]] = (GuidedFlow,)
    stage_fractions: ClassVar[tuple[float, ...]] = (0.0,)
    per_sample_steps: ClassVar[bool] = False
    order: ClassVar[float] = 1.0

    def check_flow(self, flow: Flow) -> None:
        """A :class:`~flowrestore.GuidedFlow`; DPS and DDRM refuse a
        :class:`~flowrestore.DiffPIRFlow`, whose proximal step they would silently ignore (they
        step with the model's own clean estimate)."""
        super().check_flow(flow)
        if isinstance(flow, DiffPIRFlow) and not isinstance(self, DiffPIRStep):
            raise IncompatibleSolverError(
                f"{type(self).__name__} steps a GuidedFlow with the model's own clean estimate, "
                f"so DiffPIRFlow's proximal data step (lam={flow.lam:g}) would be ignored: step "
                f"the DiffPIRFlow with {', '.join(DiffPIRFlow.suggested_solvers)}, or use "
                f"{type(self).__name__} on fr.GuidedFlow(model, operator, measurement, "
                f"noise_std=...), got {flow!r}"
            )

    def _record(self, flow: GuidedFlow, x0: Tensor, y: Tensor, ctx: Context, norm=None) -> None:
        norm = flow.residual_norm(x0, y) if norm is None else norm
        ctx.record(CONSISTENCY_RECORD, norm.detach())


@dataclass(repr=False)
class DPSStep(_GuidedStep):
    """DPS's step on a :class:`~flowrestore.GuidedFlow` (module docstring).

    Args:
        zeta: the step size ``ζ ≥ 0`` of the normalised measurement step (the official code's
            ``scale``, for images in ``[−1, 1]``: its FFHQ configurations take 0.5 for
            inpainting and 0.3 for super-resolution and deblurring).
        eta: ``1`` (default) the paper's DDPM ancestral step; ``0`` deterministic DDIM.

    In ``solve(..., differentiable=True)`` the measurement gradient is itself differentiated
    (a second-order backward through the model), so gradients with respect to the start, the
    operator's or the model's parameters are those of the discrete solve.
    """

    zeta: float = 1.0
    eta: float = 1.0

    def __post_init__(self):
        self.zeta = finite_number("zeta", self.zeta, allow_zero=True)
        self.eta = _fraction(self.eta, "eta")
        self.stochastic = self.eta > 0

    def noise_draws(self) -> tuple[str, ...]:
        """One normal per step for the ancestral noise (none with ``eta=0``)."""
        return ("normal",) if self.eta > 0 else ()

    def init(self, flow: Flow, t_start: Tensor, x_start: Tensor, ctx: Context):
        """Refuse, before any evaluation, a solve under ``torch.inference_mode()``: the
        measurement gradient needs autograd, which inference mode turns off for good. A start
        made under inference mode (outside it now) is copied: it could not require grad."""
        if torch.is_inference_mode_enabled():
            raise ConfigError(
                "DPSStep takes the gradient of ||y - A D(x_t)|| through the model by autograd, "
                "which torch.inference_mode() disables: run the solve outside inference mode "
                "(torch.no_grad() is fine: the step turns grad on for its gradient only)"
            )
        return (x_start.clone() if x_start.is_inference() else x_start), None

    def step(self, flow, t, x, h, state, ctx) -> StepResult:
        """One DPS step from ``t`` to ``t + h``: ancestral step, then the gradient step."""
        y = flow.measurement_for(x)
        s = t + h
        # solve(differentiable=True) runs with grad enabled (else torch.no_grad): the measurement
        # gradient is then itself differentiated (create_graph), so the solve's gradient, with
        # respect to x or the model's and operator's parameters, is the discrete solve's
        outer = torch.is_grad_enabled()
        with torch.enable_grad():
            xg = x if outer and x.requires_grad else x.detach().requires_grad_(True)
            x0 = flow.model_denoise(t, xg)
            norm = flow.residual_norm(x0, y)
            (grad,) = torch.autograd.grad(norm.sum(), xg, create_graph=outer)
        if not outer:
            x0 = x0.detach()
        z = ctx.noise.normal(x, ctx.index) if self.eta > 0 else None
        x_next = ancestral(x, x0, _coeffs(flow, t, s, x), self.eta, z)
        scale = bcast(flow.input_scale(t) * flow.input_scale(s), x)
        self._record(flow, x0, y, ctx, norm)
        return StepResult(x_next - self.zeta * scale * grad, None, 1)

    def __repr__(self) -> str:
        return f"DPSStep(zeta={self.zeta}, eta={self.eta})"


@dataclass(repr=False)
class DDRMStep(_GuidedStep):
    """DDRM's step on a :class:`~flowrestore.GuidedFlow` whose operator has a closed-form SVD
    (module docstring; refused otherwise before anything is evaluated).

    Args:
        eta: ``η ∈ [0, 1]``, the noise of the unobserved and weakly observed coefficients (paper
            default 0.85).
        eta_b: ``η_b ∈ [0, 1]``, the weight of the measurement on the strongly observed ones
            (paper default 1).
    """

    eta: float = 0.85
    eta_b: float = 1.0
    stochastic = True

    def __post_init__(self):
        self.eta = _fraction(self.eta, "eta")
        self.eta_b = _fraction(self.eta_b, "eta_b")

    def check_flow(self, flow: Flow) -> None:
        """A :class:`~flowrestore.GuidedFlow` whose operator has a closed-form SVD."""
        super().check_flow(flow)
        flow.spectral("DDRM")

    def _parts(self, flow: GuidedFlow, x: Tensor):
        form = flow.spectral("DDRM")
        sv = form.singular_values(x)
        yu = form.project_measurement(flow.measurement_for(x), x)
        ybar = torch.where(sv > 0, yu / nonzero(sv), torch.zeros_like(yu))
        return form, sv, yu, ybar

    def init(self, flow: Flow, t_start: Tensor, x_start: Tensor, ctx: Context):
        """DDRM's start (eq. 7): observed coefficients above the measurement noise are drawn
        around ``ȳ``; the others keep ``x_start``."""
        form, sv, _, ybar = self._parts(flow, x_start)
        alpha, sigma = flow.coefficients(t_start)
        z = form.to_spectral(ctx.noise.normal(x_start, ctx.index))
        sy = flow.noise_std
        strong = (sv > 0) & (sv * sigma >= sy * alpha)
        std = (sigma**2 - (alpha * sy / nonzero(sv)) ** 2).clamp_min(0).sqrt()
        c = torch.where(strong, alpha * ybar + std * z, form.to_spectral(x_start))
        return form.from_spectral(c), None

    def noise_draws(self) -> tuple[str, ...]:
        """One normal per step (eq. 8's ``z``; the start's, eq. 7, is drawn in :meth:`init`)."""
        return ("normal",)

    def step(self, flow, t, x, h, state, ctx) -> StepResult:
        """One DDRM step from ``t`` to ``t + h`` (eq. 8)."""
        form, sv, yu, ybar = self._parts(flow, x)
        x0 = flow.model_denoise(t, x)
        at, st, as_, ss = _coeffs(flow, t, t + h, x)
        c, d = form.to_spectral(x), form.to_spectral(x0)
        z = form.to_spectral(ctx.noise.normal(x, ctx.index))
        sy = flow.noise_std
        keep, noise = math.sqrt(1 - self.eta**2), self.eta * ss * z
        unobserved = as_ * d + keep * ss * (c - at * d) / st + noise
        weak = as_ * d + keep * ss * (yu - sv * d) / (sy or 1.0) + noise  # used only if σ_y > 0
        std = ss  # σ_y = 0: exactly σ_s, not √(σ_s² − 0), whose derivative is NaN at σ_s = 0
        if sy > 0:
            std = (ss * ss - (as_ * self.eta_b * sy / nonzero(sv)) ** 2).clamp_min(0).sqrt()
        strong = as_ * ((1 - self.eta_b) * d + self.eta_b * ybar) + std * z
        is_weak = (sv > 0) & (sv * ss < sy * as_)
        c_next = torch.where(sv > 0, torch.where(is_weak, weak, strong), unobserved)
        self._record(flow, x0, flow.measurement_for(x), ctx)
        return StepResult(form.from_spectral(c_next), None, 1)

    def __repr__(self) -> str:
        return f"DDRMStep(eta={self.eta}, eta_b={self.eta_b})"


@dataclass(repr=False)
class DiffPIRStep(_GuidedStep):
    """DiffPIR's re-noising step on a :class:`~flowrestore.DiffPIRFlow` (module docstring).

    Args:
        zeta: ``ζ ∈ [0, 1]``, the fraction of fresh noise (paper: 0.3 for inpainting/deblurring,
            up to 1 for super-resolution); ``ζ = 0`` is Euler on the flow.
    """

    zeta: float = 0.3
    flow_types: ClassVar[tuple[type, ...]] = (DiffPIRFlow,)

    def __post_init__(self):
        self.zeta = _fraction(self.zeta, "zeta")
        self.stochastic = self.zeta > 0

    def noise_draws(self) -> tuple[str, ...]:
        """One normal per step for the fresh noise (none with ``zeta=0``)."""
        return ("normal",) if self.zeta > 0 else ()

    def step(self, flow, t, x, h, state, ctx) -> StepResult:
        """One step from ``t`` to ``t + h`` around the proximal estimate."""
        x0 = flow.denoise(t, x)
        at, st, as_, ss = _coeffs(flow, t, t + h, x)
        eps = (x - at * x0) / st
        if self.zeta > 0:
            z = ctx.noise.normal(x, ctx.index)
            eps = math.sqrt(1 - self.zeta) * eps + math.sqrt(self.zeta) * z
        self._record(flow, x0, flow.measurement_for(x), ctx)
        return StepResult(as_ * x0 + ss * eps, None, 1)

    def __repr__(self) -> str:
        return f"DiffPIRStep(zeta={self.zeta})"
