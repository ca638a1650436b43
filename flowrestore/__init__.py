"""flowrestore: verified ODE/SDE solvers for restoration flows (InDI, DiracDiffusion, BIRD).

The public API is flat::

    import flowrestore as fr
    sol = fr.solve(fr.InDIFlow(predictor), fr.Heun(), y, steps=10)
"""

from flowrestore import degradations, inversion, metrics, oracles, schedules  # noqa: E402
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
from flowrestore.flows import DiracSDE, Flow, InDIFlow, ODEFlow, SDEFlow
from flowrestore.integrate import (
    BrownianIncrements,
    Fitted,
    GeneratorNoise,
    NoiseSource,
    PerSampleNoise,
    Power,
    Solution,
    Stats,
    Uniform,
    solve,
)
from flowrestore.inversion import BlindInversion, BlindOperator, InversionResult, Param
from flowrestore.pretrained import list_pretrained, pretrained  # noqa: E402
from flowrestore.solvers import (
    RK4,
    SRA1,
    Bosh3,
    ButcherTableau,
    ColdDiffusionSampler,
    Dopri5,
    Euler,
    EulerMaruyama,
    ExplicitRK,
    Heun,
    InDISampler,
    Midpoint,
    NaiveSampler,
    SemiLinearMultistep,
    Solver,
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
    "BlindInversion", "BlindOperator", "DiracSDE", "EulerMaruyama", "Fitted", "InversionResult",
    "Param", "SRA1", "inversion",
    "SemiLinearMultistep", "Torchsde", "list_pretrained", "metrics", "pretrained",
    "RK4", "Bosh3", "BrownianIncrements", "ButcherTableau", "ColdDiffusionSampler", "ConfigError",
    "Dopri5", "Euler", "ExplicitRK", "Flow", "FlowRestoreError", "GeneratorNoise", "GridError",
    "Heun", "InDIFlow", "InDISampler", "IncompatibleSolverError", "MaxStepsReachedError",
    "Midpoint", "NaiveSampler", "NoiseSource", "NonFiniteError", "ODEFlow", "PerSampleNoise",
    "Power", "PredictorOutputError", "SDEFlow", "ShapeError", "Solution", "Solver", "Stats",
    "StepSizeUnderflowError", "Torchdiffeq", "Uniform", "degradations", "oracles", "schedules",
    "solve",
]
