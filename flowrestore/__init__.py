"""flowrestore: verified ODE/SDE solvers for restoration flows (InDI, DiracDiffusion, BIRD).

The public API is flat::

    import flowrestore as fr
    sol = fr.solve(fr.InDIFlow(predictor), fr.Heun(), y, steps=10)
"""

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
from flowrestore.flows import Flow, InDIFlow, ODEFlow, SDEFlow
from flowrestore.integrate import (
    BrownianIncrements,
    GeneratorNoise,
    NoiseSource,
    PerSampleNoise,
    Power,
    Solution,
    Stats,
    Uniform,
    solve,
)
from flowrestore.solvers import (
    RK4,
    Bosh3,
    ButcherTableau,
    ColdDiffusionSampler,
    Dopri5,
    Euler,
    ExplicitRK,
    Heun,
    InDISampler,
    Midpoint,
    NaiveSampler,
    Solver,
    Torchdiffeq,
)

from flowrestore import degradations, oracles, schedules  # noqa: E402  (subpackages as namespaces)

__version__ = "0.1.0"

__all__ = [
    "RK4", "Bosh3", "BrownianIncrements", "ButcherTableau", "ColdDiffusionSampler", "ConfigError",
    "Dopri5", "Euler", "ExplicitRK", "Flow", "FlowRestoreError", "GeneratorNoise", "GridError",
    "Heun", "InDIFlow", "InDISampler", "IncompatibleSolverError", "MaxStepsReachedError",
    "Midpoint", "NaiveSampler", "NoiseSource", "NonFiniteError", "ODEFlow", "PerSampleNoise",
    "Power", "PredictorOutputError", "SDEFlow", "ShapeError", "Solution", "Solver", "Stats",
    "StepSizeUnderflowError", "Torchdiffeq", "Uniform", "degradations", "oracles", "schedules",
    "solve",
]
