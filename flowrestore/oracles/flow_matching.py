"""Exact flow-matching and EDM-denoiser models of a Gaussian prior (docs/math.md §9).

For ``x_0 ~ N(c, diag s_c²)`` everything is linear-Gaussian, per coordinate:

* **Rectified flow** ``x_t = (1 − t) x_0 + t ε`` (diffusers' ``FlowMatchEulerDiscreteScheduler``
  convention, ``timestep = t·T``): with ``m_t = (1 − t) c`` and ``V_t = (1 − t)² s_c² + t²``,
  ``E[x_0 | x_t] = c + (1 − t) s_c² (x_t − m_t)/V_t``, ``E[ε | x_t] = t (x_t − m_t)/V_t``, and the
  exact velocity ``v = E[ε − x_0 | x_t] = (t − (1 − t) s_c²)(x_t − m_t)/V_t − c``. The ODE
  ``dx/dt = v`` keeps the standardised coordinate ``(x_t − m_t)/√V_t`` constant, so the flow map
  from ``t = 1`` (``x_1 = ε``) is ``x_1 ↦ c + s_c x_1``
  (:meth:`GaussianFlowMatchingOracle.exact_map`).
* **EDM denoiser** ``x = x_0 + σ ε`` (Karras et al. 2022):
  ``D(x, σ) = c + s_c² (x − c)/(s_c² + σ²)``;
  ``dx/dσ = (x − D)/σ`` keeps ``(x − c)/√(s_c² + σ²)`` constant
  (:meth:`GaussianDenoiserOracle.exact_map`).

:class:`GaussianFlowMatchingOracle` is called like a diffusers velocity model,
``oracle(x, timestep)``, and plugs into :class:`~flowrestore.FlowMatchingFlow`;
:class:`GaussianDenoiserOracle` is called like a k-diffusion denoiser, ``oracle(x, sigma)``, and
plugs into :class:`~flowrestore.DenoiserFlow`.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch
from torch import Tensor

from flowrestore.errors import ConfigError, describe
from flowrestore.oracles._common import (
    as_param,
    check_state,
    resolve_event_shape,
    standard_normal,
    widened,
)
from flowrestore.oracles.diffusion import _timesteps

__all__ = ["GaussianDenoiserOracle", "GaussianFlowMatchingOracle"]


def _number(value, name: str) -> float:
    """``value`` (a real number or a one-element tensor) as a python float, else ConfigError."""
    if isinstance(value, Tensor) and value.numel() == 1 and not value.is_complex():
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be a number, got {describe(value)}")
    return float(value)


class _GaussianPrior:
    """A per-coordinate Gaussian prior ``N(c, diag s_c²)`` (shared parsing and sampling)."""

    def __init__(self, mean, std, event_shape) -> None:
        c, sc = as_param(mean, "mean"), as_param(std, "std")
        if not bool((sc > 0).all()):
            raise ConfigError(f"std must be positive, got {describe(std)}")
        shape = resolve_event_shape({"mean": c, "std": sc}, event_shape)
        self.event_shape: tuple[int, ...] = shape
        self.mean: Tensor = c.expand(shape).clone()
        self.std: Tensor = sc.expand(shape).clone()

    def _params(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = check_state(x, self.event_shape, "x")
        return x, self.mean.to(x), self.std.to(x) ** 2

    def sample(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Draw ``n`` clean samples ``x_0 ~ N(c, diag s_c²)``, shape ``[n, *event_shape]``."""
        z = standard_normal(n, self.event_shape, generator, dtype, device)
        return self.mean.to(z) + self.std.to(z) * z


