"""Issue 16: a diffusion, flow-matching or EDM model declares grids and spacings for named solvers
as an InDI predictor does (``grids=``, ``spacings=``; :mod:`flowrestore.flows.declared`): a grid
a user fitted (``fit_grids``) or a spacing chosen (``choose_spacing``) on their own model is used
by ``steps=N`` alone — by BIRD's inner solve too — and every other solver keeps the flow's default.
"""

from __future__ import annotations

import pytest
import torch

import flowrestore as fr
from flowrestore.errors import ArgumentTypeError
from flowrestore.integrate.endpoint import default_spacing
from flowrestore.oracles.diffusion import GaussianDiffusionOracle, linear_alphas_cumprod
from flowrestore.oracles.flow_matching import GaussianDenoiserOracle, GaussianFlowMatchingOracle

F64 = torch.float64
MEAN = torch.linspace(-0.3, 0.3, 5, dtype=F64)
STD = torch.linspace(0.1, 0.8, 5, dtype=F64)
KINDS = ["diffusion", "flow-matching", "denoiser"]


def _flow(kind, **declared):
    if kind == "diffusion":
        o = GaussianDiffusionOracle(mean=MEAN, std=STD, alphas_cumprod=linear_alphas_cumprod())
        return fr.DiffusionFlow(o, alphas_cumprod=o.alphas_cumprod, **declared), o
    if kind == "flow-matching":
        o = GaussianFlowMatchingOracle(mean=MEAN, std=STD)
        return fr.FlowMatchingFlow(o, shift=3.0, **declared), o
    o = GaussianDenoiserOracle(mean=MEAN, std=STD)
    return fr.DenoiserFlow(o, sigma_max=80.0, sigma_min=0.002, **declared), o


def _x(flow, seed=0):
    z = torch.randn(4, 5, generator=torch.Generator().manual_seed(seed), dtype=F64)
    return z * flow.latent_std


def _uniform(n):
    return torch.linspace(1.0, 0.0, n + 1, dtype=F64)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [3, 7])
def test_a_declared_spacing_is_laid_for_exactly_that_solver_class(kind, n):
    flow, _ = _flow(kind, spacings={fr.IPNDM: fr.Uniform()})
    plain, _ = _flow(kind)
    x = _x(flow)
    # IPNDM lands by its own step: the declared spacing is its grid, uniform in t
    torch.testing.assert_close(default_spacing(flow, fr.IPNDM(), 0.0)(n, 1.0, 0.0), _uniform(n))
    torch.testing.assert_close(
        fr.solve(flow, fr.IPNDM(), x, steps=n).x, fr.solve(flow, fr.IPNDM(), x, grid=_uniform(n)).x
    )
    # the flow's own default is not uniform, and every other solver (DataIPNDM is an IPNDM) keeps it
    assert not torch.allclose(default_spacing(plain, fr.IPNDM(), 0.0)(n, 1.0, 0.0), _uniform(n))
    for other in (fr.DataIPNDM(), fr.Euler(), fr.SemiLinearMultistep()):
        torch.testing.assert_close(
            fr.solve(flow, other, x, steps=n).x, fr.solve(plain, other, x, steps=n).x
        )


@pytest.mark.parametrize("kind", KINDS)
def test_fitted_grids_run_with_steps_alone_and_nothing_else_changes(kind):
    solver = fr.IPNDM()
    tau = (1.0, 0.6, 0.25, 0.08, 0.0)
    grids = fr.FittedGrids(solver=repr(solver), times={4: tau})
    flow, _ = _flow(kind, grids=grids)
    plain, _ = _flow(kind)
    assert flow.fitted_grids() is grids and plain.fitted_grids() is None
    x = _x(flow, 1)
    torch.testing.assert_close(
        fr.solve(flow, solver, x, steps=4).x,
        fr.solve(flow, solver, x, grid=torch.tensor(tau, dtype=F64)).x,
    )
    # another step count, another solver: the flow's default
    for s, n in ((fr.IPNDM(), 5), (fr.DataIPNDM(), 4)):
        torch.testing.assert_close(
            fr.solve(flow, s, x, steps=n).x, fr.solve(plain, s, x, steps=n).x
        )


def test_a_grid_fitted_on_a_diffusion_model_is_declared_and_used_by_steps_alone():
    """``fit_grids`` on the user's model, then the model declares its result: ``steps=N`` runs on
    the fitted grid, whose error on other inputs is at most the default grid's (the fit's own
    check, here re-measured against the exact answer)."""
    flow, oracle = _flow("diffusion")
    warm, check = _x(flow, 2), _x(flow, 3)
    solver = fr.DataIPNDM()
    grids = fr.integrate.fit_grids(flow, solver, warm, (5,), x_check=check)
    assert grids is not None
    declared, _ = _flow("diffusion", grids=grids)
    test = _x(flow, 4)
    exact = oracle.exact_map(test)
    fitted = fr.solve(declared, solver, test, steps=5).x
    default = fr.solve(flow, solver, test, steps=5).x
    err = [float((v - exact).norm() / exact.norm()) for v in (fitted, default)]
    assert err[0] < err[1], err


@pytest.mark.parametrize("kind", KINDS)
def test_wrong_declarations_are_refused_with_their_value(kind):
    with pytest.raises(ArgumentTypeError, match=r"grids must be a FittedGrids or None, got"):
        _flow(kind, grids={4: (1.0, 0.0)})
    with pytest.raises(ArgumentTypeError, match=r"spacings keys must be solver classes"):
        _flow(kind, spacings={"IPNDM": fr.Uniform()})
    with pytest.raises(ArgumentTypeError, match=r"spacings\[IPNDM\] must be a Spacing"):
        _flow(kind, spacings={fr.IPNDM: 3})


def test_birds_inner_solve_uses_the_declared_spacing():
    flow, _ = _flow("diffusion", spacings={fr.Euler: fr.Uniform()})
    bird = fr.BlindInversion(flow, solver=fr.Euler(), degradation=lambda x: x, steps=4)
    z = torch.randn(2, 5, generator=torch.Generator().manual_seed(5), dtype=F64)
    expected = fr.solve(flow, fr.Euler(), flow.latent_std * z, grid=_uniform(4)).x
    torch.testing.assert_close(bird.generate(z), expected)
