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
still converted at the true ``σ``). Below the smallest trained level ``σ_0`` only the default
grid's last one or two points fall (for ``N ≥ 5`` steps of a 1000-step schedule).

**Default grid and time variable** (issue 16). ``steps=N`` lays DDIM's quadratic timesteps
``T(1 − k/N)² − 1`` down to ``σ = 0`` (:class:`~flowrestore.grids.NoiseLevels` over the trained
noise levels): the first step ends near the data's scale however large ``σ_max`` is (a cosine
schedule's ``2·10⁴``). :meth:`DiffusionFlow.time_variable` declares ``power=1`` (the semi-linear
solvers interpolate ``D`` in ``σ``) and reciprocal Runge–Kutta stages (``dy/dw = D`` in
``w = 1/σ``, ``y = x̄/σ``: :mod:`flowrestore.solvers.reciprocal`), in which Heun and RK4 stay
stable over steps from ``σ_max`` to ``O(1)``. Measured on exact Gaussian models and a trained DDPM
(``python -m benchmarks fewnfe``, ``benchmarks/RESULTS.md``). :class:`Karras` (EDM's ρ = 7, the
default before) stays available as ``spacing=fr.Karras()``.

**Stochastic sampling.** :meth:`DiffusionFlow.reverse_sde` is the reverse-time SDE with the same
marginals (:class:`DiffusionSDE`), for the SDE solvers.

BIRD (Chihaoui, Lemkhenter & Favaro, NeurIPS 2024) inverts exactly this map through a few DDIM
steps; :class:`flowrestore.BlindInversion` takes a :class:`DiffusionFlow` as it is.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from flowrestore.controllers import PIController
from flowrestore.errors import ConfigError, FlowRestoreError, PredictorOutputError, describe
from flowrestore.flows.base import SDE, ResidualFlow, batch_time, bcast, check_output
from flowrestore.grids import Spacing

__all__ = [
    "PREDICTION_TYPES",
    "DiffusionFlow",
    "DiffusionSDE",
    "Karras",
    "MissingDependencyError",
]

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


class MissingDependencyError(FlowRestoreError, ImportError):
    """An optional dependency (diffusers) is not installed; the message names the extra."""


def import_diffusers():
    """Import diffusers lazily, or raise :class:`MissingDependencyError` naming the extra."""
    try:
        import diffusers
    except ImportError as exc:
        raise MissingDependencyError(
            "loading diffusers checkpoints needs the optional dependency diffusers: "
            "pip install 'flowrestore[diffusers]'"
        ) from exc
    return diffusers


@dataclass(frozen=True)
class Karras(Spacing):
    """EDM's spacing (Karras et al. 2022, eq. 5) in ``t = σ/σ_max``:
    ``t_k = (t_0^{1/ρ} + (k/N)(t_end^{1/ρ} − t_0^{1/ρ}))^ρ``.

    With ``t_min > 0`` (``σ_min/σ_max``) and a solve to ``t = 0``, the first ``N − 1`` steps go
    from ``t_0`` to ``t_min`` and the last lands on 0 (EDM's grid; its last positive point does not
    shrink with ``N``, so no solver converges past the landing error ``O(t_min²)``).
    ``t_min = 0`` (default) is the same formula down to 0: ``t_k = t_0 (1 − k/N)^ρ``.
    """

    rho: float = 7.0
    t_min: float = 0.0

    def __post_init__(self):
        if isinstance(self.rho, bool) or not isinstance(self.rho, (int, float)) or self.rho < 1:
            raise ConfigError(f"rho must be a number >= 1, got {describe(self.rho)}")
        if isinstance(self.t_min, bool) or not isinstance(self.t_min, (int, float)):
            raise ConfigError(f"t_min must be a number in [0, 1), got {describe(self.t_min)}")
        if not 0 <= self.t_min < 1:
            raise ConfigError(f"t_min must be a number in [0, 1), got {describe(self.t_min)}")

    def __call__(self, steps: int, t0: float, t1: float) -> Tensor:
        inner = self.t_min > 0 and t1 < self.t_min < t0 and steps >= 2
        n, end = (steps - 1, self.t_min) if inner else (steps, t1)
        u = torch.linspace(0.0, 1.0, n + 1, dtype=torch.float64)
        r = 1.0 / self.rho
        grid = (t0**r + u * (end**r - t0**r)) ** self.rho
        if inner:
            grid = torch.cat([grid, torch.tensor([t1], dtype=torch.float64)])
        grid[0], grid[-1] = t0, t1
        return grid


