"""Gaussian-prior oracle for InDI (docs/math.md §2a and §2b): exact posterior mean, ODE path and
sampler.

Prior ``x ~ N(c, diag σ_c²)`` (per-coordinate ``mean`` c and ``std`` σ_c), degradation
``y = h ⊙ x + σ n`` with a diagonal ``h`` (``h = 1``: denoising) and InDI path
``x_t = H_t x + t σ n``, ``H_t = (1 - t) + t h``. Everything is per coordinate and closed form:

- posterior mean (docs/math.md §2b):
``E[x | x_t] = c + σ_c² h_t (x_t - h_t c) / (h_t² σ_c² + t² σ²)``;
- residual-flow ODE ``dx/dt = (x - E[x|x_t]) / t`` from ``x(1) = y`` (docs/math.md §1, §2a):
  ``x_t = h_t c + (y - h c) s_t / s_1`` with ``s_t² = h_t² σ_c² + t² σ²`` the marginal variance of
  ``x_t``. For ``h = 1`` this is docs/math.md §2a's ``c + (y - c) sqrt((t² + α²) / (1 + α²))``,
  ``α = σ_c / σ``. For a general ``h ≠ 1`` docs/math.md §2b writes the path; for a *diagonal*
  ``h`` it is elementary: each coordinate is an independent 1-D Gaussian path, the 1-D flow is
  the monotone (affine) transport between the Gaussian marginals, and differentiating ``h_t c + (y -
  h c) s_t / s_1`` gives exactly ``(x - E[x|x_t]) / t`` (checked in the tests against
  :meth:`GaussianOracle.ode_reference`, a float64 DOP853 integration of the drift);
- discrete InDI sampler with ``ε = 0`` (docs/math.md §1): each step is affine in ``x̂``, so the
output on
  a grid is a product of affine maps (docs/math.md §2a's product formula for ``h = 1``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from flowrestore.errors import ConfigError, GridError, describe
from flowrestore.oracles._common import (
    PosteriorOracle,
    TimeLike,
    as_param,
    check_state,
    count_arg,
    draw_device,
    expand_time,
    positive_float,
    resolve_event_shape,
    time_vector,
    widened,
)

__all__ = ["GaussianOracle"]


def _check_grid(grid) -> torch.Tensor:
    """Validate a decreasing InDI grid ``t_0 > ... > t_N`` in ``[0, 1]``; return it in float64."""
    if isinstance(grid, torch.Tensor):
        g = grid.detach().to(device="cpu", dtype=torch.float64)
    else:
        try:
            g = torch.as_tensor(grid, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise GridError(f"grid must be a 1-D tensor of times, got {describe(grid)}") from exc
    if g.dim() != 1 or g.numel() < 2:
        raise GridError(f"grid must be 1-D with at least 2 times, got {describe(grid)}")
    if not bool(torch.isfinite(g).all()):
        raise GridError(f"grid must be finite, got {describe(grid)}")
    if not bool((g[1:] < g[:-1]).all()):
        raise GridError(f"grid must be strictly decreasing, got {describe(grid)}")
    if g[0] > 1 or g[-1] < 0:
        raise GridError(f"grid must lie in [0, 1] (t_0 <= 1, t_N >= 0), got {describe(grid)}")
    return g


class GaussianOracle(PosteriorOracle):
    """Gaussian prior with a diagonal linear degradation: exact InDI posterior mean and flows.

    Args (keyword-only):
        mean: prior mean ``c``, a scalar or a tensor broadcastable to ``event_shape``.
        std: prior standard deviation ``σ_c > 0`` (scalar or tensor).
        noise_std: measurement noise ``σ > 0`` of ``y = h ⊙ x + σ n``.
        h: diagonal degradation (scalar or tensor); default ``1.0`` is denoising.
        event_shape: shape of one sample; required if ``mean``, ``std`` and ``h`` are all scalars.

    Parameters are stored as float64 tensors and cast to the input's dtype/device on use.
    """

    def __init__(
        self,
        *,
        mean: float | torch.Tensor = 0.0,
        std: float | torch.Tensor = 1.0,
        noise_std: float,
        h: float | torch.Tensor = 1.0,
        event_shape: Sequence[int] | None = None,
    ) -> None:
        c = as_param(mean, "mean")
        sc = as_param(std, "std")
        hh = as_param(h, "h")
        if not bool((sc > 0).all()):
            raise ConfigError(f"std must be positive, got {describe(std)}")
        self.noise_std: float = positive_float(noise_std, "noise_std")
        shape = resolve_event_shape({"mean": c, "std": sc, "h": hh}, event_shape)
        self.event_shape: tuple[int, ...] = shape
        self.mean: torch.Tensor = c.expand(shape).clone()
        self.std: torch.Tensor = sc.expand(shape).clone()
        self.h: torch.Tensor = hh.expand(shape).clone()

    # ------------------------------------------------------------------ helpers
    @property
    def is_denoising(self) -> bool:
        """True when ``h = 1`` everywhere (pure denoising, docs/math.md §2a)."""
        return bool((self.h == 1).all())

    def _params(self, like: torch.Tensor):
        return self.mean.to(like), self.std.to(like), self.h.to(like)

    # ---------------------------------------------------------------- the oracle
    @widened
    def posterior_mean(self, x_t: torch.Tensor, t: TimeLike) -> torch.Tensor:
        """Exact ``E[x | x_t]`` (docs/math.md §2b); ``x_t``: ``[B, *event]``, ``t``: scalar or
        ``[B]``.

        At ``t = 0`` (``h_0 = 1``) this is ``x_t`` itself; no 0/0 occurs since ``σ_c > 0``.
        """
        x_t = check_state(x_t, self.event_shape, "x_t")
        tv = expand_time(time_vector(t, x_t.shape[0], x_t), x_t.dim())
        c, sc, h = self._params(x_t)
        ht = (1 - tv) + tv * h
        var = sc**2
        return c + var * ht * (x_t - ht * c) / (ht**2 * var + (tv * self.noise_std) ** 2)

    @widened
    def velocity(self, x: torch.Tensor, t: TimeLike) -> torch.Tensor:
        """Residual-flow drift ``(x - E[x|x_t]) / t``, in a form that is regular at ``t = 0``.

        Algebraically ``(x - E[x|x_t]) / t``
        ``= (h - 1) c + (x - h_t c)(σ_c² h_t (h - 1) + t σ²) / s_t²``, whose value at ``t = 0``
        is the limit ``(h - 1) x`` (0 for denoising).
        """
        x = check_state(x, self.event_shape, "x")
        tv = expand_time(time_vector(t, x.shape[0], x), x.dim())
        c, sc, h = self._params(x)
        ht = (1 - tv) + tv * h
        var = sc**2
        st2 = ht**2 * var + (tv * self.noise_std) ** 2
        return (h - 1) * c + (x - ht * c) * (var * ht * (h - 1) + tv * self.noise_std**2) / st2

    @widened
    def ode_solution(self, y: torch.Tensor, t: TimeLike) -> torch.Tensor:
        """Closed-form solution at time ``t`` of ``dx/dt = (x - E[x|x_t]) / t`` with ``x(1) = y``.

        ``x_t = h_t c + (y - h c) s_t / s_1`` (see the module docstring); for ``h = 1`` this is
        docs/math.md §2a's ``c + (y - c) sqrt((t² + α²) / (1 + α²))``. ``t`` scalar or ``[B]``;
        ``t = 0``
        gives the flow's output, whose law is the prior when ``y ~ p(y)``.
        """
        y = check_state(y, self.event_shape, "y")
        tv = expand_time(time_vector(t, y.shape[0], y, strict=True), y.dim())
        c, sc, h = self._params(y)
        ht = (1 - tv) + tv * h
        var = sc**2
        s2 = self.noise_std**2
        ratio = torch.sqrt((ht**2 * var + tv**2 * s2) / (h**2 * var + s2))
        return ht * c + (y - h * c) * ratio

    def indi_sampler_solution(self, y: torch.Tensor, grid) -> torch.Tensor:
        """Exact output of the discrete InDI sampler (``ε = 0``) on a decreasing ``grid``.

        ``grid`` is 1-D, strictly decreasing in ``[0, 1]`` (``t_N`` may be 0); ``y`` is the state at
        ``grid[0]`` (normally ``t_0 = 1``). Each step ``t → s`` is
        ``x̂_s = (s/t) x̂_t + (1 - s/t) E[x | x̂_t]``, affine in ``x̂``; the composition of these affine
        maps is formed in float64 and applied to ``y``. For ``h = 1`` a step is docs/math.md §2a's
        ``x̂ - c ↦ (x̂ - c)(1 - δ t σ² / (σ_c² + t² σ²))``.
        """
        y = check_state(y, self.event_shape, "y")
        g = _check_grid(grid)
        if g[0] <= 0:
            raise GridError(f"grid must start at t_0 > 0, got {describe(grid)}")
        c, sc, h = self.mean, self.std, self.h  # float64, CPU
        var = sc**2
        s2 = self.noise_std**2
        gain = torch.ones_like(c)
        shift = torch.zeros_like(c)
        for k in range(g.numel() - 1):
            t, s = float(g[k]), float(g[k + 1])
            ht = (1 - t) + t * h
            k_t = var * ht / (ht**2 * var + t * t * s2)  # E = c + k_t (x - h_t c)
            r = s / t
            a = r + (1 - r) * k_t
            b = (1 - r) * (c - k_t * ht * c)
            gain = a * gain
            shift = a * shift + b
        return gain.to(y) * y + shift.to(y)

    def ode_reference(
        self,
        y: torch.Tensor,
        t_end: float = 0.0,
        rtol: float = 1e-12,
        atol: float = 1e-12,
    ) -> torch.Tensor:
        """Numerical reference of the ODE path at ``t_end``: SciPy ``solve_ivp``, DOP853, float64.

        Integrates ``dx/dt = (x - E[x|x_t]) / t`` from ``t = 1`` (``x = y``) down to ``t_end``
        using the algebraically identical drift of :meth:`velocity`, which is smooth at ``t = 0``
        (its limit there is ``(h - 1) x``), so ``t_end = 0`` is reached with no cut-off. Works for
        any diagonal ``h``; returns a tensor in ``y``'s dtype and device.
        """
        from scipy.integrate import solve_ivp

        y = check_state(y, self.event_shape, "y")
        t_end = positive_float(t_end, "t_end", allow_zero=True)
        if t_end >= 1:
            raise ConfigError(f"t_end must lie in [0, 1), got {describe(t_end)}")
        rtol = positive_float(rtol, "rtol")
        atol = positive_float(atol, "atol")
        batch = y.shape[0]
        y64 = y.detach().to(device="cpu", dtype=torch.float64)
        c = self.mean.expand(batch, *self.event_shape).reshape(-1).numpy()
        h = self.h.expand(batch, *self.event_shape).reshape(-1).numpy()
        var = (self.std**2).expand(batch, *self.event_shape).reshape(-1).numpy()
        s2 = self.noise_std**2

        def rhs(t, x):
            ht = (1 - t) + t * h
            st2 = ht**2 * var + t * t * s2
            return (h - 1) * c + (x - ht * c) * (var * ht * (h - 1) + t * s2) / st2

        sol = solve_ivp(
            rhs, (1.0, t_end), y64.reshape(-1).numpy(), method="DOP853", rtol=rtol, atol=atol
        )
        if not sol.success:  # pragma: no cover - a linear smooth ODE
            raise RuntimeError(f"solve_ivp failed: {sol.message}")
        out = torch.from_numpy(np.ascontiguousarray(sol.y[:, -1])).reshape(y.shape)
        return out.to(y)

    # ---------------------------------------------------------------- sampling
    def sample(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``n`` pairs ``(x, y)``, each ``[n, *event]``: ``x ~ N(c, σ_c²)``, ``y = h x + σ n``.

        Reproducible for a given ``generator`` (which must live on ``device``).
        """
        n = count_arg(n)
        device = draw_device(generator, device)
        shape = (n, *self.event_shape)
        z = torch.randn(shape, generator=generator, dtype=dtype, device=device)
        e = torch.randn(shape, generator=generator, dtype=dtype, device=device)
        c, sc, h = self._params(z)
        x = c + sc * z
        return x, h * x + self.noise_std * e

    def __repr__(self) -> str:
        return (
            f"GaussianOracle(event_shape={self.event_shape}, noise_std={self.noise_std}, "
            f"denoising={self.is_denoising})"
        )
