"""Run torchsde's methods as steps of flowrestore's loop: ``fr.Torchsde(method)``.

Each step calls the ``step`` of torchsde's own solver object for the method, so saving,
statistics, progress, callbacks and failures are flowrestore's. torchsde integrates forward in
time, on 2-D states ``[B, D]``; flowrestore's SDE flows live on ``[B, ...]`` and restoration flows
(Dirac) run backward from ``t = 1``. Per step the adapter hides both differences:

* **Time.** A step ``t → t + h`` is torchsde's step over ``s ∈ [0, 1]`` with
  ``t(s) = t + s h``: the drift becomes ``h f(t(s), x)`` (negated for ``h < 0``: the reversal) and
  the diffusion ``sqrt(|h|) g(t(s), x)``, an exact change of time for every fixed-step method.
  ``t(s)`` never leaves the step, so never ``[0, 1]`` for Dirac.
* **Shape.** States are reshaped ``[B, ...] ↔ [B, D]`` inside the drift and diffusion.
* **Noise.** torchsde's Brownian motion is replaced by one that asks the solve's noise source
  (``generator=``, ``seeds=``, ``noise=BrownianIncrements(...)``) for the step's ``ΔW`` and
  space-time integral ``ΔZ``, rescaled to ``s`` (``ΔW/sqrt|h|``, ``ΔZ/|h|^{3/2}``). So per-sample
  seeds work, and on a shared ``BrownianIncrements`` path ``"euler"``/``"srk"`` agree pathwise with
  flowrestore's ``EulerMaruyama``/``SRA1``.

Methods: Itô ``"euler"``, ``"milstein"``, ``"srk"`` (any noise type the flow declares); the
Stratonovich ``"midpoint"``, ``"heun"``, ``"euler_heun"`` only for additive noise, where Itô and
Stratonovich coincide. Fixed steps only (``steps=`` or ``grid=``). ``stage_fractions`` are where
each method evaluates the drift on additive noise: ``"srk"`` (SRA1) at ``0, 3/4`` and
``"midpoint"`` at ``0, 1/2`` land on a singular ``t = 0`` (a diffusion model's reverse SDE) by
their own step, ``"heun"`` (``0, 1``) by the denoising step; ``"srk"`` on diagonal noise (SRID2,
drift at ``0, 1, 1/2``) is refused on such a flow. On a
:class:`~flowrestore.DiracSDE` the continuous drift (exact ``∂_t A_t``, guidance if configured) is
integrated. Uses torchsde's ``methods.select`` and ``BaseBrownian`` (torchsde 0.2.x); lazy import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from flowrestore.errors import ConfigError, IncompatibleSolverError, describe
from flowrestore.flows.base import Flow
from flowrestore.solvers.base import Context, StepResult
from flowrestore.solvers.sde import SDESolver

__all__ = ["Torchsde"]

_ITO = {"euler": 1.0, "milstein": 1.0, "srk": 1.5}
_STRAT = {"midpoint": 1.0, "heun": 1.0, "euler_heun": 1.0}
#: where each method evaluates the drift in a step on additive noise (torchsde's tableaus; the
#: rest only at its start); "srk" on diagonal noise is SRID2, with drift stages (0, 1, 1/2)
_DRIFT_STAGES = {"srk": (0.0, 0.75), "midpoint": (0.0, 0.5), "heun": (0.0, 1.0)}


class _Step:
    """The step in progress (set before torchsde's step runs; read by its drift and noise).

    A plain object, not a dataclass: the loop's :func:`~flowrestore.flows.base.select_rows` (a
    landing step for the samples that did not fail) passes it through, so the drift, diffusion
    and Brownian motion built in :meth:`Torchsde.init` keep reading the cell the step writes.
    ``shape`` is the stepped state's: a landing may step a subset of the batch's rows.
    """

    __slots__ = ("bounds", "calls", "h", "shape", "t")

    def __init__(self, shape: torch.Size):
        self.t: Tensor | None = None
        self.h: Tensor | None = None
        self.calls = 0
        self.bounds: tuple[Tensor, Tensor] | None = None  # the s = 0 and s = 1 given torchsde
        self.shape = shape


@dataclass
class _State:
    """torchsde's solver object, its extra state and the step cell its callbacks read."""

    impl: Any
    extra: Any
    cell: _Step


