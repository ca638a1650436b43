"""A flow-matching (rectified-flow) velocity model as a residual flow (docs/math.md §9).

Rectified flow (Liu, Gong & Liu 2023; Lipman et al. 2023; Stable Diffusion 3, Esser et al. 2024)
interpolates ``x_t = (1 − t) x_0 + t ε`` and trains a velocity ``v_θ(x_t, t) ≈ E[ε − x_0 | x_t]``.
In diffusers' convention (``FlowMatchEulerDiscreteScheduler``) the time is the noise fraction
``σ = t ∈ [0, 1]``, the network is called as ``model(x, timestep)`` with ``timestep = σ·T``
(``T = num_train_timesteps``) and sampled by Euler, ``x ← x + (σ_next − σ) v``.

The clean estimate is ``D = x − t v`` and the ODE ``dx/dt = v = (x − D)/t`` is InDI's residual flow
with noise in place of the degraded image: :class:`FlowMatchingFlow` is a
:class:`~flowrestore.flows.ResidualFlow` whose drift is the network's output itself (no division),
so every residual-flow solver steps it and the loop's ``t = 0`` rule lands it (Euler's last step is
exactly ``D``, the scheduler's last step onto ``σ = 0``). The state is the model's ``x`` itself
(``to_state``/``from_state`` are the identity); a solve starts from ``x_1 = ε ~ N(0, I)``.

**Shift.** Models trained with a shifted schedule (SD3: ``shift = 3``) see noise levels
``σ' = s σ / (1 + (s − 1) σ)``; the network still receives ``timestep = σ'·T`` of the *actual*
noise level, so the shift does not change the flow — only which times a sampler visits.
``use_dynamic_shifting`` (Flux) picks ``s`` from the image size: ``s = exp(μ)`` ("exponential") or
``s = μ`` ("linear"), ``μ`` the pipelines' linear function of the image sequence length
(:func:`dynamic_shift`). :class:`~flowrestore.grids.Shifted` lays a grid in the
shifted time; :meth:`FlowMatchingFlow.grid_from_scheduler` takes a scheduler's own σ grid, on which
``fr.Euler()`` reproduces ``FlowMatchEulerDiscreteScheduler`` (tested to 1e-5).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import torch
from torch import Tensor

from flowrestore.errors import ConfigError, describe
from flowrestore.flows._model import ModelFlow
from flowrestore.flows.base import TimeVariable, batch_time, bcast, landing_sigma
from flowrestore.flows.diffusers_io import (
    check_model_cond,
    load_model,
    place,
    require_scheduler,
    scheduler_config,
)
from flowrestore.grids import FittedGrids, Shifted, Spacing, check_grid

__all__ = [
    "SIGMA_TIMESTEP_MODELS",
    "FlowMatchingFlow",
    "Shifted",
    "check_sigma_timestep",
    "dynamic_shift",
    "flow_matching_config",
]

_SCHEDULER = "FlowMatchEulerDiscreteScheduler"
#: diffusers' rectified-flow schedulers: the same model convention (``timestep = σ·T``, the
#: velocity ``ε − x_0``, ``shift``), whichever sampler steps it; Heun's and LCM's were refused as
#: "no flow-matching scheduler", so a pipeline folder saved with one could not be loaded
_FLOW_SCHEDULERS = (_SCHEDULER, "FlowMatchHeunDiscreteScheduler", "FlowMatchLCMScheduler")


class FlowMatchingFlow(ModelFlow):
    """A velocity model ``model(x, timestep)`` as the residual flow ``dx/dt = v = (x − D)/t``.

    Args:
        model: callable ``model(x, timestep, **cond)`` in diffusers' convention: ``x`` ``[B, ...]``,
            ``timestep`` a ``[B]`` tensor ``σ·T`` in the state's dtype (a module's own, if its
            parameters have another: :meth:`~flowrestore.flows._model.ModelFlow.call_model`);
            returns the velocity
            ``ε − x_0`` as a tensor, an object with ``.sample`` or a tuple.
        num_train_timesteps: ``T`` (the scheduler's ``num_train_timesteps``, 1000 in diffusers).
        shift: the schedule shift ``s`` the model was trained/sampled with; it sets the default
            grid (:meth:`default_spacing`), not the flow.
        cond: per-sample conditioning, ``{name: tensor [B, ...]}`` passed to the model as keyword
            arguments (``class_labels=``, ``encoder_hidden_states=``, ...).
        uncond: the unconditional model's keywords for classifier-free guidance (the same names
            as ``cond``, one row per sample; :mod:`flowrestore.flows._model`).
        guidance_scale: the guidance weight ``w`` (default 1: the conditional model; ≠ 1 needs
            ``uncond``).
        guidance_rescale: Lin et al.'s rescale ``φ ∈ [0, 1]`` of the guided output (default 0).
        check_outputs: validate shape, dtype and device of every model output.
        grids, spacings: a :class:`~flowrestore.FittedGrids` and ``{solver class: Spacing}``
            that ``steps=N`` uses for those solvers (:mod:`flowrestore.flows.declared`).
    """

    def __init__(
        self,
        model: Callable,
        *,
        num_train_timesteps: int = 1000,
        shift: float = 1.0,
        cond: dict[str, Tensor] | None = None,
        uncond: dict[str, Tensor] | None = None,
        guidance_scale: float = 1.0,
        guidance_rescale: float = 0.0,
        check_outputs: bool = True,
        grids: FittedGrids | None = None,
        spacings: dict[type, Spacing] | None = None,
    ):
        T = num_train_timesteps
        if isinstance(T, bool) or not isinstance(T, numbers.Integral) or T < 1:
            raise ConfigError(f"num_train_timesteps must be a positive int, got {describe(T)}")
        T = int(T)  # a numpy integer (a scheduler config read with numpy) as a Python int
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
        self.num_train_timesteps = T
        self.shift = float(Shifted(shift=shift).shift)  # a number > 0 (checked there)

    def __repr__(self) -> str:
        return (
            f"FlowMatchingFlow({type(self.model).__name__}, T={self.num_train_timesteps}, "
            f"shift={self.shift:.4g}{self._guidance_repr()})"
        )

    def state_coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(α_t, σ_t)`` with the state ``x_t = α_t x_0 + σ_t ε``: ``(1 − t, t)``."""
        return 1 - t, t

    def default_spacing(self) -> Spacing:
        """:class:`Shifted` with the model's shift, ``rho = 2`` and ``end_shift = √shift``.

        The shift puts the steps where the model was trained to be sampled; ``rho = 2`` makes the
        last positive point ``O(N^{−2})``, so the landing step's ``O(σ²)`` error is ``O(N^{−4})``
        and Euler, Heun, RK4 and the multistep solvers keep their orders at ``t = 0``. Measured
        on the exact Gaussian model (``python -m benchmarks.model_grids``, worst relative error at
        ``t = 0``, shift 3, 10 / 20 evaluations): Heun 0.027 / 0.0060 against 0.30 / 0.12 with
        ``rho = 1`` and 0.17 / 0.066 on diffusers' own grid; the multistep solver 0.017 / 0.0032
        against 0.062 / 0.029 and 0.075 / 0.032; Euler 0.14 / 0.074 against 0.20 / 0.11 and
        0.22 / 0.11. (With shift 1, Euler alone is 18 % better with ``rho = 1``.) These are the
        plain ``rho = 2`` grid's validation numbers; with ``end_shift`` (below) on the same priors:
        Heun 0.0167 / 0.0078, the multistep solver 0.0147 / 0.0025, Euler 0.143 / 0.074.

        ``end_shift = √shift``: the shift multiplies the last positive point by about ``shift``
        (``σ ≈ s u`` near 0), so with shift 5 it sat at 0.094 at 7 steps, coarse for data whose
        components lie well below the noise's scale; this lays it where the shift ``√s`` would
        (0.045), about the geometric middle of the shifted and the unshifted grid's, and keeps the
        shift's high-noise steps. Chosen on ``python -m benchmarks.grid_validation``'s
        flow-matching families (shifts 1, 1.5, 3, 4, 7; prior stds in [0.07, 0.7], [0.2, 2],
        [0.03, 0.3]): cells at 4–10 NFE behind the best peer, of 105, for end shift ``s`` (the
        plain grid) / ``s^0.75`` / ``√s`` / ``s^0.25`` / 1: 22 / 18 / **17** / 19 / 18, geometric
        mean best default / best peer 0.712 / 0.653 / **0.622** / 0.633 / 0.648, rows behind
        Euler at ``steps ≥ 3`` 11 / 3 / **0** / 0 / 0. Reported on ``python -m
        benchmarks.unseen``'s shifts 2 and 5, which chose nothing: 15 → 12 of 56 cells behind,
        worst ratio 5.12 → 2.91, rows behind Euler 8 → 1 (std [0.3, 3]: 0.46 → 0.50 of the best
        peer, the one range it costs).
        """
        return Shifted(shift=self.shift, rho=2.0, end_shift=math.sqrt(self.shift))

    def time_variable(self) -> TimeVariable:
        """Multistep interpolation in ``t²`` (the default), and the log-SNR of
        ``x_t = (1 − t) x_0 + t ε``: ``−log σ`` with the odds ``σ = t/(1 − t)`` (``log_snr``,
        ``odds``: what :class:`~flowrestore.UniPC` and ``SemiLinearMultistep(power=0)``
        interpolate in)."""
        return TimeVariable(log_snr=True, odds=True)

    def preferred_t_min(self, rtol: float) -> float:
        """Where error control should stop before the landing step: ``t = min(1e-2,
        sqrt(rtol)/10)``. Near ``t = 0`` the noise level is ``t`` itself (``x_t ≈ x_0 + t ε``)
        in the data's units, so a diffusion model's rule (``σ_stop = sqrt(rtol)/10``, landing
        error ``O(σ_stop²)``) is the controller's own default here, declared so that it stays
        this flow's whatever that default becomes."""
        return min(1e-2, landing_sigma(rtol))

    def predict(self, t: Tensor, x: Tensor) -> Tensor:
        """The model's velocity ``v(x, t)`` (timestep ``t·T``)."""
        timestep = batch_time(t, x) * self.num_train_timesteps
        return self.call_model(x, timestep)

    def velocity(self, t: Tensor, x: Tensor) -> Tensor:
        """The drift ``v``: the model's output, never divided by ``t``."""
        return self.predict(t, x)

    def denoise(self, t: Tensor, x: Tensor) -> Tensor:
        """The clean estimate ``D = x − t v``."""
        return x - bcast(t, x) * self.predict(t, x)

    def grid_from_scheduler(self, scheduler) -> Tensor:
        """The σ grid of a ``FlowMatchEulerDiscreteScheduler`` after ``set_timesteps`` (float64,
        ending at 0): ``fr.solve(flow, fr.Euler(), x, grid=flow.grid_from_scheduler(s))`` is its
        deterministic sampler; on a ``FlowMatchHeunDiscreteScheduler``'s (whose ``sigmas`` repeat
        every inner level, once per Heun stage: the distinct levels) ``fr.Heun()`` is its
        sampler."""
        if getattr(scheduler, "alphas_cumprod", None) is not None:  # DDIM: "no sampling grid"
            raise ConfigError(
                f"scheduler must be a {_SCHEDULER}, got a {type(scheduler).__name__} (a "
                "DDPM/DDIM-type scheduler: it belongs to fr.DiffusionFlow.grid_from_scheduler)"
            )
        sigmas = getattr(scheduler, "sigmas", None)
        config = dict(getattr(scheduler, "config", {}) or {})
        if sigmas is None or getattr(scheduler, "num_inference_steps", None) is None:
            raise ConfigError(
                f"scheduler has no sampling grid; call scheduler.set_timesteps(N) first, got "
                f"{type(scheduler).__name__}"
            )
        for key in ("stochastic_sampling", "invert_sigmas"):
            if config.get(key):
                raise ConfigError(
                    f"scheduler has {key}=True, which no deterministic grid reproduces; build it "
                    f"with {key}=False"
                )
        T = config.get("num_train_timesteps", self.num_train_timesteps)
        if T != self.num_train_timesteps:
            raise ConfigError(
                f"scheduler's num_train_timesteps={T} differs from the flow's "
                f"{self.num_train_timesteps}: build the flow from this scheduler"
            )
        grid = torch.as_tensor(sigmas).detach().to("cpu", torch.float64).reshape(-1)
        if type(scheduler).__name__ == "FlowMatchHeunDiscreteScheduler":
            # σ_0, σ_1, σ_1, σ_2, σ_2, …, 0: each inner level twice (a Heun step's two stages);
            # its steps are the distinct levels, on which fr.Heun() is its sampler
            grid = torch.unique_consecutive(grid)
        return check_grid(grid, time_range=(0.0, 1.0), direction=-1, name="scheduler.sigmas")

    @classmethod
    def from_diffusers(
        cls,
        path_or_model,
        scheduler=None,
        *,
        mu: float | None = None,
        image_seq_len: int | None = None,
        dtype: torch.dtype | None = None,
        device=None,
        **flow_options,
    ) -> FlowMatchingFlow:
        """A flow from a LOCAL diffusers folder (or objects), its scheduler a flow-matching one.

        ``path_or_model``: a pipeline folder (``model_index.json`` with ``transformer/`` or
        ``unet/`` and ``scheduler/``), a model folder (``config.json``; the scheduler from a
        ``scheduler_config.json`` beside it or ``../scheduler``), a pipeline object or a model.
        Nothing is downloaded (``local_files_only=True``); a missing folder, config, weights or
        scheduler raises :class:`~flowrestore.ConfigError` naming it. ``scheduler``: a scheduler,
        its config dict or the path of its ``scheduler_config.json``/folder. With
        ``use_dynamic_shifting`` pass ``mu=`` or ``image_seq_len=`` (the pipelines' rule). A
        network that takes ``timestep = σ`` (Flux and its kin, :data:`SIGMA_TIMESTEP_MODELS`) is
        refused: wrap it in a callable (:func:`check_sigma_timestep`).
        """
        model, found = load_model(path_or_model, subfolders=("transformer", "unet"), dtype=dtype)
        check_sigma_timestep(model)
        check_model_cond(model, flow_options.get("cond"), cls.__name__)
        scheduler = require_scheduler(
            found if scheduler is None else scheduler, path_or_model, _SCHEDULER
        )
        options = flow_matching_config(scheduler, mu=mu, image_seq_len=image_seq_len)
        return cls(place(model, dtype, device), **{**options, **flow_options})


