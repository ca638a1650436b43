"""InDI's discrete samplers as steps of the one loop (InDI, Delbracio & Milanfar 2023, Alg. 1 and
§3).

With ``δ = t − s`` (the grid runs from 1 down to 0):

* :class:`InDISampler` — ``x̂_s = (δ/t) F(x̂_t, t) + (1 − δ/t) x̂_t + s·sqrt(ε_s² − ε_t²) ζ``,
  started at ``x̂_1 = y + ε_1 n``; ``ε_t = ε`` (constant) or ``ε/sqrt(t)`` (``brownian=True``).
  With ``ε = 0`` it equals Euler on :class:`~flowrestore.InDIFlow`.
* :class:`NaiveSampler` — ``x̂_s = (1 − s) F(x̂_t, t) + s y``.
* :class:`ColdDiffusionSampler` — ``x̂_s = x̂_t + δ (F(x̂_t, t) − y)`` (Cold Diffusion's "improved"
  sampling for the degradation ``D(x, t) = (1 − t) x + t y``).

All evaluate the predictor only at the step's start ``t > 0``, so their own last step onto 0 is
taken as is (InDI's and the naive one's return ``F(x̂_t, t)`` exactly). They step only an
:class:`~flowrestore.InDIFlow` (its predictor *and* its degradation path ``x_t = (1 − t) x + t y``
are what they assume); the observation ``y`` of the naive and Cold-Diffusion samplers is the flow's
(``InDIFlow(F, observation=y)``, or the start state of a solve from ``t = 1``).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from flowrestore.errors import ConfigError, describe
from flowrestore.flows.base import Flow, bcast
from flowrestore.flows.indi import InDIFlow
from flowrestore.solvers.base import Context, Solver, StepResult

__all__ = ["ColdDiffusionSampler", "InDISampler", "NaiveSampler", "RestorationSampler"]


class RestorationSampler(Solver):
    """Base class of InDI's discrete samplers: one predictor evaluation at each step's start.

    ``uses_observation``: the step needs ``y`` (it is carried in the solver state, so per-sample
    control and batch subsets see the right rows).
    """

    flow_types: ClassVar[tuple[type, ...]] = (InDIFlow,)
    stage_fractions = (0.0,)
    uses_observation: ClassVar[bool] = False

    def init(self, flow: Flow, t_start: Tensor, x_start: Tensor, ctx: Context):
        """Carry the observation ``y`` (refused before any evaluation if the flow has none)."""
        if not self.uses_observation:
            return x_start, None
        y = flow.observation
        if y is None:
            raise ConfigError(
                f"{type(self).__name__} needs the observation y: the solve starts at "
                f"t={float(t_start):.6g}, not 1, so its start state is not y; pass "
                "InDIFlow(F, observation=y)"
            )
        return x_start, y.to(dtype=x_start.dtype, device=x_start.device)


@dataclass(repr=False)
class InDISampler(RestorationSampler):
    """InDI's sampler with ε-noise (order 1; ``eps=0`` is deterministic).

    Args:
        eps: noise level ε ≥ 0.
        brownian: ``ε_t = ε / sqrt(t)`` (noise re-injected at every step) instead of the constant
            ``ε_t = ε`` (noise only added to the input).
    """

    eps: float = 0.0
    brownian: bool = False
    order: ClassVar[float] = 1.0

    def __post_init__(self):
        eps = self.eps
        if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not 0 <= eps < math.inf:
            raise ConfigError(f"eps must be a non-negative finite number, got {describe(eps)}")
        self.eps = float(eps)
        if not isinstance(self.brownian, bool):
            raise ConfigError(f"brownian must be a bool, got {describe(self.brownian)}")
        self.stochastic = self.eps > 0

    def eps_at(self, t: Tensor) -> Tensor:
        """``ε_t``."""
        return self.eps / t.sqrt() if self.brownian else t * 0 + self.eps

    def noise_draws(self) -> tuple[str, ...]:
        """One normal per step with Brownian noise (``brownian=True``, ``eps > 0``), else none."""
        return ("normal",) if self.eps > 0 and self.brownian else ()

    def init(self, flow: Flow, t_start: Tensor, x_start: Tensor, ctx: Context):
        """``x̂_{t_start} = y + t_start ε_{t_start} n`` (``y + ε n`` from ``t_start = 1``)."""
        if self.eps == 0:
            return x_start, None
        scale = bcast(t_start * self.eps_at(t_start), x_start)
        return x_start + scale * ctx.noise.normal(x_start, ctx.index), None

    def step(self, flow, t, x, h, state, ctx) -> StepResult:
        """One InDI step from ``t`` to ``s = t + h`` (``h < 0``)."""
        s = t + h
        f = flow.denoise(t, x)
        ratio = bcast(-h / t, x)
        x_next = x + ratio * (f - x)
        if self.eps > 0 and self.brownian:
            # s·sqrt(ε_s² − ε_t²) = ε·sqrt(s (t − s) / t), finite at s = 0.
            scale = bcast(self.eps * (s * (-h) / t).clamp_min(0).sqrt(), x)
            x_next = x_next + scale * ctx.noise.normal(x, ctx.index)
        return StepResult(x_next, None, 1)


class NaiveSampler(RestorationSampler):
    """Naive InDI sampler ``x̂_s = (1 − s) F(x̂_t, t) + s y``.

    Order 0: it is not a discretisation of the residual ODE (its step is not ``O(δ)`` off the
    path ``x_t = (1 − t) F + t y``), so more steps do not bring it to the ODE's solution (on a
    Gaussian oracle its error at ``t = 0`` grows from 16 to 128 steps); the InDI paper's
    baseline, kept for comparison."""

    order: ClassVar[float] = 0.0
    uses_observation = True

    def step(self, flow, t, x, h, state, ctx) -> StepResult:
        """One naive step (``state`` is the observation ``y`` of the rows stepped)."""
        s = bcast(t + h, x)
        f = flow.denoise(t, x)
        return StepResult(f + s * (state - f), state, 1)


class ColdDiffusionSampler(RestorationSampler):
    """Cold Diffusion's improved sampler ``x̂_s = x̂_t + δ (F(x̂_t, t) − y)``.

    Order 0: its limit ``dx/dt = y − F`` is the residual ODE's ``(x − F)/t`` only on the path
    ``x_t = (1 − t) F + t y`` (at ``t = 1``), so more steps do not bring it to the ODE's
    solution (on a Gaussian oracle its error at ``t = 0`` stays at 0.4 from 16 to 128 steps);
    Cold Diffusion's baseline, kept for comparison."""

    order: ClassVar[float] = 0.0
    uses_observation = True

    def step(self, flow, t, x, h, state, ctx) -> StepResult:
        """One Cold-Diffusion step (``state`` is the observation ``y`` of the rows stepped)."""
        f = flow.denoise(t, x)
        return StepResult(x - bcast(h, x) * (f - state), state, 1)