#: the ``options`` keys a fixed-step torchsde method reads (the others it ignores)
_READ_OPTIONS = {"milstein": ("grad_free",)}


def _check_options(method: str, options) -> dict[str, Any]:
    """``options`` as a dict of keys ``method`` reads, or a :class:`ConfigError` naming the
    key: torchsde's fixed-step methods ignore what they do not read (``{"dt": 0.1}`` was
    accepted and did nothing; the loop owns the grid)."""
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise ConfigError(f"options must be a dict or None, got {describe(options)}")
    read = _READ_OPTIONS.get(method, ())
    for key in options:
        if key not in read:
            raise ConfigError(
                f"options[{key!r}] is not an option torchsde's {method!r} reads (the loop owns "
                f"the grid: pass steps= or grid= to fr.solve); accepted options: "
                f"{', '.join(read) or 'none'}, got options={options!r}"
            )
        if key == "grad_free" and not isinstance(options[key], bool):
            raise ConfigError(f"options['grad_free'] must be a bool, got {describe(options[key])}")
    return dict(options)


class Torchsde(SDESolver):
    """A torchsde method stepped by :func:`flowrestore.solve` (module docstring).

    Args:
        method: ``"euler"``, ``"milstein"``, ``"srk"`` (default; SRA1 on additive noise, strong
            order 1.5), or for additive noise ``"midpoint"``, ``"heun"``, ``"euler_heun"``.
        options: passed to torchsde's method as ``options``: only the keys it reads
            (``"milstein"``: ``grad_free``); any other key is refused.
    """

    weak_order = 1.0
    per_sample_steps = False

    def __init__(self, method: str = "srk", *, options: dict[str, Any] | None = None):
        if not isinstance(method, str) or method not in _ITO | _STRAT:
            raise ConfigError(
                f"method must be one of {sorted(_ITO | _STRAT)} (fixed-step torchsde methods), "
                f"got {describe(method)}"
            )
        self.method = method
        self.options = _check_options(method, options)
        self.strong_order = (_ITO | _STRAT)[method]
        self.order = 2.0 if method in ("srk", "midpoint", "heun") else 1.0
        self.stage_fractions = _DRIFT_STAGES.get(method, (0.0,))

    def __repr__(self) -> str:
        return f"Torchsde({self.method!r})"

    def strong_order_for(self, flow: Flow) -> float:
        """torchsde's strong order on ``flow``: 0.5 for Euler on non-additive noise; 1.5 for
        ``"srk"`` on both noise types (SRA1 / SRID2, Rößler 2010; measured slope 1.55 on
        diagonal noise over 32–256 steps, ``tests/dirac/test_torchsde_adapter.py``)."""
        if flow.noise_type != "additive" and self.method == "euler":
            return 0.5
        return self.strong_order

    def check_flow(self, flow: Flow) -> None:
        """SDE flows; the Stratonovich methods only with additive noise; ``"srk"`` on diagonal
        noise not on a flow singular at ``t = 0`` (its drift stage at the step's end)."""
        super().check_flow(flow)
        if self.method == "srk" and flow.noise_type != "additive" and flow.singular_at_zero:
            raise IncompatibleSolverError(
                f"torchsde's 'srk' on {flow.noise_type!r} noise (SRID2) evaluates the drift at "
                f"the end of each step, and {type(flow).__name__} may not be evaluated at t = 0; "
                "use 'euler' or 'milstein'"
            )
        if self.method in _STRAT and flow.noise_type != "additive":
            raise IncompatibleSolverError(
                f"torchsde method {self.method!r} is a Stratonovich scheme; on "
                f"{flow.noise_type!r} noise it would solve a different (Stratonovich) SDE. "
                "Use 'euler', 'milstein' or 'srk'"
            )

    def init(self, flow: Flow, t_start: Tensor, x_start: Tensor, ctx: Context):
        """Build torchsde's solver for the flow, with the solve's noise as its Brownian motion."""
        from torchsde._core import base_sde, methods

        B, dtype, device = x_start.shape[0], x_start.dtype, x_start.device
        cell = _Step(x_start.shape)
        noise_type = "additive" if flow.noise_type == "additive" else "diagonal"

        def drift(s: Tensor, y: Tensor) -> Tensor:
            cell.calls += 1
            B, shape = cell.shape[0], cell.shape  # the rows stepped (all, or a landing's)
            t = (cell.t + torch.as_tensor(s, dtype=dtype, device=device) * cell.h).to(dtype)
            return (cell.h * flow.drift(t, y.reshape(shape))).reshape(B, -1)

        def diffusion(s: Tensor, y: Tensor) -> Tensor:
            B, shape = cell.shape[0], cell.shape
            t = (cell.t + torch.as_tensor(s, dtype=dtype, device=device) * cell.h).to(dtype)
            g = flow.diffusion(t, y.reshape(shape))
            return (cell.h.abs().sqrt() * g).expand(shape).reshape(B, -1)

        class _SDE(torch.nn.Module):
            pass

        sde = _SDE()
        sde.noise_type = noise_type
        sde.sde_type = "ito" if self.method in _ITO else "stratonovich"
        sde.f = drift
        if noise_type == "additive":
            sde.g_prod = lambda s, y, v: diffusion(s, y) * v
        else:
            sde.g = diffusion
        bm = _make_brownian(ctx, cell, dtype, device)
        impl = methods.select(method=self.method, sde_type=sde.sde_type)(
            sde=base_sde.ForwardSDE(sde),
            bm=bm,
            dt=1.0,
            adaptive=False,
            rtol=0.0,
            atol=0.0,
            dt_min=0.0,
            options=dict(self.options),
        )
        zero = torch.zeros((), dtype=dtype, device=device)
        return x_start, _State(
            impl, impl.init_extra_solver_state(zero, x_start.reshape(B, -1)), cell
        )

    def step(self, flow: Flow, t: Tensor, x: Tensor, h: Tensor, state, ctx: Context) -> StepResult:
        """One torchsde step over ``s ∈ [0, 1]``, i.e. from ``t`` to ``t + h``."""
        cell = state.cell
        cell.t, cell.h, cell.calls, cell.shape = t, h, 0, x.shape
        zero = torch.zeros((), dtype=x.dtype, device=x.device)
        cell.bounds = (zero, zero + 1)
        y1, extra = state.impl.step(*cell.bounds, x.reshape(x.shape[0], -1), state.extra)
        return StepResult(y1.reshape(x.shape), _State(state.impl, extra, cell), cell.calls)


