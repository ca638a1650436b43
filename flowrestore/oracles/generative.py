"""Gaussian oracle for a *generative* InDI flow, as used by BIRD (docs/math.md §5).

Prior ``x ~ N(c, diag σ_c²)``; the "degraded" image is pure noise ``y = z ~ N(0, I)`` independent
of ``x``; path ``x_t = (1 - t) x + t z``. Per coordinate (docs/math.md §1 applied to this pair):

- ``E[x | x_t] = c + (1 - t) σ_c² (x_t - (1 - t) c) / ((1 - t)² σ_c² + t²)``;
- the residual-flow ODE ``dx/dt = (x - E[x|x_t]) / t`` from ``x(1) = z`` is the affine transport
  between the Gaussian marginals ``N((1 - t) c, s_t²)``, ``s_t² = (1 - t)² σ_c² + t²``:
  ``x_t = (1 - t) c + s_t z``. Differentiating gives ``-c + z s_t'`` with
  ``s_t' / s_t = (t - (1 - t) σ_c²) / s_t²``, which equals ``(x - E[x|x_t]) / t``;
- the flow's map from ``t = 1`` to ``t = 0`` is ``Ψ(z) = c + σ_c ⊙ z`` (:meth:`exact_map`), the
  ground truth a BIRD inversion through a few-step solve should approach.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from flowrestore.errors import ConfigError, describe
from flowrestore.oracles._common import (
    PosteriorOracle,
    TimeLike,
    as_param,
    check_state,
    expand_time,
    resolve_event_shape,
    standard_normal,
    time_vector,
    widened,
)

__all__ = ["GaussianGenerativeOracle"]


class GaussianGenerativeOracle(PosteriorOracle):
    """Gaussian prior pushed from a standard-normal latent by the InDI flow (docs/math.md §5).

    Args (keyword-only):
        mean: prior mean ``c`` (scalar or tensor broadcastable to ``event_shape``).
        std: prior standard deviation ``σ_c > 0`` (scalar or tensor).
        event_shape: shape of one sample; required if ``mean`` and ``std`` are both scalars.
    """

    def __init__(
        self,
        *,
        mean: float | torch.Tensor = 0.0,
        std: float | torch.Tensor = 1.0,
        event_shape: Sequence[int] | None = None,
    ) -> None:
        c = as_param(mean, "mean")
        sc = as_param(std, "std")
        if not bool((sc > 0).all()):
            raise ConfigError(f"std must be positive, got {describe(std)}")
        shape = resolve_event_shape({"mean": c, "std": sc}, event_shape)
        self.event_shape: tuple[int, ...] = shape
        self.mean: torch.Tensor = c.expand(shape).clone()
        self.std: torch.Tensor = sc.expand(shape).clone()

    @widened
    def posterior_mean(self, x_t: torch.Tensor, t: TimeLike) -> torch.Tensor:
        """Exact ``E[x | x_t]`` on the path ``x_t = (1 - t) x + t z``; ``t`` scalar or ``[B]``.

        At ``t = 1`` it is ``c``; at ``t = 0`` it is ``x_t``.
        """
        x_t = check_state(x_t, self.event_shape, "x_t")
        tv = expand_time(time_vector(t, x_t.shape[0], x_t), x_t.dim())
        c, sc = self.mean.to(x_t), self.std.to(x_t)
        a = 1 - tv
        var = sc**2
        return c + a * var * (x_t - a * c) / (a**2 * var + tv**2)

    @widened
    def exact_map(self, z: torch.Tensor) -> torch.Tensor:
        """The flow's exact map from the latent at ``t = 1`` to ``t = 0``: ``c + σ_c ⊙ z``."""
        z = check_state(z, self.event_shape, "z")
        return self.mean.to(z) + self.std.to(z) * z

    @widened
    def ode_solution(self, z: torch.Tensor, t: TimeLike) -> torch.Tensor:
        """Closed-form ODE path from ``x(1) = z``: ``(1 - t) c + z sqrt((1 - t)² σ_c² + t²)``."""
        z = check_state(z, self.event_shape, "z")
        tv = expand_time(time_vector(t, z.shape[0], z, strict=True), z.dim())
        c, sc = self.mean.to(z), self.std.to(z)
        return (1 - tv) * c + z * torch.sqrt((1 - tv) ** 2 * sc**2 + tv**2)

    def sample_latent(
        self,
        n: int,
        generator: torch.Generator | None = None,
        *,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """Draw ``n`` latents ``z ~ N(0, I)``, shape ``[n, *event_shape]``."""
        return standard_normal(n, self.event_shape, generator, dtype, device)

    def sample(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """Draw ``n`` clean samples ``x ~ N(c, diag σ_c²)``, shape ``[n, *event_shape]``."""
        z = self.sample_latent(n, generator, dtype=dtype, device=device)
        return self.exact_map(z)

    def __repr__(self) -> str:
        return f"GaussianGenerativeOracle(event_shape={self.event_shape})"
