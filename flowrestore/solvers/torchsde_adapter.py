"""Run ``torchsde.sdeint`` on a flowrestore SDE flow (``fr.Torchsde(method=...)``).

torchsde integrates forward in time, on 2-D states ``[B, D]``, with its own loop; flowrestore's SDE
flows live on ``[B, ...]`` and restoration flows (Dirac) run backward from ``t = 1``. The adapter
hides both differences:

* **Time.** torchsde sees the step index ``s ∈ [0, N]`` as its time: grid interval ``k`` is
  ``s ∈ [k, k + 1]`` with ``t(s) = t_k + (s − k) h_k``, ``h_k = t_{k+1} − t_k``. This is the
  substitution ``s = (t_0 − t)/Δt`` of a reverse solve (``s = (1 − t)/Δt`` from ``t = 1``), extended
  piecewise-linearly to any grid: the drift becomes ``h_k f(t(s), x)`` (negated when ``h_k < 0``,
  i.e. the reversal) and the diffusion ``sqrt(|h_k|) g(t(s), x)``, an exact change of time for
  every fixed-step method. Integer times are exact in floating point, so torchsde's steps
  (``dt = 1``) land on the grid points, and ``t(s)`` never leaves the grid's span (so never
  ``[0, 1]`` for Dirac). The interval ``k`` is the one whose Brownian increment torchsde asked for
  last (every fixed-step torchsde method draws it first in a step), so stages at a step's end use
  that step's ``h_k``.
* **Shape.** States are reshaped ``[B, ...] ↔ [B, D]`` inside the drift and diffusion.
* **Noise.** torchsde's Brownian motion is replaced by one that asks the solve's noise source
  (``generator=``, ``seeds=``, ``noise=BrownianIncrements(...)``) for ``ΔW`` and the space-time
  integral ``ΔZ`` of each grid interval, rescaled to the index time (``ΔW/sqrt|h|``,
  ``ΔZ/|h|^{3/2}``). So per-sample seeds work, and on a shared ``BrownianIncrements`` path the
  adapter's ``"euler"``/``"srk"`` agree pathwise with flowrestore's ``EulerMaruyama``/``SRA1``.

Methods: Itô ``"euler"``, ``"milstein"``, ``"srk"`` (any noise type the flow declares); the
Stratonovich ``"midpoint"``, ``"heun"``, ``"euler_heun"`` only for additive noise, where Itô and
Stratonovich coincide. Fixed steps only (``steps=`` or ``grid=``). The reported NFE includes
torchsde's two shape probes at the start. On a :class:`~flowrestore.DiracSDE` the continuous drift
(exact ``∂_t A_t``, guidance if configured) is integrated; no data-consistency record is kept.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from flowrestore.errors import ConfigError, IncompatibleSolverError, describe
from flowrestore.flows.base import Flow
from flowrestore.flows.dirac import DiracSDE
from flowrestore.integrate.solution import Solution, make_stats
from flowrestore.solvers.base import Solver

_ITO = {"euler": 1.0, "milstein": 1.0, "srk": 1.5}
_STRAT = {"midpoint": 1.0, "heun": 1.0, "euler_heun": 1.0}


def _brownian_base():
    from torchsde import BrownianInterval  # noqa: F401  (import check)
    from torchsde._brownian.brownian_base import BaseBrownian

    return BaseBrownian


class Torchsde(Solver):
    """Run a ``torchsde.sdeint`` method on an SDE flow inside :func:`flowrestore.solve`.

    Args:
        method: ``"euler"``, ``"milstein"``, ``"srk"`` (default; SRA1 on additive noise, strong
            order 1.5), or for additive noise ``"midpoint"``, ``"heun"``, ``"euler_heun"``.
        options: passed to ``sdeint`` as ``options``.
    """

    delegates = True
    needs = "sde"
    stochastic = True
    weak_order = 1.0

    def __init__(self, method: str = "srk", *, options: dict[str, Any] | None = None):
        if method not in _ITO | _STRAT:
            raise ConfigError(
                f"method must be one of {sorted(_ITO | _STRAT)} (fixed-step torchsde methods), "
                f"got {method!r}"
            )
        self.method = method
        self.options = dict(options or {})
        self.strong_order = (_ITO | _STRAT)[method]
        self.order = 2.0 if method in ("srk", "midpoint", "heun") else 1.0

    def __repr__(self) -> str:
        return f"Torchsde({self.method!r})"

    def strong_order_for(self, flow: Flow) -> float:
        """torchsde's strong order on ``flow`` (0.5 for Euler on non-additive noise)."""
        if flow.noise_type != "additive" and self.method in ("euler", "srk"):
            return 0.5 if self.method == "euler" else 1.0
        return self.strong_order

    def check_flow(self, flow: Flow) -> None:
        """SDE flows; the Stratonovich methods only with additive noise."""
        super().check_flow(flow)
        if self.method in _STRAT and flow.noise_type != "additive":
            raise IncompatibleSolverError(
                f"torchsde method {self.method!r} is a Stratonovich scheme; on "
                f"{flow.noise_type!r} noise it would solve a different (Stratonovich) SDE. "
                "Use 'euler', 'milstein' or 'srk'"
            )

    def integrate(self, flow: Flow, x0: Tensor, times: Tensor, *, ctx, save_at, output) -> Solution:
        """Integrate ``flow`` over the fixed grid ``times`` with torchsde."""
        import torchsde

        if save_at not in (None, "steps", "all"):
            raise ConfigError(
                f"the Torchsde adapter saves the end state (save_at=None) or every "
                f"grid point (save_at='steps'), got {describe(save_at)}"
            )
        B, dev, dt = x0.shape[0], x0.device, x0.dtype
        shape = x0.shape
        grid = times.to(device=dev, dtype=dt)
        hs = grid.diff()
        n = hs.numel()
        lo, hi = grid.min(), grid.max()
        nfe = [0]
        noise_type = "additive" if flow.noise_type == "additive" else "diagonal"
        sde_type = "ito" if self.method in _ITO else "stratonovich"
        is_dirac = isinstance(flow, DiracSDE)
        obs = flow.observation_for(ctx, x0) if is_dirac else None

        current = [0]  # the grid interval of the step in progress (set by the Brownian query)

        def locate(s: Tensor) -> tuple[Tensor, Tensor]:
            # interval k of the current step, also at its end s = k + 1 (which belongs to k + 1 as
            # well: there only this step's h_k gives the right rescaling)
            k = current[0]
            t = (grid[k] + (s - k) * hs[k]).clamp(lo, hi)
            return t.to(dt), hs[k]

        def drift(s: Tensor, y: Tensor) -> Tensor:
            nfe[0] += 1
            t, h = locate(s)
            x = y.reshape(shape)
            f = flow.drift_terms(t, x, obs)[0] if is_dirac else flow.drift(t, x)
            return (h * f).reshape(B, -1)

        def diffusion(s: Tensor, y: Tensor) -> Tensor:
            t, h = locate(s)
            g = flow.diffusion(t, y.reshape(shape))
            return (h.abs().sqrt() * g).expand(shape).reshape(B, -1)

        class _SDE(torch.nn.Module):
            pass

        sde = _SDE()
        sde.noise_type, sde.sde_type = noise_type, sde_type
        sde.f = drift
        if noise_type == "additive":
            sde.g_prod = lambda s, y, v: diffusion(s, y) * v
        else:
            sde.g = diffusion
        bm = _make_brownian(ctx, grid, hs, (B, x0[0].numel()), shape, dt, dev, current)
        ts = torch.arange(n + 1, dtype=dt, device=dev)
        ys = torchsde.sdeint(
            sde,
            x0.reshape(B, -1),
            ts,
            bm=bm,
            method=self.method,
            dt=1.0,
            adaptive=False,
            options=self.options or None,
        )
        traj = ys.reshape(n + 1, *shape)
        x = traj[-1]
        stats = make_stats(B)
        stats.steps += n
        if output == "posterior_mean":
            x = flow.denoise(grid[-1], x)
            nfe[0] += 1
        stats.nfe += nfe[0]
        save_all = save_at is not None
        return Solution(
            x=x,
            ts=grid if save_all else grid[-1:],
            trajectory=traj if save_all else None,
            stats=stats,
            t_final=grid[-1].expand(B).clone(),
        )


