"""The flow abstraction: *what* to integrate.

Three abstract bases say which kind of equation a flow is, and solvers declare which of them they
step (``Solver.flow_types``; :func:`flowrestore.solve` refuses any other pairing before evaluating
anything):

* :class:`ODE` — ``dx/dt = f(t, x)``: :meth:`drift`.
* :class:`SDE` — Itô ``dx = f(t, x) dt + g(t, x) dW``: :meth:`drift`, :meth:`diffusion` and
  ``noise_type`` (``"additive"``: ``g`` independent of ``x``; ``"diagonal"``).
* :class:`ResidualFlow` — an ODE of the residual form ``dx/dt = (x − D(x, t)) / t`` over a
  clean-image estimate ``D`` (:meth:`ResidualFlow.denoise`), run from ``t = 1`` to ``t = 0``:
  InDI's flow (InDI, Delbracio & Milanfar 2023, eq. 13) and a diffusion model's
  probability-flow ODE in the variable ``σ`` (DDIM). Its semi-linear structure
  ``dx/dt = x/t − D/t`` is what exponential-integrator solvers use; it is singular at ``t = 0``.

A flow knows nothing about stepping; solvers know nothing about grids. Time convention: every time
handed to a flow is a tensor in the state's dtype and device, either 0-d (all samples share it) or
``[B]`` (per-sample control). :func:`batch_time` turns either into the ``[B]`` tensor a predictor
receives, :func:`bcast` into a shape that broadcasts against the state.
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowrestore.errors import IncompatibleSolverError, PredictorOutputError, ShapeError, describe
from flowrestore.grids import TimeVariable

__all__ = ["ODE", "SDE", "Flow", "ResidualFlow", "batch_time", "bcast", "check_output"]


def batch_time(t: Tensor, x: Tensor) -> Tensor:
    """Return ``t`` as a ``[B]`` tensor for the batch ``x`` (a stride-0 view when ``t`` is 0-d)."""
    if t.dim() == 0:
        return t.expand(x.shape[0])
    if t.shape != (x.shape[0],):
        raise ShapeError(f"t must be 0-d or of shape [B]={x.shape[0]}, got {describe(t)}")
    return t


def bcast(t: Tensor, x: Tensor) -> Tensor:
    """Return ``t`` (0-d or ``[B]``) reshaped to broadcast against ``x`` of shape ``[B, ...]``."""
    if t.dim() == 0:
        return t
    return t.reshape(t.shape[0], *([1] * (x.dim() - 1)))


def check_output(name: str, out: object, like: Tensor) -> Tensor:
    """Check that a user callable returned a tensor matching ``like`` in shape, dtype and device."""
    if not isinstance(out, Tensor):
        raise PredictorOutputError(f"{name} must return a torch.Tensor, got {type(out).__name__}")
    if out.shape != like.shape:
        raise PredictorOutputError(
            f"{name} returned shape {tuple(out.shape)}, "
            f"expected the state's shape {tuple(like.shape)}"
        )
    if out.dtype != like.dtype:
        raise PredictorOutputError(f"{name} returned dtype {out.dtype}, expected {like.dtype}")
    if out.device != like.device:
        raise PredictorOutputError(f"{name} returned device {out.device}, expected {like.device}")
    return out


class Flow:
    """Base class of everything :func:`flowrestore.solve` integrates.

    Subclass :class:`ODE`, :class:`SDE` or :class:`ResidualFlow` rather than this. Class attributes:

    * ``singular_at_zero`` — the drift may not be evaluated at ``t = 0``; the loop's endpoint rule
      (:mod:`flowrestore.integrate.endpoint`) lands there without evaluating it;
    * ``default_span`` — ``(t_start, t_end)`` used when ``solve`` gets no grid and no ``t_span``
      (restoration flows: ``(1.0, 0.0)``), or ``None`` if a span must be given;
    * ``time_range`` — the closed interval every time must lie in, or ``None`` for unbounded;
    * ``suggested_solvers`` — solver names an incompatible-pairing error proposes instead.
    """

    singular_at_zero: bool = False
    default_span: tuple[float, float] | None = None
    time_range: tuple[float, float] | None = None
    suggested_solvers: tuple[str, ...] = ()

    def drift(self, t: Tensor, x: Tensor) -> Tensor:
        """Drift ``f(t, x)``; ``t`` is 0-d or ``[B]``."""
        raise NotImplementedError

    def denoise(self, t: Tensor, x: Tensor) -> Tensor:
        """Clean-image estimate at ``(t, x)`` (restoration flows only)."""
        raise IncompatibleSolverError(
            f"{type(self).__name__} has no clean-image estimate (denoise); output='posterior_mean' "
            "needs a restoration flow (InDIFlow, DiracSDE, DiffusionFlow)"
        )

    @property
    def has_denoiser(self) -> bool:
        """Whether :meth:`denoise` is implemented."""
        return type(self).denoise is not Flow.denoise

    @property
    def is_sde(self) -> bool:
        """Whether this is an :class:`SDE` (has a diffusion)."""
        return isinstance(self, SDE)

    def check_state(self, x: Tensor) -> None:
        """Validate a start state (a floating tensor with a batch dimension)."""
        if not isinstance(x, Tensor):
            raise TypeError(f"x_start must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() < 1 or x.shape[0] < 1:
            raise ShapeError(
                f"x_start must have a leading batch dimension [B, ...], got {describe(x)}"
            )
        if not torch.is_floating_point(x):
            raise TypeError(f"x_start must be a floating-point tensor, got dtype {x.dtype}")

    def for_solve(self, x_start: Tensor, t_start: float) -> Flow:
        """The flow a solve from ``(t_start, x_start)`` integrates (default: ``self``).

        Restoration flows whose measurement was not given return a copy that knows it: at
        ``t_start = 1`` the start state *is* the observation (InDI's ``x_1 = y``, Dirac's ``y_1``).
        Called once, before anything is evaluated; the original flow is never modified.
        """
        return self

    def to_state(self, x: Tensor, t: float) -> Tensor:
        """The integrated state for a user's tensor at time ``t`` (default: the tensor itself)."""
        return x

    def from_state(self, x: Tensor, t: float) -> Tensor:
        """The user's tensor for the integrated state at time ``t`` (inverse of
        :meth:`to_state`)."""
        return x

    def default_spacing(self):
        """The flow's preferred grid spacing for ``steps=``, or ``None`` (the loop's default)."""
        return None

    def time_variable(self) -> TimeVariable:
        """How few-step solvers should treat this flow's time (:class:`~flowrestore.grids.
        TimeVariable`; default: interpolate in ``t²``, Runge–Kutta stages in ``t``)."""
        return TimeVariable()

    @property
    def network(self):
        """The learned network (or callable) this flow evaluates, or ``None`` for a flow built
        from plain drift callables. Tiling and the model registry read it (receptive field,
        device, dtype); the flow never needs it to integrate."""
        return None


