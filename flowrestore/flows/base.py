"""The flow abstraction: *what* to integrate.

Three abstract bases say which kind of equation a flow is, and solvers declare which of them they
step (``Solver.flow_types``; :func:`flowrestore.solve` refuses any other pairing before evaluating
anything):

* :class:`ODE` — ``dx/dt = f(t, x)``: :meth:`drift`.
* :class:`SDE` — Itô ``dx = f(t, x) dt + g(t, x) dW``: :meth:`drift`, :meth:`diffusion` and
  ``noise_type`` (``"additive"``: ``g`` independent of ``x``; ``"diagonal"``).
* :class:`ResidualFlow` — an ODE of the residual form ``dx/dt = (x − D(x, t)) / t`` over a
  clean-image estimate ``D`` (:meth:`ResidualFlow.denoise`), run from ``t = 1`` to ``t = 0``:
  InDI's flow (Delbracio & Milanfar 2023, "InDI as a Residual Flow ODE") and a diffusion model's
  probability-flow ODE in the variable ``σ`` (DDIM). Its semi-linear structure
  ``dx/dt = x/t − D/t`` is what exponential-integrator solvers use; it is singular at ``t = 0``.

A flow knows nothing about stepping; solvers know nothing about grids. Time convention: every time
handed to a flow is a tensor in the state's dtype and device, either 0-d (all samples share it) or
``[B]`` (per-sample control). :func:`batch_time` turns either into the ``[B]`` tensor a predictor
receives, :func:`bcast` into a shape that broadcasts against the state.

**Rows.** Under per-sample error control the loop steps only the samples still running, so a
flow may be asked for ``x[rows]``. Everything a flow holds per sample (an observation, per-sample
conditioning ``cond``) is named in ``per_sample_fields``; :meth:`Flow.restrict` returns the flow
for a subset of rows with those fields selected, and the loop calls it whenever it steps a subset
— the same rule it applies to solver state (:func:`select_rows`).

**User callables** are evaluated through :func:`call_user`: with ``check_outputs`` (the default) it
validates the output's shape, dtype and device and refuses a callable that modified the state it
was given *in place* (the loop reuses that tensor: an in-place ``x += ...`` would silently corrupt
the solve). Both checks read metadata only (the tensor's version counter): no host
synchronisation. They are skipped inside ``torch.compile`` (the version counter is not traceable),
so compile a predictor only after it has run once in eager mode.
"""

from __future__ import annotations

import copy
import dataclasses
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from flowrestore.errors import (
    ArgumentTypeError,
    ConfigError,
    IncompatibleSolverError,
    PredictorOutputError,
    ShapeError,
    describe,
)

__all__ = [
    "ODE",
    "SDE",
    "Flow",
    "ResidualFlow",
    "TimeVariable",
    "batch_time",
    "bcast",
    "call_user",
    "check_cond",
    "check_output",
    "landing_sigma",
    "select_rows",
]


def batch_time(t: Tensor, x: Tensor) -> Tensor:
    """Return ``t`` as a ``[B]`` tensor for the batch ``x`` (a stride-0 view when ``t`` is 0-d;
    a Python or numpy real number, as a user calling ``flow.drift(0.5, x)`` passes it, becomes
    one in ``x``'s dtype and device)."""
    if not isinstance(t, Tensor):
        if isinstance(t, bool) or not isinstance(t, numbers.Real):
            raise ArgumentTypeError(f"t must be a tensor or a real number, got {describe(t)}")
        t = torch.tensor(float(t), dtype=x.dtype, device=x.device)
    if t.dim() == 0:
        return t.expand(x.shape[0])
    if t.shape != (x.shape[0],):
        raise ShapeError(f"t must be 0-d or of shape [B]={x.shape[0]}, got {describe(t)}")
    return t


def bcast(t: Tensor, x: Tensor) -> Tensor:
    """Return ``t`` (0-d or ``[B]``) reshaped to broadcast against ``x`` of shape ``[B, ...]``
    (a real number as :func:`batch_time` takes it: a 0-d tensor in ``x``'s dtype)."""
    if not isinstance(t, Tensor):
        t = batch_time(t, x[:1])[0]
    if t.dim() == 0:
        return t
    return t.reshape(t.shape[0], *([1] * (x.dim() - 1)))


def landing_sigma(rtol: float) -> float:
    """The noise level ``sqrt(rtol)/10`` (in the data's units) where error control at tolerance
    ``rtol`` should stop before a model flow's landing step onto ``σ = 0``: that step's error is
    ``O(σ²) = O(rtol/100)``. ``rtol = 0`` (pure ``atol`` control) is
    taken as ``1e-16``, the controller's own rule, so the stop is never ``t = 0``."""
    return max(float(rtol), 1e-16) ** 0.5 / 10


