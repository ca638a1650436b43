"""The exact diffusion model of a Gaussian prior, in diffusers' convention (docs/math.md §8).

A VP diffusion model (DDPM, Ho et al. 2020; DDIM, Song, Meng & Ermon 2021) noises a clean image
``x_0`` at integer timestep ``k ∈ [0, T − 1]`` as ``x_k = a_k x_0 + b_k ε`` with ``a = √ᾱ_k``,
``b = √(1 − ᾱ_k)`` (``alphas_cumprod`` = ``ᾱ``). For a Gaussian prior ``x_0 ~ N(c, diag σ_c²)``
everything is linear-Gaussian and, per coordinate (docs/math.md §8):

- ``E[x_0 | x] = c + a σ_c² (x − a c) / (a² σ_c² + b²)``;
- the ε-model ``ε̂(x) = E[ε | x] = b (x − a c) / (a² σ_c² + b²)``;
- the v-model ``v̂ = a ε̂ − b E[x_0 | x]`` (diffusers' ``v = a ε − b x_0``);
- the probability-flow (DDIM, ``η = 0``) map from noise at timestep ``k`` to the clean image
  ``x_k ↦ c + σ_c (x_k − a_k c) / √(a_k² σ_c² + b_k²)``: the standardised coordinate
  ``(x̄ − c)/√(σ_c² + σ²)`` of ``x̄ = x/a``, ``σ = b/a`` is constant along the flow.

:class:`GaussianDiffusionOracle` is that model as a callable ``model(x, timestep)`` returning the
prediction of its ``prediction_type`` (``"epsilon"``, ``"v_prediction"``, ``"sample"``), so it
plugs into :class:`flowrestore.DiffusionFlow` wherever a trained network would.

**Continuous timesteps.** Between integer timesteps the schedule is interpolated linearly in the
log-SNR ``λ = log(ᾱ/(1 − ᾱ)) = −2 log σ`` (:func:`alpha_cumprod_at`), and beyond ``[0, T − 1]``
extended linearly with the end segments' slopes, so every noise level ``σ ∈ (0, ∞)`` has a
timestep. :class:`~flowrestore.DiffusionFlow` inverts the same rule, which makes the oracle exact at
every time a solver evaluates.

**Precision.** The schedule lookup runs in float64 (:func:`schedule_at`) and the closed forms in at
least float32; a bf16 or fp16 state gets its output in its own dtype. In bf16 itself ``ᾱ`` near 1
rounds to 1 (``√(1 − ᾱ) = 0``: NaN outputs) and the table index ``T − 2 = 998`` to 1000 (out of
bounds). The other oracles of :mod:`flowrestore.oracles` widen half precision the same way.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch
from torch import Tensor

from flowrestore.errors import ConfigError, ShapeError, describe
from flowrestore.oracles._common import (
    as_param,
    check_state,
    exact_dtype,
    resolve_event_shape,
    standard_normal,
    widened,
)

__all__ = [
    "PREDICTION_TYPES",
    "ZERO_SNR_ALPHA_CUMPROD",
    "GaussianDiffusionOracle",
    "alpha_cumprod_at",
    "check_alphas_cumprod",
    "linear_alphas_cumprod",
    "schedule_at",
    "zero_terminal_snr",
]

#: diffusers' names of what a model predicts: noise, velocity ``a ε − b x_0``, clean image
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


#: the ``ᾱ`` that stands in for a zero-terminal-SNR schedule's last ``ᾱ = 0`` (an infinite noise
#: level): ``2⁻²⁴``, diffusers' rule for such schedules (``EulerDiscreteScheduler`` with
#: ``rescale_betas_zero_snr=True``), i.e. ``σ_max ≈ 4096``
ZERO_SNR_ALPHA_CUMPROD = 2.0**-24


def check_alphas_cumprod(
    alphas_cumprod, name: str = "alphas_cumprod", *, prediction_type: str | None = None
) -> Tensor:
    """``ᾱ`` as a float64 CPU tensor ``[T]``: ``T ≥ 2`` values in (0, 1), strictly decreasing.

    A zero-terminal-SNR schedule (Lin et al. 2024, "Common diffusion noise schedules and sample
    steps are flawed": ``ᾱ_{T−1} = 0``) is accepted for a ``"v_prediction"`` or ``"sample"``
    model, its last entry replaced by :data:`ZERO_SNR_ALPHA_CUMPROD` (diffusers' rule); an
    ``"epsilon"`` model (or ``prediction_type=None``) cannot recover ``x₀`` from pure noise and is
    refused.
    """
    table = as_param(alphas_cumprod, name)  # float64 CPU copy, real and finite
    if table.dim() != 1 or table.numel() < 2:
        raise ConfigError(f"{name} must be 1-D with at least 2 entries, got {describe(table)}")
    zero_end = bool(table[-1] == 0) and bool((table[:-1] > 0).all())
    if zero_end and prediction_type in ("v_prediction", "sample"):
        table[-1] = min(ZERO_SNR_ALPHA_CUMPROD, float(table[-2]) / 2)
    elif zero_end:
        raise ConfigError(
            f"{name} ends at ᾱ = 0 (a zero-terminal-SNR schedule), which only a "
            f"'v_prediction' or 'sample' model can start from: an epsilon model's x₀ estimate "
            f"is undefined at zero SNR; got prediction_type={describe(prediction_type)}"
        )
    if not bool(((table > 0) & (table < 1)).all()):
        raise ConfigError(
            f"{name} must lie strictly inside (0, 1) (ᾱ = 1 is no noise; ᾱ = 0 only as the last "
            f"entry, a zero-terminal-SNR schedule of a v or x₀ model), got values from "
            f"{table.min().item():.6g} to {table.max().item():.6g}"
        )
    if not bool((table.diff() < 0).all()):
        k = int((table.diff() >= 0).nonzero()[0])
        raise ConfigError(
            f"{name} must decrease strictly with the timestep; it does not between timesteps "
            f"{k} ({table[k].item():.6g}) and {k + 1} ({table[k + 1].item():.6g})"
        )
    return table.clone()


def linear_alphas_cumprod(
    num_train_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02
) -> Tensor:
    """DDPM's linear schedule (Ho et al. 2020): ``ᾱ_k = Π_{j≤k} (1 − β_j)``, β linear (float64)."""
    if isinstance(num_train_timesteps, bool) or not isinstance(num_train_timesteps, int):
        raise ConfigError(
            f"num_train_timesteps must be an int >= 2, got {describe(num_train_timesteps)}"
        )
    if num_train_timesteps < 2:
        raise ConfigError(
            f"num_train_timesteps must be an int >= 2, got {describe(num_train_timesteps)}"
        )
    if not 0 < beta_start <= beta_end < 1:
        raise ConfigError(
            f"need 0 < beta_start <= beta_end < 1, got beta_start={describe(beta_start)}, "
            f"beta_end={describe(beta_end)}"
        )
    betas = torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float64)
    return torch.cumprod(1 - betas, dim=0)


def zero_terminal_snr(alphas_cumprod) -> Tensor:
    """A schedule rescaled to zero terminal SNR (Lin et al. 2024, Algorithm 1): ``√ᾱ`` shifted
    and scaled so that its first value is kept and its last becomes 0 (float64 ``[T]``; what
    diffusers' ``rescale_betas_zero_snr=True`` builds). Its last ``ᾱ = 0`` is accepted by a v or
    x₀ model (:func:`check_alphas_cumprod`)."""
    table = check_alphas_cumprod(alphas_cumprod)
    a = table.sqrt()
    return ((a - a[-1]) * a[0] / (a[0] - a[-1])) ** 2


def _log_snr_at(alphas_cumprod: Tensor, timestep: Tensor) -> Tensor:
    """``λ`` at continuous timesteps, computed in float64 (:func:`~flowrestore.oracles._common.
    exact_dtype`) whatever the timestep's dtype: in bf16 the index ``T − 2 = 998`` is 1000."""
    dtype = exact_dtype(timestep.device)
    table = alphas_cumprod.to(device=timestep.device, dtype=dtype)
    lam = torch.log(table) - torch.log1p(-table)
    n = table.numel()
    tau = timestep.to(dtype)
    # a NaN timestep indexes the table at 0 and stays NaN through ``f`` (no host read)
    k = torch.nan_to_num(tau.detach(), nan=0.0).floor().clamp(0, n - 2).long()
    f = tau - k.to(dtype)
    return lam[k] + f * (lam[k + 1] - lam[k])


def _out_dtype(timestep: Tensor) -> torch.dtype:
    return timestep.dtype if timestep.is_floating_point() else exact_dtype(timestep.device)


def alpha_cumprod_at(alphas_cumprod: Tensor, timestep: Tensor) -> Tensor:
    """``ᾱ`` at continuous timesteps (module docstring): ``λ(k + f) = (1 − f) λ_k + f λ_{k+1}``.

    ``alphas_cumprod`` is a checked table ``[T]``; ``timestep`` any real tensor (returned shape,
    and dtype when floating). The lookup and the interpolation run in float64; note that in half
    precision ``ᾱ`` near 1 rounds to 1 (:func:`schedule_at` gives ``√(1 − ᾱ)`` exactly).
    """
    return torch.sigmoid(_log_snr_at(alphas_cumprod, timestep)).to(_out_dtype(timestep))


def schedule_at(alphas_cumprod: Tensor, timestep: Tensor) -> tuple[Tensor, Tensor]:
    """``(a, b) = (√ᾱ, √(1 − ᾱ))`` at continuous timesteps (:func:`alpha_cumprod_at`'s rule),
    computed in float64 from the log-SNR (``1 − ᾱ = sigmoid(−λ)``: no cancellation near
    ``ᾱ = 1``) and returned in the timestep's dtype."""
    lam = _log_snr_at(alphas_cumprod, timestep)
    dtype = _out_dtype(timestep)
    return torch.sigmoid(lam).sqrt().to(dtype), torch.sigmoid(-lam).sqrt().to(dtype)


def _timesteps(timestep, x: Tensor, name: str = "timestep") -> Tensor:
    """``timestep`` (number, 0-d or ``[B]`` tensor) as a ``[B, 1, ..., 1]`` tensor in x's dtype.

    A non-finite number is refused; a tensor's values are not read on the host (an oracle is
    evaluated inside a solve's steps, which never wait for the device: issue 17), so a non-finite
    entry becomes NaN and makes that sample's output NaN, which a solve's finite check reports
    (:class:`~flowrestore.errors.NonFiniteError`). ``name`` is the argument's name in errors.
    """
    if isinstance(timestep, bool):
        raise ConfigError(f"{name} must be a number or a tensor, got {describe(timestep)}")
    if isinstance(timestep, numbers.Real):  # numpy scalars too
        if not math.isfinite(timestep):
            raise ConfigError(f"{name} must be finite, got {describe(timestep)}")
        tv = torch.full((x.shape[0],), float(timestep), dtype=x.dtype, device=x.device)
    elif isinstance(timestep, Tensor):
        tv = timestep.to(device=x.device, dtype=x.dtype)
        if tv.dim() == 0:
            tv = tv.expand(x.shape[0])
        elif tv.shape != (x.shape[0],):
            raise ShapeError(
                f"{name} must be a number, a 0-d tensor or a [B]=[{x.shape[0]}] tensor, "
                f"got {describe(timestep)}"
            )
        tv = torch.where(torch.isfinite(tv), tv, torch.full_like(tv, math.nan))
    else:
        raise ConfigError(f"{name} must be a number or a tensor, got {describe(timestep)}")
    return tv.reshape(x.shape[0], *([1] * (x.dim() - 1)))


class GaussianDiffusionOracle:
    """The exact ε/v/x₀ model of the prior ``N(c, diag σ_c²)`` under a schedule ``ᾱ``.

    Args (keyword-only):
        mean: prior mean ``c`` (scalar or tensor broadcastable to ``event_shape``).
        std: prior standard deviation ``σ_c > 0``.
        alphas_cumprod: the schedule ``ᾱ_k``, ``k = 0 … T − 1`` (strictly decreasing in (0, 1);
            a zero-terminal-SNR one for v and x₀ models, :func:`check_alphas_cumprod`).
        prediction_type: what ``oracle(x, timestep)`` returns: ``"epsilon"`` (``ε̂``),
            ``"v_prediction"`` (``v̂``) or ``"sample"`` (``E[x_0 | x]``).
        event_shape: shape of one sample; required if ``mean`` and ``std`` are both scalars.
    """

    def __init__(
        self,
        *,
        mean: float | Tensor = 0.0,
        std: float | Tensor = 1.0,
        alphas_cumprod,
        prediction_type: str = "epsilon",
        event_shape: Sequence[int] | None = None,
    ) -> None:
        c, sc = as_param(mean, "mean"), as_param(std, "std")
        if not bool((sc > 0).all()):
            raise ConfigError(f"std must be positive, got {describe(std)}")
        if prediction_type not in PREDICTION_TYPES:
            raise ConfigError(
                f"prediction_type must be one of {PREDICTION_TYPES}, "
                f"got {describe(prediction_type)}"
            )
        shape = resolve_event_shape({"mean": c, "std": sc}, event_shape)
        self.event_shape: tuple[int, ...] = shape
        self.mean: Tensor = c.expand(shape).clone()
        self.std: Tensor = sc.expand(shape).clone()
        self.alphas_cumprod: Tensor = check_alphas_cumprod(
            alphas_cumprod, prediction_type=prediction_type
        )
        self.prediction_type = prediction_type

    @property
    def num_train_timesteps(self) -> int:
        """``T``, the number of trained timesteps."""
        return self.alphas_cumprod.numel()

    def _coefficients(self, x: Tensor, timestep) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        x = check_state(x, self.event_shape, "x")
        a, b = schedule_at(self.alphas_cumprod, _timesteps(timestep, x))
        return x, a, b, self.mean.to(x)

    @widened
    def clean(self, x: Tensor, timestep) -> Tensor:
        """``E[x_0 | x_k = x] = c + a σ_c² (x − a c) / (a² σ_c² + b²)``."""
        x, a, b, c = self._coefficients(x, timestep)
        var = self.std.to(x) ** 2
        return c + a * var * (x - a * c) / (a * a * var + b * b)

    @widened
    def epsilon(self, x: Tensor, timestep) -> Tensor:
        """``ε̂(x) = E[ε | x_k = x] = b (x − a c) / (a² σ_c² + b²)``."""
        x, a, b, c = self._coefficients(x, timestep)
        var = self.std.to(x) ** 2
        return b * (x - a * c) / (a * a * var + b * b)

    @widened
    def velocity(self, x: Tensor, timestep) -> Tensor:
        """``v̂(x) = a ε̂ − b E[x_0 | x]`` (diffusers' ``v = a ε − b x_0``)."""
        x, a, b, c = self._coefficients(x, timestep)
        var = self.std.to(x) ** 2
        den = a * a * var + b * b
        eps = b * (x - a * c) / den
        x0 = c + a * var * (x - a * c) / den
        return a * eps - b * x0

    @widened
    def __call__(self, x: Tensor, timestep) -> Tensor:
        """The model's output in diffusers' convention: the prediction of ``prediction_type``."""
        if self.prediction_type == "epsilon":
            return self.epsilon(x, timestep)
        if self.prediction_type == "v_prediction":
            return self.velocity(x, timestep)
        return self.clean(x, timestep)

    @widened
    def exact_map(self, x_start: Tensor, timestep=None) -> Tensor:
        """The probability-flow map from ``x`` at ``timestep`` (default ``T − 1``) to the clean
        image (``ᾱ = 1``, the flow's ``t = 0``; not the noise level of timestep 0):
        ``c + σ_c (x − a c) / √(a² σ_c² + b²)``."""
        timestep = self.num_train_timesteps - 1 if timestep is None else timestep
        x, a, b, c = self._coefficients(x_start, timestep)
        sc = self.std.to(x)
        return c + sc * (x - a * c) / torch.sqrt(a * a * sc * sc + b * b)

    def sample_latent(
        self,
        n: int,
        generator: torch.Generator | None = None,
        *,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Draw ``n`` noises ``x_T ~ N(0, I)``, shape ``[n, *event_shape]`` (the model's start)."""
        return standard_normal(n, self.event_shape, generator, dtype, device)

    def sample(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Draw ``n`` clean samples ``x_0 ~ N(c, diag σ_c²)``, shape ``[n, *event_shape]``."""
        z = self.sample_latent(n, generator, dtype=dtype, device=device)
        return self.mean.to(z) + self.std.to(z) * z

    def __repr__(self) -> str:
        return (
            f"GaussianDiffusionOracle(event_shape={self.event_shape}, "
            f"T={self.num_train_timesteps}, prediction_type={self.prediction_type!r})"
        )
