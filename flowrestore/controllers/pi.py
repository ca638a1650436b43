"""The PI step-size rule (Gustafsson 1991; Hairer & Wanner, *Solving ODEs II*, §IV.2):
after an accepted step with error norm ``e``, the next step is
``h · clip(safety · e^(−icoeff/k) · e_prev^(pcoeff/k), dfactor, ifactor)``, ``e_prev`` the norm of
the previous accepted step (1 before there is one). Everything else — tolerances, rejection,
clipping to save times, failures, the starting step — is
:class:`~flowrestore.controllers.error.ErrorController`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from flowrestore.controllers.base import set_numbers
from flowrestore.controllers.error import ErrorController

__all__ = ["PIController"]


@dataclass(frozen=True, kw_only=True)
class PIController(ErrorController):
    """Per-sample PI step-size control (module docstring for the formulas).

    Args:
        pcoeff, icoeff: PI gains: the factor after an accepted step is
            ``safety · e^(−icoeff/k) · e_prev^(pcoeff/k)`` (``pcoeff = 0``: the classical I rule).
        **the rest**: :class:`ErrorController`'s (``rtol``, ``atol``, ``safety``, ``ifactor``,
            ``dfactor``, ``min_step``, ``max_steps``, ``dt0``, ``t_min``, ``per_sample``).
    """

    pcoeff: float = 0.4
    icoeff: float = 0.7

    history: ClassVar[int] = 1

    def __post_init__(self):
        super().__post_init__()
        set_numbers(self, "pcoeff", allow_zero=True)
        set_numbers(self, "icoeff")

    def factor(self, e: Tensor, history: tuple[Tensor, ...], k: float) -> Tensor:
        """``safety · e^(−icoeff/k) · e_prev^(pcoeff/k)``."""
        return self.safety * e ** (-self.icoeff / k) * history[0] ** (self.pcoeff / k)