#: diffusers transformers that take ``timestep = σ ∈ [0, 1]`` and multiply it by 1000 themselves
#: (their pipelines pass ``timestep / 1000``), not the ``σ·T`` this flow passes
SIGMA_TIMESTEP_MODELS = frozenset(
    {
        "ChromaTransformer2DModel",
        "Flux2Transformer2DModel",
        "Flux3Transformer2DModel",
        "FluxTransformer2DModel",
        "LongCatImageTransformer2DModel",
        "OvisImageTransformer2DModel",
        "QwenImageTransformer2DModel",
    }
)


def check_sigma_timestep(model) -> None:
    """Refuse, before any evaluation, a network of :data:`SIGMA_TIMESTEP_MODELS` (Flux and its
    kin): called with ``timestep = σ·T`` it saw noise levels 1000 times too large and returned a
    wrong velocity without an error. Such a network also takes position ids without a batch
    dimension (``img_ids``), which ``cond`` cannot carry: wrap it in a callable."""
    inner = getattr(model, "inner", model)
    name = type(inner).__name__
    if name in SIGMA_TIMESTEP_MODELS:
        raise ConfigError(
            f"{name} takes timestep = sigma in [0, 1] (its pipeline passes timestep / 1000) and "
            "position ids without a batch dimension; FlowMatchingFlow calls model(x, sigma * T): "
            "wrap it, e.g. fr.FlowMatchingFlow(lambda x, timestep, **c: net(x, timestep="
            "timestep / 1000, img_ids=..., txt_ids=..., **c).sample, shift=...)"
        )


