"""Run torchdiffeq's methods as steps of flowrestore's loop: ``fr.Torchdiffeq(method)``.

Each step calls torchdiffeq's own code for that method — ``_step_func`` of its fixed-grid solvers
(Euler, midpoint, RK4 (3/8 rule), Heun, Adams) and ``_runge_kutta_step`` with its tableau for the
embedded pairs (dopri5, bosh3, fehlberg2, adaptive_heun, dopri8) — so saving, statistics, progress,
callbacks, failures, the ``t = 0`` endpoint rule and ``output`` are flowrestore's, exactly as for a
native solver. Step-size control of the embedded pairs is flowrestore's
:class:`~flowrestore.PIController` on torchdiffeq's error estimate, with the same defaults as
:class:`~flowrestore.Dopri5` (``rtol=1e-3, atol=1e-6``); torchdiffeq's steps take one time for the
whole batch, so the controller steps the batch together (the largest sample's error norm decides,
``PIController(per_sample=False)``) — torchdiffeq's own behaviour.

The Adams methods: torchdiffeq's ``max_order`` (default 12) makes ``"explicit_adams"`` the
``max_order − 1``-step Adams–Bashforth method after an RK4 start, and Adams–Bashforth 11 is unstable
at any practical step (on ``x' = −(1 + t) x`` over ``[0, 1]`` its error grows from 9e-4 at 8 steps
to 2e2 at 64). flowrestore passes ``max_order=5`` (Adams–Bashforth 4, order 4) unless ``options``
set it; the declared order is then ``max_order − 1`` (RK4's 4 below torchdiffeq's minimum of 4).
The implicit methods keep torchdiffeq's default (their corrector is stable) and declare 4.
torchdiffeq's Adams coefficients are those of equal steps: on a grid of unequal steps the methods
are order 2, whatever ``order`` declares (on ``x' = −(1 + t) x`` over the smooth grid
``t = u (2 − u)``, 64 steps, AB4's error is 1.2e-5, 1300× its 9.4e-9 on equal steps). ``steps=N``
lays equal steps on a flow without a grid of its own that does not land on a singular end (an
``ODEFlow``); a flow's own grid (a model flow's) or the loop's end-refined one (a landing onto
InDI's ``t = 0``, itself ``O(t_stop²)``) is unequal, yet there more accurate than equal steps (a
Gaussian diffusion model to ``t = 0.02``, 40 steps: 1.5e-5 on its grid, 4.4e-3 on equal steps).
Where a step must keep order 4 on any grid, use a native variable-step multistep solver
(``fr.IPNDM()``, ``fr.SemiLinearMultistep()``).

**Options.** ``options=`` takes what a method's step reads: ``max_order`` (the Adams methods),
``max_iters``, ``rtol`` and ``atol`` (the implicit Adams corrector's iterations and convergence
test; flowrestore's defaults ``rtol=1e-7, atol=1e-9``). Anything else is refused when the solver is
built, naming the key and the accepted ones: ``step_size`` and ``grid_constructor`` lay
torchdiffeq's own grid, which flowrestore's loop replaces (pass ``steps=`` or ``grid=`` to
:func:`~flowrestore.solve`); ``interp`` interpolates torchdiffeq's outputs (flowrestore saves at
``save_at=``); ``perturb`` nudges evaluation times across discontinuities, which the loop's drift
calls do not support; ``implicit`` would change which method runs (pick it by name). torchdiffeq
itself ignored all of these here (its warning at most).

Host reads: the fixed-grid Runge–Kutta steps read no device value (``tests/core/test_syncs.py``).
torchdiffeq's own code does inside the other steps: its Adams methods compare each step's time
with the last one (one read per step) and the implicit ones test the corrector's convergence
(up to ``max_iters`` more); ``_runge_kutta_step`` compares its tableau's nodes with 1 (kept on the
CPU: no wait for a GPU) and checks its weights once per step (on the state's device, as
torchdiffeq's own solver keeps them: two reads). Use a native solver
(``fr.RK4()``, ``fr.Dopri5()``, ``fr.IPNDM()``) where a step must never wait.

This uses two private torchdiffeq entry points (``SOLVERS[method]._step_func`` and
``rk_common._runge_kutta_step``), stable across torchdiffeq 0.2.x; the import is lazy.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from flowrestore.controllers import PIController
from flowrestore.errors import ConfigError, describe, finite_number
from flowrestore.flows.base import Flow
from flowrestore.solvers.base import Context, Solver, StepResult
from flowrestore.solvers.runge_kutta import check_controller_options

__all__ = ["Torchdiffeq"]

# method -> (order, stage fractions) of torchdiffeq's fixed-grid methods; the Adams methods start
# with RK4 steps and the implicit ones correct at the step's end.
_FIXED: dict[str, tuple[int, tuple[float, ...]]] = {
    "euler": (1, (0.0,)),
    "midpoint": (2, (0.0, 0.5)),
    "rk4": (4, (0.0, 1 / 3, 2 / 3, 1.0)),
    "heun2": (2, (0.0, 1.0)),
    "heun3": (3, (0.0, 1 / 3, 2 / 3)),
    "explicit_adams": (4, (0.0, 1 / 3, 2 / 3, 1.0)),
    "implicit_adams": (4, (0.0, 1 / 3, 2 / 3, 1.0)),
    "fixed_adams": (4, (0.0, 1 / 3, 2 / 3, 1.0)),
}
#: torchdiffeq's least ``max_order`` of the Adams methods (below it they are RK4) and the one
#: flowrestore passes to ``"explicit_adams"`` by default (module docstring)
_ADAMS_MIN_ORDER, _EXPLICIT_ADAMS_MAX_ORDER = 4, 5
_ADAPTIVE = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")
#: the ``options`` each fixed-grid method's step reads (module docstring)
_ADAMS_OPTIONS = ("max_order", "max_iters", "rtol", "atol")
_OPTIONS: dict[str, tuple[str, ...]] = {
    "explicit_adams": ("max_order",),
    "implicit_adams": _ADAMS_OPTIONS,
    "fixed_adams": _ADAMS_OPTIONS,
}
#: why an option torchdiffeq's constructors take is no option here
_OWNED = {
    "step_size": "the loop owns the grid: pass steps= or grid= to fr.solve",
    "grid_constructor": "the loop owns the grid: pass steps= or grid= to fr.solve",
    "interp": "flowrestore saves the solution itself: pass save_at= to fr.solve",
    "perturb": "the loop's drift calls take no perturbed times",
    "implicit": "choose the method by name ('explicit_adams' or 'implicit_adams')",
}
#: flowrestore's corrector tolerances for the implicit Adams methods (torchdiffeq requires some)
_CORRECTOR_TOLERANCES = {"rtol": 1e-7, "atol": 1e-9}


def _check_options(method: str, options: dict[str, Any]) -> None:
    """Refuse an option ``method``'s step does not read, or a value of the wrong kind."""
    accepted = _OPTIONS.get(method, ())
    for key, value in options.items():
        if key not in accepted:
            why = _OWNED.get(key, "torchdiffeq's step does not read it")
            raise ConfigError(
                f"options[{key!r}] is not an option of torchdiffeq's {method!r} here ({why}); "
                f"accepted options: {list(accepted) or 'none'}, got options={describe(options)}"
            )
        if key in ("max_order", "max_iters"):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ConfigError(f"options[{key!r}] must be an int >= 1, got {describe(value)}")
            options[key] = int(value)  # numpy ints welcome; torchdiffeq indexes with it
        else:
            options[key] = finite_number(f"options[{key!r}]", value, allow_zero=True)


