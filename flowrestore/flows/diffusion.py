"""A pretrained diffusion model as a residual flow: DDIM is Euler (docs/math.md §8).

A VP diffusion model noises ``x_0`` as ``x = a x_0 + b ε`` (``a = √ᾱ``, ``b = √(1 − ᾱ)``) and
predicts ``ε``, ``v = a ε − b x_0`` or ``x_0`` from ``(x, timestep)``. In the scaled state
``x̄ = x/a`` and the noise level ``σ = b/a = √((1 − ᾱ)/ᾱ)`` its probability-flow ODE is
``dx̄/dσ = (x̄ − D(x̄, σ))/σ`` with the clean estimate ``D`` — InDI's residual form — and DDIM's
deterministic update (Song, Meng & Ermon 2021, eq. 12 with ``η = 0``) is exactly Euler on it:
``x̄_s = (σ_s/σ_t) x̄_t + (1 − σ_s/σ_t) D``. :class:`DiffusionFlow` is this ODE in the time
``t = σ/σ_max ∈ [0, 1]`` (``σ_max`` = the noise level of the last trained timestep), so Euler in
``t`` is Euler in ``σ``, every residual-flow solver steps it, and the loop's ``t = 0`` rule lands
it (Euler's last step is exactly ``D``, DDIM's final step with ``ᾱ_prev = 1``). The flow
integrates ``x̄`` (:meth:`~DiffusionFlow.to_state`: ``x̄ = x √(1 + σ²)``) and hands back the
model's ``x`` (:meth:`~DiffusionFlow.from_state`); at ``t = 0`` the two coincide, so
``fr.solve(flow, solver, x_T, steps=N).x`` is the clean image in the model's value range.

**Continuous times.** A noise level ``σ`` is handed to the model as the continuous timestep at
which the log-SNR ``λ = −2 log σ`` interpolates linearly between trained timesteps (the rule of
:func:`flowrestore.oracles.diffusion.alpha_cumprod_at`, inverted here), extended linearly beyond
``[0, T − 1]``; ``clamp_timesteps=True`` keeps the timesteps inside instead (the clean estimate is
still converted at the true ``σ``). On DDPM's schedule the default grid's last positive point
falls below the smallest trained level ``σ_0`` from ``N = 32`` steps, the last two from 64, about
one more every 32 steps (below: other schedules).

**Default grid and time variable** (issue 16). ``steps=N`` lays DDIM's quadratic timesteps
``T(1−k/N)²−1`` *of DDPM's linear schedule* (Ho et al. 2020: T = 1000, β from 1e-4 to 0.02), down
to ``σ = 0``, as noise levels (:func:`reference_levels`, :class:`~flowrestore.grids.NoiseLevels`):
the grid is a set of noise levels, the same on every schedule, not a set of the model's own
timesteps. On that schedule it is DDIM's quadratic grid exactly. A model whose ``σ_max`` is below
the reference's (157: Stable Diffusion's ``scaled_linear`` 14.6, a 500-step linear 12.5) lays the
same quadratic law over the part of the reference below its ``σ_max``; one above it (cosine
``2·10⁴``, a 2000-step linear ``2.5·10⁴``) steps from ``σ_max`` onto the reference grid's first
point, near the data's scale. The model's own timesteps made both ends depend on ``β_start`` and
``T``: at 10 steps the last positive point was σ ≈ 0.044 on DDPM's schedule, 0.094 on
``scaled_linear``, and the first step ended at 769 on a 2000-step linear schedule. Chosen on
validation schedules (``sigmoid``, linear T = 750/1500, β 5e-4–0.015, cosine T = 4000,
``scaled_linear`` with β 1e-4–0.02 and 0.0015–0.0195, zero-SNR linear) and reported on ``python -m
benchmarks.unseen``'s, which chose nothing (``benchmarks/RESULTS.md``).
:meth:`DiffusionFlow.time_variable` declares ``power=1`` (the semi-linear solvers interpolate ``D``
in ``σ``) and reciprocal Runge–Kutta stages (``dy/dw = D`` in ``w = 1/σ``, ``y = x̄/σ``:
:mod:`flowrestore.solvers.reciprocal`), in which Heun and RK4 stay stable over steps from ``σ_max``
to ``O(1)``. Measured on exact Gaussian models and a trained DDPM (``python -m benchmarks fewnfe``,
``benchmarks/RESULTS.md``). :class:`Karras` (EDM's ρ = 7, the default before) stays available as
``spacing=fr.Karras()``. On a schedule whose smallest level ``σ_0`` is above DDPM's 0.01
(``scaled_linear``: 0.029) the grid's last points fall below ``σ_0`` sooner than on the model's own
timesteps (on ``scaled_linear`` the last positive point from 12 steps, the last two from 23, three
from 34), where the model is queried at extrapolated timesteps; ``clamp_timesteps=True`` keeps its
queries inside. Keeping the levels above ``σ_0`` instead was tried on the validation schedules and
lost (24 vs 22 of 168 cells behind the best peer).
A :class:`~flowrestore.PIController` without its own ``t_min`` stops the controlled part at
``σ_stop = min(σ_0, sqrt(rtol)/10)`` (:meth:`DiffusionFlow.preferred_t_min`; landing error
``O(σ_stop²)`` in the data's units).

**Zero-terminal-SNR schedules** (Lin et al. 2024: ``ᾱ_{T−1} = 0``, rescaled β; diffusers'
``rescale_betas_zero_snr=True``). Their last timestep is pure noise, an infinite ``σ``; a v or x₀
model still predicts ``x₀`` there, so the flow takes such a schedule with its last ``ᾱ`` replaced
by ``2⁻²⁴`` (``σ_max ≈ 4096``, Stable Diffusion's ``scaled_linear``), diffusers' own rule for
these schedules, or by half the previous ``ᾱ`` where that is smaller (DDPM's linear schedule:
``σ_max ≈ 2.2·10⁴``; :func:`~flowrestore.oracles.diffusion.check_alphas_cumprod`). In float16 the
state ``x̄ = x √(1 + σ²)`` at ``σ = 2.2·10⁴`` overflows for ``|x| > 3``, and steps from it
cancel most digits (a random ``UNet2DModel``, v, zero SNR, 8 steps: ``Heun()`` and ``IPNDM()``
non-finite, ``Euler()`` 6 % off float32, ``UniPC()`` 0.2 %): a half-precision state started above
``σ = 256`` is refused (:func:`check_half_state`); pass a float32 ``x_start`` — a float16 network
still runs in float16, its inputs cast to its dtype. The reverse SDE's drift ``2 σ_max ε̂`` (in
``t``, from any start) overflows float16 on such a schedule: its float16 state is refused when
``σ_max > 65504/12`` (:func:`check_half_drift`; bfloat16 has the range).
Starting from pure noise at ``σ_max`` instead of ``∞`` changes the answer by ``O(σ_max⁻¹)`` in
the model's units, below a float32 image's resolution after the first step. An ε-model is
refused (its ``x₀ = (x − bε)/a`` is undefined at ``a = 0``).

**Clipped clean estimates** (``clip=``). Pixel-space checkpoints are usually sampled with the
clean estimate clipped to the data range — diffusers' ``clip_sample``/``clip_sample_range``
(:class:`ClipSample`) or Imagen's dynamic ``thresholding`` (:class:`DynamicThreshold`, Saharia et
al. 2022). With ``clip`` the flow's ``D`` is the clipped estimate and its drift ``(x̄ − D)/t`` —
still an ODE, and Euler on it is DDIM's step with ``ε`` re-derived from the clipped ``x₀``
(diffusers' ``use_clipped_model_output=True``, GLIDE's rule). DDIM's *default* step keeps the
model's ``ε`` next to the clipped ``x₀`` (``x̄_s = D_clip + σ_s ε̂``): that update depends on the
step size beyond ``h·f(x̄, t)``, so no ODE solver reproduces it, and
:meth:`~DiffusionFlow.grid_from_scheduler` says so instead of returning a grid that would differ.
:meth:`~DiffusionFlow.from_diffusers` carries the checkpoint scheduler's setting into the flow.

:meth:`DiffusionFlow.reverse_sde` is the reverse-time SDE with the same marginals
(:class:`DiffusionSDE`). The flow and its SDE read no device value (the timestep lookup is a
``searchsorted`` on a cached table): a step never waits for the host, and ``torch.compile``
traces ``denoise`` whole. Per-sample ``cond=`` (class labels, ...) goes to the model by keyword.
The guided baselines and BIRD ask the flow (``state_coefficients``, ``input_scale``,
``latent_std``), as of every model flow. Loading: :mod:`flowrestore.flows.diffusers_io`; a
model that also predicts its variance (ADM, improved DDPM: twice the channels) is read with
``learned_variance=True``, which keeps the prediction half.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from flowrestore.errors import ArgumentTypeError, ConfigError, MissingDependencyError, describe
from flowrestore.flows._model import ModelFlow
from flowrestore.flows.base import SDE, batch_time, bcast, landing_sigma
from flowrestore.flows.diffusers_io import (
    check_model_cond,
    diffusion_schedule,
    import_diffusers,
    learned_variance,
    load_model,
    place,
    require_scheduler,
    scheduler_grid,
)
from flowrestore.flows.estimates import ClipSample, DynamicThreshold, clip_from_config
from flowrestore.grids import FittedGrids, Karras, NoiseLevels, Spacing
from flowrestore.oracles.diffusion import check_alphas_cumprod, linear_alphas_cumprod

__all__ = [
    "PREDICTION_TYPES",
    "ClipSample",
    "DiffusionFlow",
    "DiffusionSDE",
    "DynamicThreshold",
    "reference_levels",
    "sde_reference_levels",
    "Karras",
    "MissingDependencyError",
    "import_diffusers",
]

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


def _log_variances(abar: Tensor) -> Tensor:
    """``2 log σ_k = log((1 − ᾱ_k)/ᾱ_k)`` per timestep (increasing for a valid schedule)."""
    return torch.log1p(-abar) - torch.log(abar)


#: ``σ_k`` of DDPM's linear schedule (T = 1000, β 1e-4 … 0.02): the default grid's noise levels
REFERENCE_SIGMAS = tuple(torch.exp(_log_variances(linear_alphas_cumprod()) / 2).tolist())


def _scales(sigma: Tensor, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(√ᾱ = (1 + σ²)^{-1/2}, σ, x)`` broadcast against ``x``, all in at least float32: in
    float16 ``σ²`` overflows above ``σ = 256`` (a cosine or zero-terminal-SNR schedule's
    ``σ_max`` is about ``2·10⁴``), which made ``√ᾱ`` zero, the network's input zero and the clean
    estimate of a v-model 0 or NaN. The callers cast their result back to ``x``'s dtype."""
    work = torch.promote_types(x.dtype, torch.float32)
    s = bcast(sigma.to(work), x)
    return torch.rsqrt(1 + s * s), s, x.to(work)


