"""The integration loop, grids, noise sources and the solution type."""

from flowrestore.integrate.grids import (
    Fitted,
    Power,
    Spacing,
    Uniform,
    check_grid,
    fit_grid,
    make_grid,
)
from flowrestore.integrate.noise import (
    BrownianIncrements,
    GeneratorNoise,
    NoiseSource,
    PerSampleNoise,
)
from flowrestore.integrate.solution import Solution, Stats
from flowrestore.integrate.solve import solve

__all__ = [
    "BrownianIncrements",
    "Fitted",
    "GeneratorNoise",
    "NoiseSource",
    "PerSampleNoise",
    "Power",
    "Solution",
    "Spacing",
    "Stats",
    "Uniform",
    "check_grid",
    "fit_grid",
    "make_grid",
    "solve",
]
