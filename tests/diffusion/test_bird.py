"""BIRD through a diffusion model (docs/math.md §5, §8): ``BlindInversion`` takes a
``DiffusionFlow`` as it is.

The exact ε-model of the prior ``N(camera, 0.02²)`` under DDPM's linear schedule; ``Ψ`` = 5 Euler
(DDIM) steps on the flow's default grid from the noise ``x_T``. Three images blurred with three
widths (per-sample unknowns) plus noise 0.01, every width starting wrong: both gradient modes must
find each width within 5 % and fit the data down to the noise level — as on the InDI generative
oracle (tests/inversion/test_blind_oracle.py); with the truth a prior sample instead of a Ψ output
too (``-m slow``). A free motion-blur kernel on the simplex moves most of the way to the truth.
"""

from __future__ import annotations

import pytest
import torch

import flowrestore as fr
from flowrestore.degradations import GaussianBlur, MotionBlur, motion_kernel
from flowrestore.inversion import BlindInversion, Param
from flowrestore.oracles import GaussianDiffusionOracle
from flowrestore.oracles.diffusion import linear_alphas_cumprod

from .helpers import camera_mean

NOISE = 0.01
WIDTHS = torch.tensor([0.7, 1.5, 2.5], dtype=torch.float64)
STARTS = torch.tensor([2.0, 1.0, 1.0], dtype=torch.float64)


def _problem(well_specified: bool, n: int = 3, seed: int = 0):
    abar = linear_alphas_cumprod()
    oracle = GaussianDiffusionOracle(mean=camera_mean(), std=0.02, alphas_cumprod=abar)
    flow = fr.DiffusionFlow(oracle, alphas_cumprod=abar, prediction_type="epsilon")
    g = torch.Generator().manual_seed(seed)
    z_true = oracle.sample_latent(n, g)
    if well_specified:  # the truth is an output of the few-step map that is inverted
        x_true = fr.solve(flow, fr.Euler(), z_true, steps=5).x
    else:  # a sample of the prior itself
        x_true = oracle.exact_map(z_true)
    return flow, x_true, g


def _blind_width(flow, mode, iterations=200):
    return BlindInversion(
        flow,
        solver=fr.Euler(),
        steps=5,
        degradation=fr.BlindOperator(GaussianBlur, width=Param(init=1.0, bounds=(0.1, 5.0))),
        iterations=iterations,
        lr_latent=1e-2,
        lr_degradation=2e-2,
        gradient=mode,
    )


@pytest.mark.parametrize(
    "well_specified", [True, pytest.param(False, marks=pytest.mark.slow, id="prior-sample")]
)
@pytest.mark.parametrize("mode", ["exact", "detached"])
def test_blind_deblurring_recovers_each_width(mode, well_specified):
    flow, x_true, g = _problem(well_specified)
    y = GaussianBlur(WIDTHS, kernel_size=31)(x_true)
    y = y + NOISE * torch.randn(y.shape, generator=g, dtype=y.dtype)
    res = _blind_width(flow, mode, 200 if well_specified else 300).run(
        y, generator=torch.Generator().manual_seed(1), params={"width": STARTS}
    )
    rel = (res.params["width"] - WIDTHS).abs() / WIDTHS
    assert (rel < 0.05).all(), res.params["width"]
    assert (res.residual_rms < 1.25 * NOISE).all(), res.residual_rms
    assert (res.residual_rms > 0.8 * NOISE).all(), res.residual_rms
    err = (res.x - x_true).flatten(1).square().mean(1).sqrt()
    obs = (y - x_true).flatten(1).square().mean(1).sqrt()
    assert (err < 0.5 * obs).all(), (err, obs)
    # Ψ's output is the model's clean image: the same range as the prior's samples
    assert abs(float(res.x.mean()) - float(x_true.mean())) < 0.01


def test_blind_motion_kernel_on_the_simplex():
    """A free 7×7 kernel (``BlindOperator(MotionBlur, kernel=Param(..., constraint="simplex"))``)
    from a flat start: every iterate is a kernel, the data misfit falls and the kernel moves most of
    the way to the camera-shake kernel (a free kernel is not fully identified in 150 iterations)."""
    flow, x_true, g = _problem(True, n=2, seed=3)
    kernels = motion_kernel(7, 0.6, generator=torch.Generator().manual_seed(4), batch=2)
    kernels = kernels.to(torch.float64)
    y = MotionBlur(kernels)(x_true)
    y = y + NOISE * torch.randn(y.shape, generator=g, dtype=y.dtype)
    seen = []
    inv = BlindInversion(
        flow,
        solver=fr.Euler(),
        steps=5,
        degradation=fr.BlindOperator(
            MotionBlur, kernel=Param(init=torch.ones(7, 7), constraint="simplex")
        ),
        iterations=150,
        lr_latent=1e-2,
        lr_degradation=3e-2,
        gradient="detached",
    )
    res = inv.run(
        y,
        generator=torch.Generator().manual_seed(5),
        callback=lambda k, s: seen.append(s["params"]["kernel"].clone()),
    )
    assert len(seen) == 150 and all(bool((v >= 0).all()) for v in seen)
    sums = torch.stack(seen).sum((-1, -2))
    torch.testing.assert_close(sums, torch.ones_like(sums))
    start_err = (1 / 49 - kernels).abs().sum((-1, -2))
    err = (res.params["kernel"] - kernels).abs().sum((-1, -2))
    assert (err < 0.6 * start_err).all() and err.mean() < 0.5 * start_err.mean(), (err, start_err)
    assert (res.history["mse"][-1] < 0.25 * res.history["mse"][0]).all()
