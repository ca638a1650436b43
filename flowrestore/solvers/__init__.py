"""Solvers: how to step. Runge–Kutta tableaus on one stepper, restoration samplers, multistep
exponential integrators, SDE steps (Dirac's eq. 7 among them) and adapters to torchdiffeq and
torchsde. Subclass :class:`Solver` (or :class:`ExplicitRK`, :class:`RestorationSampler`,
:class:`SDESolver`) to add one; README "Write your own solver"."""

from flowrestore.solvers.adams import IPNDM, AdamsState, DataIPNDM
from flowrestore.solvers.adapters import Torchdiffeq
from flowrestore.solvers.base import Context, Solver, StepResult
from flowrestore.solvers.dirac import DiracStep
from flowrestore.solvers.fitted import FittedMultistep, FittedState
from flowrestore.solvers.guided import DDRMStep, DiffPIRStep, DPSStep
from flowrestore.solvers.indi import (
    ColdDiffusionSampler,
    InDISampler,
    NaiveSampler,
    RestorationSampler,
)
from flowrestore.solvers.runge_kutta import (
    RK4,
    Bosh3,
    Dopri5,
    EmbeddedRK,
    Euler,
    ExplicitRK,
    Heun,
    Midpoint,
    RKState,
)
from flowrestore.solvers.sde import SRA1, EulerMaruyama, SDESolver
from flowrestore.solvers.semilinear import MultistepState, SemiLinearMultistep, UniPC
from flowrestore.solvers.tableau import ButcherTableau, rk_step
from flowrestore.solvers.torchsde_adapter import Torchsde

__all__ = [
    "AdamsState",
    "RK4",
    "SRA1",
    "Bosh3",
    "ButcherTableau",
    "ColdDiffusionSampler",
    "Context",
    "DDRMStep",
    "DPSStep",
    "DataIPNDM",
    "DiffPIRStep",
    "DiracStep",
    "Dopri5",
    "EmbeddedRK",
    "Euler",
    "EulerMaruyama",
    "FittedMultistep",
    "FittedState",
    "ExplicitRK",
    "Heun",
    "IPNDM",
    "InDISampler",
    "Midpoint",
    "MultistepState",
    "NaiveSampler",
    "RKState",
    "RestorationSampler",
    "SDESolver",
    "SemiLinearMultistep",
    "UniPC",
    "Solver",
    "StepResult",
    "Torchdiffeq",
    "Torchsde",
    "rk_step",
]
