"""Step-size controllers: how big a step (:mod:`flowrestore.controllers.base` for the protocol).

:class:`FixedGrid` (a grid), :class:`PIController` and :class:`PIDController` (per-sample error
control); :class:`ErrorController` is the base of error-based rules, :class:`StepController` of
every controller.
"""

from flowrestore.controllers.base import (
    ControllerRun,
    HostCopy,
    Outcome,
    Proposal,
    Schedule,
    StepController,
    TimeRequest,
    rms_norm,
)
from flowrestore.controllers.error import ErrorController, ErrorSchedule
from flowrestore.controllers.error_run import ErrorRun
from flowrestore.controllers.fixed import FixedGrid, FixedRun, FixedSchedule
from flowrestore.controllers.pi import PIController
from flowrestore.controllers.pid import PIDController

__all__ = [
    "ControllerRun",
    "ErrorController",
    "ErrorRun",
    "ErrorSchedule",
    "FixedGrid",
    "FixedRun",
    "FixedSchedule",
    "HostCopy",
    "Outcome",
    "PIController",
    "PIDController",
    "Proposal",
    "Schedule",
    "StepController",
    "TimeRequest",
    "rms_norm",
]
