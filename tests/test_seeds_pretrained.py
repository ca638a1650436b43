"""README's claim about ``seeds=`` (Dirac section), on a real float32 U-Net.

The noise a sample receives is bit-identical in any batch (the per-sample streams do not depend
on the batch), and its restoration agrees across batch compositions up to the rounding of batched
kernels: within 1e-5 with the shipped ``dirac-deblur`` predictor.
"""

from __future__ import annotations

import torch

import flowrestore as fr
from flowrestore.noise import PerSampleNoise
from flowrestore.pretrained import degrade_for, flow_for


def test_per_sample_noise_is_bit_identical_in_any_batch():
    t0, t1 = torch.tensor(1.0), torch.tensor(0.8)
    full = PerSampleNoise([7, 8, 9, 10]).increment(t0, t1, torch.empty(4, 3, 16, 16))
    alone = PerSampleNoise([9]).increment(t0, t1, torch.empty(1, 3, 16, 16))
    assert torch.equal(full[2:3], alone)


def test_seeded_dirac_restoration_agrees_across_batches_on_the_unet():
    model = fr.pretrained("dirac-deblur")
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    y = degrade_for(model, x, generator=torch.Generator().manual_seed(1))
    sde = flow_for(model)
    seeds = [21, 22, 23, 24]
    full = fr.solve(sde, fr.DiracStep(), y, steps=5, seeds=seeds).x
    alone = fr.solve(sde, fr.DiracStep(), y[2:3], steps=5, seeds=seeds[2:3]).x
    pair = fr.solve(sde, fr.DiracStep(), y[[3, 1]], steps=5, seeds=[24, 22]).x
    assert full.dtype == torch.float32
    torch.testing.assert_close(alone, full[2:3], rtol=0, atol=1e-5)
    torch.testing.assert_close(pair, full[[3, 1]], rtol=0, atol=1e-5)
    other = fr.solve(sde, fr.DiracStep(), y[2:3], steps=5, seeds=[99]).x
    assert (other - full[2:3]).abs().max() > 1e-3  # the seed matters
