"""The record types of :mod:`flowrestore.methods`: a method, the solvers it offers, its showcase.

See the package docstring for what a :class:`Method` says and why nothing else switches on a
method's name. No torch here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from flowrestore.errors import ConfigError

__all__ = ["IMAGE_RANGE", "Run", "SolverChoice", "Showcase", "Method"]

#: The value range of the images the predictors here take and return (``[0, 1]``).
IMAGE_RANGE = (0.0, 1.0)

Run = tuple  # (solver name, steps, output[, t_end]): one restoration setting


@dataclass(frozen=True)
class SolverChoice:
    """A solver the command line offers for a method: its name, description and constructor."""

    name: str
    description: str
    build: Callable[[], object]


@dataclass(frozen=True)
class Showcase:
    """Settings shown by ``flowrestore demo`` and scored into the registry (``heldout``).

    ``runs``/``quick_runs``: the demo's rows (``--quick``); ``steps``/``quick_steps``: the step
    counts used with ``--solver`` alone; ``heldout``: the rows the registry records. A run is
    ``(solver, steps, output[, t_end])``, ``t_end`` in ``[0, 1)`` (where the solve from ``t = 1``
    stops); the solver ``"phi"`` is the one-shot clean estimate.
    """

    runs: tuple[Run, ...]
    quick_runs: tuple[Run, ...]
    steps: tuple[int, ...]
    quick_steps: tuple[int, ...]
    heldout: tuple[Run, ...]

    def __post_init__(self):
        for field_name in ("runs", "quick_runs", "heldout"):
            for run in getattr(self, field_name):
                ok = isinstance(run, tuple) and len(run) in (3, 4) and isinstance(run[0], str)
                ok = ok and _positive_int(run[1]) and isinstance(run[2], str)
                ok = ok and (len(run) == 3 or _stop_time(run[3]))
                if not ok:
                    raise ConfigError(
                        f"Showcase {field_name}: each run is (solver, steps >= 1, output[, t_end]"
                        f" a number in [0, 1)), got {run!r}"
                    )
        for field_name in ("steps", "quick_steps"):
            counts = getattr(self, field_name)
            if not counts or not all(_positive_int(n) for n in counts):
                raise ConfigError(f"Showcase {field_name} must be step counts >= 1, got {counts!r}")

    def solvers_named(self) -> set[str]:
        """Every solver name its runs use (``"phi"``: the one-shot estimate, no solver)."""
        return {run[0] for run in (*self.runs, *self.quick_runs, *self.heldout)} - {"phi"}


def _positive_int(n) -> bool:
    return isinstance(n, int) and not isinstance(n, bool) and n >= 1


def _stop_time(t) -> bool:
    """A run's ``t_end``: where the solve from ``t = 1`` stops, a number in ``[0, 1)``."""
    return isinstance(t, (int, float)) and not isinstance(t, bool) and 0 <= t < 1


@dataclass(frozen=True)
class Method:
    """A restoration method (see the module docstring).

    ``build_flow(network, spec, **kwargs)`` returns the flow over a predictor;
    ``settings_from_config(config)`` the method's own settings from a trainer config (a dict);
    ``input_noise(spec)`` the noise std a model expects on its input; ``observe(spec, x,
    generator)`` degrades clean images as in training; ``objective()`` the training objective
    class, or ``None`` for a method not trained here; ``explain(spec)`` a sentence for the demo;
    ``settings_keys`` the settings every spec of the method must carry (refused when missing,
    before any flow is built); ``check_settings(settings)`` raises a :class:`ConfigError` naming
    a setting whose value the method cannot use (``None``: any value is taken).
    """

    name: str
    title: str
    summary: str
    solvers: tuple[SolverChoice, ...]
    default_solver: str
    default_output: str
    build_flow: Callable
    settings_from_config: Callable[[Mapping], dict]
    input_noise: Callable[..., float]  # (spec: ModelSpec) -> float
    observe: Callable
    showcase: Showcase
    objective: Callable[[], type] | None = None
    explain: Callable[..., str] | None = None  # (spec: ModelSpec) -> str
    settings_keys: tuple[str, ...] = ()
    check_settings: Callable[[dict], None] | None = None

    def __post_init__(self):
        names = [s.name for s in self.solvers]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:  # the command line would offer one name for two solvers, building the first
            raise ConfigError(f"method {self.name}: solvers named more than once: {twice}")
        if self.default_solver not in names:
            raise ConfigError(
                f"method {self.name}: default_solver {self.default_solver!r} is not among its "
                f"solvers {names}"
            )
        unknown = sorted(self.showcase.solvers_named() - set(names))
        if unknown:
            raise ConfigError(
                f"method {self.name}: its showcase runs name solvers {unknown} that are not among "
                f"its solvers {names}"
            )

    def solver_names(self) -> tuple[str, ...]:
        """The command-line names of this method's solvers, default first."""
        names = [s.name for s in self.solvers]
        return (self.default_solver, *(n for n in names if n != self.default_solver))

    def check_solver(self, name: str | None) -> str:
        """``name`` (default: :attr:`default_solver`) if it is one of this method's solvers;
        a :class:`ConfigError` naming the right ones otherwise. Builds nothing."""
        name = self.default_solver if name is None else name
        if name in self.solver_names():
            return name
        raise ConfigError(
            f"solver {name!r} does not apply to {self.name} predictors; use one of "
            f"{sorted(self.solver_names())}"
        )

    def solver(self, name: str | None = None):
        """A new solver object for ``name`` (default: :attr:`default_solver`)."""
        name = self.check_solver(name)
        return next(c for c in self.solvers if c.name == name).build()
