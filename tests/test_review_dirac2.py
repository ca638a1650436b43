"""Review (second pass): DiracSDE's public calls, guidance and the bound copy a solve integrates."""

from __future__ import annotations

import math

import pytest
import torch

import flowrestore as fr
from flowrestore.errors import ConfigError, PredictorOutputError

LO, HI = 0.01, 0.05
SIGMA = fr.schedules.Geometric(LO, HI)


def _identity(x, t):
    return x


def _images(b=2, seed=0, dtype=torch.float64):
    return torch.rand(b, 1, 6, 6, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _sigma2(t: float) -> float:
    """``σ_t² = (σ_min^{1−t} σ_max^t)²`` in float64 arithmetic."""
    return (LO ** (1 - t) * HI**t) ** 2


@pytest.mark.parametrize("t", [0.3, 1])
def test_a_real_number_time_is_taken_in_the_states_precision(t):
    """``flow.score(0.3, y)`` on a float64 state computed ``σ_t`` in float32 (the default dtype):
    a relative error of ~1e-7 in the score and a float32 diffusion for a float64 state. For
    ``A_t = I`` and ``Φ = 0.9 y`` the score is ``−0.1 y/σ_t²`` and
    ``g² = 2 ln(σ_max/σ_min) σ_t²``."""
    y = _images()
    sde = fr.DiracSDE(lambda x, tt: 0.9 * x, _identity, SIGMA)
    torch.testing.assert_close(sde.score(t, y), -0.1 * y / _sigma2(t), rtol=1e-13, atol=0)
    g = sde.diffusion(t, y)
    assert g.dtype == torch.float64
    want = math.sqrt(2 * math.log(HI / LO) * _sigma2(t))
    assert float(g) == pytest.approx(want, rel=1e-13)
    # the drift f = ∂_t A (= 0) − g² s
    torch.testing.assert_close(
        sde.drift(t, y), -(want**2) * (-0.1 * y / _sigma2(t)), rtol=1e-13, atol=0
    )


def test_denoise_refuses_a_time_outside_the_unit_interval_before_calling_phi():
    """``denoise`` passed ``t = 1.5`` to the predictor unchecked (and ``drift`` evaluated the
    predictor before its first time check refused it)."""
    calls = []

    def phi(x, t):
        calls.append(t)
        return x

    sde = fr.DiracSDE(phi, _identity, SIGMA)
    y = _images()
    for call in (
        lambda: sde.denoise(1.5, y),
        lambda: sde.denoise(torch.tensor([0.5, -0.1], dtype=torch.float64), y),
        lambda: sde.drift(torch.tensor(1.5, dtype=torch.float64), y),
        lambda: sde.estimate(-0.5, y),
    ):
        with pytest.raises(ConfigError, match=r"t must lie in \[0, 1\]"):
            call()
    assert calls == []


@pytest.mark.parametrize(
    "phi",
    [
        pytest.param(lambda x, t: (0.9 * x).detach(), id="detached"),
        pytest.param(lambda x, t: torch.zeros_like(x), id="ignores-y"),
    ],
)
@pytest.mark.parametrize("solver", [fr.DiracStep(), fr.EulerMaruyama()])
def test_guidance_through_a_predictor_without_a_gradient_is_a_typed_error(phi, solver):
    """Guidance differentiates ``‖ỹ − A_1(Φ(y))‖²`` with respect to ``y``; a predictor run under
    ``no_grad`` (or detached) failed with torch's bare "element 0 of tensors does not require
    grad", which names neither the guidance nor the predictor."""
    y = _images()
    sde = fr.DiracSDE(phi, _identity, SIGMA, guidance=0.2)
    with pytest.raises(PredictorOutputError, match=r"guidance=0\.2 .*phi.*guidance=None"):
        fr.solve(sde, solver, y, steps=2, generator=torch.Generator().manual_seed(0))
    # in a differentiable solve too (the measurement requires grad, the predictor's output not)
    obs = _images(seed=1).requires_grad_(True)
    sde = fr.DiracSDE(phi, _identity, SIGMA, guidance=0.2, observation=obs)
    with pytest.raises(PredictorOutputError, match="guidance"):
        fr.solve(sde, solver, y, steps=2, differentiable=True, seeds=[0, 1])


def test_a_guidance_strength_past_floats_range_is_a_config_error():
    """``guidance=10**400`` raised ``OverflowError`` from ``math.isfinite``."""
    with pytest.raises(ConfigError, match="guidance must be a number >= 0"):
        fr.DiracSDE(_identity, _identity, SIGMA, guidance=10**400)
    assert fr.DiracSDE(_identity, _identity, SIGMA, guidance=10**3).guidance == 1000.0


def test_the_measurement_is_converted_to_the_state_once_per_solve():
    """A float64 (or other-device) ``observation=`` was converted on every step; the copy a solve
    integrates holds it in the state's dtype (the original flow keeps its own)."""
    obs = _images(seed=3)
    y = _images(seed=4, dtype=torch.float32)
    sde = fr.DiracSDE(lambda x, t: 0.9 * x, _identity, SIGMA, observation=obs)
    bound = sde.for_solve(y, 1.0)
    assert bound.observation.dtype == torch.float32 and sde.observation.dtype == torch.float64
    torch.testing.assert_close(bound.observation, obs.float(), rtol=0, atol=0)
    # and the solve's data-consistency trace is the same as with a float32 measurement
    grid = torch.tensor([1.0, 0.5, 0.0])
    kw = dict(grid=grid, seeds=[1, 2])
    a = fr.solve(sde, fr.DiracStep(), y, **kw)
    b = fr.solve(
        fr.DiracSDE(lambda x, t: 0.9 * x, _identity, SIGMA, observation=obs.float()),
        fr.DiracStep(),
        y,
        **kw,
    )
    torch.testing.assert_close(a.records["data_consistency"], b.records["data_consistency"])


@pytest.mark.parametrize(
    ("state", "cast"), [(torch.float32, torch.float64), (torch.float64, torch.float32)]
)
def test_a_family_that_changes_the_states_dtype_is_refused_before_any_evaluation(state, cast):
    """``A(x, t)`` returning another dtype was accepted: a float32 solve came back float64 (the
    step's ``A_t(Φ)`` promoted the state), a float64 solve silently had float32 increments."""
    calls = []

    def phi(x, t):
        calls.append(t)
        return 0.9 * x

    def A(x, t):
        return (x * (1 - 0.5 * t.reshape(-1, 1, 1, 1))).to(cast)

    sde = fr.DiracSDE(phi, A, SIGMA)
    with pytest.raises(PredictorOutputError, match=rf"keep the state's dtype.*{cast}"):
        fr.solve(sde, fr.DiracStep(), _images(dtype=state), steps=2, seeds=[0, 1])
    assert calls == []
