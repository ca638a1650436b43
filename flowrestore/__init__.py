"""flowrestore: verified ODE/SDE solvers for restoration flows (InDI, DiracDiffusion, BIRD)."""

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

__version__ = "0.1.0"
