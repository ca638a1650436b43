"""BIRD through a flow-matching model and an EDM denoiser (docs/math.md §5, §9): ``BlindInversion``
takes ``FlowMatchingFlow`` and ``DenoiserFlow`` as they are, the latent the noise at ``t = 1``.

The exact models of the prior ``N(camera, 0.02²)`` (:class:`~flowrestore.oracles.
GaussianFlowMatchingOracle`, :class:`~flowrestore.oracles.GaussianDenoiserOracle` with EDM's
``σ_max = 80``, ``σ_min = 0.002``); ``Ψ`` = 5 Euler steps on each flow's default grid from the
model's own noise: ``x_1 = z`` for flow matching, ``σ_max z`` for the denoiser (the flows declare
it: ``latent_std``). As for the diffusion model (tests/diffusion/test_bird.py): three images
blurred with three widths (per-sample unknowns) plus noise 0.01, every width starting wrong; both
gradient modes must find each width within 5 % and fit the data down to the noise level; with the
truth a prior sample instead of a Ψ output too (``-m slow``).
"""

from __future__ import annotations

import pytest
import torch
from _inversion_common import camera_mean, check_blind_result

import flowrestore as fr
from flowrestore.degradations import GaussianBlur
from flowrestore.inversion import BlindInversion, Param
from flowrestore.oracles import GaussianDenoiserOracle, GaussianFlowMatchingOracle

NOISE = 0.01
STD = 0.02
WIDTHS = torch.tensor([0.7, 1.5, 2.5], dtype=torch.float64)
STARTS = torch.tensor([2.0, 1.0, 1.0], dtype=torch.float64)
SIGMA_MAX = 80.0


def _model(kind: str):
    """``(flow, exact map from the latent z to the ODE's t = 0 image)``."""
    c = camera_mean()
    if kind == "flow_matching":
        oracle = GaussianFlowMatchingOracle(mean=c, std=STD)
        return fr.FlowMatchingFlow(oracle), oracle.exact_map
    oracle = GaussianDenoiserOracle(mean=c, std=STD)
    flow = fr.DenoiserFlow(oracle, sigma_max=SIGMA_MAX, sigma_min=0.002)
    return flow, lambda z: oracle.exact_map(SIGMA_MAX * z, SIGMA_MAX)


def _inversion(flow, mode, iterations=200, steps=5):
    return BlindInversion(
        flow,
        solver=fr.Euler(),
        steps=steps,
        degradation=fr.BlindOperator(GaussianBlur, width=Param(init=1.0, bounds=(0.1, 5.0))),
        iterations=iterations,
        lr_latent=1e-2,
        lr_degradation=2e-2,
        gradient=mode,
    )


@pytest.mark.parametrize("kind", ["flow_matching", "denoiser"])
def test_the_latent_is_the_models_noise(kind):
    """``Ψ(z)`` starts from ``latent_std · z``: with 400 steps its image is the exact flow map of
    that noise to 5 % (a start of ``z`` alone would put the denoiser's image at the prior mean)."""
    flow, exact = _model(kind)
    inv = _inversion(flow, "exact", steps=400)
    assert inv.latent_std == (SIGMA_MAX if kind == "denoiser" else 1.0)
    z = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    torch.testing.assert_close(inv.start(z), inv.latent_std * z)
    x, want = inv.generate(z), exact(z)
    c = camera_mean()
    assert float((x - want).norm()) < 0.05 * float((want - c).norm())
    spread = float(((x - c) / STD).std())  # a prior sample: standardised spread 1
    assert 0.9 < spread < 1.1, spread
    unit = BlindInversion(flow, solver=fr.Euler(), steps=5, degradation=lambda v: v, latent_std=1.0)
    assert unit.latent_std == 1.0


@pytest.mark.parametrize(
    "well_specified", [True, pytest.param(False, marks=pytest.mark.slow, id="prior-sample")]
)
@pytest.mark.parametrize("mode", ["exact", "detached"])
@pytest.mark.parametrize("kind", ["flow_matching", "denoiser"])
def test_blind_deblurring_recovers_each_width(kind, mode, well_specified):
    flow, exact = _model(kind)
    g = torch.Generator().manual_seed(0)
    z_true = torch.randn(len(WIDTHS), 1, 32, 32, generator=g, dtype=torch.float64)
    inv = _inversion(flow, mode, 200 if well_specified else 300)
    x_true = inv.generate(z_true) if well_specified else exact(z_true)
    y = GaussianBlur(WIDTHS, kernel_size=31)(x_true)
    y = y + NOISE * torch.randn(y.shape, generator=g, dtype=y.dtype)
    res = inv.run(y, generator=torch.Generator().manual_seed(1), params={"width": STARTS})
    check_blind_result(res, x_true, y, WIDTHS, NOISE)


def test_latent_std_is_checked():
    flow, _ = _model("flow_matching")
    for bad in (0.0, -1.0, float("nan"), "1"):
        with pytest.raises(fr.ConfigError, match="latent_std"):
            BlindInversion(
                flow, solver=fr.Euler(), steps=2, degradation=lambda v: v, latent_std=bad
            )