class ODE(Flow):
    """Base class of ordinary differential equations ``dx/dt = f(t, x)`` (implement ``drift``)."""

    suggested_solvers = ("Euler", "Heun", "RK4", "Dopri5")


class SDE(Flow):
    """Base class of Itô SDEs ``dx = f(t, x) dt + g(t, x) dW``.

    Implement ``drift`` and ``diffusion``; set ``noise_type`` to ``"additive"`` (``g`` does not
    depend on ``x``: higher strong-order methods such as SRA1 apply) or ``"diagonal"``.
    """

    noise_type: str = "diagonal"
    suggested_solvers = ("EulerMaruyama", "SRA1", "Torchsde")

    def diffusion(self, t: Tensor, x: Tensor) -> Tensor:
        """Diffusion ``g(t, x)``, broadcastable to the state."""
        raise NotImplementedError


class ResidualFlow(ODE):
    """``dx/dt = (x − D(x, t)) / t`` from ``t = 1`` to ``t = 0`` over a clean estimate ``D``.

    Implement :meth:`denoise` (``D``); override :meth:`velocity` when the drift is available
    without the division (a velocity-parametrised predictor). Variation of constants gives, exactly,
    ``x_s = (s/t) x_t + s ∫_s^t D(x_τ, τ)/τ² dτ``, which the semi-linear solvers integrate.
    """

    singular_at_zero = True
    default_span = (1.0, 0.0)
    time_range = (0.0, 1.0)
    suggested_solvers = ("Euler", "Heun", "RK4", "SemiLinearMultistep", "Dopri5")

    def denoise(self, t: Tensor, x: Tensor) -> Tensor:
        """The clean-image estimate ``D(x, t)``."""
        raise NotImplementedError

    def velocity(self, t: Tensor, x: Tensor) -> Tensor:
        """``(x − D(x, t)) / t``, never called at ``t = 0`` by the loop."""
        return (x - self.denoise(t, x)) / bcast(t, x)

    def drift(self, t: Tensor, x: Tensor) -> Tensor:
        """The residual drift, :meth:`velocity`."""
        return self.velocity(t, x)
