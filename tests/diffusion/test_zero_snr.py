"""Zero-terminal-SNR schedules (Lin et al. 2024): ``ᾱ_{T−1} = 0``, the last timestep pure noise.

Ground truth is closed form (docs/math.md §8): along the probability flow of a Gaussian prior
``N(c, diag σ_c²)`` the standardised coordinate ``(x̄ − c)/√(σ_c² + σ²)`` of ``x̄ = x/√ᾱ`` is
constant; at ``σ = ∞`` it is the model's input ``x`` itself (``x̄/σ → x``), so pure noise ``x``
maps to ``c + σ_c x``. The flow stands in a finite ``σ_max`` for the infinite level (diffusers'
``2⁻²⁴`` for ``ᾱ``), which moves that answer by ``O(σ_c |c| / σ_max)`` — about ``10⁻⁵`` here.
"""

from __future__ import annotations

import pytest
import torch

import flowrestore as fr
from flowrestore.oracles.diffusion import GaussianDiffusionOracle

from .helpers import F64, cosine_alphas_cumprod


def linear_abar(T: int = 1000) -> torch.Tensor:
    """DDPM's linear β schedule (computed here, independently of the package)."""
    return torch.cumprod(1 - torch.linspace(1e-4, 0.02, T, dtype=F64), 0)


def zsnr_abar(abar: torch.Tensor) -> torch.Tensor:
    """Lin et al.'s Algorithm 1: ``√ᾱ`` shifted to end at 0, scaled to keep its first value."""
    a = abar.sqrt()
    out = ((a - a[-1]) * a[0] / (a[0] - a[-1])) ** 2
    out[-1] = 0.0
    return out


SCHEDULES = {"linear": linear_abar, "cosine": cosine_alphas_cumprod}


def _prior(seed=3, dim=16):
    g = torch.Generator().manual_seed(seed)
    return 0.5 * torch.randn(dim, generator=g, dtype=F64), 0.1 + 0.9 * torch.rand(
        dim, generator=g, dtype=F64
    )


@pytest.mark.parametrize("schedule", list(SCHEDULES))
@pytest.mark.parametrize("ptype", ["v_prediction", "sample"])
def test_pure_noise_reaches_the_infinite_noise_answer(schedule, ptype):
    abar = zsnr_abar(SCHEDULES[schedule]())
    assert float(abar[-1]) == 0.0
    c, sc = _prior()
    oracle = GaussianDiffusionOracle(mean=c, std=sc, alphas_cumprod=abar, prediction_type=ptype)
    flow = fr.DiffusionFlow(oracle, alphas_cumprod=abar, prediction_type=ptype)
    # the infinite level is stood in for by a finite one beyond every trained level
    assert flow.sigma_max > float(flow.sigmas[-2]) and flow.sigma_max >= 4000
    x = torch.randn(6, 16, generator=torch.Generator().manual_seed(4), dtype=F64)
    want = c + sc * x
    got = fr.solve(flow, fr.RK4(), x, steps=100).x
    # the solve is exact for the finite stand-in level (the oracle's map from timestep T − 1) ...
    finite = oracle.exact_map(x)
    assert float(((got - finite).norm(dim=1) / finite.norm(dim=1)).max()) <= 1e-5
    # ... which is the infinite-noise answer up to σ_c c / σ_max (module docstring)
    err = ((got - want).norm(dim=1) / want.norm(dim=1)).max()
    bound = ((sc * c).norm() / flow.sigma_max / want.norm(dim=1)).max()
    assert err <= 1.5 * bound + 1e-6, (float(err), float(bound))
    # a default few-step solve starts as well from pure noise: finite and converging
    errs = []
    for n in (4, 8, 16):
        sol = fr.solve(flow, fr.IPNDM(), x, steps=n).x
        errs.append(float(((sol - want).norm(dim=1) / want.norm(dim=1)).max()))
    assert errs[0] < 0.1 and errs[2] < errs[1] < errs[0], errs


def test_an_epsilon_model_is_refused_on_a_zero_snr_schedule():
    abar = zsnr_abar(linear_abar())
    with pytest.raises(fr.ConfigError, match="epsilon"):
        fr.DiffusionFlow(lambda x, t: x, alphas_cumprod=abar, prediction_type="epsilon")
    with pytest.raises(fr.ConfigError, match="epsilon"):
        GaussianDiffusionOracle(mean=0.0, std=1.0, alphas_cumprod=abar, event_shape=(2,))
    inner = linear_abar().clone()
    inner[500] = 0.0  # only the last level may be infinite
    with pytest.raises(fr.ConfigError, match="strictly inside"):
        fr.DiffusionFlow(lambda x, t: x, alphas_cumprod=inner, prediction_type="v_prediction")


def test_the_infinite_level_stands_in_below_the_previous_one():
    """The stand-in for ``ᾱ = 0`` is diffusers' ``2⁻²⁴``, or half the previous level where that
    is smaller, so the table keeps decreasing: ``σ_max = √((1 − ᾱ)/ᾱ)`` of that level."""
    for prev, stand_in in ((1e-3, 2.0**-24), (1e-8, 0.5e-8)):
        abar = torch.tensor([0.99, 0.5, prev, 0.0], dtype=F64)
        flow = fr.DiffusionFlow(lambda x, t: x, alphas_cumprod=abar, prediction_type="sample")
        assert flow.sigma_max == pytest.approx(((1 - stand_in) / stand_in) ** 0.5, rel=1e-12)


def test_the_package_rescaling_is_lin_et_al():
    from flowrestore.oracles.diffusion import zero_terminal_snr

    for make in SCHEDULES.values():
        abar = make()
        got, want = zero_terminal_snr(abar), zsnr_abar(abar)
        assert float(got[-1]) == 0.0 and float(got[0]) == pytest.approx(float(abar[0]), rel=1e-12)
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-15)
