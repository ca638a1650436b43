"""Dirac's discrete reverse step (DiracDiffusion, Fabian et al. 2023, eqs. 7 and 13; supplement G).

:class:`DiracStep` steps a :class:`~flowrestore.DiracSDE` from ``t`` to ``s = t + h`` (``h < 0``) by
the paper's eq. 7, the Euler–Maruyama discretisation of the reverse SDE with finite differences:

    ``y_s = y_t + R̂ − (σ_s² − σ_t²)(s_θ(y_t, t) + γ_t) + sqrt(σ_t² − σ_s²) z``

``s_θ`` the score of eq. 11 and ``γ_t`` the optional guidance score (both the flow's:
:meth:`~flowrestore.DiracSDE.guided_score`), ``z = ΔW / sqrt|h|`` from the solve's noise source (so
a shared Brownian path gives a shared ``z``) and ``R̂`` the *incremental reconstruction*, an
estimate of ``A_s(x_0) − A_t(x_0)`` from ``Φ = Φ(y_t, t)`` chosen by ``increment=``:

* ``"look_ahead"`` (default; eq. 13, = supplement eq. 30): ``R̂ = A_{t−Δt}(Φ) − A_t(Φ)``;
* ``"small_look_ahead"``: ``R̂ = (Δt/δ)(A_{t−δ}(Φ) − A_t(Φ))``;
* ``"look_back"``: ``R̂ = A_t(Φ) − A_{t+Δt}(Φ)``;
* ``"small_look_back"``: ``R̂ = (Δt/δ)(A_t(Φ) − A_{t+δ}(Φ))``;
* ``"tangent"``: ``R̂ = −Δt ∂_t A_t(Φ)`` (the continuous drift's term: plain Euler–Maruyama).

with ``Δt = |h|`` and ``δ = min(small_step, Δt)``. The paper states eq. 13 in the main text; its
supplement G names the small look-ahead, look-back and small look-back estimates (its eqs. 31–36),
but the equations themselves were lost in our text of the paper. The three forms above are our
reading of the supplement's prose — a difference quotient of ``A_τ(Φ)`` over a step ``δ`` ahead of
``t`` (SLA) or behind it (LB: "based on the most recent change"; SLB: both ideas), followed by the
"first-order Taylor expansion" to the full step — as docs/math.md §3 lists them: options, not the
default. Nothing is evaluated outside ``[0, 1]``: where a look-back probe ``t + Δt`` or ``t + δ``
exceeds 1 (always on the first step from ``t = 1``) it is reflected to ``t − Δt`` / ``t − δ``, i.e.
that step uses the look-ahead counterpart.

One predictor evaluation per step. The data-consistency norm ``‖ỹ − A_1(Φ(y_t, t))‖`` (paper fig. 4)
is recorded per step as ``Solution.records["data_consistency"]`` (``[steps, B]``, at each step's
start, no extra predictor evaluation) when the flow knows the measurement and
``track_consistency`` is on. With ``"tangent"`` the step is Euler–Maruyama with ``h dσ²/dt``
replaced by ``σ_s² − σ_t²``: strong order 1 for the additive noise (tested). A step reads no device
value, so a fixed-grid solve never waits for the host and ``torch.compile`` traces a step whole.
"""

from __future__ import annotations

import numbers
from typing import ClassVar

import torch
from torch import Tensor

from flowrestore.errors import ConfigError, describe
from flowrestore.flows.base import Flow, bcast
from flowrestore.flows.dirac import DiracSDE
from flowrestore.solvers.base import Context, StepResult
from flowrestore.solvers.sde import SDESolver

__all__ = ["CONSISTENCY_RECORD", "INCREMENTS", "DiracStep"]

#: the key of the per-step data-consistency norms in ``Solution.records``
CONSISTENCY_RECORD = "data_consistency"
#: the incremental-reconstruction estimates (module docstring)
INCREMENTS = ("look_ahead", "small_look_ahead", "look_back", "small_look_back", "tangent")
#: The default ``δ`` of the small look-ahead/look-back estimates.
SMALL_STEP = 1e-3


