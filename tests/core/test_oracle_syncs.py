"""The exact oracles (diffusion, flow-matching and EDM models of Gaussian and Gaussian-mixture
priors; InDI posterior means) read nothing on the host when evaluated (issue 17): a solve of an
oracle's flow never waits for the device and compiles whole, like a solve of a user's model.

A timestep tensor's values are not checked on the host; a non-finite entry makes that sample's
output NaN (the solve's finite check reports it), a non-finite number is refused at once.
"""

from __future__ import annotations

import math

import pytest
import torch
from syncs import SyncCounter

import flowrestore as fr
from flowrestore.errors import ConfigError, NonFiniteError
from flowrestore.oracles.diffusion import GaussianDiffusionOracle, linear_alphas_cumprod
from flowrestore.oracles.flow_matching import GaussianDenoiserOracle, GaussianFlowMatchingOracle
from flowrestore.oracles.gaussian_mixture import GaussianMixtureOracle

F64 = torch.float64
NAMES = [
    "diffusion",
    "flow-matching",
    "denoiser",
    "mixture-diffusion",
    "mixture-flow-matching",
    "mixture-denoiser",
]
MEAN = torch.linspace(-0.5, 0.5, 6, dtype=F64)
STD = torch.linspace(0.2, 1.0, 6, dtype=F64)


def _flows():
    diff = GaussianDiffusionOracle(
        mean=MEAN, std=STD, alphas_cumprod=linear_alphas_cumprod(), prediction_type="epsilon"
    )
    fm = GaussianFlowMatchingOracle(mean=MEAN, std=STD)
    den = GaussianDenoiserOracle(mean=MEAN, std=STD)
    mix = GaussianMixtureOracle(means=torch.stack([MEAN, -MEAN, 2 * MEAN]), stds=STD)
    mix_diff = mix.diffusion_model(alphas_cumprod=diff.alphas_cumprod)
    mix_fm = mix.flow_matching_model()
    return {
        "diffusion": (fr.DiffusionFlow(diff, alphas_cumprod=diff.alphas_cumprod), diff),
        "flow-matching": (fr.FlowMatchingFlow(fm), fm),
        "denoiser": (fr.DenoiserFlow(den, sigma_max=80.0, sigma_min=0.002), den),
        "mixture-diffusion": (
            fr.DiffusionFlow(mix_diff, alphas_cumprod=diff.alphas_cumprod),
            mix_diff,
        ),
        "mixture-flow-matching": (fr.FlowMatchingFlow(mix_fm), mix_fm),
        "mixture-denoiser": (fr.DenoiserFlow(mix, sigma_max=80.0, sigma_min=0.002), mix),
    }


def _x(seed=0):
    return torch.randn(4, 6, generator=torch.Generator().manual_seed(seed), dtype=F64)


@pytest.mark.parametrize("name", NAMES)
def test_an_oracle_evaluation_reads_nothing_on_the_host(name):
    _, oracle = _flows()[name]
    x, level = _x(), torch.tensor([5.0, 50.0, 0.5, 20.0], dtype=F64)
    oracle(x, level)  # warm-up
    with SyncCounter() as sc:
        oracle(x, level)
        oracle(x, level[0])
    assert sc.count == 0, dict(sc.ops)


@pytest.mark.parametrize("name", NAMES)
def test_a_fixed_step_solve_of_an_oracle_flow_has_no_sync_in_its_steps(name):
    flow, _ = _flows()[name]
    x = _x()
    fr.solve(flow, fr.Heun(), x, steps=3)
    with SyncCounter() as few:
        fr.solve(flow, fr.Heun(), x, steps=3)
    with SyncCounter() as many:
        fr.solve(flow, fr.Heun(), x, steps=9)
    # what a solve reads on the host does not grow with its steps
    assert many.count == few.count, (dict(few.ops), dict(many.ops))


