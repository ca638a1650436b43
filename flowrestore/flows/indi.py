"""InDI's residual flow (MATH.md §1): ``dx/dt = (x − F(x, t)) / t`` from ``t = 1`` to ``t = 0``.

``F`` is a clean-image predictor (ideally ``E[x | x_t]``). Semi-linear form:
``dx/dt = a(t) x + b(t) F(x, t)`` with ``a = 1/t``, ``b = −1/t``, whose variation-of-constants
solution ``x_s = (s/t) x_t + s ∫_s^t F(x_τ, τ)/τ² dτ`` the exponential-integrator solvers use.

The drift is ``0/0`` at ``t = 0`` for an exact predictor and unbounded for a learned one, so the
flow is marked ``singular_at_zero``: no solver evaluates it there; the loop's last step onto 0
returns ``F(x_t, t)`` (the posterior-mean estimate), see :mod:`flowrestore.integrate.solve`.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from flowrestore.flows.base import Flow, batch_time, bcast, check_output


class InDIFlow(Flow):
    """The InDI residual flow over a clean-image predictor.

    Args:
        predictor: any callable or ``nn.Module``, called as ``predictor(x, t)`` with ``x`` of
            shape ``[B, ...]`` and ``t`` a tensor of shape ``[B]`` (per-sample time, state dtype).
        check_outputs: validate shape, dtype and device of every predictor output (metadata
            only: no host synchronisation).
    """

    singular_at_zero = True
    default_span = (1.0, 0.0)
    time_range = (0.0, 1.0)

    def __init__(
        self, predictor: Callable[[Tensor, Tensor], Tensor], *, check_outputs: bool = True
    ):
        if not callable(predictor):
            raise TypeError(
                f"predictor must be callable predictor(x, t), got {type(predictor).__name__}"
            )
        self.predictor = predictor
        self.check_outputs = check_outputs

    def predict(self, t: Tensor, x: Tensor) -> Tensor:
        """``F(x, t)``, the predictor's clean-image estimate."""
        out = self.predictor(x, batch_time(t, x))
        return check_output("predictor", out, x) if self.check_outputs else out

    def denoise(self, t: Tensor, x: Tensor) -> Tensor:
        """Clean-image estimate ``F(x, t)`` (the Euler step from ``t`` onto 0)."""
        return self.predict(t, x)

    def drift(self, t: Tensor, x: Tensor) -> Tensor:
        """``(x − F(x, t)) / t``; never called at ``t = 0`` by the loop."""
        return (x - self.predict(t, x)) / bcast(t, x)
