"""The restoration methods: one record per method, and what a trained predictor was trained for.

A :class:`Method` says everything the product layer (restore, demo, the shipped predictors, the
command line) needs to know about a method, so that nothing else switches on its name:

* the flow it integrates over a predictor (:attr:`Method.build_flow`: InDI's residual ODE
  ``dx/dt = (x − F(x, t))/t``, InDI eq. 13; Dirac's reverse SDE, DiracDiffusion eqs. 7–11);
* the solvers the command line offers for it, with their descriptions (:attr:`Method.solvers`),
  its default solver and output;
* its training objective (the loss: :mod:`flowrestore.training.objectives`);
* the settings a checkpoint records beyond the task (Dirac: ``σ_min``, ``σ_max``, look-ahead),
  the noise level a model of it expects on its input, and how to degrade clean images the way it
  was trained (:attr:`Method.observe`);
* the settings the demo and the registry's held-out scores run (:class:`Showcase`).

A :class:`ModelSpec` is what a trained predictor is for: a method, a task (:mod:`flowrestore.tasks`)
with its parameters, and the method's settings; :meth:`ModelSpec.of` reads it from a shipped
predictor's ``metadata`` or a registry entry, :meth:`ModelSpec.from_train_config` from a trainer
checkpoint's config.

Adding a method is one :class:`Method` entry in :data:`METHODS` (and, if it is trained here, its
objective). Nothing in this module imports torch until a flow, solver or objective is built, so the
command line's help and usage errors answer without it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from flowrestore.errors import ConfigError, describe
from flowrestore.tasks import Task, get_task

__all__ = [
    "SolverChoice",
    "Showcase",
    "Method",
    "ModelSpec",
    "METHODS",
    "get_method",
    "method_names",
    "solver_names",
    "solver_table",
    "make_solver",
    "IMAGE_RANGE",
]

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
    ``(solver, steps, output[, t_end])``; the solver ``"phi"`` is the one-shot clean estimate.
    """

    runs: tuple[Run, ...]
    quick_runs: tuple[Run, ...]
    steps: tuple[int, ...]
    quick_steps: tuple[int, ...]
    heldout: tuple[Run, ...]


