"""An EDM / k-diffusion denoiser ``D(x, σ)`` as a residual flow (docs/math.md §9).

EDM (Karras, Aittala, Aila & Laine 2022) and k-diffusion write a diffusion model as a denoiser of
``x = x_0 + σ ε``: ``D(x, σ) ≈ E[x_0 | x]``, with the probability-flow ODE
``dx/dσ = (x − D(x, σ))/σ`` (EDM eq. 1 with ``σ(t) = t`` and its eq. 3 for the score; k-diffusion's
``to_d``).
:class:`DenoiserFlow` is this ODE in the time ``t = σ/σ_max ∈ [0, 1]`` — ``dx/dt = (x − D)/t``,
InDI's residual form, and a :class:`~flowrestore.DiffusionFlow`'s ODE with ``α = 1`` — so Euler
in ``t`` is Euler in ``σ`` (k-diffusion's ``sample_euler``) and every residual-flow solver steps
it. The state is the model's ``x`` itself: a solve starts from ``x_T = σ_max n``, ``n ~ N(0, I)``.

**Default grid and time variable** (issue 16) — those of a diffusion model, chosen by measurement
over EDM's own: ``steps=N`` lays DDIM's quadratic timesteps of DDPM's linear schedule as noise
levels from ``σ_max`` down to ``σ = 0`` (:meth:`flowrestore.DiffusionFlow.default_spacing`,
:func:`~flowrestore.flows.diffusion.reference_levels`, :class:`~flowrestore.grids.NoiseLevels` with
``ρ = 2``), whatever ``σ_min``: the first step ends near the data's scale, and the last positive
point shrinks like ``N^{−2}``. Runge–Kutta stages are reciprocal (``dy/dw = D`` in ``w = 1/σ``:
:mod:`flowrestore.solvers.reciprocal`) and the semi-linear solvers interpolate ``D`` in ``σ``.
Chosen on the validation priors of ``python -m benchmarks.model_grids`` (exact Gaussian denoisers,
std in [0.05, 0.95], ``σ_max = 80``) over the warps ``ρ`` 1.5 and 3 and EDM's grid; the table of
DDPM's levels replaced the VP SDE's (the same law from ``σ_min``'s VP time): on four validation
denoisers (``σ_max`` 20–160) the best default fell behind a peer in 23 of 84 cells with the VP
SDE's levels, 12 with DDPM's (``python -m benchmarks.grid_validation``). On its test priors, which
chose nothing, against EDM's grid with stages in ``σ`` (worst relative error): Euler 0.215 vs 0.388
at 6 evaluations, ``IPNDM()`` 0.0175 vs 0.0773, ``SemiLinearMultistep()`` 0.0201 vs 0.304; Heun,
RK4 and Midpoint are ahead of Euler at equal evaluations at every 3–10 steps (worst error ratio
0.79, 0.41, 0.45; on EDM's grid 8.95, 3.92, 1.02). The price: past ~15 steps the multistep solver
lands from a coarser last point than EDM's ``σ_min`` (50 evaluations: 8.1e-4 vs 1.8e-4): for long
solves pass ``grid=flow.edm_grid(N)``. On priors whose every component is far below the data scale
(std 0.01–0.05) Heun and RK4 remain behind Euler at some step counts (worst ratio 1.43, 1.82; on
EDM's grid 55.8, 33.2).

**EDM's sampler.** ``stages="sigma"`` keeps Runge–Kutta stages in ``σ`` itself, so that Heun on
:meth:`DenoiserFlow.edm_grid` is EDM's Algorithm 1 (Heun with a second-order correction on every
step but the last, which is Euler onto ``σ = 0``; k-diffusion's ``sample_heun``, matched to 1e-6)::

    flow = fr.DenoiserFlow(model, sigma_max=80.0, sigma_min=0.002, stages="sigma")
    x = fr.solve(flow, fr.Heun(), x_T, grid=flow.edm_grid(18)).x

**Error control.** A :class:`~flowrestore.PIController` without its own ``t_min`` stops the
controlled part at ``σ_stop = min(σ_cap, sqrt(rtol)/10)`` (:meth:`DenoiserFlow.preferred_t_min`,
a diffusion model's rule in this flow's ``σ``: the landing step's error is ``O(σ_stop²)`` in the
data's units), ``σ_cap`` the smallest trained level ``σ_min`` (``1e-2`` when it is 0). The
controller's own default, ``t = min(1e-2, sqrt(rtol)/10)``, is ``σ = 0.8`` at ``σ_max = 80``:
the landing error then dwarfed the tolerance (relative 2.9e-2 at ``rtol = 1e-4``). ``σ_min`` is
not a floor: like the default grid, error control goes below it when the tolerance asks (at
``σ_stop = σ_min = 0.002`` the landing alone is off by 2e-5 on a prior of std 0.2).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable

import torch
from torch import Tensor

from flowrestore.errors import ConfigError, describe, finite_number
from flowrestore.flows._model import ModelFlow
from flowrestore.flows.base import TimeVariable, batch_time, landing_sigma
from flowrestore.flows.diffusion import reference_levels
from flowrestore.grids import FittedGrids, Karras, NoiseLevels, Spacing

__all__ = ["DenoiserFlow"]


def _level(value, name: str) -> float:
    return finite_number(name, value, allow_zero=True)


class DenoiserFlow(ModelFlow):
    """A denoiser ``model(x, sigma)`` as the residual flow ``dx/dt = (x − D)/t``, ``t = σ/σ_max``.

    Args:
        model: callable ``model(x, sigma, **cond)`` (k-diffusion's convention): ``x`` ``[B, ...]``
            the noisy image ``x_0 + σ ε``, ``sigma`` a ``[B]`` tensor in the state's dtype (a
            module's own, if its parameters have another); returns the clean estimate ``D`` (a
            tensor, an object with ``.sample`` or a tuple).
        sigma_max: the noise level at ``t = 1`` (EDM: 80).
        sigma_min: the smallest trained noise level (EDM: 0.002): :meth:`edm_grid`'s last
            positive point (the default grid does not depend on it).
        cond: per-sample conditioning ``{name: tensor [B, ...]}`` passed as keyword arguments.
        uncond: the unconditional model's keywords for classifier-free guidance (the same names
            as ``cond``, one row per sample; :mod:`flowrestore.flows._model`).
        guidance_scale: the guidance weight ``w`` (default 1: the conditional model; ≠ 1 needs
            ``uncond``).
        guidance_rescale: Lin et al.'s rescale ``φ ∈ [0, 1]`` of the guided output (default 0).
        check_outputs: validate shape, dtype and device of every model output.
        stages: ``"reciprocal"`` (default: Runge–Kutta stages in ``w = 1/σ``, stable over large
            steps) or ``"sigma"`` (stages in ``σ``: Heun on :meth:`edm_grid` is EDM's
            Algorithm 1; module docstring).
        grids, spacings: a :class:`~flowrestore.FittedGrids` and ``{solver class: Spacing}``
            that ``steps=N`` uses for those solvers (:mod:`flowrestore.flows.declared`).
    """

    def __init__(
        self,
        model: Callable,
        *,
        sigma_max: float,
        sigma_min: float = 0.0,
        cond: dict[str, Tensor] | None = None,
        uncond: dict[str, Tensor] | None = None,
        guidance_scale: float = 1.0,
        guidance_rescale: float = 0.0,
        check_outputs: bool = True,
        stages: str = "reciprocal",
        grids: FittedGrids | None = None,
        spacings: dict[type, Spacing] | None = None,
    ):
        self.sigma_max = _level(sigma_max, "sigma_max")
        self.sigma_min = _level(sigma_min, "sigma_min")
        if not 0 <= self.sigma_min < self.sigma_max:
            raise ConfigError(
                f"need 0 <= sigma_min < sigma_max, got sigma_min={describe(sigma_min)}, "
                f"sigma_max={describe(sigma_max)}"
            )
        if stages not in ("reciprocal", "sigma"):
            raise ConfigError(f"stages must be 'reciprocal' or 'sigma', got {describe(stages)}")
        self.stages = stages
        self._spacing = NoiseLevels(reference_levels(self.sigma_max), rho=2.0)
        self._set_model(
            model,
            cond,
            check_outputs,
            "model(x, sigma)",
            uncond,
            guidance_scale,
            guidance_rescale,
            grids,
            spacings,
        )

    def __repr__(self) -> str:
        return (
            f"DenoiserFlow({type(self.model).__name__}, sigma_min={self.sigma_min:.4g}, "
            f"sigma_max={self.sigma_max:.4g}, stages={self.stages!r}{self._guidance_repr()})"
        )

    def state_coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(α_t, σ_t)`` with the state ``x_t = α_t x_0 + σ_t ε``: ``(1, t σ_max)``."""
        return torch.ones_like(t), t * self.sigma_max

    @property
    def latent_std(self) -> float:
        """The noise at ``t = 1`` in the model's units (``x = σ_max ε``; BIRD's latent): σ_max."""
        return self.sigma_max

    def t_of_sigma(self, sigma: float) -> float:
        """The flow time ``t = σ/σ_max`` of a noise level."""
        return float(sigma) / self.sigma_max

    def default_spacing(self) -> Spacing:
        """A diffusion model's default grid (:meth:`~flowrestore.DiffusionFlow.default_spacing`):
        DDIM's quadratic timesteps of DDPM's linear schedule as noise levels, down to ``σ = 0``
        (:class:`~flowrestore.grids.NoiseLevels` with ``ρ = 2`` over
        :func:`~flowrestore.flows.diffusion.reference_levels`; module docstring). Built once, on
        the host, with the flow."""
        return self._spacing

    def time_variable(self) -> TimeVariable:
        """The semi-linear solvers interpolate ``D`` in ``σ`` (power 1); Runge–Kutta stages are
        reciprocal unless ``stages="sigma"``; ``log t = log σ − log σ_max`` is the log-SNR up to a
        constant (:class:`~flowrestore.flows.base.TimeVariable`)."""
        return TimeVariable(power=1, reciprocal=self.stages == "reciprocal", log_snr=True)

    def preferred_t_min(self, rtol: float) -> float:
        """Where error control should stop before the landing step: ``σ_stop = min(σ_cap,
        sqrt(rtol)/10)`` as a time ``σ_stop/σ_max`` (at most the controller's ``1e-2``), with
        ``σ_cap = σ_min``, or ``1e-2`` when ``σ_min = 0`` (module docstring)."""
        cap = self.sigma_min if self.sigma_min > 0 else 1e-2
        return min(self.t_of_sigma(min(cap, landing_sigma(rtol))), 1e-2)

    def edm_grid(self, steps: int, *, rho: float = 7.0) -> Tensor:
        """EDM's / k-diffusion's grid (``get_sigmas_karras(steps, σ_min, σ_max, ρ)`` plus the final
        0) in flow time, float64: ``steps − 1`` steps to ``σ_min``, then one onto 0."""
        if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
            raise ConfigError(f"steps must be a positive int, got {describe(steps)}")
        return Karras(rho=rho, t_min=self.sigma_min / self.sigma_max)(int(steps), 1.0, 0.0)

    def denoise(self, t: Tensor, x: Tensor) -> Tensor:
        """The clean estimate ``D(x, σ)`` at ``σ = t σ_max``."""
        sigma = batch_time(t, x) * self.sigma_max
        return self.call_model(x, sigma)
