"""Blind inversion through a few-step generative flow — BIRD (docs/math.md §5).

:class:`BlindInversion` jointly optimises the latent ``z`` of a generative flow ``Ψ`` and the
unknown parameters ``φ`` (:class:`Param`) of a degradation ``H_φ`` to fit an observation.
"""

from flowrestore.degradations.blind import POSITIVE_FLOOR, BlindOperator, Param, project_simplex
from flowrestore.inversion.blind import BlindInversion, project_sphere
from flowrestore.inversion.objective import Objective
from flowrestore.inversion.records import Evaluation, History, InversionResult, IterationState

__all__ = [
    "BlindInversion",
    "BlindOperator",
    "Evaluation",
    "History",
    "InversionResult",
    "IterationState",
    "Objective",
    "POSITIVE_FLOOR",
    "Param",
    "project_simplex",
    "project_sphere",
]