class DiracStep(SDESolver):
    """Dirac's eq. 7 reverse step on a :class:`~flowrestore.DiracSDE` (module docstring).

    Args:
        increment: the incremental-reconstruction estimate ``R̂``: ``"look_ahead"`` (default),
            ``"small_look_ahead"``, ``"look_back"``, ``"small_look_back"`` or ``"tangent"``.
        small_step: ``δ`` of the small look-ahead/look-back estimates, in ``(0, 1]`` (capped at the
            step size); default ``1e-3``. Refused with any other ``increment`` (it would be
            ignored).
        track_consistency: record ``‖ỹ − A_1(Φ(y_t, t))‖`` per step when the flow knows the
            measurement (``Solution.records["data_consistency"]``).
    """

    flow_types: ClassVar[tuple[type, ...]] = (DiracSDE,)
    order: ClassVar[float] = 1.0
    strong_order: ClassVar[float] = 1.0
    weak_order: ClassVar[float] = 1.0
    stage_fractions = (0.0,)

    def __init__(
        self,
        *,
        increment: str = "look_ahead",
        small_step: float | None = None,
        track_consistency: bool = True,
    ):
        if increment not in INCREMENTS:
            raise ConfigError(f"increment must be one of {INCREMENTS}, got {describe(increment)}")
        if small_step is None:
            small_step = SMALL_STEP
        elif not increment.startswith("small_"):
            raise ConfigError(
                f"small_step applies only to increment='small_look_ahead' or 'small_look_back' "
                f"(it would be ignored), got small_step={describe(small_step)} with "
                f"increment={increment!r}"
            )
        if (
            isinstance(small_step, bool)
            or not isinstance(small_step, numbers.Real)
            or not 0 < small_step <= 1
        ):
            raise ConfigError(f"small_step must be a number in (0, 1], got {describe(small_step)}")
        if not isinstance(track_consistency, bool):
            raise ConfigError(
                f"track_consistency must be a bool, got {describe(track_consistency)}"
            )
        self.increment = increment
        self.small_step = float(small_step)
        self.track_consistency = track_consistency

    def __repr__(self) -> str:
        small = f"small_step={self.small_step!r}, " if self.increment.startswith("small_") else ""
        return (
            f"DiracStep(increment={self.increment!r}, {small}"
            f"track_consistency={self.track_consistency!r})"
        )

    def noise_draws(self) -> tuple[str, ...]:
        """One Brownian increment per step (``z = ΔW/√|h|``)."""
        return ("increment",)

    def step(self, flow: Flow, t: Tensor, x: Tensor, h: Tensor, state, ctx: Context) -> StepResult:
        """One reverse step from ``t`` to ``t + h`` (eq. 7)."""
        dw = ctx.noise.increment(t, t + h, x, ctx.index)
        z = dw / bcast(h.abs().sqrt(), x)
        obs = flow.observation_rows(x)
        est = flow.estimate(t, x, obs, residual=self.track_consistency)
        a_t_phi = flow.degrade(est.phi, t)
        score = flow.guided_score(t, x, est, a_t_phi)
        r_hat = self.incremental_reconstruction(flow, t, h, est.phi, a_t_phi)
        dvar = flow.sigma2((t + h).clamp(0.0, 1.0)) - flow.sigma2(t)
        x_next = x + r_hat - bcast(dvar, x) * score + bcast(dvar.abs().sqrt(), x) * z
        if est.residual is not None:
            ctx.record(CONSISTENCY_RECORD, est.residual)
        return StepResult(x_next, None, 1)

    def incremental_reconstruction(
        self, flow: DiracSDE, t: Tensor, h: Tensor, phi: Tensor, a_t_phi: Tensor | None = None
    ) -> Tensor:
        """``R̂ ≈ A_{t+h}(x_0) − A_t(x_0)`` from ``Φ`` by the configured estimate (``h < 0``).

        ``a_t_phi`` is ``A_t(Φ)`` when already computed. Probes outside ``[0, 1]`` are reflected
        into it (module docstring).
        """
        a_t_phi = flow.degrade(phi, t) if a_t_phi is None else a_t_phi
        if self.increment == "look_ahead":
            return flow.degrade(phi, (t + h).clamp(0.0, 1.0)) - a_t_phi
        if self.increment == "tangent":
            return bcast(h, phi) * flow.degradation_derivative(phi, t)
        sign = torch.sign(h)
        delta = h.abs().clamp(max=self.small_step)
        if self.increment == "small_look_ahead":
            p = t + sign * delta
        elif self.increment == "look_back":
            p = t - h
        else:  # small_look_back
            p = t - sign * delta
        p = torch.where((p < 0) | (p > 1), 2 * t - p, p).clamp(0.0, 1.0)
        ratio = h / (p - t)
        return bcast(ratio, phi) * (flow.degrade(phi, p) - a_t_phi)
