"""flowrestore: verified ODE/SDE solvers for restoration flows (InDI, DiracDiffusion, BIRD).

The public API is flat::

    import flowrestore as fr
    sol = fr.solve(fr.InDIFlow(predictor), fr.Heun(), y, steps=10)
"""

from flowrestore import controllers, degradations, inversion, metrics, oracles, schedules
from flowrestore.controllers import (
    ErrorController,
    FixedGrid,
    PIController,
    PIDController,
    StepController,
)
from flowrestore.diagnostics import EndpointReport, check_endpoint
from flowrestore.errors import (
    ConfigError,
    FlowRestoreError,
    GridError,
    IncompatibleSolverError,
    MaxStepsReachedError,
    NonFiniteError,
    PredictorOutputError,
    ShapeError,
    StepSizeUnderflowError,
)
from flowrestore.flows import (
    ODE,
    SDE,
    DiffusionFlow,
    DiffusionSDE,
    DiracSDE,
    Flow,
    InDIFlow,
    Karras,
    ODEFlow,
    ResidualFlow,
    SDEFlow,
)
from flowrestore.grids import Fitted, Power, Spacing, StartRefined, Uniform
from flowrestore.integrate import Solution, Stats, solve
from flowrestore.inversion import BlindInversion, BlindOperator, InversionResult, Param
from flowrestore.noise import BrownianIncrements, GeneratorNoise, NoiseSource, PerSampleNoise
from flowrestore.pretrained import list_pretrained, pretrained  # noqa: E402
from flowrestore.solvers import (
    RK4,
    SRA1,
    Bosh3,
    ButcherTableau,
    ColdDiffusionSampler,
    Context,
    DiracStep,
    Dopri5,
    EmbeddedRK,
    Euler,
    EulerMaruyama,
    ExplicitRK,
    Heun,
    InDISampler,
    Midpoint,
    NaiveSampler,
    RestorationSampler,
    SDESolver,
    SemiLinearMultistep,
    Solver,
    StepResult,
    Torchdiffeq,
    Torchsde,
)


def __getattr__(name):
    # ``fr.training`` is imported on first use: it pulls in the U-Net, data and trainer modules.
    if name == "training":
        import importlib

        return importlib.import_module("flowrestore.training")
    raise AttributeError(f"module 'flowrestore' has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [
    "ODE",
    "RK4",
    "SDE",
    "SRA1",
    "BlindInversion",
    "BlindOperator",
    "Bosh3",
    "BrownianIncrements",
    "ButcherTableau",
    "ColdDiffusionSampler",
    "ConfigError",
    "Context",
    "DiffusionFlow",
    "DiffusionSDE",
    "DiracSDE",
    "DiracStep",
    "Dopri5",
    "EmbeddedRK",
    "EndpointReport",
    "ErrorController",
    "Euler",
    "EulerMaruyama",
    "ExplicitRK",
    "Fitted",
    "FixedGrid",
    "Flow",
    "FlowRestoreError",
    "GeneratorNoise",
    "GridError",
    "Heun",
    "InDIFlow",
    "InDISampler",
    "IncompatibleSolverError",
    "InversionResult",
    "Karras",
    "MaxStepsReachedError",
    "Midpoint",
    "NaiveSampler",
    "NoiseSource",
    "NonFiniteError",
    "ODEFlow",
    "PIController",
    "PIDController",
    "Param",
    "PerSampleNoise",
    "Power",
    "PredictorOutputError",
    "ResidualFlow",
    "RestorationSampler",
    "SDEFlow",
    "SDESolver",
    "SemiLinearMultistep",
    "ShapeError",
    "Solution",
    "Solver",
    "Spacing",
    "StartRefined",
    "Stats",
    "StepController",
    "StepResult",
    "StepSizeUnderflowError",
    "Torchdiffeq",
    "Torchsde",
    "Uniform",
    "degradations",
    "inversion",
    "check_endpoint",
    "controllers",
    "list_pretrained",
    "metrics",
    "oracles",
    "pretrained",
    "schedules",
    "solve",
]
