"""Fit a step grid to a problem: :func:`fit_grid` (the idea of "Align Your Steps", Sabour et al.
2024, for diffusion samplers): the step times that minimise a solver's error on calibration
samples, returned as a reusable :class:`~flowrestore.Fitted` spacing.
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowrestore.errors import ConfigError, describe
from flowrestore.grids import Fitted, Power, Spacing, Uniform
from flowrestore.integrate.solve import solve

__all__ = ["fit_grid"]


def fit_grid(
    flow,
    solver,
    x0: Tensor,
    steps: int,
    *,
    reference: Tensor,
    init: Spacing | None = None,
    maxiter: int = 4000,
    seed_grids: int = 3,
) -> Fitted:
    """Fit the ``steps``-interval grid minimising ``solver``'s error on calibration samples.

    Minimises ``log(‖x̂ − reference‖ / ‖reference‖)`` (``x̂``: the solve of ``flow`` from ``x0``
    on the candidate grid; ``reference``: a tight solve of the same samples) over the step times
    with Nelder–Mead on log-increments (every candidate is strictly monotone). Calibrate on samples
    other than those you evaluate on. Returns a :class:`Fitted` spacing for the flow's span.
    """
    import numpy as np
    from scipy.optimize import minimize

    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise ConfigError(f"steps must be an int >= 2, got {describe(steps)}")
    span = flow.default_span or (1.0, 0.0)
    ref_norm = float(reference.norm())

    def times_from(z):
        inc = np.exp(z - z.max())
        c = np.cumsum(inc) / inc.sum()
        return np.concatenate([[1.0], 1.0 - c[:-1], [0.0]])

    def objective(z):
        tau = times_from(z)
        if np.any(np.diff(tau) >= 0):
            return 1e3
        grid = torch.tensor(span[1] + (span[0] - span[1]) * tau, dtype=torch.float64)
        try:
            x = solve(flow, solver, x0, grid=grid).x
        except Exception:  # noqa: BLE001 - an unusable candidate is just a bad one
            return 1e3
        err = float((x - reference).norm()) / ref_norm
        return float(np.log(max(err, 1e-300))) if np.isfinite(err) else 1e3

    def z_from(tau):
        return np.log(np.maximum(-np.diff(np.asarray(tau, dtype=np.float64)), 1e-12))

    starts = [z_from((init or Uniform())(steps, 1.0, 0.0).numpy())]
    for rho in (1.5, 2.0)[: max(seed_grids - 1, 0)]:
        starts.append(z_from(Power(rho)(steps, 1.0, 0.0).numpy()))
    best = None
    for z0 in starts:
        res = minimize(
            objective,
            z0,
            method="Nelder-Mead",
            options={"maxiter": maxiter, "xatol": 1e-5, "fatol": 1e-7, "adaptive": True},
        )
        if best is None or res.fun < best.fun:
            best = res
    return Fitted(tuple(float(v) for v in times_from(best.x)))
