"""InDI (Delbracio & Milanfar 2023): the residual flow ``dx/dt = (x − F(x, t))/t`` (the paper's
"InDI as a Residual Flow ODE") over a
clean-image predictor ``F``, trained on pairs ``(x, y)`` with the InDI loss — as a method record.

A predictor's flow declares the grid spacing of each few-NFE solver: a shipped predictor its
registry entry's (``"spacings"``), a checkpoint trained with ``python -m flowrestore.training``
its *task's* (:data:`TASK_SPACINGS_FILE`). Which end of ``[0, 1]`` a trained predictor's field
changes fastest at is a property of the task: near the degraded end ``t = 1`` for a structured
operator (blur, downsampling: ``StartRefined`` steps, ρ 1.5–4), toward ``t = 0`` for the
identity of denoising (``Power`` steps shrinking toward ``t = 0``, ρ 1.5–3, uniform for
Midpoint); JPEG lies between (``StartRefined`` at ρ 1.25–1.7, close to uniform, for the
Runge–Kutta solvers; ``Power(rho=1.5)`` for IPNDM, uniform for the semi-linear multistep). A
solver a task's entry does not name (``sr4``'s semi-linear multistep, ``jpeg``'s DataIPNDM) is
laid by the loop's own rule, which won there;
one spacing for every task loses up to 15.2 dB (``python -m benchmarks.indi_generic``). The
embedded pairs (Bosh3, Dopri5) are chosen apart, at 3–10 steps (``python -m
benchmarks.indi_spacing_pairs``): without a declaration they lay the loop's ``Power`` grid, up to
16 dB behind Euler on the shipped super-resolution predictor.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path

from flowrestore.errors import ArgumentTypeError
from flowrestore.methods.base import IMAGE_RANGE, Method, Showcase, SolverChoice

__all__ = ["INDI", "TASK_SPACINGS_FILE", "task_spacings"]

#: the per-solver spacings a trained InDI checkpoint declares by its task, in the registry's
#: ``"spacings"`` format under ``"tasks"``; chosen per task on validation photos by
#: ``python -m benchmarks.indi_generic --split val --write`` (the embedded pairs' entries by
#: ``python -m benchmarks.indi_spacing_pairs --split val --write``)
TASK_SPACINGS_FILE = Path(__file__).with_name("indi_task_spacings.json")


def _solvers():
    import flowrestore.solvers as solvers  # imports torch: only when a solver is built

    return solvers


#: the keyword arguments an InDI predictor's flow takes (:class:`~flowrestore.InDIFlow`'s)
_FLOW_OPTIONS = ("observation", "cond", "check_outputs", "grids", "spacings")


def _indi_flow(network, spec, **kwargs):
    from flowrestore.methods.flows import PredictorInDIFlow

    unknown = sorted(set(kwargs) - set(_FLOW_OPTIONS))
    if unknown:
        raise ArgumentTypeError(
            f"the InDI flow of {spec.name or 'this predictor'!r} takes no {unknown}; it takes "
            f"{list(_FLOW_OPTIONS)} (guidance= is the Dirac flow's)"
        )
    metadata = getattr(network, "metadata", None)
    if "grids" not in kwargs:
        kwargs["grids"] = _fitted_grids(metadata)
    if "spacings" not in kwargs:
        own = isinstance(metadata, dict) and "spacings" in metadata
        kwargs["spacings"] = _declared_spacings(metadata) if own else task_spacings(spec.task.name)
    noise = spec.input_noise
    return PredictorInDIFlow(
        network, value_range=IMAGE_RANGE, noise_std=noise, name=spec.name, **kwargs
    )


def _fitted_grids(metadata):
    """The few-NFE grids a shipped predictor's registry entry records (``"grids"``, written by
    ``python -m flowrestore.pretrained.fit_grids``), or ``None``."""
    entry = metadata.get("grids") if isinstance(metadata, dict) else None
    if not entry or not entry.get("times"):
        return None
    from flowrestore.grids import FittedGrids

    return FittedGrids.from_dict(entry)


#: the spacings a registry entry may declare (``"spacings"``), by class name; ``Unrefined``
#: wraps one of the others (``{"Unrefined": {"StartRefined": {...}}}``)
_SPACINGS = ("StartRefined", "Power", "Uniform")


def _spacing(spec):
    """The spacing a registry record names (``{class name: parameters}``)."""
    import flowrestore.grids as grids
    from flowrestore.errors import ConfigError

    kinds = (*_SPACINGS, "Unrefined")
    if not (isinstance(spec, dict) and len(spec) == 1 and next(iter(spec)) in kinds):
        raise ConfigError(f"registry 'spacings' needs one spacing of {kinds}, got {spec!r}")
    ((kind, params),) = spec.items()
    if kind == "Unrefined":
        return grids.Unrefined(_spacing(params))  # refuses an Unrefined inside
    cls = getattr(grids, kind)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    if not isinstance(params, dict) or set(params) - set(names):
        raise ConfigError(
            f"registry 'spacings': {kind} takes a dict of parameters among {names}, got {params!r}"
        )
    return cls(**params)


def _declared_spacings(metadata):
    """The per-solver spacings a shipped predictor's registry entry declares (``"spacings"``,
    chosen by ``python -m benchmarks.indi_spacing --split val --write``), as
    ``{solver class: Spacing}``, or ``None``. The entry names a spacing per solver
    (``{"per_solver": {"Heun": {"Unrefined": {"StartRefined": {"rho": 2.0}}}, ...}}``) or one
    spacing for several (``{"solvers": ["Heun", "RK4"], "spacing": {...}}``)."""
    entry = metadata.get("spacings") if isinstance(metadata, dict) else None
    if not entry:
        return None
    from flowrestore.errors import ConfigError

    if not isinstance(entry, dict):
        raise ConfigError(
            "registry 'spacings' needs {'per_solver': {solver name: spacing}} or "
            f"{{'solvers': [...], 'spacing': spacing}}, got {entry!r}"
        )
    if "per_solver" in entry:
        named = entry["per_solver"]
        if "solvers" in entry or "spacing" in entry or not isinstance(named, dict):
            raise ConfigError(
                "registry 'spacings' needs 'per_solver' as {solver name: spacing} and no "
                f"'solvers' or 'spacing' beside it, got {entry!r}"
            )
        pairs = [(name, _spacing(spec)) for name, spec in named.items()]
    else:
        spacing = _spacing(entry.get("spacing"))
        pairs = [(name, spacing) for name in entry.get("solvers", ())]
    solvers = _solvers()
    out = {}
    for name, spacing in pairs:
        cls = getattr(solvers, name, None)
        if not (isinstance(cls, type) and issubclass(cls, solvers.Solver)):
            raise ConfigError(f"registry 'spacings' names an unknown solver {name!r}")
        out[cls] = spacing
    return out


@functools.cache
def _task_records() -> dict:
    return json.loads(TASK_SPACINGS_FILE.read_text())["tasks"]


def task_spacings(task: str):
    """The per-solver spacings (``{solver class: Spacing}``) a trained InDI checkpoint of
    ``task`` declares (:data:`TASK_SPACINGS_FILE`; module docstring), or ``None``."""
    entry = _task_records().get(task)
    return _declared_spacings({"spacings": entry}) if entry else None


def _indi_observe(spec, x, generator=None):
    return spec.task.degradation(spec.params)(x, generator)


def _indi_objective():
    from flowrestore.training.objectives import InDIObjective

    return InDIObjective


INDI = Method(
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
            "Euler on InDI's residual ODE (= InDI's sampler with eps = 0 on the same grid), the "
            "predictor's declared spacing",
            lambda: _solvers().Euler(),
        ),
        SolverChoice(
            "heun",
            "Heun (2nd order), last step the denoising step",
            lambda: _solvers().Heun(),
        ),
        SolverChoice("midpoint", "explicit midpoint (2nd order)", lambda: _solvers().Midpoint()),
        SolverChoice(
            "rk4",
            "classical Runge-Kutta (4th order), last step the denoising step",
            lambda: _solvers().RK4(),
        ),
        SolverChoice(
            "bosh3",
            "Bogacki-Shampine 3(2) on a fixed grid (3 NFE per step), the predictor's declared "
            "spacing",
            lambda: _solvers().Bosh3(),
        ),
        SolverChoice(
            "dopri5",
            "Dormand-Prince 5(4) on a fixed grid (6 NFE per step), the predictor's declared "
            "spacing",
            lambda: _solvers().Dopri5(),
        ),
        SolverChoice(
            "ipndm",
            "iPNDM (Adams-Bashforth, 1 NFE per step) on the predictor's declared spacing",
            lambda: _solvers().IPNDM(),
        ),
        SolverChoice(
            "indi",
            "InDI's discrete sampler (eps = 0), on a uniform grid",
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
)
