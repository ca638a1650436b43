"""The PI step-size rule (Gustafsson 1991; Hairer & Wanner, *Solving ODEs II*, §IV.2):
after an accepted step with error norm ``e``, the next step is
``h · clip(safety · e^(−icoeff/k) · e_prev^(pcoeff/k), dfactor, ifactor)``, ``e_prev`` the norm of
the previous accepted step (1 before there is one). In Söderlind's digital-filter form
``factor = safety · e^(−β1/k) · e_prev^(−β2/k)`` ("Digital filters in adaptive time-stepping",
ACM TOMS 29, 2003) the gains are ``β1 = icoeff``, ``β2 = −pcoeff``: the defaults ``(0.4, 0.7)``
are Hairer & Wanner's and Söderlind's PI34 (``β = (0.7, −0.4)``); his H211PI
(``β = (1/6, 1/6)``) is ``pcoeff = −1/6, icoeff = 1/6``. At a constant error ``e`` the factor is
``safety · e^(−(icoeff − pcoeff)/k)``: ``icoeff − pcoeff`` is the integral gain that drives the
error to the tolerance, so it must be positive (a controller without it is refused). Everything
else — tolerances, rejection, clipping to save times, failures, the starting step — is
:class:`~flowrestore.controllers.error.ErrorController`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from flowrestore.controllers.base import set_numbers, set_reals
from flowrestore.controllers.error import ErrorController
from flowrestore.errors import ConfigError

__all__ = ["PIController"]


@dataclass(frozen=True, kw_only=True)
class PIController(ErrorController):
    """Per-sample PI step-size control (module docstring for the formulas).

    Args:
        pcoeff, icoeff: PI gains: the factor after an accepted step is
            ``safety · e^(−icoeff/k) · e_prev^(pcoeff/k)`` (``pcoeff = 0``: the classical I rule);
            ``icoeff > 0`` and ``icoeff > pcoeff`` (``pcoeff`` may be negative: H211PI).
        **the rest**: :class:`ErrorController`'s (``rtol``, ``atol``, ``safety``, ``ifactor``,
            ``dfactor``, ``min_step``, ``max_steps``, ``dt0``, ``t_min``, ``per_sample``).
    """

    pcoeff: float = 0.4
    icoeff: float = 0.7

    history: ClassVar[int] = 1

    def __post_init__(self):
        super().__post_init__()
        set_reals(self, "pcoeff")
        set_numbers(self, "icoeff")
        if not self.icoeff > self.pcoeff:
            raise ConfigError(
                f"icoeff must exceed pcoeff (icoeff - pcoeff is the integral gain: without it a "
                f"constant error never brings the step to the tolerance), got "
                f"pcoeff={self.pcoeff!r}, icoeff={self.icoeff!r}"
            )

    def factor(self, e: Tensor, history: tuple[Tensor, ...], k: float) -> Tensor:
        """``safety · e^(−icoeff/k) · e_prev^(pcoeff/k)``."""
        return self.safety * e ** (-self.icoeff / k) * history[0] ** (self.pcoeff / k)
