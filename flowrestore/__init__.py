"""flowrestore: verified ODE/SDE solvers for restoration flows (InDI, DiracDiffusion, BIRD).

The public API is flat::

    import flowrestore as fr
    sol = fr.solve(fr.InDIFlow(predictor), fr.Heun(), y, steps=10)

Names load on first use: ``import flowrestore`` itself imports nothing heavy (no torch), so the
command line answers ``--help`` at once. A new export is its name in ``_EXPORTS`` (``__all__`` is
built from it). Every submodule is reachable as an attribute too (``fr.flows.bcast``,
``fr.errors.SolveFailure``), whatever was imported before.
"""

from importlib import import_module as _import_module
from importlib.util import find_spec as _find_spec

# ``fr.pretrained`` is a callable object named like its module: bind it now (the module imports
# no torch), so that a later import of ``flowrestore.pretrained.*`` cannot put the module there.
from flowrestore.pretrained import list_pretrained as list_pretrained
from flowrestore.pretrained import pretrained as pretrained

# Where each public name lives. Names are imported on first use (PEP 562), so that
# ``import flowrestore`` and the command line's --help do not import torch.
_SUBMODULES = (
    "controllers",
    "degradations",
    "integrate",
    "inversion",
    "metrics",
    "oracles",
    "schedules",
    "training",
)
_EXPORTS = {
    "flowrestore.controllers": (
        "ErrorController",
        "FixedGrid",
        "PIController",
        "PIDController",
        "StepController",
    ),
    "flowrestore.diagnostics": ("EndpointReport", "check_endpoint"),
    "flowrestore.errors": (
        "ArgumentTypeError",
        "ConfigError",
        "FlowRestoreError",
        "GridError",
        "IncompatibleSolverError",
        "MaxStepsReachedError",
        "NonFiniteError",
        "PredictorOutputError",
        "ShapeError",
        "StepSizeUnderflowError",
        "MissingDependencyError",
    ),
    "flowrestore.flows": (
        "ODE",
        "SDE",
        "DiffusionFlow",
        "DiffusionSDE",
        "DiracSDE",
        "Flow",
        "InDIFlow",
        "ODEFlow",
        "ResidualFlow",
        "SDEFlow",
        "ClipSample",
        "DenoiserFlow",
        "DiffPIRFlow",
        "DynamicThreshold",
        "FlowMatchingFlow",
        "GuidedFlow",
        "Shifted",
        "TimeVariable",
    ),
    "flowrestore.grids": (
        "EndRefined",
        "EulerMatchedEnd",
        "Fitted",
        "FittedGrids",
        "Karras",
        "NoiseLevels",
        "Power",
        "Spacing",
        "StartRefined",
        "Uniform",
        "Unrefined",
    ),
    "flowrestore.flows.spectral": ("IncompatibleOperatorError",),
    "flowrestore.integrate": ("PreparedSolve", "Solution", "Stats", "prepare", "solve"),
    "flowrestore.inversion": ("BlindInversion", "BlindOperator", "InversionResult", "Param"),
    "flowrestore.noise": ("BrownianIncrements", "GeneratorNoise", "NoiseSource", "PerSampleNoise"),
    "flowrestore.pretrained": ("list_pretrained", "pretrained"),  # bound above
    "flowrestore.solvers": (
        "IPNDM",
        "DataIPNDM",
        "RK4",
        "SRA1",
        "Bosh3",
        "ButcherTableau",
        "ColdDiffusionSampler",
        "Context",
        "DiracStep",
        "Dopri5",
        "EmbeddedRK",
        "Euler",
        "EulerMaruyama",
        "ExplicitRK",
        "FittedMultistep",
        "Heun",
        "InDISampler",
        "Midpoint",
        "NaiveSampler",
        "RestorationSampler",
        "SDESolver",
        "SemiLinearMultistep",
        "UniPC",
        "Solver",
        "StepResult",
        "Torchdiffeq",
        "Torchsde",
        "DDRMStep",
        "DiffPIRStep",
        "DPSStep",
    ),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name):
    if name in _SUBMODULES:
        value = _import_module(f"flowrestore.{name}")
    elif name in _WHERE:
        value = getattr(_import_module(_WHERE[name]), name)
    elif _is_submodule(name):  # e.g. fr.flows: else there only once something imported it
        value = _import_module(f"flowrestore.{name}")
    else:
        raise AttributeError(f"module 'flowrestore' has no attribute {name!r}")
    globals()[name] = value
    return value


def _is_submodule(name: str) -> bool:
    """Whether ``flowrestore.<name>`` is a module of the package (no private or dotted names)."""
    return (
        name.isidentifier()
        and not name.startswith("_")
        and _find_spec(f"flowrestore.{name}") is not None
    )


def __dir__():
    return sorted(set(globals()) | set(__all__))


__version__ = "0.1.0"

__all__ = sorted([*_WHERE, *(m for m in _SUBMODULES if m != "training")])