#: the largest starting noise level of a half-precision state: above it ``σ²`` overflows float16
#: and the state ``x̄ ≈ σ z`` keeps too few digits for the steps (module docstring)
HALF_STATE_SIGMA_MAX = 256.0


def check_half_state(flow, x_start: Tensor, t_start: float) -> None:
    """Refuse, before any evaluation, a float16/bfloat16 state started above
    :data:`HALF_STATE_SIGMA_MAX` (a cosine or zero-terminal-SNR schedule's ``σ_max ≈ 2·10⁴``):
    it overflowed or lost its digits (a random UNet, 8 steps: ``Heun()`` and ``IPNDM()``
    non-finite, bf16 ``Euler()`` 100 % off without an error). Step it in float32; a half-precision
    network still runs in its own dtype (:meth:`~flowrestore.flows._model.ModelFlow.call_model`)."""
    sigma = float(t_start) * flow.sigma_max
    if x_start.dtype in (torch.float16, torch.bfloat16) and sigma > HALF_STATE_SIGMA_MAX:
        raise ConfigError(
            f"x_start is {x_start.dtype} and the solve starts at sigma = {sigma:.4g} (t={t_start:g}"
            f" x sigma_max={flow.sigma_max:.4g}); above sigma = {HALF_STATE_SIGMA_MAX:g} a "
            "half-precision state overflows or cancels: pass x_start.float() (a float16 network "
            "still runs in float16)"
        )