@dataclass(frozen=True)
class Method:
    """A restoration method (see the module docstring).

    ``build_flow(network, spec, **kwargs)`` returns the flow over a predictor;
    ``settings_from_config(config)`` the method's own settings from a trainer config (a dict);
    ``input_noise(spec)`` the noise std a model expects on its input; ``observe(spec, x,
    generator)`` degrades clean images as in training; ``objective()`` the training objective
    class, or ``None`` for a method not trained here; ``explain(spec)`` a sentence for the demo.
    """

    name: str
    title: str
    summary: str
    solvers: tuple[SolverChoice, ...]
    default_solver: str
    default_output: str
    build_flow: Callable
    settings_from_config: Callable[[Mapping], dict]
    input_noise: Callable[[ModelSpec], float]
    observe: Callable
    showcase: Showcase
    objective: Callable[[], type] | None = None
    explain: Callable[[ModelSpec], str] | None = None

    def __post_init__(self):
        names = [s.name for s in self.solvers]
        if self.default_solver not in names:
            raise ConfigError(
                f"method {self.name}: default_solver {self.default_solver!r} is not among its "
                f"solvers {names}"
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
        if name in solver_names():
            raise ConfigError(
                f"solver {name!r} does not apply to {self.name} predictors; use one of "
                f"{sorted(self.solver_names())}"
            )
        raise ConfigError(f"solver must be one of {sorted(solver_names())}, got {describe(name)}")

    def solver(self, name: str | None = None):
        """A new solver object for ``name`` (default: :attr:`default_solver`)."""
        name = self.check_solver(name)
        return next(c for c in self.solvers if c.name == name).build()


@dataclass(frozen=True)
class ModelSpec:
    """What a trained predictor is for: ``method``, ``task`` with resolved ``params``, the
    method's ``settings`` and the model's ``name``."""

    method: Method
    task: Task
    params: dict
    settings: dict = field(default_factory=dict)
    name: str = ""

    @classmethod
    def of(cls, model_or_meta) -> ModelSpec:
        """The spec of a shipped predictor (its ``.metadata``) or of a registry entry (a dict)."""
        if isinstance(model_or_meta, ModelSpec):
            return model_or_meta
        meta = model_or_meta
        if not isinstance(meta, dict):
            meta = getattr(model_or_meta, "metadata", None)
        if not isinstance(meta, dict) or "method" not in meta or "task" not in meta:
            raise ConfigError(
                "expected a shipped predictor (with .metadata) or its registry entry, "
                f"got {describe(model_or_meta)}"
            )
        method = get_method(meta["method"])
        task = get_task(meta["task"])
        return cls(
            method=method,
            task=task,
            params=task.resolve(meta.get("task_params")),
            settings=dict(meta.get(method.name) or {}),
            name=str(meta.get("name", "")),
        )

    @classmethod
    def from_train_config(cls, config: Mapping, *, name: str = "") -> ModelSpec:
        """The spec of a predictor trained with ``config`` (a trainer config as a dict)."""
        method = get_method(config["method"])
        task = get_task(config["task"])
        return cls(
            method=method,
            task=task,
            params=task.resolve(config.get("task_params")),
            settings=method.settings_from_config(config),
            name=name,
        )

    def metadata(self) -> dict:
        """The ``metadata`` dict of a predictor with this spec (the registry's entry format)."""
        meta = {
            "name": self.name,
            "method": self.method.name,
            "task": self.task.name,
            "task_params": dict(self.params),
        }
        if self.settings:
            meta[self.method.name] = dict(self.settings)
        return meta

    @property
    def input_noise(self) -> float:
        """The std of the noise the predictor expects on its input."""
        return float(self.method.input_noise(self))

    def expects(self) -> str:
        """In words: the input the predictor was trained on and what it does to other inputs."""
        return self.task.describe(self.params, noise=self.input_noise)

    @property
    def scale(self) -> int:
        """Output size over input size when restoring a file (``sr4``: the factor)."""
        return int(self.task.scale(self.params))

    def prepare(self, y):
        """The model input for a file's pixels ``y`` ``[B, C, h, w]`` (``sr4``: upsampled)."""
        return y if self.task.prepare is None else self.task.prepare(y, self.params)

    def flow(self, network, **kwargs):
        """The flow the predictor ``network`` was trained for (``kwargs`` go to the flow)."""
        return self.method.build_flow(network, self, **kwargs)

    def observe(self, x, generator=None):
        """Clean images ``x`` ``[B, C, H, W]`` degraded the way the training data was."""
        return self.method.observe(self, x, generator)


# ----------------------------------------------------------------------------- the records
def _solvers():
    import flowrestore.solvers as solvers  # imports torch: only when a solver is built

    return solvers


def _indi_flow(network, spec, **kwargs):
    from flowrestore.methods.flows import PredictorInDIFlow

    return PredictorInDIFlow(network, value_range=IMAGE_RANGE, name=spec.name, **kwargs)


def _dirac_flow(network, spec, **kwargs):
    from flowrestore.methods.flows import PredictorDiracSDE
    from flowrestore.schedules import Geometric

    s = spec.settings
    return PredictorDiracSDE(
        network,
        spec.task.family(spec.params),
        Geometric(s["sigma_min"], s["sigma_max"]),
        value_range=IMAGE_RANGE,
        name=spec.name,
        **kwargs,
    )


def _indi_observe(spec, x, generator=None):
    return spec.task.degradation(spec.params)(x, generator)


def _dirac_observe(spec, x, generator=None):
    import torch

    family = spec.task.family(spec.params)
    y = family(x, torch.ones(x.shape[0], dtype=x.dtype, device=x.device))
    z = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    return y + spec.settings["sigma_max"] * z


def _indi_objective():
    from flowrestore.training.objectives import InDIObjective

    return InDIObjective


def _dirac_objective():
    from flowrestore.training.objectives import DiracObjective

    return DiracObjective


def _dirac_explain(spec) -> str:
    return (
        "Dirac: 'phi' is the one-shot estimate Φ(y, 1); 'posterior_mean' is Φ(y_t_end, t_end) "
        "after the reverse SDE (one more NFE), 'last' its final iterate y_0 (carries σ_0 = "
        f"{spec.settings['sigma_min']:g} noise). Early stopping (t_end > 0) trades sharpness "
        "(HF/clean) for PSNR, as in the paper."
    )


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(
            name="indi",
            title="InDI",
            summary="InDI's residual flow dx/dt = (x - F(x, t))/t from y at t = 1 to t = 0",
            solvers=(
                SolverChoice(
                    "multistep",
                    "semi-linear multistep (order 3, 1 NFE per step; the few-NFE default)",
                    lambda: _solvers().SemiLinearMultistep(),
                ),
                SolverChoice(
                    "euler",
                    "Euler on InDI's residual ODE (= InDI's sampler with eps = 0)",
                    lambda: _solvers().Euler(),
                ),
                SolverChoice(
                    "heun",
                    "Heun (2nd order), last step the denoising step",
                    lambda: _solvers().Heun(),
                ),
                SolverChoice(
                    "midpoint", "explicit midpoint (2nd order)", lambda: _solvers().Midpoint()
                ),
                SolverChoice(
                    "rk4",
                    "classical Runge-Kutta (4th order), last step the denoising step",
                    lambda: _solvers().RK4(),
                ),
                SolverChoice(
                    "indi",
                    "InDI's discrete sampler (eps = 0)",
                    lambda: _solvers().InDISampler(),
                ),
            ),
            default_solver="multistep",
            default_output="last",
            build_flow=_indi_flow,
            settings_from_config=lambda config: {},
            input_noise=lambda spec: spec.task.noise(spec.params),
            observe=_indi_observe,
            objective=_indi_objective,
            showcase=Showcase(
                runs=(
                    ("euler", 1, "last"),
                    ("euler", 2, "last"),
                    ("euler", 5, "last"),
                    ("euler", 10, "last"),
                    ("euler", 20, "last"),
                    ("heun", 3, "last"),
                    ("heun", 10, "last"),
                    ("indi", 10, "last"),
                    ("multistep", 6, "last"),
                    ("multistep", 10, "last"),
                ),
                quick_runs=(("euler", 1, "last"), ("euler", 5, "last"), ("multistep", 6, "last")),
                steps=(1, 2, 5, 10, 20),
                quick_steps=(1, 5),
                heldout=(("euler", 1, "last"), ("euler", 10, "last"), ("heun", 10, "last")),
            ),
        ),
        Method(
            name="dirac",
            title="Dirac",
            summary="Dirac's reverse SDE of y_t = A_t(x0) + sigma_t z from t = 1 to t = 0",
            solvers=(
                SolverChoice(
                    "em",
                    "Dirac's reverse step (paper eq. 7: Euler-Maruyama with R-hat)",
                    lambda: _solvers().DiracStep(),
                ),
                SolverChoice(
                    "sra1",
                    "Roessler's SRA1 (strong order 1.5 for additive noise)",
                    lambda: _solvers().SRA1(),
                ),
            ),
            default_solver="em",
            default_output="posterior_mean",
            build_flow=_dirac_flow,
            settings_from_config=lambda config: {
                "sigma_min": config["sigma_min"],
                "sigma_max": config["sigma_max"],
                "lookahead": config["lookahead"],
            },
            input_noise=lambda spec: spec.settings["sigma_max"],
            observe=_dirac_observe,
            objective=_dirac_objective,
            explain=_dirac_explain,
            showcase=Showcase(
                runs=(
                    ("phi", 1, "posterior_mean"),
                    ("em", 2, "posterior_mean", 0.8),
                    ("em", 5, "posterior_mean", 0.5),
                    ("em", 10, "posterior_mean"),
                    ("em", 25, "posterior_mean"),
                    ("em", 25, "last"),
                ),
                quick_runs=(("phi", 1, "posterior_mean"), ("em", 5, "posterior_mean")),
                steps=(5, 10, 25),
                quick_steps=(5,),
                heldout=(
                    ("phi", 1, "posterior_mean"),
                    ("em", 5, "posterior_mean", 0.5),
                    ("em", 10, "posterior_mean"),
                    ("em", 25, "last"),
                ),
            ),
        ),
    )
}


def method_names() -> tuple[str, ...]:
    """The names of :data:`METHODS`, in order."""
    return tuple(METHODS)


def get_method(name) -> Method:
    """The :class:`Method` named ``name``; a :class:`ConfigError` lists the names otherwise."""
    method = METHODS.get(name) if isinstance(name, str) else None
    if method is None:
        raise ConfigError(f"method must be one of {method_names()}, got {describe(name)}")
    return method


def solver_table() -> dict[str, tuple[tuple[str, ...], str]]:
    """Every command-line solver name → (the methods it applies to, its description)."""
    table: dict[str, tuple[tuple[str, ...], str]] = {}
    for m in METHODS.values():
        for s in m.solvers:
            methods, text = table.get(s.name, ((), s.description))
            table[s.name] = ((*methods, m.name), text)
    return table


def solver_names() -> tuple[str, ...]:
    """Every command-line solver name, in the order of the records."""
    return tuple(solver_table())


def make_solver(name: str, method: str = "indi"):
    """The solver object for a command-line name, checked against the predictor's method."""
    return get_method(method).solver(name)