def _make_brownian(ctx: Context, cell: _Step, dtype, device):
    """A torchsde Brownian motion over one step ``s ∈ [0, 1]``, drawing from the solve's noise
    (shaped ``[B, D]`` for the rows the step in ``cell`` steps)."""
    from torchsde._brownian.brownian_base import BaseBrownian

    class _StepBrownian(BaseBrownian):
        def __init__(self):
            pass

        def __repr__(self) -> str:
            return "flowrestore one-step Brownian motion"

        @property
        def dtype(self):
            return dtype

        @property
        def device(self):
            return device

        @property
        def shape(self):
            return torch.Size((cell.shape[0], cell.shape[1:].numel()))

        @property
        def levy_area_approximation(self):
            return "space-time"

        def __call__(self, ta, tb=None, return_U=False, return_A=False):
            # the step's own bounds, by identity: comparing values would read the device
            if tb is None or return_A or ta is not cell.bounds[0] or tb is not cell.bounds[1]:
                raise ConfigError(
                    "the Torchsde adapter provides increments (and space-time areas) over one "
                    f"whole step only; torchsde asked for [{ta}, {tb}]"
                )
            t0, t1 = cell.t, cell.t + cell.h
            habs, shape, size = cell.h.abs(), cell.shape, self.shape
            like = torch.empty(shape, dtype=dtype, device=device)
            if return_U:
                dw, dz = ctx.noise.increment_and_area(t0, t1, like, ctx.index)
                return (dw / habs.sqrt()).reshape(size), (dz / habs**1.5).reshape(size)
            dw = ctx.noise.increment(t0, t1, like, ctx.index)
            return (dw / habs.sqrt()).reshape(size)

    return _StepBrownian()