#: the largest ``σ_max`` on which the reverse SDE steps a float16 state: its drift
#: ``2 (x̄ − D)/t = 2 σ_max ε̂`` (in ``t = σ/σ_max``, whatever ``σ``) overflows float16's 65504 where
#: ``|ε̂| > 65504/(2 σ_max)``; below this bound only ``|ε̂| > 6`` would (a normal draw: p = 2·10⁻⁹)
HALF_SDE_SIGMA_MAX = 65504.0 / 12.0


def check_half_drift(flow, x_start: Tensor) -> None:
    """Refuse, before any evaluation, a float16 state for the reverse SDE of a flow with
    ``σ_max >`` :data:`HALF_SDE_SIGMA_MAX` (a cosine or zero-terminal-SNR linear schedule,
    ``σ_max ≈ 2·10⁴``): its drift ``2 σ_max ε̂`` overflowed at the first step whatever the start
    (``EulerMaruyama()``/``SRA1()`` from ``σ = 200``: a ``NonFiniteError``). bfloat16 has the
    range; float32 too."""
    if x_start.dtype == torch.float16 and flow.sigma_max > HALF_SDE_SIGMA_MAX:
        raise ConfigError(
            f"x_start is torch.float16 and the reverse SDE's drift 2 sigma_max eps is of order "
            f"{2 * flow.sigma_max:.4g} (sigma_max = {flow.sigma_max:.4g}), which overflows "
            f"float16 (max 65504) above sigma_max = {HALF_SDE_SIGMA_MAX:.0f}: pass "
            "x_start.float() or x_start.bfloat16() (a float16 network still runs in float16)"
        )


def reference_levels(sigma_max: float) -> tuple[float, ...]:
    """The table of :class:`~flowrestore.grids.NoiseLevels` behind
    :meth:`DiffusionFlow.default_spacing`: the reference noise levels :data:`REFERENCE_SIGMAS`
    as times ``σ/sigma_max`` of a model whose largest level is ``sigma_max`` (module
    docstring)."""
    return tuple(v / sigma_max for v in REFERENCE_SIGMAS)