class GaussianFlowMatchingOracle(_GaussianPrior):
    """The exact rectified-flow velocity model of ``N(c, diag s_c²)`` (module docstring).

    Args (keyword-only):
        mean, std: the prior's ``c`` and ``s_c > 0`` (scalars or tensors broadcasting to
            ``event_shape``).
        num_train_timesteps: ``T``: ``oracle(x, timestep)`` evaluates at ``t = timestep / T``.
        event_shape: shape of one sample; required if ``mean`` and ``std`` are both scalars.
    """

    def __init__(
        self,
        *,
        mean: float | Tensor = 0.0,
        std: float | Tensor = 1.0,
        num_train_timesteps: int = 1000,
        event_shape: Sequence[int] | None = None,
    ) -> None:
        super().__init__(mean, std, event_shape)
        T = num_train_timesteps
        if isinstance(T, bool) or not isinstance(T, int) or T < 1:
            raise ConfigError(f"num_train_timesteps must be a positive int, got {describe(T)}")
        self.num_train_timesteps = T

    def _moments(self, x: Tensor, timestep):
        x, c, var = self._params(x)
        t = _timesteps(timestep, x) / self.num_train_timesteps
        m = (1 - t) * c
        return x, t, c, var, x - m, (1 - t) ** 2 * var + t * t

    @widened
    def clean(self, x: Tensor, timestep) -> Tensor:
        """``E[x_0 | x_t] = c + (1 − t) s_c² (x_t − m_t)/V_t``."""
        x, t, c, var, dev, V = self._moments(x, timestep)
        return c + (1 - t) * var * dev / V

    @widened
    def velocity(self, x: Tensor, timestep) -> Tensor:
        """``v = E[ε − x_0 | x_t] = (t − (1 − t) s_c²)(x_t − m_t)/V_t − c``."""
        x, t, c, var, dev, V = self._moments(x, timestep)
        return (t - (1 - t) * var) * dev / V - c

    @widened
    def __call__(self, x: Tensor, timestep) -> Tensor:
        """The model's output in diffusers' convention: the velocity."""
        return self.velocity(x, timestep)

    @widened
    def exact_map(self, x: Tensor, t_from: float = 1.0, t_to: float = 0.0) -> Tensor:
        """The ODE's flow map from ``t_from`` to ``t_to``: ``m_b + √(V_b/V_a) (x − m_a)``."""
        x, c, var = self._params(x)
        (a, b) = (_number(t_from, "t_from"), _number(t_to, "t_to"))
        if not (0 <= a <= 1 and 0 <= b <= 1):
            raise ConfigError(f"times must lie in [0, 1], got t_from={a}, t_to={b}")
        va, vb = (1 - a) ** 2 * var + a * a, (1 - b) ** 2 * var + b * b
        return (1 - b) * c + torch.sqrt(vb / va) * (x - (1 - a) * c)

    def sample_latent(
        self,
        n: int,
        generator: torch.Generator | None = None,
        *,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Draw ``n`` noises ``x_1 ~ N(0, I)`` (the flow's start), ``[n, *event_shape]``."""
        return standard_normal(n, self.event_shape, generator, dtype, device)

    def __repr__(self) -> str:
        return (
            f"GaussianFlowMatchingOracle(event_shape={self.event_shape}, "
            f"T={self.num_train_timesteps})"
        )


class GaussianDenoiserOracle(_GaussianPrior):
    """The exact EDM denoiser ``D(x, σ) = E[x_0 | x_0 + σ ε = x]`` of ``N(c, diag s_c²)``.

    Args (keyword-only): ``mean``, ``std``, ``event_shape`` as :class:`GaussianFlowMatchingOracle`.
    Called as ``oracle(x, sigma)`` with ``sigma`` a number, 0-d or ``[B]`` tensor.
    """

    def __init__(
        self,
        *,
        mean: float | Tensor = 0.0,
        std: float | Tensor = 1.0,
        event_shape: Sequence[int] | None = None,
    ) -> None:
        super().__init__(mean, std, event_shape)

    @widened
    def __call__(self, x: Tensor, sigma) -> Tensor:
        """``D(x, σ) = c + s_c² (x − c)/(s_c² + σ²)``."""
        x, c, var = self._params(x)
        s = _timesteps(sigma, x)
        return c + var * (x - c) / (var + s * s)

    @widened
    def exact_map(self, x: Tensor, sigma_from: float, sigma_to: float = 0.0) -> Tensor:
        """The ODE's flow map: ``c + √((s_c² + σ_b²)/(s_c² + σ_a²)) (x − c)``."""
        x, c, var = self._params(x)
        a, b = _number(sigma_from, "sigma_from"), _number(sigma_to, "sigma_to")
        if not (a >= 0 and b >= 0):  # NaN too
            raise ConfigError(f"noise levels must be >= 0, got sigma_from={a}, sigma_to={b}")
        return c + torch.sqrt((var + b * b) / (var + a * a)) * (x - c)

    def __repr__(self) -> str:
        return f"GaussianDenoiserOracle(event_shape={self.event_shape})"
