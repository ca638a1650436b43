"""A PID step-size controller (Söderlind 2003, "Digital filters in adaptive time-stepping",
ACM TOMS 29, eq. 34; the form of torchode's and diffrax's ``PIDController``).

After an accepted step with error norm ``e_n`` (the RMS norm of :mod:`~flowrestore.controllers.
error`), with the norms ``e_{n−1}``, ``e_{n−2}`` of the two previous accepted steps (1 before
there are any) and ``k = min(p, q) + 1``, the next step is ``h · clip(factor, dfactor, ifactor)``,

    factor = safety · e_n^(−(β_I + β_P + β_D)) · e_{n−1}^(β_P + 2 β_D) · e_{n−2}^(−β_D),

``β_X = Xcoeff / k``: the integral gain reacts to the current error, the proportional gain to its
change, the derivative gain to the change of the change. ``dcoeff = 0`` is a PI controller
(``PIController(pcoeff=p, icoeff=i + p)`` is ``PIDController(pcoeff=p, icoeff=i, dcoeff=0)``).
In Söderlind's filter form ``factor = safety · e_n^(−β1/k) · e_{n−1}^(−β2/k) · e_{n−2}^(−β3/k)``
the gains are ``β1 = pcoeff + icoeff + dcoeff``, ``β2 = −(pcoeff + 2 dcoeff)``, ``β3 = dcoeff``
(at a constant error the factor is ``safety · e^(−icoeff/k)``): his H312PID,
``β = (1/18, 1/9, 1/18)``, is ``(pcoeff, icoeff, dcoeff) = (−2/9, 2/9, 1/18)`` and H211PI,
``β = (1/6, 1/6, 0)``, is ``(−1/6, 1/3, 0)`` — ``pcoeff`` may be negative; ``icoeff`` and
``β1`` must be positive.
The default gains ``(1/6, 1/3, 1/6)`` (``β = (2/3, −1/2, 1/6)``; 1:2:1 proportions of the
gains, not Söderlind's H312 filter, whose exponents are 1:2:1) were chosen by measurement on the
package's adaptive test problems (the Gaussian oracle's flow, Bosh3 and Dopri5 at ``rtol``
1e-3 … 1e-7): every solve within its tolerance at 0.9–1.3× the PI controller's evaluations,
where torchode's example gains (0.2, 0.5, 0) plus a derivative term overshot the tolerance
16-fold. ``dt_max`` caps every step (the first one included). Rejected
steps, clipping to save times, failures and the starting step are
:class:`~flowrestore.controllers.error.ErrorController`'s.

This file is the whole controller: it is the proof that a new step-size rule is one file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from flowrestore.controllers.base import set_numbers, set_reals
from flowrestore.controllers.error import ErrorController
from flowrestore.errors import ConfigError

__all__ = ["PIDController"]


@dataclass(frozen=True, kw_only=True)
class PIDController(ErrorController):
    """Per-sample PID step-size control (module docstring for the formula).

    Args:
        pcoeff, icoeff, dcoeff: the proportional, integral and derivative gains (``icoeff > 0``,
            ``dcoeff >= 0``, ``pcoeff`` any sign with ``pcoeff + icoeff + dcoeff > 0``).
        dt_max: the largest |step| (``None``: unbounded).
        **the rest**: :class:`~flowrestore.controllers.error.ErrorController`'s (``rtol``,
            ``atol``, ``safety``, ``ifactor``, ``dfactor``, ``min_step``, ``max_steps``, ``dt0``,
            ``t_min``, ``per_sample``).
    """

    pcoeff: float = 1 / 6
    icoeff: float = 1 / 3
    dcoeff: float = 1 / 6
    dt_max: float | None = None

    history: ClassVar[int] = 2

    def __post_init__(self):
        super().__post_init__()
        set_reals(self, "pcoeff")
        set_numbers(self, "dcoeff", allow_zero=True)
        set_numbers(self, "icoeff")
        if not self.pcoeff + self.icoeff + self.dcoeff > 0:
            raise ConfigError(
                "pcoeff + icoeff + dcoeff (the exponent of the current error) must be > 0: "
                f"else a larger error gives a larger step; got pcoeff={self.pcoeff!r}, "
                f"icoeff={self.icoeff!r}, dcoeff={self.dcoeff!r}"
            )
        if self.dt_max is not None:
            set_numbers(self, "dt_max")
            if self.dt_max < self.min_step:
                raise ConfigError(
                    f"dt_max={self.dt_max!r} is below min_step={self.min_step!r}: every step "
                    "would fail with step_size_underflow; raise dt_max or lower min_step"
                )

    def factor(self, e: Tensor, history: tuple[Tensor, ...], k: float) -> Tensor:
        """``safety · e_n^(−(β_I+β_P+β_D)) · e_{n−1}^(β_P+2β_D) · e_{n−2}^(−β_D)``."""
        bi, bp, bd = self.icoeff / k, self.pcoeff / k, self.dcoeff / k
        prev, prev2 = history
        return self.safety * e ** (-(bi + bp + bd)) * prev ** (bp + 2 * bd) * prev2 ** (-bd)

    def limit_step(self, h_abs: Tensor) -> Tensor:
        """``min(|h|, dt_max)``."""
        return h_abs if self.dt_max is None else h_abs.clamp(max=self.dt_max)
