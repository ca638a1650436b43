"""Why a trained InDI predictor's flow declares no spacing unless its own record does
(``python -m benchmarks.indi_generic``, issue 16): the spacing that suits the shipped deblurring
and super-resolution predictors loses on a denoising predictor that chose nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import flowrestore as fr

HELDOUT = Path(__file__).resolve().parents[2] / "benchmarks" / "heldout-indi"


def test_the_shared_rule_takes_the_best_worse_model_mean_and_ties_go_to_the_earlier():
    from benchmarks import indi_generic as G
    from benchmarks.indi_spacing import candidates

    names = list(candidates())
    res = {}
    for m, level, peak in (("a", 50.0, 2), ("b", 40.0, 5)):  # b is the worse model everywhere
        for i, c in enumerate(names):
            for s in G.SOLVERS:
                res[(m, c, s)] = {n: level - abs(i - peak) for n in (3, 4, 5)}
    assert set(G.choose(res).values()) == {names[5]}
    for s in G.SOLVERS:  # an exact tie on the worse model goes to the earlier candidate
        res[("b", names[6], s)] = dict(res[("b", names[5], s)])
    assert set(G.choose(res).values()) == {names[5]}
    assert G.models(res) == ["a", "b"]


def _crop():
    import skimage.data

    im = torch.from_numpy(skimage.data.stereo_motorcycle()[1][200:248, 300:348]).float() / 255.0
    return im.permute(2, 0, 1)[None].contiguous()


@pytest.mark.parametrize("solver", [fr.Euler, fr.IPNDM, fr.DataIPNDM])
def test_a_denoising_checkpoint_declares_nothing_and_uniform_steps_suit_it(solver):
    """The held-out denoising predictor (``benchmarks/heldout-indi/indi-denoise.ckpt``), loaded as
    ``flowrestore restore --checkpoint`` loads a user's checkpoint, declares no spacing; on a crop
    that neither trained nor chose anything its uniform steps land closer to a 200-evaluation
    reference at 6 evaluations than the ``StartRefined(rho=3)`` the shipped deblurring predictor
    declares — and the shipped predictor, stripped of its declaration, the other way round."""
    from flowrestore.pretrained import degrade_for, flow_for, pretrained
    from flowrestore.restore import load_model

    sr3 = fr.StartRefined(rho=3.0, closing_pair=False)
    gains = {}
    for name, model in (
        ("denoise", load_model(checkpoint=HELDOUT / "indi-denoise.ckpt")),
        ("deblur", pretrained("indi-deblur")),
    ):
        flow = flow_for(model, grids=None, spacings=None) if name == "deblur" else flow_for(model)
        assert flow.spacings == {}
        y = degrade_for(model, _crop(), generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            ref = fr.solve(flow, fr.RK4(), y, steps=50, spacing=fr.Power(2.0)).x.clamp(0, 1)
            plain = fr.solve(flow, solver(), y, steps=6).x.clamp(0, 1)
            start = fr.solve(flow, solver(), y, steps=6, spacing=sr3).x.clamp(0, 1)
        gains[name] = float(fr.metrics.psnr(start, ref) - fr.metrics.psnr(plain, ref))
    assert gains["denoise"] < -1.0 and gains["deblur"] > 1.0, gains
