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
    MissingDependencyError,
    NonFiniteError,
    PredictorOutputError,
    ShapeError,
    StepSizeUnderflowError,
)
from flowrestore.flows import (  # noqa: E402
    ODE,
    SDE,
    ClipSample,
    DenoiserFlow,
    DiffPIRFlow,
    DiffusionFlow,
    DiffusionSDE,
    DiracSDE,
    DynamicThreshold,
    Flow,
    FlowMatchingFlow,
    GuidedFlow,
    InDIFlow,
    ODEFlow,
    ResidualFlow,
    SDEFlow,
    Shifted,
)
from flowrestore.flows.spectral import IncompatibleOperatorError  # noqa: E402
from flowrestore.grids import Fitted, Karras, Power, Spacing, StartRefined, Uniform
from flowrestore.integrate import Solution, Stats, StepContext, solve
from flowrestore.inversion import BlindInversion, BlindOperator, InversionResult, Param
from flowrestore.noise import BrownianIncrements, GeneratorNoise, NoiseSource, PerSampleNoise
from flowrestore.pretrained import list_pretrained, pretrained  # noqa: E402
from flowrestore.solvers import (  # noqa: E402
    RK4,
    SRA1,
    Bosh3,
    ButcherTableau,
    ColdDiffusionSampler,
    Context,
    DDRMStep,
    DiffPIRStep,
    DiracStep,
    Dopri5,
    DPSStep,
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
    "ClipSample",
    "ColdDiffusionSampler",
    "ConfigError",
    "Context",
    "DiffusionFlow",
    "DiffusionSDE",
    "DiracSDE",
    "DiracStep",
    "Dopri5",
    "DynamicThreshold",
    "EmbeddedRK",
    "EndpointReport",
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
    "MissingDependencyError",
    "NaiveSampler",
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
    "StepContext",
    "StepController",
    "StepResult",
    "StepSizeUnderflowError",
    "Torchdiffeq",
    "Torchsde",
    "Uniform",
    "DDRMStep",
    "DPSStep",
    "DenoiserFlow",
    "DiffPIRFlow",
    "DiffPIRStep",
    "FlowMatchingFlow",
    "GuidedFlow",
    "IncompatibleOperatorError",
    "Shifted",
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