def dynamic_shift(config: dict, *, mu=None, image_seq_len=None) -> float:
    """The shift of a ``use_dynamic_shifting`` scheduler: ``μ`` given, or diffusers' linear rule
    ``μ = base_shift + (max_shift − base_shift)(L − base_seq_len)/(max_seq_len − base_seq_len)``
    of the image sequence length ``L``; then ``s = exp(μ)`` ("exponential") or ``s = μ``."""
    if mu is None:
        if image_seq_len is None:
            raise ConfigError(
                "this scheduler has use_dynamic_shifting=True: pass mu= or image_seq_len= "
                "(the number of latent patches, as the pipeline computes it)"
            )
        if isinstance(image_seq_len, bool) or not isinstance(image_seq_len, numbers.Integral):
            raise ConfigError(f"image_seq_len must be an int, got {describe(image_seq_len)}")
        if image_seq_len < 1:
            raise ConfigError(
                "image_seq_len must be a positive int (latent patches), got "
                f"{describe(image_seq_len)}"
            )
        b0, b1 = config.get("base_shift", 0.5), config.get("max_shift", 1.15)
        l0, l1 = config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096)
        for key, value in (("base_shift", b0), ("max_shift", b1)):
            _config_number(key, value)
        for key, value in (("base_image_seq_len", l0), ("max_image_seq_len", l1)):
            _config_number(key, value)
        if l0 == l1:
            raise ConfigError(
                f"the scheduler config has base_image_seq_len = max_image_seq_len = {l0!r}: the "
                "shift's linear rule is undefined; pass mu= instead"
            )
        mu = b0 + (b1 - b0) * (int(image_seq_len) - l0) / (l1 - l0)
    elif image_seq_len is not None:
        raise ConfigError("pass mu= or image_seq_len=, not both")
    if isinstance(mu, bool) or not isinstance(mu, numbers.Real) or not math.isfinite(mu):
        raise ConfigError(f"mu must be a finite number, got {describe(mu)}")
    mu = float(mu)
    kind = config.get("time_shift_type", "exponential")
    if kind == "exponential":
        if not -700.0 < mu < 700.0:  # exp overflows float64 (OverflowError) or underflows to 0
            raise ConfigError(
                f"mu must lie in (-700, 700) for time_shift_type='exponential' (shift = exp(mu)), "
                f"got {describe(mu)}"
            )
        return math.exp(mu)
    if kind == "linear":
        if mu <= 0:
            raise ConfigError(f"mu must be > 0 for time_shift_type='linear', got {describe(mu)}")
        return float(mu)
    raise ConfigError(f"time_shift_type must be 'exponential' or 'linear', got {kind!r}")