def sde_reference_levels(sigma_max: float) -> tuple[float, ...]:
    """The table behind :meth:`DiffusionSDE.default_spacing`: :func:`reference_levels`, continued
    above its top geometrically, with the top entries' ratio, up to ``sigma_max``. The ODE's grid
    jumps from ``σ_max`` to the table's top in one step, which its exponential form integrates
    exactly; an SDE step over that jump is not stable (cosine schedule, ``σ_max ≈ 2·10⁴``:
    Euler–Maruyama's samples had 1.3–2.1× the prior's variance at 200 steps, SRA1's 6–24× at
    50). On a model whose ``σ_max`` is the table's top (DDPM's linear schedule) it is that
    table."""
    levels = list(REFERENCE_SIGMAS)
    ratio = levels[-1] / levels[-2]
    while levels[-1] * ratio < sigma_max:
        levels.append(levels[-1] * ratio)
    if levels[-1] < sigma_max:
        levels.append(sigma_max)
    return tuple(v / sigma_max for v in levels)


class DiffusionFlow(ModelFlow):
    """A diffusion model ``model(x, timestep)`` as the residual flow ``dx̄/dt = (x̄ − D)/t``.

    Args:
        model: callable ``model(x, timestep)`` in diffusers' convention: ``x`` ``[B, ...]`` the
            noisy image, ``timestep`` a ``[B]`` tensor, possibly non-integer, in ``[0, T − 1]``
            (below 0 for noise levels under the smallest trained one, unless
            ``clamp_timesteps``), in the state's dtype (a module's own, if its parameters have
            another: :meth:`~flowrestore.flows._model.ModelFlow.call_model`); returns a tensor,
            an object with ``.sample`` or a tuple.
        alphas_cumprod: the trained schedule ``ᾱ_k``, ``k = 0 … T − 1``; a zero-terminal-SNR
            schedule (``ᾱ_{T−1} = 0``) for a v or x₀ model (module docstring).
        prediction_type: ``"epsilon"``, ``"v_prediction"`` or ``"sample"`` (``x_0``).
        clip: ``None``, :class:`ClipSample` or :class:`DynamicThreshold`: the clean estimate is
            clipped as the checkpoint's scheduler clips it (module docstring).
        clamp_timesteps: query the model only inside ``[0, T − 1]`` (module docstring).
        cond: per-sample conditioning ``{name: tensor [B, ...]}`` passed to the model as keyword
            arguments (a class-conditional ``UNet2DModel``: ``{"class_labels": labels}``).
        uncond: the unconditional model's keywords for classifier-free guidance (the same names
            as ``cond``, one row per sample; :mod:`flowrestore.flows._model`).
        guidance_scale: the guidance weight ``w`` (default 1: the conditional model; ≠ 1 needs
            ``uncond``).
        guidance_rescale: Lin et al.'s rescale ``φ ∈ [0, 1]`` of the guided output (default 0).
        check_outputs: validate shape, dtype and device of every model output.
        learned_variance: the model also predicts its variance — twice the input's channels, the
            prediction first (improved DDPM / ADM's ``learn_sigma``, diffusers'
            ``variance_type="learned_range"``): the flow keeps the first half, as diffusers'
            schedulers and pipelines do (the probability flow does not use the variance).
        grids, spacings: a :class:`~flowrestore.FittedGrids` and ``{solver class: Spacing}``
            that ``steps=N`` uses for those solvers (:mod:`flowrestore.flows.declared`).
    """

    def __init__(
        self,
        model: Callable,
        *,
        alphas_cumprod,
        prediction_type: str = "epsilon",
        clip: ClipSample | DynamicThreshold | None = None,
        clamp_timesteps: bool = False,
        cond: dict[str, Tensor] | None = None,
        uncond: dict[str, Tensor] | None = None,
        guidance_scale: float = 1.0,
        guidance_rescale: float = 0.0,
        check_outputs: bool = True,
        learned_variance: bool = False,
        grids: FittedGrids | None = None,
        spacings: dict[type, Spacing] | None = None,
    ):
        if prediction_type not in PREDICTION_TYPES:
            raise ConfigError(
                f"prediction_type must be one of {PREDICTION_TYPES}, "
                f"got {describe(prediction_type)}"
            )
        if not isinstance(learned_variance, bool):
            raise ConfigError(f"learned_variance must be a bool, got {describe(learned_variance)}")
        self.learned_variance = learned_variance
        if not isinstance(clamp_timesteps, bool):
            raise ConfigError(f"clamp_timesteps must be a bool, got {describe(clamp_timesteps)}")
        if clip is not None and not isinstance(clip, (ClipSample, DynamicThreshold)):
            raise ConfigError(
                f"clip must be None, fr.ClipSample(...) or fr.DynamicThreshold(...), "
                f"got {describe(clip)}"
            )
        self._set_model(
            model,
            cond,
            check_outputs,
            "model(x, timestep)",
            uncond,
            guidance_scale,
            guidance_rescale,
            grids,
            spacings,
        )
        self.alphas_cumprod = check_alphas_cumprod(alphas_cumprod, prediction_type=prediction_type)
        self.prediction_type = prediction_type
        self.clip = clip
        self.clamp_timesteps = clamp_timesteps
        abar = self.alphas_cumprod
        #: ``2 log σ_k`` per trained timestep (increasing): the interpolation table
        self._log_var = _log_variances(abar)
        self.sigma_max = float(torch.exp(self._log_var[-1] / 2))
        self._tables: dict = {}
        self._spacing = NoiseLevels(levels=reference_levels(self.sigma_max), rho=2.0)

    def __repr__(self) -> str:
        clip = "" if self.clip is None else f", clip={self.clip!r}"
        clip += ", learned_variance=True" if self.learned_variance else ""
        clip += self._guidance_repr()
        return (
            f"DiffusionFlow({type(self.model).__name__}, T={self.num_train_timesteps}, "
            f"prediction_type={self.prediction_type!r}{clip}, sigma_max={self.sigma_max:.4g})"
        )

    # ------------------------------------------------------------------ schedule
    @property
    def num_train_timesteps(self) -> int:
        """``T``, the number of trained timesteps."""
        return self.alphas_cumprod.numel()

    @property
    def sigmas(self) -> Tensor:
        """``σ_k = √((1 − ᾱ_k)/ᾱ_k)`` per trained timestep (float64 ``[T]``)."""
        return torch.exp(self._log_var / 2)

    def _table(self, like: Tensor) -> Tensor:
        key = (like.device, like.dtype)
        if key not in self._tables:
            self._tables[key] = self._log_var.to(device=like.device, dtype=like.dtype)
        return self._tables[key]

    def timestep(self, sigma: Tensor) -> Tensor:
        """The continuous timestep of noise level ``sigma`` (log-SNR interpolation, extended
        linearly beyond the trained range unless ``clamp_timesteps``; ``σ = 0``, where that
        extension is ``−∞``, is timestep 0), in ``sigma``'s dtype. A
        half-precision ``sigma`` is looked up in float32: in bf16 neighbouring levels of the
        table coincide (timesteps below ``σ_0`` were 9 % off). The result is then rounded to
        ``sigma``'s dtype, the model's input dtype: in bf16 a timestep in ``[256, 1000)`` lands
        on a multiple of 2 or 4 (float16: of 0.25 or 0.5)."""
        work = torch.promote_types(sigma.dtype, torch.float32)
        s = sigma.to(work)
        table = self._table(s)
        mu = 2 * torch.log(s)
        j = (torch.searchsorted(table, mu.detach().contiguous()) - 1).clamp(0, table.numel() - 2)
        lo, hi = table[j], table[j + 1]
        tau = j.to(work) + (mu - lo) / (hi - lo)
        # σ = 0 (t = 0, the clean end): the extension's timestep is −∞, which a network's
        # sinusoidal embedding turns into NaN (flow.denoise(0, x) was NaN even for an ε-model,
        # whose D = x̄ − 0·ε̂ = x̄); the smallest trained timestep is queried there instead
        tau = torch.where(s == 0, torch.zeros_like(tau), tau)
        if self.clamp_timesteps:
            tau = tau.clamp(0, self.num_train_timesteps - 1)
        return tau.to(sigma.dtype)

    def sigma_at(self, timestep) -> Tensor:
        """The noise level ``σ`` of a (continuous) timestep, the inverse of :meth:`timestep`
        (float64, on the CPU, for planning grids)."""
        tau = torch.as_tensor(timestep).detach().to("cpu", torch.float64)  # the table's device
        table = self._log_var
        j = tau.floor().clamp(0, table.numel() - 2).long()
        mu = table[j] + (tau - j.to(tau.dtype)) * (table[j + 1] - table[j])
        return torch.exp(mu / 2)

    # ------------------------------------------------------------------ states
    def for_solve(self, x_start: Tensor, t_start: float) -> DiffusionFlow:
        """Itself; a half-precision state from a noise level above 256 is refused
        (:func:`check_half_state`)."""
        check_half_state(self, x_start, t_start)
        return self

    def to_state(self, x: Tensor, t: float) -> Tensor:
        """``x̄ = x / √ᾱ = x √(1 + σ²)`` at ``σ = t σ_max``."""
        return x * math.sqrt(1.0 + (float(t) * self.sigma_max) ** 2)

    def from_state(self, x: Tensor, t: float) -> Tensor:
        """The model's ``x = x̄ √ᾱ = x̄ / √(1 + σ²)`` (identity at ``t = 0``)."""
        return x / math.sqrt(1.0 + (float(t) * self.sigma_max) ** 2)

    def state_coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(α_t, σ_t)`` with the state ``x̄_t = α_t x_0 + σ_t ε``: ``(1, t σ_max)``."""
        return torch.ones_like(t), t * self.sigma_max

    def input_scale(self, t: Tensor) -> Tensor:
        """``k_t`` with the model's input ``x = x̄/k_t``: ``√(1 + σ²)``, ``σ = t σ_max``."""
        return torch.sqrt(1 + (t * self.sigma_max) ** 2)

    def default_spacing(self) -> Spacing:
        """DDIM's quadratic timesteps of DDPM's linear schedule as noise levels, down to ``σ = 0``
        (:class:`~flowrestore.grids.NoiseLevels` with ``ρ = 2`` over :func:`reference_levels`;
        module docstring, issue 16): the same levels on every schedule, the first step ending near
        the data's scale whatever ``σ_max`` is, the last positive point shrinking like ``N^{−2}``.
        Built once, on the host, with the flow (a compiled solve plans without reading a
        tensor)."""
        return self._spacing

    def time_variable(self):
        """The semi-linear solvers interpolate ``D`` in ``σ`` (power 1), Runge–Kutta stages are
        reciprocal (:class:`~flowrestore.flows.base.TimeVariable`): ``D`` bends over the orders of
        magnitude between ``σ_max`` and the data's scale (issue 16); ``t = σ/σ_max``, so ``log t``
        is the log-SNR up to a constant."""
        from flowrestore.flows.base import TimeVariable

        return TimeVariable(power=1, reciprocal=True, log_snr=True)

    def t_of_sigma(self, sigma: float) -> float:
        """The flow time ``t = σ/σ_max`` of a noise level."""
        return float(sigma) / self.sigma_max

    def preferred_t_min(self, rtol: float) -> float:
        """Where error control should stop before the landing step: ``σ_stop = min(σ_0,
        sqrt(rtol)/10)`` as a time (the landing error is ``O(σ_stop²)`` in the data's units and
        ``σ = t σ_max``; ``σ_0`` = smallest trained level)."""
        return self.t_of_sigma(min(float(self.sigmas[0]), landing_sigma(rtol)))

    # ------------------------------------------------------------------ the model
    def predict(self, t: Tensor, x: Tensor) -> Tensor:
        """The model's raw output at flow time ``t`` for the state ``x̄`` (its input ``x̄ √ᾱ``
        formed in at least float32: :func:`_scales`)."""
        sigma = batch_time(t, x) * self.sigma_max
        a, _, xw = _scales(sigma, x)
        return self.call_model(
            (xw * a).to(x.dtype), self.timestep(sigma), split=self.learned_variance
        )

    def denoise(self, t: Tensor, x: Tensor) -> Tensor:
        """The clean estimate ``D``: ``x̄ − σ ε̂`` (ε), ``a x − b v̂`` (v) or the output (x₀),
        clipped by ``clip`` when set."""
        d = self._unclipped(t, x, self.predict(t, x))
        return d if self.clip is None else self.clip(d)

    def _unclipped(self, t: Tensor, x: Tensor, out: Tensor) -> Tensor:
        sigma = batch_time(t, x) * self.sigma_max
        if self.prediction_type == "epsilon":
            return x - bcast(sigma, x) * out
        if self.prediction_type == "v_prediction":
            a, s, xw = _scales(sigma, x)
            return (a * a * xw - s * a * out.to(xw.dtype)).to(x.dtype)
        return out

    def velocity(self, t: Tensor, x: Tensor) -> Tensor:
        """``(x̄ − D)/t = σ_max ε̂``, without the division for unclipped ε and v models."""
        if self.prediction_type == "sample" or self.clip is not None:
            return super().velocity(t, x)
        out = self.predict(t, x)
        if self.prediction_type == "epsilon":
            return self.sigma_max * out
        a, s, xw = _scales(batch_time(t, x) * self.sigma_max, x)
        return (self.sigma_max * a * (out.to(xw.dtype) + s * a * xw)).to(x.dtype)

    def reverse_sde(self) -> DiffusionSDE:
        """The reverse-time SDE with this flow's marginals (:class:`DiffusionSDE`)."""
        return DiffusionSDE(self)

    # ------------------------------------------------------------------ grids
    def grid_from_timesteps(self, timesteps, *, final_alpha_cumprod: float = 1.0) -> Tensor:
        """The flow times of ``timesteps`` (strictly decreasing, else refused) followed by the
        final noise level (``ᾱ = 1``: ``t = 0``, the clean image; one above the last timestep's
        is refused), float64."""
        try:
            raw = torch.as_tensor(timesteps)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ConfigError(f"timesteps must be numbers, got {describe(timesteps)}") from exc
        if raw.is_complex() or raw.dtype == torch.bool:  # float64 would drop the imaginary part
            raise ConfigError(f"timesteps must be real numbers, got {describe(timesteps)}")
        tau = raw.detach().to("cpu", torch.float64).reshape(-1)
        if tau.numel() < 1:
            raise ConfigError(f"timesteps must not be empty, got {describe(timesteps)}")
        top = self.num_train_timesteps - 1
        if not bool(torch.isfinite(tau).all()) or bool((tau < 0).any() | (tau > top).any()):
            raise ConfigError(
                f"timesteps must be finite and lie in [0, {top}] (the model's training "
                f"timesteps), got {describe(timesteps)}"
            )
        if not bool((tau.diff() < 0).all()):  # host-side planning, not a step
            k = int((tau.diff() >= 0).nonzero()[0])
            raise ConfigError(
                f"timesteps must decrease strictly (from noise to data); they do not between "
                f"index {k} ({float(tau[k]):g}) and {k + 1} ({float(tau[k + 1]):g}), so no grid "
                f"of flow times follows them (a scheduler that repeats a timestep, like PNDM's "
                f"PLMS warm-up, has none), got {describe(timesteps)}"
            )
        grid = self.sigma_at(tau) / self.sigma_max
        try:
            fa = float(final_alpha_cumprod)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                "final_alpha_cumprod must be a number in (0, 1], got "
                f"{describe(final_alpha_cumprod)}"
            ) from exc
        if not 0 < fa <= 1:
            raise ConfigError(f"final_alpha_cumprod must be in (0, 1], got {describe(fa)}")
        last = math.sqrt((1 - fa) / fa) / self.sigma_max
        end = float(grid[-1])
        if end < last <= end * (1 + 1e-3):  # ᾱ_0 of a float32 table: the last timestep itself
            last = end
        if last > end:
            raise ConfigError(
                f"final_alpha_cumprod={fa:g} is the noise level sigma = "
                f"{last * self.sigma_max:.6g}, above the last timestep's "
                f"{float(grid[-1]) * self.sigma_max:.6g}: the final step must end at less noise"
            )
        if abs(last - float(grid[-1])) > 1e-12 * max(1.0, last):
            grid = torch.cat([grid, torch.tensor([last], dtype=torch.float64)])
        return grid.clamp(0.0, 1.0)

    def grid_from_scheduler(
        self, scheduler, *, check: bool = True, use_clipped_model_output: bool = False
    ) -> Tensor:
        """The grid of ``scheduler.timesteps`` (after ``set_timesteps``) plus its final step.

        With a ``DDIMScheduler`` (``eta = 0``) ``fr.solve(flow, fr.Euler(), x_T,
        grid=flow.grid_from_scheduler(s))`` is its sampler. ``check`` refuses a DDIM schedule
        whose steps do not chain (``timestep − T // N`` is not the next timestep, e.g.
        ``"trailing"`` spacing with ``T % N ≠ 0``): no single grid reproduces those jumps.

        A scheduler that clips the clean estimate (``clip_sample=True`` or ``thresholding=True``)
        needs a flow with the same ``clip`` (:meth:`from_diffusers` carries it) and
        ``use_clipped_model_output=True``: Euler reproduces DDIM's step with ``ε`` re-derived from
        the clipped ``x₀``; its default step (the model's ``ε``) is no ODE step (module
        docstring). Anything else is refused, naming the setting.
        """
        return scheduler_grid(
            self, scheduler, check=check, use_clipped_model_output=use_clipped_model_output
        )

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_diffusers(
        cls,
        path_or_model,
        scheduler=None,
        *,
        prediction_type: str | None = None,
        dtype: torch.dtype | None = None,
        device=None,
        **flow_options,
    ) -> DiffusionFlow:
        """A flow from a LOCAL diffusers model folder, pipeline folder or object.

        ``path_or_model``: a folder holding a diffusers network (``config.json`` and weights: a
        ``UNet2DModel``, a ``UNet2DConditionModel`` or a DiT — any class called as
        ``model(x, timestep, **cond)``), a pipeline folder (``model_index.json`` with ``unet/`` or
        ``transformer/`` and ``scheduler/``), a pipeline object (``.unet`` or ``.transformer``,
        ``.scheduler``) or a model. Nothing is downloaded: a path must exist
        (else :class:`ConfigError`) and is loaded with ``local_files_only=True``. The schedule,
        the prediction type and the clean-estimate clipping (``clip_sample``/``thresholding``,
        unless ``clip=`` is given) come from ``scheduler`` — a scheduler object, a config dict,
        or a path to a folder / ``scheduler_config.json`` — by default the pipeline's scheduler
        or a ``scheduler_config.json`` beside the model (or in ``../scheduler``). A
        class-conditional ``UNet2DModel`` (``num_class_embeds``) needs
        ``cond={"class_labels": labels}`` (refused without); a text-conditioned one
        ``cond={"encoder_hidden_states": embeddings}``. A network with twice its input's output
        channels (ADM, improved DDPM, DiT, IF: the variance is learned) gets
        ``learned_variance=True``.
        """
        if "alphas_cumprod" in flow_options:
            raise ConfigError(
                "from_diffusers reads alphas_cumprod from the scheduler: pass scheduler= (or "
                "build fr.DiffusionFlow(model, alphas_cumprod=...) directly)"
            )
        model, found = load_model(path_or_model, subfolders=("unet", "transformer"), dtype=dtype)
        check_model_cond(model, flow_options.get("cond"), cls.__name__)
        scheduler = require_scheduler(
            found if scheduler is None else scheduler, path_or_model, "diffusers scheduler"
        )
        abar, config = diffusion_schedule(scheduler)
        ptype = prediction_type or config.get("prediction_type") or "epsilon"
        flow_options.setdefault("clip", clip_from_config(config))
        flow_options.setdefault("learned_variance", learned_variance(model, config))
        model = place(model, dtype, device)
        return cls(model, alphas_cumprod=abar, prediction_type=ptype, **flow_options)