def _solver_class(method: str):
    from torchdiffeq._impl.odeint import SOLVERS

    return SOLVERS[method]


@dataclass
class _FixedState:
    """torchdiffeq's fixed-grid solver object (the Adams methods keep their history in it)."""

    impl: Any


@dataclass(frozen=True)
class _PairState:
    """The drift at the current point (torchdiffeq's FSAL ``f1``)."""

    f0: Tensor | None = None


class Torchdiffeq(Solver):
    """A torchdiffeq method stepped by :func:`flowrestore.solve` (module docstring).

    Args:
        method: ``"euler"``, ``"midpoint"``, ``"rk4"``, ``"heun2"``, ``"heun3"``,
            ``"explicit_adams"``, ``"implicit_adams"``, ``"fixed_adams"`` (fixed grid: pass
            ``steps=``/``grid=``) or ``"dopri5"``, ``"dopri8"``, ``"bosh3"``, ``"fehlberg2"``,
            ``"adaptive_heun"`` (error-controlled by default, or on a fixed grid).
        options: passed to torchdiffeq's solver constructor (fixed-grid methods): ``max_order``
            of the Adams methods (``"explicit_adams"`` gets ``max_order=5`` unless given),
            ``max_iters``, ``rtol``, ``atol`` of the implicit ones; any other key is refused
            with a :class:`~flowrestore.ConfigError` (module docstring: ``step_size`` and
            ``grid_constructor`` → ``steps=``/``grid=``).
        **controller_options: for the embedded pairs, the :class:`~flowrestore.PIController`
            arguments (``rtol``, ``atol``, ``t_min``, ``max_steps``, ...).
    """

    per_sample_steps = False
    capturable = False  # torchdiffeq's solver objects keep Python state between steps

    def __init__(self, method: str, *, options: dict[str, Any] | None = None, **controller_options):
        if not isinstance(method, str) or (method not in _FIXED and method not in _ADAPTIVE):
            raise ConfigError(
                f"method must be a torchdiffeq method ({sorted((*_FIXED, *_ADAPTIVE))}), "
                f"got {describe(method)}"
            )
        if options is not None and not isinstance(options, dict):
            raise ConfigError(f"options must be a dict or None, got {describe(options)}")
        self.method = method
        self.options = dict(options or {})
        if method in _FIXED:
            _check_options(method, self.options)
        self._given_options = dict(self.options)  # for the repr, before any default is added
        self.controller_options = dict(controller_options)
        if method in _FIXED:
            if controller_options:
                raise ConfigError(
                    f"torchdiffeq's {method!r} is a fixed-grid method: it takes no "
                    f"{sorted(controller_options)}; pass steps= or grid= to solve"
                )
            self.order, self.stage_fractions = float(_FIXED[method][0]), _FIXED[method][1]
            self.error_order = None
            if method == "explicit_adams":
                self.options.setdefault("max_order", _EXPLICIT_ADAMS_MAX_ORDER)
                max_order = self.options["max_order"]
                if max_order >= _ADAMS_MIN_ORDER:
                    self.order = float(max_order - 1)
        else:
            if self.options:
                raise ConfigError(
                    f"options are for the fixed-grid methods; {method!r} is controlled by "
                    "flowrestore's PIController (pass rtol=, atol=, ... instead)"
                )
            check_controller_options(f"Torchdiffeq({method!r})", controller_options)
            self.controller = PIController(**{"per_sample": False, **controller_options})
            cls = _solver_class(method)
            self.order = float(cls.order)
            self.error_order = float(cls.order - 1)
            self.stage_fractions = (0.0, *(float(a) for a in cls.tableau.alpha))

    def __repr__(self) -> str:
        """The constructor call: ``options=`` as given (``Torchdiffeq("explicit_adams",
        options={"max_order": 4})`` printed as ``Torchdiffeq('explicit_adams')``, which builds
        Adams–Bashforth 4's default ``max_order=5`` instead)."""
        given = self._given_options
        args = f", options={given!r}" if given else ""
        args += "".join(f", {k}={v!r}" for k, v in self.controller_options.items())
        return f"Torchdiffeq({self.method!r}{args})"

    def init(self, flow: Flow, t_start: Tensor, x_start: Tensor, ctx: Context):
        """Build torchdiffeq's solver object (fixed-grid methods) or an empty FSAL state."""
        if self.method in _ADAPTIVE:
            return x_start, _PairState()
        # torchdiffeq's constructors require tolerances; only the Adams corrector reads them
        options = {**_CORRECTOR_TOLERANCES, **self.options}
        impl = _solver_class(self.method)(func=None, y0=x_start, **options)
        return x_start, _FixedState(impl)

    def start_derivative(self, state, f0: Tensor):
        """The embedded pairs reuse the start's drift as their first stage."""
        return _PairState(f0) if isinstance(state, _PairState) else state

    def step(self, flow: Flow, t: Tensor, x: Tensor, h: Tensor, state, ctx: Context) -> StepResult:
        """One torchdiffeq step from ``t`` to ``t + h``."""
        calls = [0]

        def func(tt: Tensor, y: Tensor, perturb=None) -> Tensor:
            calls[0] += 1
            return flow.drift(tt.to(dtype=y.dtype), y)

        t1 = t + h
        if isinstance(state, _FixedState):
            dy, _ = state.impl._step_func(func, t, h, t1, x)
            return StepResult(x + dy, state, calls[0])
        from torchdiffeq._impl.rk_common import _runge_kutta_step

        f0 = state.f0 if state.f0 is not None else func(t, x)
        y1, f1, err, _ = _runge_kutta_step(func, x, f0, t, h, t1, self._tableau(x))
        return StepResult(y1, _PairState(f1), calls[0], err)

    def _tableau(self, x: Tensor):
        """torchdiffeq's tableau in ``x``'s dtype, its weights on ``x``'s device (as torchdiffeq's
        own solver does; the class's float64 CPU tensors promoted a float32 state to float64 and
        cannot multiply a state on a GPU). The nodes ``alpha`` stay on the CPU: torchdiffeq
        compares them with 1 on the host. Built once per dtype and device."""
        key = (x.dtype, x.device)
        cache = self.__dict__.setdefault("_tableaus", {})
        if key not in cache:
            tab = _solver_class(self.method).tableau
            on = {"dtype": x.dtype, "device": x.device}
            cache[key] = type(tab)(
                alpha=tab.alpha.to(dtype=x.dtype),
                beta=[b.to(**on) for b in tab.beta],
                c_sol=tab.c_sol.to(**on),
                c_error=tab.c_error.to(**on),
            )
        return cache[key]
