"""The flow abstraction: *what* to integrate (DESIGN.md, "the flow").

A flow provides a drift ``f(t, x)`` and, for SDEs, a diffusion ``g(t, x)``. Restoration flows add
structure that special solvers use: a clean-image estimate ``denoise(t, x)`` (InDI's ``F``,
Dirac's ``Φ``) and whether the drift is singular at ``t = 0`` (MATH.md §1, "The endpoint t = 0").
Flows know nothing about stepping; solvers know nothing about grids.

Time convention: every time handed to a flow is a tensor in the state's dtype and device, either
0-d (all samples share it, fixed grids) or of shape ``[B]`` (per-sample, adaptive control).
:func:`batch_time` turns either into the ``[B]`` tensor a predictor receives, :func:`bcast` into a
shape that broadcasts against the state.
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowrestore.errors import IncompatibleSolverError, PredictorOutputError, ShapeError, describe


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

    Subclasses implement :meth:`drift` (and :meth:`diffusion` for SDEs). Class attributes:

    * ``is_sde`` — whether :meth:`diffusion` is meaningful;
    * ``noise_type`` — for SDEs, ``"additive"`` (``g`` independent of ``x``) or ``"diagonal"``;
    * ``singular_at_zero`` — the drift may not be evaluated at ``t = 0`` (InDI's ``(x − F)/t``);
      the loop then finishes with :meth:`denoise` instead (see :mod:`flowrestore.integrate.solve`);
    * ``default_span`` — ``(t_start, t_end)`` used when ``solve`` gets neither ``grid`` nor
      ``t_span`` (restoration flows: ``(1.0, 0.0)``), or ``None`` if a span must be given;
    * ``time_range`` — the closed interval every time must lie in, or ``None`` for unbounded.
    """

    is_sde: bool = False
    noise_type: str | None = None
    singular_at_zero: bool = False
    default_span: tuple[float, float] | None = None
    time_range: tuple[float, float] | None = None

    def drift(self, t: Tensor, x: Tensor) -> Tensor:
        """Drift ``f(t, x)``; ``t`` is 0-d or ``[B]``."""
        raise NotImplementedError

    def diffusion(self, t: Tensor, x: Tensor) -> Tensor:
        """Diffusion ``g(t, x)`` (SDE flows only)."""
        raise IncompatibleSolverError(f"{type(self).__name__} is an ODE flow: it has no diffusion")

    def denoise(self, t: Tensor, x: Tensor) -> Tensor:
        """Clean-image estimate at ``(t, x)`` (restoration flows only)."""
        raise IncompatibleSolverError(
            f"{type(self).__name__} has no clean-image estimate (denoise); output='posterior_mean' "
            "and restoration samplers need an InDIFlow or DiracSDE"
        )

    @property
    def has_denoiser(self) -> bool:
        """Whether :meth:`denoise` is implemented."""
        return type(self).denoise is not Flow.denoise

    def check_state(self, x: Tensor) -> None:
        """Validate an initial state (a floating tensor with a batch dimension)."""
        if not isinstance(x, Tensor):
            raise TypeError(f"x0 must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() < 1 or x.shape[0] < 1:
            raise ShapeError(f"x0 must have a leading batch dimension [B, ...], got {describe(x)}")
        if not torch.is_floating_point(x):
            raise TypeError(f"x0 must be a floating-point tensor, got dtype {x.dtype}")