def _schedule(alphas_cumprod) -> Tensor:
    """``ᾱ`` as float64 ``[T]``, strictly decreasing inside (0, 1) (else :class:`ConfigError`)."""
    try:
        table = torch.as_tensor(alphas_cumprod).detach().to("cpu", torch.float64).clone()
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ConfigError(
            f"alphas_cumprod must be a 1-D tensor of ᾱ values, got {describe(alphas_cumprod)}"
        ) from exc
    if table.dim() != 1 or table.numel() < 2:
        raise ConfigError(
            f"alphas_cumprod must be 1-D with at least 2 entries, got {describe(alphas_cumprod)}"
        )
    if not bool(((table > 0) & (table < 1)).all()):
        raise ConfigError(
            "alphas_cumprod must lie strictly inside (0, 1) (a zero-terminal-SNR schedule has "
            f"σ_max = ∞), got values from {table.min().item():.6g} to {table.max().item():.6g}"
        )
    if not bool((table.diff() < 0).all()):
        raise ConfigError(
            f"alphas_cumprod must decrease strictly with the timestep, got {describe(table)}"
        )
    return table


def _model_output(out) -> Tensor:
    """A model's return value as a tensor: a tensor, ``.sample`` (diffusers) or ``out[0]``."""
    if isinstance(out, Tensor):
        return out
    sample = getattr(out, "sample", None)
    if isinstance(sample, Tensor):
        return sample
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor):
        return out[0]
    raise PredictorOutputError(
        "model must return a tensor, an object with .sample or a tuple whose first item is a "
        f"tensor, got {type(out).__name__}"
    )


