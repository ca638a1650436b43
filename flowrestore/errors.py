"""Typed errors of flowrestore.

Every error names the offending argument and shows the value received, so a user can fix a call
without reading the source. They subclass the built-in exception a user would expect
(``ValueError``, ``TypeError``, ``FloatingPointError``, ``RuntimeError``) as well as
:class:`FlowRestoreError`, so ``except ValueError`` and ``except fr.FlowRestoreError`` both work.
"""

from __future__ import annotations

import math
import numbers
import sys


class FlowRestoreError(Exception):
    """Base class of every error raised by flowrestore."""


class GridError(FlowRestoreError, ValueError):
    """A time grid is malformed: not 1-D, not strictly monotone, out of range or wrong direction."""


class ShapeError(FlowRestoreError, ValueError):
    """A tensor has the wrong shape (a predictor output, a state, a per-sample time)."""


class PredictorOutputError(FlowRestoreError, TypeError):
    """A predictor or drift returned something of the wrong type, shape, dtype or device."""


class SolveFailure(FlowRestoreError):
    """Base of the errors a solve raises when samples fail (``on_failure="raise"``).

    The partial :class:`~flowrestore.Solution` is attached as ``.solution`` (per-sample
    ``stats.status`` says which samples failed and how; the others are finished). Pass
    ``on_failure="return"`` to :func:`flowrestore.solve` to get it without an exception.
    """

    def __init__(self, message: str, solution=None):
        super().__init__(message)
        self.solution = solution


class NonFiniteError(SolveFailure, FloatingPointError):
    """The state or a predictor/drift output became NaN or infinite (message: step and t)."""


class StepSizeUnderflowError(SolveFailure, RuntimeError):
    """An adaptive solver's step size fell below its ``min_step`` (or below round-off)."""


class MaxStepsReachedError(SolveFailure, RuntimeError):
    """A solve used ``max_steps`` steps before reaching its end time."""


#: per-sample status codes of a solve (``Solution.stats.status``)
SUCCESS, MAX_STEPS, UNDERFLOW, NONFINITE = 0, 1, 2, 3
STATUS_NAMES = {
    SUCCESS: "success",
    MAX_STEPS: "max_steps_reached",
    UNDERFLOW: "step_size_underflow",
    NONFINITE: "non_finite",
}
#: the error raised for each failure status, in the order a solve reports them
FAILURE_ERRORS: dict[int, type[SolveFailure]] = {
    NONFINITE: NonFiniteError,
    UNDERFLOW: StepSizeUnderflowError,
    MAX_STEPS: MaxStepsReachedError,
}


class IncompatibleSolverError(FlowRestoreError, TypeError):
    """A solver was paired with a flow it cannot integrate (e.g. an ODE method on an SDE)."""


class ArgumentTypeError(FlowRestoreError, TypeError):
    """An argument is of the wrong kind (not a tensor, flow, solver or callable where one is
    needed); a ``TypeError`` too."""


class ConfigError(FlowRestoreError, ValueError):
    """A configuration argument is out of range or of the wrong kind."""


def describe(value) -> str:
    """Short human description of a value for error messages (tensors by shape/dtype/device).

    Never raises (it runs while an error is being reported: a failure here would hide that
    error) and never imports torch (a value cannot be a tensor unless torch is loaded already,
    so the command line's light paths stay light)."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        where = f"dtype={value.dtype}, device={value.device}"
        if value.numel() <= 6:
            try:  # a meta or sparse tensor has no values to show
                return f"tensor({value.detach().cpu().tolist()}, {where})"
            except Exception:  # noqa: BLE001 - fall back to the shape
                pass
        return f"tensor(shape={tuple(value.shape)}, {where})"
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a user object whose repr fails
        text = f"<{type(value).__name__} object>"
    return text if len(text) <= 120 else text[:117] + "..."


class MissingDependencyError(FlowRestoreError, ImportError):
    """An optional dependency (diffusers) is not installed; the message names the extra."""


class IncompatibleOperatorError(FlowRestoreError, TypeError):
    """A restoration method cannot use this degradation operator (the message names both)."""


def finite_number(name: str, value, *, allow_zero: bool = False) -> float:
    """``value`` as a float, or a :class:`ConfigError` naming ``name`` unless it is a finite real
    number ``> 0`` (``>= 0`` with ``allow_zero``); ``bool`` is refused, numpy scalars welcome."""
    ok = (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and _is_finite(value)
        and (value > 0 or (allow_zero and value == 0))
    )
    if not ok:
        want = "a finite number >= 0" if allow_zero else "a finite number > 0"
        raise ConfigError(f"{name} must be {want}, got {describe(value)}")
    return float(value)


def _is_finite(value) -> bool:
    """``math.isfinite`` that calls an int past float's range (``10**400``) not finite instead
    of raising ``OverflowError``."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False
