"""SDE steps of the one loop: Euler–Maruyama (with Dirac's eq. 7 step) and Rößler's SRA1.

Itô SDE ``dx = f(t, x) dt + g(t, x) dW`` stepped from ``t`` to ``t + h``; ``h < 0`` runs a
reverse-time SDE (Dirac, from ``t = 1`` to 0) with Brownian increments of variance ``|h|``
(MATH.md §3, §6).
The noise comes from ``ctx.noise`` (``increment`` / ``increment_and_area``), so ``generator=``,
``seeds=`` (per-sample, batch-composition invariant) and shared paths (``BrownianIncrements``)
all work.

* :class:`EulerMaruyama` — ``x + f h + g ΔW``: strong order 0.5 in general, **1.0 for additive
  noise** (``g`` independent of ``x``), weak order 1. The class attribute ``strong_order`` is the
  general 0.5; :meth:`EulerMaruyama.strong_order_for` gives the order on a given flow. On a
  :class:`~flowrestore.flows.dirac.DiracSDE` it takes Dirac's discrete step (paper eq. 7)

      ``y_{t−Δt} = y_t + R̂ − (σ²_{t−Δt} − σ²_t)(s_θ(y_t, t) + γ_t) + sqrt(σ²_t − σ²_{t−Δt}) z``

  with ``R̂`` the flow's incremental-reconstruction estimate (look-ahead by default), ``s_θ`` the
  score of eq. 11, ``γ_t`` the optional guidance score and ``z = ΔW / sqrt(Δt)`` (so a shared
  Brownian path gives a shared ``z``). One predictor evaluation per step; the data-consistency
  norm is recorded per step when the flow knows the observation.
* :class:`SRA1` — Rößler's (2010) two-stage stochastic Runge–Kutta method for additive noise,
  strong order 1.5 (deterministic order 2), using ``ΔW`` and ``ΔZ = ∫ (W_s − W_t) ds``:

      ``H = x + ¾ h f(t, x) + (3/2) g(t + h) ΔZ/|h|``
      ``x⁺ = x + h (⅓ f(t, x) + ⅔ f(t + ¾h, H)) + g(t + h)(ΔW − ΔZ/|h|) + g(t) ΔZ/|h|``

  Two drift evaluations per step (on a DiracSDE the continuous drift with the exact ``∂_t A_t``).
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from flowrestore.errors import IncompatibleSolverError
from flowrestore.flows.base import Flow, bcast
from flowrestore.flows.dirac import DiracSDE
from flowrestore.solvers.base import Solver, StepContext, StepResult

__all__ = ["SRA1", "EulerMaruyama"]

CONSISTENCY_RECORD = "data_consistency"


def _record(flow: Flow, est, ctx: StepContext) -> None:
    if est.residual is not None and flow.track_consistency:
        ctx.record(CONSISTENCY_RECORD, est.residual)


def _drift(flow: Flow, t: Tensor, x: Tensor, ctx: StepContext, record: bool = False) -> Tensor:
    """The drift, with the observation from ``ctx`` (and its record) on a DiracSDE."""
    if isinstance(flow, DiracSDE):
        f, est = flow.drift_terms(t, x, flow.observation_for(ctx, x))
        if record:
            _record(flow, est, ctx)
        return f
    return flow.drift(t, x)


class _SDESolver(Solver):
    needs: ClassVar[str] = "sde"
    stochastic = True

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class EulerMaruyama(_SDESolver):
    """Euler–Maruyama ``x + f(t, x) h + g(t, x) ΔW`` (Dirac's eq. 7 step on a :class:`DiracSDE`).

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

    def step(
        self,
        flow: Flow,
        t: Tensor,
        x: Tensor,
        h: Tensor,
        state: dict[str, Tensor] | None,
        ctx: StepContext,
    ) -> StepResult:
        """One step from ``t`` to ``t + h``."""
        if isinstance(flow, DiracSDE):
            return StepResult(self.dirac_step(flow, t, x, h, ctx), None, 1)
        dw = ctx.noise.increment(t, t + h, x, ctx.index)
        x_next = x + bcast(h, x) * flow.drift(t, x) + flow.diffusion(t, x) * dw
        return StepResult(x_next, None, 1)

    @staticmethod
    def dirac_step(flow: DiracSDE, t: Tensor, y: Tensor, h: Tensor, ctx: StepContext) -> Tensor:
        """Dirac's eq. 7 from ``t`` to ``s = t + h`` (module docstring)."""
        s = (t + h).clamp(0.0, 1.0)
        est = flow.estimate(t, y, flow.observation_for(ctx, y))
        _record(flow, est, ctx)
        a_t_phi = flow.degrade(est.phi, t)
        var_t = flow.sigma2(t)
        score = (a_t_phi - y) / bcast(var_t, y)
        if est.guidance is not None:
            score = score + est.guidance
        r_hat = flow.incremental_reconstruction(t, h, est.phi, a_t_phi)
        dvar = flow.sigma2(s) - var_t
        dw = ctx.noise.increment(t, t + h, y, ctx.index)
        z = dw / bcast(h.abs().sqrt(), y)
        return y + r_hat - bcast(dvar, y) * score + bcast(dvar.abs().sqrt(), y) * z


class SRA1(_SDESolver):
    """Rößler's SRA1 stochastic Runge–Kutta method for additive noise (strong order 1.5).

    Needs a flow with ``noise_type == "additive"`` and a noise source providing
    ``increment_and_area`` (all of flowrestore's do; ``BrownianIncrements`` when built with areas).
    Weak order 2 and deterministic order 2 (Rößler 2010; the weak order is not tested here).
    """

    order: ClassVar[float] = 2.0
    strong_order: ClassVar[float] = 1.5
    weak_order: ClassVar[float] = 2.0
    stage_fractions = (0.0, 0.75)

    def strong_order_for(self, flow: Flow) -> float:
        """1.5 (the only noise type SRA1 accepts is additive)."""
        return self.strong_order

    def check_flow(self, flow: Flow) -> None:
        """SDE flows with additive noise only."""
        super().check_flow(flow)
        if flow.noise_type != "additive":
            raise IncompatibleSolverError(
                f"SRA1 is for additive noise, but {type(flow).__name__} has noise_type="
                f"{flow.noise_type!r}; use EulerMaruyama"
            )

    def step(
        self,
        flow: Flow,
        t: Tensor,
        x: Tensor,
        h: Tensor,
        state: dict[str, Tensor] | None,
        ctx: StepContext,
    ) -> StepResult:
        """One SRA1 step from ``t`` to ``t + h`` (two drift evaluations)."""
        dw, dz = ctx.noise.increment_and_area(t, t + h, x, ctx.index)
        hb = bcast(h, x)
        dzh = dz / hb.abs()
        t_end = t + h
        if isinstance(flow, DiracSDE):
            t_end = t_end.clamp(0.0, 1.0)
        f1 = _drift(flow, t, x, ctx, record=True)
        g_end = flow.diffusion(t_end, x)
        g_start = flow.diffusion(t, x)
        stage = x + 0.75 * hb * f1 + 1.5 * g_end * dzh
        f2 = _drift(flow, t + 0.75 * h, stage, ctx)
        x_next = x + hb * (f1 / 3 + 2 * f2 / 3) + g_end * (dw - dzh) + g_start * dzh
        return StepResult(x_next, None, 2)