class DiffusionFlow(ResidualFlow):
    """A diffusion model ``model(x, timestep)`` as the residual flow ``dx̄/dt = (x̄ − D)/t``.

    Args:
        model: callable ``model(x, timestep)`` in diffusers' convention: ``x`` ``[B, ...]`` the
            noisy image, ``timestep`` a ``[B]`` tensor in ``[0, T − 1]`` (state dtype, possibly
            non-integer); returns a tensor, an object with ``.sample`` or a tuple.
        alphas_cumprod: the trained schedule ``ᾱ_k``, ``k = 0 … T − 1``.
        prediction_type: ``"epsilon"``, ``"v_prediction"`` or ``"sample"`` (``x_0``).
        clamp_timesteps: query the model only inside ``[0, T − 1]`` (module docstring).
        check_outputs: validate shape, dtype and device of every model output.
    """

    def __init__(
        self,
        model: Callable,
        *,
        alphas_cumprod,
        prediction_type: str = "epsilon",
        clamp_timesteps: bool = False,
        check_outputs: bool = True,
    ):
        if not callable(model):
            raise TypeError(f"model must be callable model(x, timestep), got {describe(model)}")
        if prediction_type not in PREDICTION_TYPES:
            raise ConfigError(
                f"prediction_type must be one of {PREDICTION_TYPES}, "
                f"got {describe(prediction_type)}"
            )
        if not isinstance(clamp_timesteps, bool):
            raise ConfigError(f"clamp_timesteps must be a bool, got {describe(clamp_timesteps)}")
        self.model = model
        self.alphas_cumprod = _schedule(alphas_cumprod)
        self.prediction_type = prediction_type
        self.clamp_timesteps = clamp_timesteps
        self.check_outputs = check_outputs
        abar = self.alphas_cumprod
        #: ``2 log σ_k`` per trained timestep (increasing): the interpolation table
        self._log_var = torch.log1p(-abar) - torch.log(abar)
        self.sigma_max = float(torch.exp(self._log_var[-1] / 2))
        self._tables: dict = {}

    @property
    def network(self):
        """The diffusion model (:attr:`Flow.network <flowrestore.flows.Flow.network>`)."""
        return self.model

    def __repr__(self) -> str:
        return (
            f"DiffusionFlow({type(self.model).__name__}, T={self.num_train_timesteps}, "
            f"prediction_type={self.prediction_type!r}, sigma_max={self.sigma_max:.4g})"
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
        linearly beyond the trained range unless ``clamp_timesteps``)."""
        table = self._table(sigma)
        mu = 2 * torch.log(sigma)
        j = (torch.searchsorted(table, mu.detach().contiguous()) - 1).clamp(0, table.numel() - 2)
        lo, hi = table[j], table[j + 1]
        tau = j.to(sigma.dtype) + (mu - lo) / (hi - lo)
        if self.clamp_timesteps:
            tau = tau.clamp(0, self.num_train_timesteps - 1)
        return tau

    def sigma_at(self, timestep) -> Tensor:
        """The noise level ``σ`` of a (continuous) timestep, the inverse of :meth:`timestep`."""
        tau = torch.as_tensor(timestep, dtype=torch.float64)
        table = self._log_var
        j = tau.floor().clamp(0, table.numel() - 2).long()
        mu = table[j] + (tau - j.to(tau.dtype)) * (table[j + 1] - table[j])
        return torch.exp(mu / 2)

    # ------------------------------------------------------------------ states
    def to_state(self, x: Tensor, t: float) -> Tensor:
        """``x̄ = x / √ᾱ = x √(1 + σ²)`` at ``σ = t σ_max``."""
        return x * math.sqrt(1.0 + (float(t) * self.sigma_max) ** 2)

    def from_state(self, x: Tensor, t: float) -> Tensor:
        """The model's ``x = x̄ √ᾱ = x̄ / √(1 + σ²)`` (identity at ``t = 0``)."""
        return x / math.sqrt(1.0 + (float(t) * self.sigma_max) ** 2)

    def default_spacing(self) -> Spacing:
        """DDIM's quadratic timesteps, down to ``σ = 0`` (:class:`~flowrestore.grids.NoiseLevels`
        with ``ρ = 2`` over this model's trained noise levels; issue 16): the first step ends at a
        noise level of the order of the data whatever ``σ_max`` is, and the last positive point
        shrinks like ``N^{−2}`` in the timestep index."""
        from flowrestore.grids import NoiseLevels

        return NoiseLevels(levels=tuple((self.sigmas / self.sigma_max).tolist()), rho=2.0)

    def time_variable(self):
        """The semi-linear solvers interpolate ``D`` in ``σ`` (power 1), Runge–Kutta stages are
        reciprocal (:class:`~flowrestore.grids.TimeVariable`): ``D`` bends over the orders of
        magnitude between ``σ_max`` and the data's scale (issue 16)."""
        from flowrestore.grids import TimeVariable

        return TimeVariable(power=1, reciprocal=True)

    def t_of_sigma(self, sigma: float) -> float:
        """The flow time ``t = σ/σ_max`` of a noise level."""
        return float(sigma) / self.sigma_max

    def controller(self, *, rtol: float = 1e-3, atol: float = 1e-6, **options) -> PIController:
        """A :class:`~flowrestore.PIController` whose ``t_min`` suits this flow's time scale.

        The default ``t_min`` of a controller is a time of order ``sqrt(rtol)/10``; here the
        landing error is ``O(σ_stop²)`` in the data's units and ``σ = t σ_max``, so the controlled
        part stops at ``σ_stop = min(σ_0, sqrt(rtol)/10)`` instead (``σ_0`` = smallest trained).
        """
        if "t_min" not in options:
            sigma0 = float(self.sigmas[0])
            options["t_min"] = self.t_of_sigma(min(sigma0, math.sqrt(rtol) / 10))
        return PIController(rtol=rtol, atol=atol, **options)

    # ------------------------------------------------------------------ the model
    def predict(self, t: Tensor, x: Tensor) -> Tensor:
        """The model's raw output at flow time ``t`` for the state ``x̄``."""
        sigma = batch_time(t, x) * self.sigma_max
        a = torch.rsqrt(1 + bcast(sigma, x) ** 2)
        out = _model_output(self.model(x * a, self.timestep(sigma)))
        return check_output("model", out, x) if self.check_outputs else out

    def denoise(self, t: Tensor, x: Tensor) -> Tensor:
        """The clean estimate ``D``: ``x̄ − σ ε̂`` (ε), ``a x − b v̂`` (v) or the output (x₀)."""
        out = self.predict(t, x)
        sigma = bcast(batch_time(t, x) * self.sigma_max, x)
        if self.prediction_type == "epsilon":
            return x - sigma * out
        if self.prediction_type == "v_prediction":
            a = torch.rsqrt(1 + sigma**2)
            return a * a * x - sigma * a * out
        return out

    def velocity(self, t: Tensor, x: Tensor) -> Tensor:
        """``(x̄ − D)/t = σ_max ε̂``, without the division for ε and v models."""
        if self.prediction_type == "sample":
            return super().velocity(t, x)
        out = self.predict(t, x)
        if self.prediction_type == "epsilon":
            return self.sigma_max * out
        sigma = bcast(batch_time(t, x) * self.sigma_max, x)
        a = torch.rsqrt(1 + sigma**2)
        return self.sigma_max * a * (out + sigma * a * x)

    def reverse_sde(self) -> DiffusionSDE:
        """The reverse-time SDE with this flow's marginals (:class:`DiffusionSDE`)."""
        return DiffusionSDE(self)

    # ------------------------------------------------------------------ grids
    def grid_from_timesteps(self, timesteps, *, final_alpha_cumprod: float = 1.0) -> Tensor:
        """The flow times of ``timesteps`` (decreasing) followed by the final noise level
        (``ᾱ = 1``: ``t = 0``, the clean image), float64."""
        tau = torch.as_tensor(timesteps, dtype=torch.float64).reshape(-1)
        if tau.numel() < 1:
            raise ConfigError(f"timesteps must not be empty, got {describe(timesteps)}")
        grid = self.sigma_at(tau) / self.sigma_max
        fa = float(final_alpha_cumprod)
        if not 0 < fa <= 1:
            raise ConfigError(f"final_alpha_cumprod must be in (0, 1], got {describe(fa)}")
        last = math.sqrt((1 - fa) / fa) / self.sigma_max
        if abs(last - float(grid[-1])) > 1e-12 * max(1.0, last):
            grid = torch.cat([grid, torch.tensor([last], dtype=torch.float64)])
        return grid.clamp(0.0, 1.0)

    def grid_from_scheduler(self, scheduler, *, check: bool = True) -> Tensor:
        """The grid of ``scheduler.timesteps`` (after ``set_timesteps``) plus its final step.

        With a ``DDIMScheduler`` (``eta = 0``, ``clip_sample=False``) ``fr.solve(flow, fr.Euler(),
        x_T, grid=flow.grid_from_scheduler(s))`` is its sampler. ``check`` refuses a DDIM schedule
        whose steps do not chain (``timestep − T // N`` is not the next timestep, e.g.
        ``"trailing"`` spacing with ``T % N ≠ 0``): no single grid reproduces those jumps.
        """
        timesteps = getattr(scheduler, "timesteps", None)
        if timesteps is None or getattr(scheduler, "num_inference_steps", 1) is None:
            raise ConfigError(
                f"scheduler has no timesteps; call scheduler.set_timesteps(N) first, got "
                f"{type(scheduler).__name__}"
            )
        theirs = getattr(scheduler, "alphas_cumprod", None)
        if theirs is not None and not torch.allclose(
            torch.as_tensor(theirs, dtype=torch.float64), self.alphas_cumprod, rtol=1e-5, atol=0
        ):
            raise ConfigError(
                f"scheduler's alphas_cumprod (T={len(theirs)}) differs from the flow's "
                f"(T={self.num_train_timesteps}): build the flow from this scheduler"
            )
        ts = torch.as_tensor(timesteps, dtype=torch.float64).reshape(-1)
        final = getattr(scheduler, "final_alpha_cumprod", None)
        final = 1.0 if final is None else float(final)
        if check and type(scheduler).__name__ == "DDIMScheduler":
            n = int(scheduler.num_inference_steps)
            prev = ts - self.num_train_timesteps // n
            nxt = torch.cat([ts[1:], torch.tensor([-1.0], dtype=torch.float64)])
            bad = ((prev >= 0) | (nxt >= 0)) & (prev != nxt)
            if bool(bad.any()):
                k = int(bad.nonzero()[0])
                raise ConfigError(
                    f"this DDIMScheduler steps from timestep {int(ts[k])} to {int(prev[k])} but "
                    f"its next step starts at {int(nxt[k])} (timestep_spacing="
                    f"{scheduler.config.timestep_spacing!r}, {n} steps): no single grid "
                    "reproduces it; use 'leading' or 'trailing' with T % N == 0, or check=False"
                )
        return self.grid_from_timesteps(ts, final_alpha_cumprod=final)

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
        """A flow from a LOCAL diffusers ``UNet2DModel`` folder, pipeline folder or object.

        ``path_or_model``: a folder holding a ``UNet2DModel`` (``config.json`` and weights), a
        pipeline folder (``model_index.json`` with ``unet/`` and ``scheduler/``), a pipeline
        object (``.unet``, ``.scheduler``) or a model. Nothing is downloaded: a path must exist
        (else :class:`ConfigError`) and is loaded with ``local_files_only=True``. The schedule
        and prediction type come from ``scheduler`` — a scheduler object, a config dict, or a
        path to a folder / ``scheduler_config.json`` — by default the pipeline's scheduler or a
        ``scheduler_config.json`` beside the model (or in ``../scheduler``).
        """
        model, found = _load_model(path_or_model, dtype)
        scheduler = found if scheduler is None else scheduler
        if scheduler is None:
            raise ConfigError(
                f"no scheduler found for {describe(path_or_model)}: pass scheduler= (a diffusers "
                "scheduler, its config dict, or the path of its scheduler_config.json)"
            )
        abar, config = _schedule_from(scheduler)
        ptype = prediction_type or config.get("prediction_type") or "epsilon"
        if isinstance(model, torch.nn.Module):
            if dtype is not None or device is not None:
                model = model.to(device=device, dtype=dtype)
            model = model.eval()
        return cls(model, alphas_cumprod=abar, prediction_type=ptype, **flow_options)


