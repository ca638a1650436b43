"""flowrestore: verified ODE/SDE solvers for restoration flows (InDI, DiracDiffusion, BIRD).

The public API is flat::

    import flowrestore as fr
    sol = fr.solve(fr.InDIFlow(predictor), fr.Heun(), y, steps=10)
"""

from flowrestore import degradations, inversion, metrics, oracles, schedules  # noqa: E402
from flowrestore.controllers import FixedGrid, PIController, StepController
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
from flowrestore.grids import (
    EndRefined,
    Fitted,
    NoiseLevels,
    Power,
    Spacing,
    StartRefined,
    TimeVariable,
    Uniform,
)
from flowrestore.integrate import Solution, Stats, StepContext, solve
from flowrestore.inversion import BlindInversion, BlindOperator, InversionResult, Param
from flowrestore.noise import BrownianIncrements, GeneratorNoise, NoiseSource, PerSampleNoise
from flowrestore.pretrained import list_pretrained, pretrained  # noqa: E402
from flowrestore.solvers import (
    IPNDM,
    RK4,
    SRA1,
    Bosh3,
    ButcherTableau,
    ColdDiffusionSampler,
    Context,
    DataIPNDM,
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
    "DataIPNDM",
    "DiffusionFlow",
    "DiffusionSDE",
    "DiracSDE",
    "DiracStep",
    "Dopri5",
    "EmbeddedRK",
    "EndpointReport",
    "EndRefined",
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
    "IPNDM",
    "InDIFlow",
    "InDISampler",
    "IncompatibleSolverError",
    "InversionResult",
    "Karras",
    "MaxStepsReachedError",
    "Midpoint",
    "NaiveSampler",
    "NoiseLevels",
    "NoiseSource",
    "NonFiniteError",
    "ODEFlow",
    "PIController",
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
    "TimeVariable",
    "StepContext",
    "StepController",
    "StepResult",
    "StepSizeUnderflowError",
    "Torchdiffeq",
    "Torchsde",
    "Uniform",
    "degradations",
    "inversion",
    "check_endpoint",
    "list_pretrained",
    "metrics",
    "oracles",
    "pretrained",
    "schedules",
    "solve",
]