def _make_brownian(ctx, grid: Tensor, hs: Tensor, size, shape, dtype, device, current):
    """A torchsde Brownian motion in index time, drawing from the solve's noise source."""
    base = _brownian_base()
    n = hs.numel()

    class _IndexTimeBrownian(base):
        def __init__(self):
            self._shape = torch.Size(size)

        def __repr__(self) -> str:
            return f"flowrestore index-time Brownian motion over {n} steps"

        @property
        def dtype(self):
            return dtype

        @property
        def device(self):
            return device

        @property
        def shape(self):
            return self._shape

        @property
        def levy_area_approximation(self):
            return "space-time"

        def __call__(self, ta, tb=None, return_U=False, return_A=False):
            if tb is None or return_A:
                raise ConfigError(
                    "the Torchsde adapter supports increments (and space-time "
                    "areas) over one grid step only"
                )
            a, b = float(ta), float(tb)
            k = round(a)
            if abs(a - k) > 1e-9 or abs(b - a - 1.0) > 1e-9 or not 0 <= k < n:
                raise ConfigError(
                    f"torchsde asked for the Brownian increment over [{a}, {b}] in "
                    "index time; only single grid steps are supported (fixed steps)"
                )
            current[0] = k  # torchsde's fixed-step methods query the increment first in a step
            t0, t1 = grid[k], grid[k + 1]
            habs = hs[k].abs()
            like = torch.empty(shape, dtype=dtype, device=device)
            if return_U:
                dw, dz = ctx.noise.increment_and_area(t0, t1, like, ctx.index)
                return (dw / habs.sqrt()).reshape(size), (dz / habs**1.5).reshape(size)
            dw = ctx.noise.increment(t0, t1, like, ctx.index)
            return (dw / habs.sqrt()).reshape(size)

    return _IndexTimeBrownian()