class DiffusionSDE(SDE):
    """The reverse-time SDE of a diffusion model in ``x̄``: ``dx̄ = 2 (x̄ − D)/t dt + σ_max √(2t) dW``,
    run from ``t = 1`` to 0.

    The reverse of the variance-exploding SDE ``x̄_σ = x_0 + σ ε`` in ``σ = t σ_max`` (Song et al.
    2021, score SDEs: drift ``−(dσ²/dt) ∇log p = 2 (x̄ − D)/t``, diffusion ``√(dσ²/dt)``); it has
    the probability-flow ODE's marginals, so it samples the model's distribution — DDPM's
    ancestral sampler is a discretisation of it. Additive noise: ``EulerMaruyama`` and ``SRA1``
    step it; it lands on ``t = 0`` like the ODE (its own step, on the flow's default grid).
    Built by :meth:`DiffusionFlow.reverse_sde`.
    """

    noise_type = "additive"
    singular_at_zero = True
    default_span = (1.0, 0.0)
    time_range = (0.0, 1.0)

    def __init__(self, flow: DiffusionFlow):
        if not isinstance(flow, DiffusionFlow):
            raise TypeError(f"flow must be a DiffusionFlow, got {describe(flow)}")
        self.flow = flow

    @property
    def network(self):
        """The diffusion model of the underlying :class:`DiffusionFlow`."""
        return self.flow.model

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

    def to_state(self, x: Tensor, t: float) -> Tensor:
        """``x̄ = x √(1 + σ²)`` (:meth:`DiffusionFlow.to_state`)."""
        return self.flow.to_state(x, t)

    def from_state(self, x: Tensor, t: float) -> Tensor:
        """The model's ``x`` (:meth:`DiffusionFlow.from_state`)."""
        return self.flow.from_state(x, t)

    def default_spacing(self) -> Spacing:
        """The flow's grid (DDIM's quadratic timesteps down to 0, :meth:`DiffusionFlow.
        default_spacing`)."""
        return self.flow.default_spacing()


