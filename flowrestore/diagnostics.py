"""Does a learned residual flow have a limit at ``t = 0``? :func:`check_endpoint` measures it.

For the exact posterior mean ``D(x, t) → x`` as ``t → 0`` and the drift ``(x − D)/t`` stays bounded
(docs/math.md §7), so the ODE has a limit and refined solves converge. A learned predictor need not
do this: if ``D(x, t) − x → c ≠ 0`` the drift grows like ``c/t``, the solution drifts like
``c log t``, and "the restored image" depends on how close to 0 the grid goes.

:func:`check_endpoint` integrates the flow from ``t = 1`` on a fine geometric grid, and at times
``τ_k`` spanning several decades above 0 records, on the user's own data:

* the residual ``r(τ) = mean |x_τ − D(x_τ, τ)|`` (``= τ |drift|``): it falls like ``τ`` when the
  flow has a limit and levels off at ``|c|`` when it has none — the fitted slope of ``log r``
  against ``log τ`` over the smallest decades says which (a limit needs a slope > 0: the drift
  ``~ τ^{slope − 1}`` is then integrable);
* how much the answer moves: the PSNR between the estimates ``D(x_τ, τ)`` at consecutive ``τ_k``
  (stopping at ``τ_k`` and denoising gives ``D(x_{τ_k}, τ_k)``).

Without a limit it recommends ``t_min``: the smallest ``τ_k`` above the range where the residual
stops falling (below it the constant offset drives the flow), and states the cost — the PSNR by
which the answer still moves per decade of ``t_min`` below it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from flowrestore.errors import ConfigError, NonFiniteError, describe
from flowrestore.flows.base import ResidualFlow
from flowrestore.integrate.solve import solve
from flowrestore.solvers.runge_kutta import Midpoint

__all__ = ["EndpointReport", "check_endpoint"]


@dataclass
class EndpointReport:
    """What :func:`check_endpoint` measured (lists run over ``times``, decreasing).

    Attributes:
        times: the ``τ_k`` measured at.
        residual: ``mean |x_τ − D(x_τ, τ)|`` at each ``τ_k``.
        drift: ``residual / τ`` (the mean drift magnitude).
        change_db: PSNR between the estimates ``D(x_τ, τ)`` at ``τ_k`` and ``τ_{k+1}``
            (``len(times) − 1`` entries; ``inf`` when identical).
        slope: least-squares slope of ``log residual`` against ``log τ`` over the last four
            times measured (1.5 decades with the default ``times``).
            ``inf`` when the residual is exactly 0 there (``D(x, t) = x``: no drift).
        has_limit: the residual falls toward 0 (``slope > 0.5``) or is 0.
        t_min: recommended end of the integration before the denoising step (``None`` when the
            flow has a limit: any ``t_min`` converges).
        cost_db: without a limit, the PSNR by which the answer moves per decade below ``t_min``.
    """

    times: list[float]
    residual: list[float]
    drift: list[float]
    change_db: list[float]
    slope: float
    has_limit: bool
    t_min: float | None
    cost_db: float | None

    def __str__(self) -> str:
        lines = ["     t      mean|x - D|     mean|drift|   estimate moved (PSNR to next t)"]
        for k, t in enumerate(self.times):
            moved = f"{self.change_db[k]:8.1f} dB" if k < len(self.change_db) else ""
            lines.append(f"{t:8.1e}   {self.residual[k]:12.3e}   {self.drift[k]:12.3e}   {moved}")
        if self.has_limit and math.isinf(self.slope):
            lines.append(
                "The flow has a limit at t = 0 (the residual is 0: no drift there): refined "
                "solves converge; any t_min and grid onto 0 are fine."
            )
        elif self.has_limit:
            lines.append(
                f"The flow has a limit at t = 0 (residual ~ t^{self.slope:.2f}): refined solves "
                "converge; any t_min and grid onto 0 are fine."
            )
        else:
            lines.append(
                f"No limit at t = 0: the residual levels off (slope {self.slope:.2f}), so the "
                "drift "
                f"grows like 1/t and the answer moves about {self.cost_db:.1f} dB per decade of "
                f"t_min. Stop at t_min = {self.t_min:.0e} (t_end=... then output='posterior_mean', "
                "or a grid ending there), or retrain with a velocity parametrisation "
                "(training.UNet(velocity=True))."
            )
        return "\n".join(lines)


def _psnr(a: Tensor, b: Tensor, data_range: float) -> float:
    mse = float((a - b).double().pow(2).mean())
    return math.inf if mse == 0 else 10 * math.log10(data_range**2 / mse)


def check_endpoint(
    flow: ResidualFlow,
    x_start: Tensor,
    *,
    times: Sequence[float] = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4),
    steps_per_decade: int = 16,
    data_range: float = 1.0,
) -> EndpointReport:
    """Measure whether ``flow`` (a residual flow: InDI, diffusion) has a limit at ``t = 0``.

    Args:
        flow: the flow to check (e.g. ``fr.InDIFlow(my_model)``).
        x_start: a batch of the user's degraded data at ``t = 1``.
        times: decreasing times in ``(0, 1)`` to measure at (several decades above 0).
        steps_per_decade: Midpoint steps per decade of the geometric integration grid.
        data_range: peak value for the PSNR of the estimate changes (1 for images in [0, 1]).

    Raises :class:`~flowrestore.errors.NonFiniteError` when the integration or an estimate
    ``D(x_τ, τ)`` at a measuring time is NaN or infinite.
    """
    if not isinstance(flow, ResidualFlow):
        raise ConfigError(
            f"check_endpoint needs a residual flow (InDIFlow, DiffusionFlow), got {describe(flow)}"
        )
    try:
        ts = [float(t) for t in times]
    except (TypeError, ValueError):
        ts = []
    if (
        len(ts) < 4
        or any(not 0 < t < 1 for t in ts)
        or any(b >= a for a, b in zip(ts, ts[1:], strict=False))
    ):
        raise ConfigError(
            f"times must be at least 4 decreasing values in (0, 1), got {describe(times)}"
        )
    if isinstance(steps_per_decade, bool) or not isinstance(steps_per_decade, int):
        raise ConfigError(f"steps_per_decade must be an int >= 2, got {describe(steps_per_decade)}")
    if steps_per_decade < 2:
        raise ConfigError(f"steps_per_decade must be an int >= 2, got {describe(steps_per_decade)}")
    if (
        isinstance(data_range, bool)
        or not isinstance(data_range, numbers.Real)
        or not 0 < data_range < math.inf
    ):
        raise ConfigError(f"data_range must be a finite number > 0, got {describe(data_range)}")
    # a geometric grid from 1 through every measuring time: steps shrink with t, as the flow's do
    knots = [1.0, *ts]
    grid = [1.0]
    for a, b in zip(knots, knots[1:], strict=False):
        n = max(2, math.ceil(steps_per_decade * math.log10(a / b)))
        grid += [a * (b / a) ** (j / n) for j in range(1, n + 1)]
    grid_t = torch.tensor(grid, dtype=torch.float64)
    sol = solve(
        flow, Midpoint(), x_start, grid=grid_t, save_at=torch.tensor(ts, dtype=torch.float64)
    )
    residual, estimates = [], []
    with torch.no_grad():
        for k, t in enumerate(ts):
            x = sol.trajectory[k]
            tt = torch.tensor(t, dtype=x.dtype, device=x.device)
            d = flow.denoise(tt, x)
            residual.append(float((x - d).abs().double().mean()))
            estimates.append(d)
    bad = [t for t, r in zip(ts, residual, strict=False) if not math.isfinite(r)]
    if bad:  # the solve checked its own steps; the estimate at a measuring time is read here
        raise NonFiniteError(
            f"check_endpoint: the predictor's estimate D(x_t, t) is NaN or infinite at "
            f"t = {bad[0]:g} (times measured: {ts})"
        )
    drift = [r / t for r, t in zip(residual, ts, strict=False)]
    change = [_psnr(a, b, data_range) for a, b in zip(estimates, estimates[1:], strict=False)]
    last = slice(max(0, len(ts) - 4), len(ts))
    if all(r == 0 for r in residual[last]):
        # D(x_t, t) = x_t exactly: the drift is 0, so the flow has a limit (slope undefined)
        slope, has_limit = math.inf, True
    else:
        lt = torch.tensor([math.log(t) for t in ts[last]], dtype=torch.float64)
        lr = torch.tensor([math.log(max(r, 1e-300)) for r in residual[last]], dtype=torch.float64)
        design = torch.stack([lt, torch.ones_like(lt)], 1)
        slope = float(torch.linalg.lstsq(design, lr.unsqueeze(1)).solution[0, 0])
        has_limit = slope > 0.5
    t_min = cost = None
    if not has_limit:
        # the residual stops falling where the offset takes over: the last k with r_k < 0.8 r_{k-1}
        knee = 0
        for k in range(1, len(ts)):
            if residual[k] < 0.8 * residual[k - 1]:
                knee = k
        t_min = ts[knee]
        pairs = [(change[k], ts[k], ts[k + 1]) for k in range(len(change)) if ts[k] <= t_min]
        pairs = pairs or [(change[k], ts[k], ts[k + 1]) for k in range(len(change))][-2:]
        # the drift c/t moves the answer by c·log(a/b): per decade, 20 log10(log10(a/b)) dB less
        per_decade = [c + 20 * math.log10(math.log10(a / b)) for c, a, b in pairs]
        cost = float(sum(per_decade) / len(per_decade))
    return EndpointReport(ts, residual, drift, change, slope, has_limit, t_min, cost)
