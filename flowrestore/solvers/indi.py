"""InDI's discrete samplers as steps of the one loop (MATH.md §1, "Samplers").

With ``δ = t − s`` (the grid runs from 1 down to 0):

* :class:`InDISampler` — ``x̂_s = (δ/t) F(x̂_t, t) + (1 − δ/t) x̂_t + s·sqrt(ε_s² − ε_t²) ζ``,
  started at ``x̂_1 = y + ε_1 n``; ``ε_t = ε`` (constant) or ``ε/sqrt(t)`` (``brownian=True``).
  With ``ε = 0`` it equals Euler on :class:`~flowrestore.InDIFlow`.
* :class:`NaiveSampler` — ``x̂_s = (1 − s) F(x̂_t, t) + s y``.
* :class:`ColdDiffusionSampler` — ``x̂_s = x̂_t + δ (F(x̂_t, t) − y)`` (Cold Diffusion's "improved"
  sampling for the degradation ``D(x, t) = (1 − t) x + t y``).

All evaluate the predictor only at the step's start ``t > 0``, so their own last step onto 0 is
taken as is (InDI's and the naive one's return ``F(x̂_t, t)`` exactly).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from flowrestore.errors import ConfigError, ShapeError, describe
from flowrestore.flows.base import Flow
from flowrestore.solvers.base import Solver, StepContext, StepResult


class _PredictorSampler(Solver):
    needs: ClassVar[str] = "denoiser"
    stage_fractions = (0.0,)

    def _y(self, ctx: StepContext, x: Tensor) -> Tensor:
        y = ctx.start_rows()
        if y is None or y.shape != x.shape:
            raise ShapeError(f"{type(self).__name__} needs the observation y as the solve's start")
        return y


@dataclass(repr=False)
class InDISampler(_PredictorSampler):
    """InDI's sampler with ε-noise (order 1; ``eps=0`` is deterministic).

    Args:
        eps: noise level ε ≥ 0.
        brownian: ``ε_t = ε / sqrt(t)`` (noise re-injected at every step) instead of the constant
            ``ε_t = ε`` (noise only added to the input).
    """

    eps: float = 0.0
    brownian: bool = False
    order: ClassVar[float] = 1.0
    lands_on_estimate: ClassVar[bool] = True

    def __post_init__(self):
        if not isinstance(self.eps, (int, float)) or not self.eps >= 0:
            raise ConfigError(f"eps must be a non-negative number, got {describe(self.eps)}")
        self.stochastic = self.eps > 0

    def eps_at(self, t: Tensor) -> Tensor:
        """``ε_t``."""
        return self.eps / t.sqrt() if self.brownian else t * 0 + self.eps

    def init(self, flow: Flow, t0: Tensor, x0: Tensor, ctx: StepContext):
        """``x̂_{t0} = y + t0 ε_{t0} n`` (``y + ε n`` from ``t0 = 1``)."""
        if self.eps == 0:
            return x0, None
        return x0 + (t0 * self.eps_at(t0)) * ctx.noise.normal(x0, ctx.index), None

    def step(self, flow, t, x, h, state, ctx) -> StepResult:
        """One InDI step from ``t`` to ``s = t + h`` (``h < 0``)."""
        s = t + h
        f = flow.denoise(t, x)
        ratio = -h / t
        x_next = x + ratio * (f - x)
        if self.eps > 0 and self.brownian:
            # s·sqrt(ε_s² − ε_t²) = ε·sqrt(s (t − s) / t), finite at s = 0.
            scale = self.eps * (s * (-h) / t).clamp_min(0).sqrt()
            x_next = x_next + scale * ctx.noise.normal(x, ctx.index)
        return StepResult(x_next, None, 1)


class NaiveSampler(_PredictorSampler):
    """Naive InDI sampler ``x̂_s = (1 − s) F(x̂_t, t) + s y`` (order 1)."""

    order: ClassVar[float] = 1.0
    lands_on_estimate: ClassVar[bool] = True

    def step(self, flow, t, x, h, state, ctx) -> StepResult:
        """One naive step."""
        s = t + h
        f = flow.denoise(t, x)
        return StepResult(f + s * (self._y(ctx, x) - f), None, 1)


class ColdDiffusionSampler(_PredictorSampler):
    """Cold Diffusion's improved sampler ``x̂_s = x̂_t + δ (F(x̂_t, t) − y)`` (order 1)."""

    order: ClassVar[float] = 1.0

    def step(self, flow, t, x, h, state, ctx) -> StepResult:
        """One Cold-Diffusion step."""
        f = flow.denoise(t, x)
        return StepResult(x - h * (f - self._y(ctx, x)), None, 1)
