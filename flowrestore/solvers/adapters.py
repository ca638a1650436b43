"""Adapters that run third-party integrators on flowrestore flows.

:class:`Torchdiffeq` runs any ``torchdiffeq.odeint`` method on a flow. torchdiffeq owns its own
loop (so this is the one place where stepping is not done by :func:`flowrestore.solve`'s loop) and
controls the step with one error norm for the whole batch. On a flow singular at ``t = 0``
(InDI) its methods would evaluate there, so the adapter integrates to ``t_min`` (adaptive methods)
or to the last positive grid point (fixed-grid methods) and finishes with the denoising step
``x_0 = F(x_t, t)``, exactly like flowrestore's own solvers.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from flowrestore.errors import ConfigError, GridError, describe
from flowrestore.flows.base import Flow
from flowrestore.integrate.solution import Solution, make_stats
from flowrestore.solvers.base import Solver, resolve_t_min

_FIXED = {
    "euler",
    "midpoint",
    "rk4",
    "heun2",
    "heun3",
    "explicit_adams",
    "implicit_adams",
    "fixed_adams",
}
_ADAPTIVE = {"dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun", "tsit5"}


class Torchdiffeq(Solver):
    """Run ``torchdiffeq.odeint(method=...)`` on a flow.

    Args:
        method: any torchdiffeq method name (``"dopri5"``, ``"rk4"``, ``"euler"``, ...).
        rtol, atol: tolerances of adaptive methods.
        t_min: adaptive methods on singular flows stop here before the denoising step
            (default ``min(1e-2, sqrt(rtol)/10)``, as flowrestore's adaptive solvers).
        options: passed to ``odeint`` as ``options``.
    """

    delegates = True
    needs = "ode"

    def __init__(
        self,
        method: str,
        *,
        rtol: float = 1e-7,
        atol: float = 1e-9,
        t_min: float | None = None,
        options: dict[str, Any] | None = None,
    ):
        if method not in _FIXED | _ADAPTIVE:
            raise ConfigError(
                f"method must be a torchdiffeq method ({sorted(_FIXED | _ADAPTIVE)}), "
                f"got {method!r}"
            )
        if t_min is not None and not 0 < t_min < 1:
            raise ConfigError(f"t_min must be in (0, 1), got {describe(t_min)}")
        self.method = method
        self.rtol, self.atol, self.t_min = rtol, atol, t_min
        self.options = dict(options or {})
        self.adaptive = method in _ADAPTIVE
        self.order = {
            "euler": 1,
            "midpoint": 2,
            "heun2": 2,
            "rk4": 4,
            "heun3": 3,
            "bosh3": 3,
            "dopri5": 5,
            "dopri8": 8,
            "fehlberg2": 2,
            "adaptive_heun": 2,
            "tsit5": 5,
        }.get(method, 1)

    def __repr__(self) -> str:
        return f"Torchdiffeq({self.method!r}, rtol={self.rtol}, atol={self.atol})"

    def resolved_t_min(self) -> float:
        """``t_min`` used on singular flows."""
        return resolve_t_min(self.t_min, self.rtol)

    def integrate(self, flow: Flow, x0: Tensor, times: Tensor, *, ctx, save_at, output) -> Solution:
        """Integrate ``flow`` over ``times`` (fixed methods: the grid; adaptive: the span)."""
        import torchdiffeq

        if save_at is not None:
            raise ConfigError("the Torchdiffeq adapter returns the end state only: save_at=None")
        B, dev, dt = x0.shape[0], x0.device, x0.dtype
        nfe = [0]

        def func(t: Tensor, x: Tensor) -> Tensor:
            nfe[0] += 1
            return flow.drift(t.to(dt), x)

        singular_end = flow.singular_at_zero and float(times[-1]) == 0.0
        if self.adaptive:
            t0, t1 = float(times[0]), float(times[-1])
            t_stop = self.resolved_t_min() if singular_end else t1
            ts = torch.tensor([t0, t_stop], dtype=torch.float64)
            if singular_end and not t0 > t_stop:
                raise GridError(f"t_min={t_stop} must lie inside the span ({t0}, {t1})")
        else:
            ts = times[:-1] if singular_end else times
        opts = dict(self.options)
        if self.adaptive:
            # torchdiffeq's adaptive methods step *past* the last output time and interpolate, so
            # their stages would be evaluated beyond t_min (at and below t = 0 on InDI). Making the
            # end a ``step_t`` clips the last step onto it.
            end = ts[-1:].to(dt)
            prev = opts.get("step_t")
            opts["step_t"] = (
                end
                if prev is None
                else torch.cat([torch.as_tensor(prev, dtype=dt).reshape(-1), end]).unique()
            )
        kwargs = {"rtol": self.rtol, "atol": self.atol} if self.adaptive else {}
        if not self.adaptive and ts.numel() < 2:
            x = x0
        else:
            out = torchdiffeq.odeint(
                func,
                x0,
                ts.to(device=dev, dtype=dt),
                method=self.method,
                options=opts or None,
                **kwargs,
            )
            x = out[-1]
        t_last = torch.tensor(float(ts[-1]), dtype=dt, device=dev)
        if singular_end:
            x = flow.denoise(t_last, x)
            nfe[0] += 1
            t_last = torch.zeros((), dtype=dt, device=dev)
        elif output == "posterior_mean":
            x = flow.denoise(t_last, x)
            nfe[0] += 1
        stats = make_stats(B)
        stats.nfe += nfe[0]
        return Solution(
            x=x,
            ts=t_last.reshape(1),
            trajectory=None,
            stats=stats,
            t_final=t_last.expand(B).clone(),
        )
