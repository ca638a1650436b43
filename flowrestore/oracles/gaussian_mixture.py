"""The exact denoiser of a Gaussian-mixture prior, as an EDM, diffusion and flow-matching model
(docs/math.md §9).

A prior ``x_0 ~ Σ_i π_i N(μ_i, diag s_i²)`` is *multimodal*: where the Gaussian oracles'
trajectories are straight in a standardised coordinate, a mixture's bend where the posterior
switches between components. Every generative model of this library noises ``x_0`` as
``x = a x_0 + b ε`` — EDM ``(1, σ)``, a VP diffusion model at timestep ``k`` ``(√ᾱ_k, √(1 − ᾱ_k))``,
rectified flow ``(1 − t, t)`` — and for each the posterior mean is closed-form (per coordinate,
``V_i = a² s_i² + b²``):

* responsibilities ``r_i(x) ∝ π_i N(x; a μ_i, diag V_i)``;
* ``E[x_0 | x] = Σ_i r_i (μ_i + a s_i² (x − a μ_i)/V_i)``;
* ``E[ε | x] = Σ_i r_i b (x − a μ_i)/V_i`` (``= (x − a E[x_0 | x])/b``, formed without the
  division by ``b``), so the ε, v (``a ε − b x_0``) and flow-matching velocity
  (``ε − x_0``) models follow.

The probability-flow map has no closed form; a fine solve is the reference (the benchmarks check
two such solves against each other). :class:`GaussianMixtureOracle` with one component is the
Gaussian oracle of :mod:`flowrestore.oracles.diffusion` / :mod:`flowrestore.oracles.flow_matching`
(tested), and its denoiser satisfies Tweedie's formula ``D(x, σ) = x + σ² ∇ log p_σ(x)`` against
the mixture's density (tested).

* ``oracle(x, sigma)`` — the EDM denoiser, for :class:`~flowrestore.DenoiserFlow`;
* :meth:`GaussianMixtureOracle.diffusion_model` — a diffusers-convention ``model(x, timestep)``
  (ε, v or x₀) for :class:`~flowrestore.DiffusionFlow`;
* :meth:`GaussianMixtureOracle.flow_matching_model` — a velocity ``model(x, timestep)`` for
  :class:`~flowrestore.FlowMatchingFlow`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowrestore.errors import ConfigError, ShapeError, describe
from flowrestore.oracles._common import (
    HALF_DTYPES,
    as_param,
    check_state,
    count_arg,
    draw_device,
    exact_dtype,
    standard_normal,
    widened,
)
from flowrestore.oracles.diffusion import (
    PREDICTION_TYPES,
    _timesteps,
    check_alphas_cumprod,
    schedule_at,
)

__all__ = ["GaussianMixtureOracle"]


class GaussianMixtureOracle:
    """The exact posterior mean of ``Σ_i π_i N(μ_i, diag s_i²)`` under ``x = a x_0 + b ε``.

    Args (keyword-only):
        means: component means ``μ``, ``[K, *event_shape]``.
        stds: component standard deviations ``s > 0``: a number, or a tensor broadcasting to
            ``[K, *event_shape]``.
        weights: mixture weights ``π ≥ 0`` (normalised here), ``[K]``; default equal.

    Called as ``oracle(x, sigma)``: the EDM denoiser ``D(x, σ) = E[x_0 | x_0 + σ ε = x]``.
    """

    def __init__(self, *, means: Tensor, stds=1.0, weights=None) -> None:
        mu = as_param(means, "means")
        if mu.dim() < 2:
            raise ShapeError(f"means must be [K, *event_shape] (K >= 1), got {describe(means)}")
        sd = as_param(stds, "stds")
        try:
            sd = torch.broadcast_to(sd, mu.shape).clone()
        except RuntimeError as exc:
            raise ShapeError(
                f"stds must broadcast to means' shape {tuple(mu.shape)}, got {describe(stds)}"
            ) from exc
        if not bool((sd > 0).all()):
            raise ConfigError(f"stds must be positive, got {describe(stds)}")
        k = mu.shape[0]
        w = torch.ones(k, dtype=torch.float64) if weights is None else as_param(weights, "weights")
        if w.shape != (k,):
            raise ShapeError(f"weights must be [K]=[{k}], got {describe(weights)}")
        if not bool((w >= 0).all()) or not bool(w.sum() > 0):
            raise ConfigError(f"weights must be >= 0 with a positive sum, got {describe(weights)}")
        self.means: Tensor = mu
        self.stds: Tensor = sd
        self.weights: Tensor = w / w.sum()
        self.event_shape: tuple[int, ...] = tuple(mu.shape[1:])

    @property
    def num_components(self) -> int:
        """``K``, the number of components."""
        return self.means.shape[0]

    def _coefficients(self, x: Tensor, a, b) -> tuple[Tensor, Tensor, Tensor]:
        """``x`` checked and ``a``, ``b`` as ``[B, 1, …, 1]`` tensors in its dtype: each a number,
        a 0-d or ``[B]`` tensor (as a timestep, :func:`~flowrestore.oracles.diffusion.
        _timesteps`), or a tensor already of shape ``[B, 1, …, 1]`` (or ``[1, 1, …, 1]``)."""
        x = check_state(x, self.event_shape, "x")
        ones = (1,) * (x.dim() - 1)

        def coefficient(value, name: str) -> Tensor:
            if isinstance(value, Tensor) and value.dim() == x.dim():
                if tuple(value.shape[1:]) != ones or value.shape[0] not in (1, x.shape[0]):
                    raise ShapeError(
                        f"{name} must be a number, a 0-d or [B]=[{x.shape[0]}] tensor or of "
                        f"shape [B, {', '.join('1' * len(ones))}], got {describe(value)}"
                    )
                return value.to(x)
            return _timesteps(value, x, name)

        return x, coefficient(a, "a"), coefficient(b, "b")

    def _parts(self, x: Tensor, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Responsibilities ``r [B, K, 1…]``, component posterior means ``E[x_0 | x, i]`` and
        noises ``E[ε | x, i] = b (x − a μ_i)/V_i`` (``[B, K, *event]``) for ``x = a x_0 + b ε``
        (``a``, ``b``: ``[B, 1, …, 1]``). The noise is never formed as ``(x − a E[x_0|x])/b``:
        that difference cancels catastrophically at small ``b`` (float32 at ``t = 10⁻⁴``: errors
        of 10⁻³) and is 0/0 at ``b = 0``."""
        x, a, b = self._coefficients(x, a, b)
        mu, var = self.means.to(x), self.stds.to(x) ** 2
        a, b = a.unsqueeze(1), b.unsqueeze(1)  # [B, 1, 1…]: broadcast over the components
        V = a * a * var + b * b
        dev = x.unsqueeze(1) - a * mu
        log_r = (-0.5 * (dev * dev / V + torch.log(V))).flatten(2).sum(-1)
        log_r = log_r + torch.log(self.weights.to(x))
        r = torch.softmax(log_r, dim=1).reshape(*log_r.shape, *([1] * len(self.event_shape)))
        return r, mu + a * var * dev / V, b * dev / V

    def _clean_and_noise(self, x: Tensor, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        """``(E[x_0 | x], E[ε | x])`` for ``x = a x_0 + b ε``, both mixed from the components."""
        r, means, noises = self._parts(x, a, b)
        return (r * means).sum(1), (r * noises).sum(1)

    @widened
    def clean(self, x: Tensor, a, b) -> Tensor:
        """``E[x_0 | x = a x_0 + b ε]``; ``a``, ``b``: numbers, 0-d or ``[B]`` tensors (one per
        sample), or tensors of shape ``[B, 1, …, 1]``."""
        r, means, _ = self._parts(x, a, b)
        return (r * means).sum(1)

    @widened
    def log_density(self, x: Tensor, sigma) -> Tensor:
        """``log p_σ(x)`` of ``x = x_0 + σ ε`` (the mixture of ``N(μ_i, s_i² + σ²)``), ``[B]``."""
        x = check_state(x, self.event_shape, "x")
        s = _timesteps(sigma, x).unsqueeze(1)
        V = self.stds.to(x) ** 2 + s * s
        dev = x.unsqueeze(1) - self.means.to(x)
        log_n = (-0.5 * (dev * dev / V + torch.log(2 * torch.pi * V))).flatten(2).sum(-1)
        return torch.logsumexp(log_n + torch.log(self.weights.to(x)), dim=1)

    @widened
    def __call__(self, x: Tensor, sigma) -> Tensor:
        """The EDM denoiser ``D(x, σ) = E[x_0 | x_0 + σ ε = x]`` (``sigma``: number or ``[B]``)."""
        s = _timesteps(sigma, x)
        return self.clean(x, torch.ones_like(s), s)

    def diffusion_model(self, *, alphas_cumprod, prediction_type: str = "epsilon"):
        """A diffusers-convention ``model(x, timestep)`` under the schedule ``ᾱ`` (continuous
        timesteps as :func:`~flowrestore.oracles.diffusion.alpha_cumprod_at`; computed in float32 or
        float64 for a half-precision ``x``): ``ε̂``, ``v̂`` or
        ``E[x_0 | x]`` by ``prediction_type``."""
        if prediction_type not in PREDICTION_TYPES:
            raise ConfigError(
                f"prediction_type must be one of {PREDICTION_TYPES}, "
                f"got {describe(prediction_type)}"
            )
        table = check_alphas_cumprod(alphas_cumprod, prediction_type=prediction_type)

        @widened
        def model(x: Tensor, timestep) -> Tensor:
            a, b = schedule_at(table, _timesteps(timestep, x))
            x0, eps = self._clean_and_noise(x, a, b)
            if prediction_type == "sample":
                return x0
            return eps if prediction_type == "epsilon" else a * eps - b * x0

        return model

    def flow_matching_model(self, *, num_train_timesteps: int = 1000):
        """A velocity ``model(x, timestep)`` of rectified flow ``x_t = (1 − t) x_0 + t ε``,
        ``t = timestep / T``: ``v = E[ε − x_0 | x_t]``."""
        T = num_train_timesteps
        if isinstance(T, bool) or not isinstance(T, int) or T < 1:
            raise ConfigError(f"num_train_timesteps must be a positive int, got {describe(T)}")

        @widened
        def model(x: Tensor, timestep) -> Tensor:
            t = _timesteps(timestep, x) / T
            # E[ε | x_t] is mixed per component, with no division by t (exact at t = 0: 0)
            x0, eps = self._clean_and_noise(x, 1 - t, t)
            return eps - x0

        return model

    def sample(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Draw ``n`` clean samples and their components: ``(x_0 [n, *event], i [n])``, both on
        ``device`` (``None``: torch's default device).

        ``generator``, when given, must live on ``device`` (a ``torch.Generator(device="cuda")``
        for ``device="cuda"``): the component and the noise are both drawn there, the component
        from the weights moved to that device (in float64, float32 on ``mps``).
        """
        count_arg(n)
        where = draw_device(generator, device)
        # multinomial draws on its input's device, which must be the generator's: the weights
        # (float64, CPU) are moved there first (a CUDA generator failed on the CPU weights;
        # float32 on a device without float64, Apple's mps)
        w = self.weights.to(device=where, dtype=exact_dtype(where))
        i = torch.multinomial(w, n, replacement=True, generator=generator)
        z = standard_normal(n, self.event_shape, generator, dtype, where)
        means, stds = self.means.to(device=where, dtype=dtype), self.stds.to(where, dtype)
        return means[i] + stds[i] * z, i

    def component(self, x: Tensor) -> Tensor:
        """The most probable component of clean samples ``x`` (``[B]``, long); a half-precision
        ``x`` is compared in float32 (in fp16 a sum of squared deviations overflows at 65504:
        every component's log-likelihood is ``-inf`` and the argmax arbitrary)."""
        x = check_state(x, self.event_shape, "x")
        if x.dtype in HALF_DTYPES:
            x = x.float()
        b = torch.zeros(x.shape[0], *([1] * (x.dim() - 1)), dtype=x.dtype, device=x.device)
        r, _, _ = self._parts(x, torch.ones_like(b), b)  # noise-free: a = 1, b = 0
        return r.flatten(1).argmax(1)

    def __repr__(self) -> str:
        return (
            f"GaussianMixtureOracle(components={self.num_components}, "
            f"event_shape={self.event_shape})"
        )
