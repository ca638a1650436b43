"""BIRD on the Gaussian generative oracle (docs/math.md §5): blind Gaussian deblurring finds the
width.

Prior ``N(c, σ_c²)`` with ``c`` the cameraman (32×32, sharp) and ``σ_c = 0.02``; ``Ψ`` = 5 Euler
steps of the exact InDI flow on a ``Power(2)`` grid. A batch of three images blurred with three
different widths (per-sample unknowns) plus noise ``0.01``; every width starts wrong. Both gradient
modes must find each width within 5% and fit the data down to the noise level.
"""

from __future__ import annotations

import pytest
import torch
from _inversion_common import camera_oracle

import flowrestore as fr
from flowrestore.inversion import BlindInversion, Param

NOISE = 0.01
WIDTHS = torch.tensor([0.7, 1.5, 2.5], dtype=torch.float64)
STARTS = torch.tensor([2.0, 1.0, 1.0], dtype=torch.float64)


def _problem(well_specified: bool):
    oracle, flow = camera_oracle(std=0.02)
    g = torch.Generator().manual_seed(0)
    z_true = oracle.sample_latent(len(WIDTHS), g)
    if well_specified:  # the truth is an output of the same few-step map that is inverted
        x_true = fr.solve(flow, fr.Euler(), z_true, steps=5, spacing=fr.Power(2.0)).x
    else:  # a sample of the prior itself
        x_true = oracle.exact_map(z_true)
    y = fr.degradations.GaussianBlur(WIDTHS, kernel_size=31)(x_true)
    y = y + NOISE * torch.randn(y.shape, generator=g, dtype=y.dtype)
    return flow, x_true, y


def _invert(flow, y, mode, iterations=300):
    inv = BlindInversion(
        flow,
        solver=fr.Euler(),
        steps=5,
        spacing=fr.Power(2.0),
        degradation=fr.BlindOperator(
            fr.degradations.GaussianBlur, width=Param(init=1.0, bounds=(0.1, 5.0))
        ),
        iterations=iterations,
        lr_latent=1e-2,
        lr_degradation=2e-2,
        gradient=mode,
    )
    return inv.run(y, generator=torch.Generator().manual_seed(1), params={"width": STARTS})


@pytest.mark.parametrize("mode", ["exact", "detached"])
def test_blind_deblurring_recovers_each_width(mode):
    flow, x_true, y = _problem(well_specified=True)
    res = _invert(flow, y, mode)
    assert res.gradient == mode
    rel = (res.params["width"] - WIDTHS).abs() / WIDTHS
    assert (rel < 0.05).all(), res.params["width"]
    # the data residual reaches the noise level (not below it by much either: no over-fitting)
    assert (res.residual_rms < 1.1 * NOISE).all(), res.residual_rms
    assert (res.residual_rms > 0.8 * NOISE).all(), res.residual_rms
    # the restoration is much closer to the truth than the observation
    err = (res.x - x_true).flatten(1).square().mean(1).sqrt()
    obs = (y - x_true).flatten(1).square().mean(1).sqrt()
    assert (err < 0.5 * obs).all(), (err, obs)
    # history: one row per iterate, the first is the start
    assert res.history["width"].shape == (res.iterations + 1, 3)
    torch.testing.assert_close(res.history["width"][0], STARTS)
    torch.testing.assert_close(res.history["width"][-1], res.params["width"])
    assert (res.history["loss"][-1] < 0.1 * res.history["loss"][0]).all()


@pytest.mark.parametrize("mode", ["exact", "detached"])
def test_blind_deblurring_of_prior_samples(mode):
    """Misspecified case: the truth is drawn from the prior, not from the 5-step map."""
    flow, _, y = _problem(well_specified=False)
    res = _invert(flow, y, mode)
    rel = (res.params["width"] - WIDTHS).abs() / WIDTHS
    assert (rel < 0.05).all(), res.params["width"]
    assert (res.residual_rms < 1.25 * NOISE).all(), res.residual_rms


def test_batched_equals_one_at_a_time():
    """The objective is a sum of per-image terms and Adam is elementwise: images are independent."""
    flow, _, y = _problem(well_specified=True)
    z0 = torch.randn(y.shape, generator=torch.Generator().manual_seed(3), dtype=y.dtype)
    inv = BlindInversion(
        flow,
        solver=fr.Euler(),
        steps=5,
        spacing=fr.Power(2.0),
        degradation=fr.BlindOperator(
            fr.degradations.GaussianBlur, width=Param(init=1.0, bounds=(0.1, 5.0))
        ),
        iterations=40,
        lr_degradation=2e-2,
        gradient="exact",
    )
    batched = inv.run(y, latent=z0, params={"width": STARTS})
    for i in range(len(WIDTHS)):
        single = inv.run(y[i : i + 1], latent=z0[i : i + 1], params={"width": STARTS[i : i + 1]})
        torch.testing.assert_close(
            single.params["width"][0], batched.params["width"][i], rtol=1e-9, atol=1e-12
        )
        torch.testing.assert_close(single.latent[0], batched.latent[i], rtol=1e-9, atol=1e-12)
