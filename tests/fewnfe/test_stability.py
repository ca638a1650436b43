"""Every default-constructed solver with ``steps=N`` is stable at every ``N ≥ 3``: never less
accurate than Euler at the same number of evaluations, on each flow family (issue 16).

Families: exact diffusion models of a stiff Gaussian prior (std in [0.05, 1]) under DDPM's linear
schedule with an ε-model and the cosine schedule (``σ_max ≈ 2·10⁴``) with a v-model; InDI's
Gaussian denoising oracle; a user's ``ODEFlow`` (a damped oscillator, exact solution). Errors are
worst per-sample relative errors against the closed forms; each solver's evaluations are read
from ``stats.nfe`` and Euler is run with exactly that many steps.
"""

from __future__ import annotations

import math

import pytest
import torch

import flowrestore as fr

from .helpers import F64, diffusion_problem, indi_problem, rel

SOLVERS = {
    "Midpoint": fr.Midpoint,
    "Heun": fr.Heun,
    "RK4": fr.RK4,
    "SemiLinearMultistep": fr.SemiLinearMultistep,
    "IPNDM": fr.IPNDM,
    "DataIPNDM": fr.DataIPNDM,
}


def _oscillator():
    """``x'' = −x − 0.2 x'`` as a first-order system, exact solution by ``matrix_exp``."""
    a = torch.tensor([[0.0, 1.0], [-1.0, -0.2]], dtype=F64)
    x0 = torch.tensor([[1.0, 0.0], [0.3, -0.5], [-0.7, 0.2]], dtype=F64)
    flow = fr.ODEFlow(lambda t, x: x @ a.T)
    return flow, x0, x0 @ torch.linalg.matrix_exp(2.0 * a).T, {"t_span": (0.0, 2.0)}


def _family(name):
    if name == "ode":
        return _oscillator()
    if name == "indi":
        _, flow, y, exact = indi_problem(seed=5, dim=32, batch=8)
        return flow, y, exact, {}
    schedule, ptype = name.split("/")
    _, flow, x_T, exact = diffusion_problem(schedule, ptype, seed=5, dim=32, batch=8)
    return flow, x_T, exact, {}


@pytest.mark.parametrize("family", ["linear/epsilon", "cosine/v_prediction", "indi", "ode"])
@pytest.mark.parametrize("name", list(SOLVERS))
def test_never_less_accurate_than_euler_at_equal_evaluations(family, name):
    flow, x, exact, kw = _family(family)
    make = SOLVERS[name]
    try:
        make().check_flow(flow)
    except fr.IncompatibleSolverError:
        pytest.skip(f"{name} does not step {type(flow).__name__}")
    for n in range(3, 11):
        sol = fr.solve(flow, make(), x, steps=n, **kw)
        nfe = int(sol.stats.nfe.max())
        err = rel(sol.x, exact)
        euler = rel(fr.solve(flow, fr.Euler(), x, steps=nfe, **kw).x, exact)
        assert math.isfinite(err) and err <= euler, (family, name, n, nfe, err, euler)
