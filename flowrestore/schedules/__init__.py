"""Scalar schedules of the severity ``t ∈ [0, 1]``: noise levels σ_t and degradation parameters.

Implements the schedules of docs/math.md §3: the geometric noise schedule
``σ_t = σ_min^{1-t} σ_max^t``
used by Dirac's stochastic degradation process, linear and constant schedules, the
piecewise-linear schedule returned by degradation scheduling (Dirac supplement B), and any callable
``t -> value`` (:class:`FunctionSchedule`, derivative by central difference).

Every schedule is callable on ``t`` (a float or a tensor of any shape, typically ``[B]``) and
returns a tensor of the same shape as ``t`` (a 0-dim tensor of the default dtype for a float ``t``).
Each has an exact ``derivative(t)`` and ``variance_derivative(t) = d(v_t²)/dt`` (the diffusion
coefficient squared of the forward SDE ``dy = ∂_t A_t(x) dt + sqrt(dσ_t²/dt) dw`` when the schedule
is σ_t).

**Checked calls and the hot path.** ``schedule(t)``, ``derivative(t)`` and
``variance_derivative(t)`` check that ``t`` lies in ``[0, 1]`` (for a tensor by reading its values
on the host). Inside a solve the times were validated once when the solve was planned, so flows
evaluate :meth:`Schedule.value`, :meth:`Schedule.slope` and :meth:`Schedule.variance_slope`, which
never read a device value (no host synchronisation; traceable by ``torch.compile``). Whether a
schedule is positive, finite or monotone on ``[0, 1]`` is likewise decided once, on a CPU probe
(:func:`check_on_unit_interval`), when the flow or family using it is built.

``start``/``end``/``value`` may be floats or tensors (also tensors requiring grad); everything is
computed with torch operations so gradients flow to tensor parameters. Float parameters become
tensors once per dtype and device (cached), not on every call.
"""

from flowrestore.schedules.base import (
    Schedule,
    as_time_tensor,
    check_fd_step,
    check_on_unit_interval,
    difference_points,
)
from flowrestore.schedules.library import (
    Constant,
    FunctionSchedule,
    Geometric,
    Linear,
    PiecewiseLinear,
    as_schedule,
)

__all__ = [
    "Schedule",
    "Geometric",
    "Linear",
    "Constant",
    "PiecewiseLinear",
    "FunctionSchedule",
    "as_schedule",
    "as_time_tensor",
    "check_fd_step",
    "check_on_unit_interval",
    "difference_points",
]