def _load_model(obj, dtype=None):
    """``(model, scheduler or scheduler source or None)`` from a path, pipeline or model."""
    if isinstance(obj, (str, os.PathLike)):
        path = Path(obj).expanduser()
        if not path.is_dir():
            raise ConfigError(
                f"path_or_model must be an existing local folder (from_diffusers never downloads "
                f"from a hub; fetch the checkpoint first and pass its folder), got {str(obj)!r}"
            )
        if (path / "model_index.json").is_file():
            unet, sched = path / "unet", path / "scheduler"
        elif (path / "config.json").is_file():
            unet = path
            sched = next(
                (
                    p
                    for p in (path / "scheduler_config.json", path.parent / "scheduler")
                    if p.exists()
                ),
                None,
            )
        else:
            raise ConfigError(
                f"{str(obj)!r} is not a diffusers model folder (config.json) or pipeline folder "
                "(model_index.json)"
            )
        name = json.loads((unet / "config.json").read_text()).get("_class_name")
        if name != "UNet2DModel":
            raise ConfigError(
                f"from_diffusers loads a UNet2DModel; {str(unet)!r} holds a {name!r}: load it "
                "yourself and pass DiffusionFlow(model, alphas_cumprod=...)"
            )
        diffusers = import_diffusers()
        options = {"local_files_only": True, "low_cpu_mem_usage": False}
        if dtype is not None:
            options["torch_dtype"] = dtype
        model = diffusers.UNet2DModel.from_pretrained(str(unet.resolve()), **options)
        return model, sched
    if hasattr(obj, "unet") and hasattr(obj, "scheduler"):
        return obj.unet, obj.scheduler
    if callable(obj):
        return obj, None
    raise ConfigError(
        f"path_or_model must be a local folder, a pipeline or a model, got {describe(obj)}"
    )


def _schedule_from(scheduler) -> tuple[Tensor, dict]:
    """``(alphas_cumprod, config)`` from a scheduler object, config dict or path."""
    if isinstance(scheduler, (str, os.PathLike)):
        path = Path(scheduler).expanduser()
        if path.is_dir():
            path = path / "scheduler_config.json"
        if not path.is_file():
            raise ConfigError(
                f"scheduler must be a scheduler, a config dict or an existing local "
                f"scheduler_config.json (or its folder), got {str(scheduler)!r}"
            )
        scheduler = json.loads(path.read_text())
    if isinstance(scheduler, dict):
        diffusers = import_diffusers()
        kind = getattr(diffusers, str(scheduler.get("_class_name")), None)
        kind = kind if hasattr(kind, "from_config") else diffusers.DDPMScheduler
        scheduler = kind.from_config(scheduler)
    abar = getattr(scheduler, "alphas_cumprod", None)
    if abar is None:
        raise ConfigError(
            f"scheduler must have alphas_cumprod (a diffusers DDPM/DDIM-type scheduler), got "
            f"{describe(scheduler)}"
        )
    return _schedule(abar), dict(getattr(scheduler, "config", {}) or {})
