"""Dirac's discrete reverse step as a solver (DiracDiffusion, Fabian et al. 2023, eq. 7).

:class:`DiracStep` steps a :class:`~flowrestore.DiracSDE` from ``t`` to ``s = t + h`` (``h < 0``)
with the flow's :meth:`~flowrestore.DiracSDE.reverse_step`:

    ``y_s = y_t + R̂ − (σ_s² − σ_t²)(s_θ(y_t, t) + γ_t) + sqrt(σ_t² − σ_s²) z``

``R̂`` the flow's incremental-reconstruction estimate (look-ahead by default, eq. 13), ``s_θ`` the
score of eq. 11, ``γ_t`` the optional guidance score (eqs. 16–17) and ``z = ΔW / sqrt|h|`` from the
solve's noise source (so a shared Brownian path gives a shared ``z``). One predictor evaluation per
step; the data-consistency norm ``‖ỹ − A_1(Φ(y_t, t))‖`` is recorded per step
(``Solution.records["data_consistency"]``) when the flow knows the measurement.

It is Euler–Maruyama on the reverse SDE with ``−Δt ∂_t A_t(x_0)`` replaced by ``R̂`` and
``Δt·dσ²/dt`` by ``σ_t² − σ_s²``: strong order 1 for the additive noise (tested).
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from flowrestore.flows.base import Flow, bcast
from flowrestore.flows.dirac import DiracSDE
from flowrestore.solvers.base import Context, StepResult
from flowrestore.solvers.sde import SDESolver

__all__ = ["CONSISTENCY_RECORD", "DiracStep"]

#: the key of the per-step data-consistency norms in ``Solution.records``
CONSISTENCY_RECORD = "data_consistency"


class DiracStep(SDESolver):
    """Dirac's eq. 7 reverse step on a :class:`~flowrestore.DiracSDE` (module docstring)."""

    flow_types: ClassVar[tuple[type, ...]] = (DiracSDE,)
    order: ClassVar[float] = 1.0
    strong_order: ClassVar[float] = 1.0
    weak_order: ClassVar[float] = 1.0
    stage_fractions = (0.0,)

    def step(self, flow: Flow, t: Tensor, x: Tensor, h: Tensor, state, ctx: Context) -> StepResult:
        """One reverse step from ``t`` to ``t + h``."""
        dw = ctx.noise.increment(t, t + h, x, ctx.index)
        z = dw / bcast(h.abs().sqrt(), x)
        y_next, est = flow.reverse_step(t, x, h, z, flow.observation_rows(x, ctx.index))
        if est.residual is not None and flow.track_consistency:
            ctx.record(CONSISTENCY_RECORD, est.residual)
        return StepResult(y_next, None, 1)
