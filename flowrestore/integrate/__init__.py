"""The integration loop (:func:`solve`), its endpoint rule and state merging; grids, noise
sources and controllers are re-exported here for convenience."""

from flowrestore.controllers import FixedGrid, PIController, PIDController, StepController
from flowrestore.grids import (
    Fitted,
    Power,
    Spacing,
    StartRefined,
    Uniform,
    check_grid,
    make_grid,
)
from flowrestore.integrate.choose import SpacingChoice, choose_spacing
from flowrestore.integrate.choose_solver import SolverChoice, candidate_solvers, choose_solver
from flowrestore.integrate.fit_table import fit_grids, relative_error
from flowrestore.integrate.fitting import fit_grid
from flowrestore.integrate.solution import Solution, Stats
from flowrestore.integrate.solve import PreparedSolve, prepare, solve
from flowrestore.integrate.start import estimate_start
from flowrestore.integrate.weight_fitting import fit_weights
from flowrestore.noise import BrownianIncrements, GeneratorNoise, NoiseSource, PerSampleNoise

__all__ = [
    "BrownianIncrements",
    "Fitted",
    "FixedGrid",
    "GeneratorNoise",
    "NoiseSource",
    "PIController",
    "PIDController",
    "PerSampleNoise",
    "PreparedSolve",
    "Power",
    "Solution",
    "Spacing",
    "StartRefined",
    "Stats",
    "StepController",
    "Uniform",
    "SpacingChoice",
    "SolverChoice",
    "candidate_solvers",
    "check_grid",
    "choose_solver",
    "choose_spacing",
    "estimate_start",
    "fit_grid",
    "fit_grids",
    "fit_weights",
    "make_grid",
    "prepare",
    "relative_error",
    "solve",
]