def flow_matching_config(scheduler, *, mu=None, image_seq_len=None) -> dict:
    """``{num_train_timesteps, shift}`` for :class:`FlowMatchingFlow` from a
    ``FlowMatchEulerDiscreteScheduler`` (object, config dict or path; module docstring)."""
    config = scheduler_config(scheduler)
    name = config.get("_class_name")
    if name is not None and name not in _FLOW_SCHEDULERS:
        raise ConfigError(
            f"a flow-matching model needs a {_SCHEDULER} (or another rectified-flow scheduler "
            f"of diffusers: {', '.join(_FLOW_SCHEDULERS[1:])}), got a {name}; a DDPM/DDIM-type "
            "scheduler belongs to fr.DiffusionFlow.from_diffusers"
        )
    if config.get("invert_sigmas"):
        raise ConfigError(
            "scheduler has invert_sigmas=True (the model takes timestep (1 − σ)·T): not the "
            "rectified-flow convention FlowMatchingFlow implements"
        )
    if config.get("use_dynamic_shifting"):
        shift = dynamic_shift(config, mu=mu, image_seq_len=image_seq_len)
    else:
        if mu is not None or image_seq_len is not None:
            raise ConfigError(
                "mu=/image_seq_len= apply to use_dynamic_shifting schedulers only; this one has "
                f"a fixed shift={config.get('shift', 1.0)}"
            )
        shift = _config_number("shift", config.get("shift", 1.0))
    T = config.get("num_train_timesteps", 1000)
    if isinstance(T, float) and T.is_integer():
        T = int(T)  # 1000.0 in a hand-written config
    if isinstance(T, bool) or not isinstance(T, numbers.Integral) or T < 1:
        raise ConfigError(
            f"the scheduler config's num_train_timesteps must be a positive int, got {describe(T)}"
        )
    return {"num_train_timesteps": int(T), "shift": shift}


def _config_number(key: str, value) -> float:
    """A scheduler config's number ``value`` as a float, or a :class:`ConfigError` naming
    ``key`` (a ``null`` or a string in a hand-written config was a bare ``TypeError``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ConfigError(
            f"the scheduler config's {key} must be a finite number, got {describe(value)}"
        )
    return float(value)
