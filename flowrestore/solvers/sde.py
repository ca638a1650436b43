"""Generic SDE steps of the one loop: Euler–Maruyama and Rößler's SRA1.

Itô SDE ``dx = f(t, x) dt + g(t, x) dW`` stepped from ``t`` to ``t + h``; ``h < 0`` runs a
reverse-time SDE (Dirac, from ``t = 1`` to 0) with Brownian increments of variance ``|h|``
(docs/math.md §3, §6). The noise comes from ``ctx.noise`` (``increment`` /
``increment_and_area``), so ``generator=``, ``seeds=`` (per-sample, batch-composition invariant)
and shared paths (``BrownianIncrements``) all work. Both step any :class:`~flowrestore.flows.SDE`
— on a :class:`~flowrestore.DiracSDE` they integrate its continuous drift (exact ``∂_t A_t``);
Dirac's own discrete step (paper eq. 7) is :class:`~flowrestore.DiracStep`.

* :class:`EulerMaruyama` — ``x + f h + g ΔW``: strong order 0.5 in general, **1.0 for additive
  noise** (``g`` independent of ``x``), weak order 1. :meth:`EulerMaruyama.strong_order_for`
  gives the order on a given flow.
* :class:`SRA1` — Rößler's (2010) two-stage stochastic Runge–Kutta method for additive noise,
  strong order 1.5 (deterministic order 2), using ``ΔW`` and ``ΔZ = ∫ (W_s − W_t) ds``:

      ``H = x + ¾ h f(t, x) + (3/2) g(t + h) ΔZ/|h|``
      ``x⁺ = x + h (⅓ f(t, x) + ⅔ f(t + ¾h, H)) + g(t + h)(ΔW − ΔZ/|h|) + g(t) ΔZ/|h|``
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from flowrestore.errors import IncompatibleSolverError
from flowrestore.flows.base import SDE, Flow, bcast
from flowrestore.solvers.base import Context, Solver, StepResult

__all__ = ["SRA1", "EulerMaruyama", "SDESolver"]


class SDESolver(Solver):
    """Base class of SDE steps: steps any :class:`~flowrestore.flows.SDE`, draws noise."""

    flow_types: ClassVar[tuple[type, ...]] = (SDE,)
    stochastic = True

    def strong_order_for(self, flow: Flow) -> float:
        """The strong order on ``flow`` (default: ``strong_order``)."""
        return self.strong_order

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class EulerMaruyama(SDESolver):
    """Euler–Maruyama ``x + f(t, x) h + g(t, x) ΔW``.

    Strong order 0.5 (``strong_order``), 1.0 on additive noise (``strong_order_additive``, see
    :meth:`strong_order_for`); weak order 1. Works forward or backward in time.
    """

    order: ClassVar[float] = 1.0
    strong_order: ClassVar[float] = 0.5
    strong_order_additive: ClassVar[float] = 1.0
    weak_order: ClassVar[float] = 1.0
    stage_fractions = (0.0,)

    def strong_order_for(self, flow: Flow) -> float:
        """The strong order on ``flow``: 1.0 for additive noise, else 0.5."""
        return self.strong_order_additive if flow.noise_type == "additive" else self.strong_order

    def noise_draws(self) -> tuple[str, ...]:
        """One Brownian increment per step."""
        return ("increment",)

    def step(self, flow: Flow, t: Tensor, x: Tensor, h: Tensor, state, ctx: Context) -> StepResult:
        """One step from ``t`` to ``t + h``."""
        dw = ctx.noise.increment(t, t + h, x, ctx.index)
        x_next = x + bcast(h, x) * flow.drift(t, x) + flow.diffusion(t, x) * dw
        return StepResult(x_next, None, 1)


class SRA1(SDESolver):
    """Rößler's SRA1 stochastic Runge–Kutta method for additive noise (strong order 1.5).

    Needs a flow with ``noise_type == "additive"`` and a noise source providing
    ``increment_and_area`` (all of flowrestore's do; ``BrownianIncrements`` when built with areas).
    Weak order 2 and deterministic order 2 (Rößler 2010; the weak order is not tested here).
    """

    order: ClassVar[float] = 2.0
    strong_order: ClassVar[float] = 1.5
    weak_order: ClassVar[float] = 2.0
    stage_fractions = (0.0, 0.75)

    def check_flow(self, flow: Flow) -> None:
        """SDE flows with additive noise only."""
        super().check_flow(flow)
        if flow.noise_type != "additive":
            raise IncompatibleSolverError(
                f"SRA1 is for additive noise, but {type(flow).__name__} has noise_type="
                f"{flow.noise_type!r}; use EulerMaruyama"
            )

    def noise_draws(self) -> tuple[str, ...]:
        """One Brownian increment and its space-time area per step."""
        return ("increment_and_area",)

    def step(self, flow: Flow, t: Tensor, x: Tensor, h: Tensor, state, ctx: Context) -> StepResult:
        """One SRA1 step from ``t`` to ``t + h`` (two drift evaluations)."""
        dw, dz = ctx.noise.increment_and_area(t, t + h, x, ctx.index)
        hb = bcast(h, x)
        dzh = dz / hb.abs()
        t_end = t + h
        lo_hi = flow.time_range
        if lo_hi is not None:  # round-off must not take the end time out of the flow's range
            t_end = t_end.clamp(*lo_hi)
        f1 = flow.drift(t, x)
        g_end = flow.diffusion(t_end, x)
        g_start = flow.diffusion(t, x)
        stage = x + 0.75 * hb * f1 + 1.5 * g_end * dzh
        f2 = flow.drift(t + 0.75 * h, stage)
        x_next = x + hb * (f1 / 3 + 2 * f2 / 3) + g_end * (dw - dzh) + g_start * dzh
        return StepResult(x_next, None, 2)