class DiffusionSDE(SDE):
    """The reverse-time SDE of a diffusion model in ``x̄``: ``dx̄ = 2 (x̄ − D)/t dt + σ_max √(2t) dW``,
    run from ``t = 1`` to 0.

    The reverse of the variance-exploding SDE ``x̄_σ = x_0 + σ ε`` in ``σ = t σ_max`` (Song et al.
    2021, score SDEs: drift ``−(dσ²/dt) ∇log p = 2 (x̄ − D)/t``, diffusion ``√(dσ²/dt)``); it has
    the probability-flow ODE's marginals, so it samples the model's distribution — DDPM's
    ancestral sampler is a discretisation of it. Additive noise: ``EulerMaruyama`` and ``SRA1``
    step it; it lands on ``t = 0`` like the ODE (its own step). Its default grid is the flow's
    below the reference table's top and geometric above it (:func:`sde_reference_levels`).
    Built by :meth:`DiffusionFlow.reverse_sde`.
    """

    noise_type = "additive"
    singular_at_zero = True
    default_span = (1.0, 0.0)
    time_range = (0.0, 1.0)

    def __init__(self, flow: DiffusionFlow):
        if not isinstance(flow, DiffusionFlow):
            raise ArgumentTypeError(f"flow must be a DiffusionFlow, got {describe(flow)}")
        self.flow = flow
        top = flow.sigma_max * flow.default_spacing().levels[-1]
        self._spacing = (
            NoiseLevels(levels=sde_reference_levels(flow.sigma_max), rho=2.0)
            if flow.sigma_max > top * (1 + 1e-9)
            else flow.default_spacing()
        )

    @property
    def network(self):
        """The diffusion model of the underlying :class:`DiffusionFlow`."""
        return self.flow.model

    def restrict(self, rows: Tensor) -> DiffusionSDE:
        """The reverse SDE of the underlying flow's rows ``rows`` (its conditioning)."""
        return DiffusionSDE(self.flow.restrict(rows))

    def __repr__(self) -> str:
        return f"DiffusionSDE({self.flow!r})"

    def drift(self, t: Tensor, x: Tensor) -> Tensor:
        """``2 (x̄ − D)/t``: twice the probability-flow drift."""
        return 2 * self.flow.velocity(t, x)

    def diffusion(self, t: Tensor, x: Tensor) -> Tensor:
        """``σ_max √(2t)``, independent of ``x``."""
        return self.flow.sigma_max * bcast((2 * t).clamp_min(0).sqrt(), x)

    def denoise(self, t: Tensor, x: Tensor) -> Tensor:
        """The model's clean estimate ``D`` (:meth:`DiffusionFlow.denoise`)."""
        return self.flow.denoise(t, x)

    def for_solve(self, x_start: Tensor, t_start: float) -> DiffusionSDE:
        """Itself; a half-precision state from a noise level above 256 is refused
        (:func:`check_half_state`), and a float16 one on a flow whose drift overflows float16
        (:func:`check_half_drift`)."""
        check_half_state(self.flow, x_start, t_start)
        check_half_drift(self.flow, x_start)
        return self

    def to_state(self, x: Tensor, t: float) -> Tensor:
        """``x̄ = x √(1 + σ²)`` (:meth:`DiffusionFlow.to_state`)."""
        return self.flow.to_state(x, t)

    def from_state(self, x: Tensor, t: float) -> Tensor:
        """The model's ``x`` (:meth:`DiffusionFlow.from_state`)."""
        return self.flow.from_state(x, t)

    def default_spacing(self) -> Spacing:
        """DDPM's quadratic grid as noise levels, down to 0, over :func:`sde_reference_levels`:
        the flow's grid (:meth:`DiffusionFlow.default_spacing`) below the reference table's top,
        and no step across orders of magnitude of ``σ`` above it (module docstring)."""
        return self._spacing

    def preferred_t_min(self, rtol: float) -> float:
        """The flow's stop for error control (:meth:`DiffusionFlow.preferred_t_min`)."""
        return self.flow.preferred_t_min(rtol)