def select_rows(value, rows: Tensor | None):
    """The part of ``value`` that belongs to the batch rows ``rows`` (``None``: all rows).

    Tensors with a leading batch dimension are per-sample and are indexed; 0-d tensors are shared
    by every sample and pass through, as does any other object. Dataclasses, mappings, tuples and
    lists are selected field by field.
    """
    if rows is None or value is None:
        return value
    if isinstance(value, Tensor):
        return value if value.dim() == 0 else value[rows.to(value.device)]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return dataclasses.replace(value, **{k: select_rows(v, rows) for k, v in fields.items()})
    if isinstance(value, Mapping):
        return {k: select_rows(v, rows) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(select_rows(v, rows) for v in value)
    return value


def check_cond(cond, batch: int | None, name: str = "cond") -> None:
    """Check per-sample conditioning: a tensor, or a dict of tensors, each 0-d (shared) or with a
    leading batch dimension of ``batch`` rows (``None``: check the types only)."""
    if cond is None:
        return
    items = cond.items() if isinstance(cond, Mapping) else [(None, cond)]
    for key, value in items:
        label = name if key is None else f"{name}[{key!r}]"
        if not isinstance(value, Tensor):
            raise ArgumentTypeError(
                f"{label} must be a tensor with a leading batch dimension, got {describe(value)}"
            )
        if batch is not None and value.dim() > 0 and value.shape[0] != batch:
            raise ShapeError(
                f"{label} is per-sample conditioning: its leading dimension must be the batch "
                f"size {batch}, got shape {tuple(value.shape)} (pass shared values inside the "
                "callable instead)"
            )


_NO_KWARGS: dict = {}


def _cond_args(cond) -> tuple[tuple, dict]:
    if isinstance(cond, Mapping):
        return (), dict(cond)
    return (cond,), {}


def call_user(
    name: str,
    fn: Callable,
    x: Tensor,
    args: tuple,
    cond=None,
    *,
    check: bool = True,
    output_like_x: bool = True,
) -> Tensor:
    """Evaluate a user callable ``fn(*args, *cond)`` / ``fn(*args, **cond)`` that receives the
    state ``x`` (among ``args``).

    ``cond`` is the flow's per-sample conditioning: a dict is passed as keyword arguments, a
    tensor as one more positional argument. With ``check``, the output must be a tensor of ``x``'s
    shape, dtype and device (unless ``output_like_x=False``: a diffusion may broadcast), and
    ``fn`` must not have modified ``x`` in place (module docstring).
    """
    if cond is None:
        extra, kwargs = (), _NO_KWARGS
    else:
        extra, kwargs = _cond_args(cond)
    if not check:
        return fn(*args, *extra, **kwargs)
    tracked = not torch.compiler.is_compiling() and not x.is_inference()
    version = x._version if tracked else 0
    out = fn(*args, *extra, **kwargs)
    if tracked and x._version != version:
        raise PredictorOutputError(
            f"{name} modified its input x in place (e.g. x += ..., x.mul_(...)); the solver "
            "reuses that tensor, so the solve would be silently wrong. Compute a new tensor "
            "instead (x = x + ...)"
        )
    return check_output(name, out, x) if output_like_x else out


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


@dataclass(frozen=True)
class TimeVariable:
    """How few-step solvers should treat a flow's time ``t`` (declared by the flow,
    :meth:`flowrestore.flows.Flow.time_variable`; a residual flow ``dx/dt = (x − D)/t``).

    Args:
        power: the semi-linear multistep solvers interpolate the clean estimate ``D`` in
            ``(τ/t)^power`` (:class:`~flowrestore.SemiLinearMultistep`): ``2`` when ``D`` is even
            in ``t`` at 0 along the flow (``D = x(0) + O(t²)``: InDI's residual flow), ``1`` when
            ``D`` bends over many orders of magnitude of ``t`` (a diffusion model in ``σ``).
        reciprocal: Runge–Kutta stages are taken in the integrating-factor variables
            ``w = 1/t``, ``y = x/t``, in which a residual flow reads ``dy/dw = D`` (DDIM's
            exponential form; Euler is unchanged): the linear part ``x/t`` is integrated exactly,
            so steps spanning orders of magnitude of ``t`` (a diffusion model's ``σ_max`` to
            ``O(1)``) stay stable.
        log_snr: the flow's noise-to-signal ratio ``σ`` is known from ``t`` up to a constant
            factor, so ``log σ`` (minus the log-SNR) is the variable UniPC interpolates in:
            ``σ ∝ t`` (a diffusion or EDM model) or, with ``odds``, ``σ = t/(1 − t)``.
            :class:`~flowrestore.UniPC` steps only such flows.
        odds: with ``log_snr``: the state is ``x_t = (1 − t) x_0 + t ε`` (flow matching), whose
            noise-to-signal ratio is the odds ``σ = t/(1 − t)``, infinite at the start ``t = 1``
            (``SemiLinearMultistep(power=0)`` interpolates in ``log σ``; docs/math.md §1).
    """

    power: int = 2
    reciprocal: bool = False
    log_snr: bool = False
    odds: bool = False

    def __post_init__(self):
        if isinstance(self.power, bool) or self.power not in (1, 2):
            raise ConfigError(f"power must be 1 or 2, got {describe(self.power)}")
        if not isinstance(self.reciprocal, bool):
            raise ConfigError(f"reciprocal must be a bool, got {describe(self.reciprocal)}")
        if not isinstance(self.log_snr, bool):
            raise ConfigError(f"log_snr must be a bool, got {describe(self.log_snr)}")
        if not isinstance(self.odds, bool) or (self.odds and not self.log_snr):
            raise ConfigError(
                f"odds must be a bool, and True only with log_snr=True (it says which noise "
                f"ratio the log-SNR is), got odds={describe(self.odds)} with "
                f"log_snr={describe(self.log_snr)}"
            )


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
    #: attributes holding per-sample values (tensors with a leading batch dimension, dicts of
    #: them): :meth:`restrict` selects them with the rows the loop steps
    per_sample_fields: ClassVar[tuple[str, ...]] = ()

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

    def check_state(self, x: Tensor) -> None:
        """Validate a start state (a floating tensor with a batch dimension)."""
        if not isinstance(x, Tensor):
            raise ArgumentTypeError(f"x_start must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() < 1 or x.shape[0] < 1:
            raise ShapeError(
                f"x_start must have a leading batch dimension [B, ...], got {describe(x)}"
            )
        if not torch.is_floating_point(x):
            raise ArgumentTypeError(f"x_start must be a floating-point tensor, got dtype {x.dtype}")
        for name in self.per_sample_fields:
            check_cond(getattr(self, name, None), x.shape[0], name)

    def for_solve(self, x_start: Tensor, t_start: float) -> Flow:
        """The flow a solve from ``(t_start, x_start)`` integrates (default: ``self``).

        Restoration flows whose measurement was not given return a copy that knows it: at
        ``t_start = 1`` the start state *is* the observation (InDI's ``x_1 = y``, Dirac's ``y_1``).
        Called once, before anything is evaluated; the original flow is never modified.
        """
        return self

    def restrict(self, rows: Tensor) -> Flow:
        """This flow for the batch rows ``rows`` only (a ``[k]`` long tensor on the state's device).

        The loop calls it whenever it steps a subset of the batch (per-sample error control, a
        landing step for the samples that did not fail), so a drift or predictor evaluated on
        ``x[rows]`` sees the matching rows of every field in ``per_sample_fields``. The default
        selects those fields (:func:`select_rows`) on a shallow copy; the flow itself is never
        modified. A flow with no per-sample fields returns itself.
        """
        if not self.per_sample_fields:
            return self
        sub = copy.copy(self)
        for name in self.per_sample_fields:
            setattr(sub, name, select_rows(getattr(self, name), rows))
        return sub

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

    def declared_spacing(self, solver):
        """The spacing ``steps=N`` with ``solver`` defaults to on this flow, or ``None`` (the
        solver's preference, then the loop's rule): :meth:`default_spacing` unless the flow
        declares one for that solver (``spacings=``: :mod:`flowrestore.flows.declared`)."""
        return self.default_spacing()

    def fitted_grids(self):
        """Grids fitted to this flow for one solver at a few step counts
        (:class:`~flowrestore.grids.FittedGrids`), or ``None``. ``steps=N`` with that solver runs
        on them before any other default (:func:`flowrestore.integrate.endpoint.default_spacing`).
        """
        return None

    def time_variable(self) -> TimeVariable:
        """How few-step solvers should treat this flow's time (:class:`~flowrestore.grids.
        TimeVariable`; default: interpolate in ``t²``, Runge–Kutta stages in ``t``)."""
        return TimeVariable()

    def preferred_t_min(self, rtol: float) -> float | None:
        """Where error control at tolerance ``rtol`` should stop before the landing step onto a
        singular ``t = 0``, or ``None`` (the controller's default). A flow only declares it; a
        :class:`~flowrestore.PIController` without its own ``t_min`` uses it."""
        return None

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