@pytest.mark.parametrize("name", NAMES)
def test_a_solve_of_an_oracle_flow_compiles_whole(name):
    flow, _ = _flows()[name]
    x = _x(1)
    eager = fr.solve(flow, fr.Euler(), x, steps=4).x
    torch._dynamo.reset()
    comp = fr.solve(flow, fr.Euler(), x, steps=4, compile={"backend": "eager"})
    torch.testing.assert_close(comp.x, eager, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_a_non_finite_timestep_gives_nan_for_its_sample_only(name):
    _, oracle = _flows()[name]
    x = _x(2)
    level = torch.tensor([5.0, math.nan, math.inf, 0.5], dtype=F64)
    out = oracle(x, level)
    assert torch.isnan(out[1:3]).all()
    torch.testing.assert_close(out[[0, 3]], oracle(x[[0, 3]], level[[0, 3]]))
    with pytest.raises(ConfigError, match="timestep must be finite, got nan"):
        oracle(x, math.nan)


def test_a_non_finite_level_inside_a_solve_is_reported():
    flow, oracle = _flows()["diffusion"]

    def broken(x, k):
        return oracle(x, k * math.inf)

    bad = fr.DiffusionFlow(broken, alphas_cumprod=oracle.alphas_cumprod)
    with pytest.raises(NonFiniteError):
        fr.solve(bad, fr.Euler(), _x(), steps=3)


def _indi_oracles():
    g = fr.oracles.GaussianOracle(mean=MEAN, std=STD, noise_std=0.8)
    centers = torch.randn(5, 6, generator=torch.Generator().manual_seed(3), dtype=F64)
    m = fr.oracles.DiracMixture(centers=centers, noise_std=0.5)
    gen = fr.oracles.GaussianGenerativeOracle(mean=MEAN, std=STD)
    return {"gaussian": g, "mixture": m, "generative": gen}


@pytest.mark.parametrize("name", ["gaussian", "mixture", "generative"])
def test_an_indi_oracle_posterior_mean_reads_nothing_on_the_host(name):
    oracle = _indi_oracles()[name]
    x, t = _x(3), torch.tensor([0.9, 0.5, 0.1, 0.02], dtype=F64)
    oracle.posterior_mean(x, t)
    with SyncCounter() as sc:
        oracle.posterior_mean(x, t)
        oracle.posterior_mean(x, t[1])
    assert sc.count == 0, dict(sc.ops)


@pytest.mark.parametrize("name", ["gaussian", "mixture", "generative"])
def test_an_indi_oracle_time_outside_the_unit_interval_gives_nan_for_its_sample_only(name):
    oracle = _indi_oracles()[name]
    x, t = _x(4), torch.tensor([0.9, 1.5, -0.1, 0.3], dtype=F64)
    out = oracle.posterior_mean(x, t)
    assert torch.isnan(out[1:3]).all()
    torch.testing.assert_close(out[[0, 3]], oracle.posterior_mean(x[[0, 3]], t[[0, 3]]))
    with pytest.raises(ConfigError, match=r"t must lie in \[0, 1\], got 1.5"):
        oracle.posterior_mean(x, 1.5)


def test_an_indi_solve_of_the_gaussian_oracle_compiles_whole():
    flow = fr.InDIFlow(_indi_oracles()["gaussian"].posterior_mean)
    y = _x(5)
    eager = fr.solve(flow, fr.Heun(), y, steps=4).x
    torch._dynamo.reset()
    comp = fr.solve(flow, fr.Heun(), y, steps=4, compile={"backend": "eager"})
    torch.testing.assert_close(comp.x, eager, rtol=1e-12, atol=1e-12)


def test_the_closed_form_solutions_still_refuse_a_time_outside_the_unit_interval():
    """Ground truth, never evaluated inside a solve: an out-of-range time tensor is refused."""
    x, bad = _x(6), torch.tensor([0.5, 1.5, 0.2, 0.1], dtype=F64)
    for name in ("gaussian", "generative"):
        oracle = _indi_oracles()[name]
        with pytest.raises(ConfigError, match=r"t must lie in \[0, 1\]"):
            oracle.ode_solution(x, bad)
        assert torch.isfinite(oracle.ode_solution(x, bad.clamp(max=1.0))).all()
