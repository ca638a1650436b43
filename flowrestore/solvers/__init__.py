"""Solvers: how to step. Runge–Kutta tableaus on one stepper, InDI samplers, adapters."""

from flowrestore.solvers.adapters import Torchdiffeq
from flowrestore.solvers.base import Solver, StepContext, StepResult
from flowrestore.solvers.indi import ColdDiffusionSampler, InDISampler, NaiveSampler
from flowrestore.solvers.runge_kutta import RK4, Bosh3, Dopri5, Euler, ExplicitRK, Heun, Midpoint
from flowrestore.solvers.sde import SRA1, EulerMaruyama
from flowrestore.solvers.semilinear import SemiLinearMultistep as SemiLinearMultistep
from flowrestore.solvers.tableau import ButcherTableau, rk_step
from flowrestore.solvers.torchsde_adapter import Torchsde

__all__ = [
    "RK4",
    "SRA1",
    "Bosh3",
    "ButcherTableau",
    "ColdDiffusionSampler",
    "Dopri5",
    "Euler",
    "EulerMaruyama",
    "ExplicitRK",
    "Heun",
    "InDISampler",
    "Midpoint",
    "NaiveSampler",
    "Solver",
    "StepContext",
    "StepResult",
    "Torchdiffeq",
    "Torchsde",
    "rk_step",
]
