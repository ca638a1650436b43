"""Review: DiracSDE's guidance options are checked as documented, before any evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import flowrestore as fr
from flowrestore.errors import ConfigError, ShapeError

SIGMA = fr.schedules.Geometric(0.01, 0.05)


def _family():
    return fr.degradations.GaussianBlurFamily(kernel_size=5, width=fr.schedules.Linear(0.3, 1.0))


def _counted_phi():
    calls = {"n": 0}

    def phi(y, t):
        calls["n"] += 1
        return 0.9 * y

    return phi, calls


@pytest.mark.parametrize("eta", [np.float32(0.5), np.float64(0.5), np.int64(1)])
def test_a_numpy_guidance_strength_is_a_number(eta):
    phi, _ = _counted_phi()
    sde = fr.DiracSDE(phi, _family(), SIGMA, guidance=eta)
    assert sde.guidance == float(eta)
    with pytest.raises(ConfigError, match="guidance"):
        fr.DiracSDE(phi, _family(), SIGMA, guidance=np.float32(-1.0))


@pytest.mark.parametrize("solver", [fr.DiracStep(), fr.EulerMaruyama()])
def test_a_guidance_callable_of_the_wrong_shape_is_refused_before_any_evaluation(solver):
    """``guidance=eta(t)`` returning 3 values for a batch of 2 used to be found after the first
    predictor evaluation and its gradient, part-way into the solve."""
    phi, calls = _counted_phi()
    y = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    sde = fr.DiracSDE(phi, _family(), SIGMA, guidance=lambda t: torch.ones(3))
    with pytest.raises(ShapeError, match=r"guidance.*\[B\]=\[2\].*shape \(3,\)"):
        fr.solve(sde, solver, y, steps=3, generator=torch.Generator().manual_seed(0))
    assert calls["n"] == 0
    ok = fr.DiracSDE(phi, _family(), SIGMA, guidance=lambda t: 0.5 * t)
    sol = fr.solve(ok, solver, y, steps=3, generator=torch.Generator().manual_seed(0))
    assert bool(sol.x.isfinite().all())


def test_a_numpy_small_step_is_a_number():
    assert fr.DiracStep(increment="small_look_ahead", small_step=np.float32(0.01)).small_step == (
        pytest.approx(0.01)
    )
    with pytest.raises(ConfigError, match="small_step"):
        fr.DiracStep(small_step=np.float32(2.0))


def test_error_scaled_guidance_at_a_zero_residual_has_a_finite_gradient():
    """``‖ỹ − A_1(Φ)‖`` is not differentiable at 0: a differentiable guided solve whose first
    residual is exactly 0 (Φ reproduces the measurement) gave NaN gradients, silently (the
    forward was finite). The guidance there is 0 and so is its derivative."""
    y = torch.rand(2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    sde = fr.DiracSDE(
        lambda v, t: v.clone(), lambda x, t: x, SIGMA, guidance=0.5, guidance_scaling="error"
    )
    y0 = y.clone().requires_grad_(True)
    sol = fr.solve(
        sde,
        fr.DiracStep(),
        y0,
        steps=3,
        generator=torch.Generator().manual_seed(0),
        differentiable=True,
    )
    assert float(sol.records["data_consistency"][0].abs().max()) == 0.0
    sol.x.sum().backward()
    assert bool(torch.isfinite(y0.grad).all())
