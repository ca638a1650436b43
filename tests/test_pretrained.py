"""The shipped predictors: loadable in one call, small, and they restore held-out photos.

Scores are measured on center crops of the held-out photos ("astronaut", "camera", "coffee"; never
used for training) with a fixed noise seed, so the margins below are deterministic on a given
platform; they are set well under the gains measured at export (registry.json, "heldout").
"""

import pytest
import torch

from flowrestore.errors import ConfigError
from flowrestore.integrate import solve
from flowrestore.metrics import high_frequency_energy, psnr
from flowrestore.pretrained import (
    degrade_for,
    flow_for,
    heldout_crops,
    list_pretrained,
    pretrained,
    pretrained_info,
)
from flowrestore.restore import make_solver

NAMES = ("indi-deblur", "indi-sr4", "dirac-deblur")
CROP = 96

# name -> (solver, steps, output, required mean PSNR gain over the degraded input in dB).
# Measured at export on these 96x96 crops: deblur +3.5 dB, sr4 +0.64 dB (per photo 0.24 / 0.55 /
# 1.13), Dirac (10 EM steps, posterior mean) +2.4 dB.
GAIN = {
    "indi-deblur": ("euler", 1, "last", 2.0),
    "indi-sr4": ("euler", 1, "last", 0.4),
    "dirac-deblur": ("em", 10, "posterior_mean", 1.5),
}


@pytest.fixture(scope="module")
def crops():
    torch.manual_seed(0)
    return heldout_crops(CROP)[1]


@pytest.fixture(scope="module")
def models():
    return {n: pretrained(n) for n in NAMES}


def _restore(model, y, solver, steps, output="last", seed=1):
    g = torch.Generator().manual_seed(seed)
    method = model.metadata["method"]
    return solve(
        flow_for(model), make_solver(solver, method), y, steps=steps, output=output, generator=g
    ).x.clamp(0, 1)


def test_registry_lists_the_shipped_predictors():
    assert set(NAMES) <= set(list_pretrained())
    assert pretrained.list() == list_pretrained()
    for n in NAMES:
        info = pretrained_info(n)
        assert info["train"]["command"].startswith("python -m flowrestore.training.trainer")
        assert info["train"]["steps"] >= 1000
        assert info["heldout"]["images"] == ["astronaut", "camera", "coffee"]
        assert all(r["psnr"] > 0 for r in info["heldout"]["results"])
    with pytest.raises(ConfigError, match="no shipped predictor"):
        pretrained("no-such-model")


def test_predictors_load_in_eval_mode_small_and_float32(models):
    import importlib.resources as ir

    for n, m in models.items():
        assert not m.training
        assert all(not p.requires_grad and p.dtype == torch.float32 for p in m.parameters())
        assert m.metadata["name"] == n and m.metadata["method"] in ("indi", "dirac")
        size = ir.files("flowrestore.pretrained").joinpath(m.metadata["file"]).stat().st_size
        assert size < 2_000_000, f"{n}: {size} bytes"


@pytest.mark.parametrize("name", NAMES)
def test_predictor_improves_psnr_on_heldout_photos(name, models, crops):
    model = models[name]
    y = degrade_for(model, crops, generator=torch.Generator().manual_seed(0))
    solver, steps, output, margin = GAIN[name]
    x = _restore(model, y, solver, steps, output)
    before = psnr(y.clamp(0, 1), crops)
    after = psnr(x, crops)
    gain = float((after - before).mean())
    assert gain >= margin, f"{name}: {before.tolist()} -> {after.tolist()} dB"
    assert bool((after > before).all()), f"{name}: every photo must improve"


@pytest.mark.parametrize("name", ["indi-deblur", "indi-sr4"])
def test_multi_step_indi_is_sharper_than_one_step(name, models, crops):
    """Perception-distortion: one step is the (blurry) MMSE estimate, many steps are sharper."""
    model = models[name]
    y = degrade_for(model, crops, generator=torch.Generator().manual_seed(0))
    one = _restore(model, y, "euler", 1)
    many = _restore(model, y, "euler", 10)
    hf_one, hf_many = high_frequency_energy(one), high_frequency_energy(many)
    assert bool((hf_many > hf_one).all()), (hf_one.tolist(), hf_many.tolist())
    # and the multi-step output still beats the degraded input
    assert float((psnr(many, crops) - psnr(y.clamp(0, 1), crops)).mean()) > 0


def test_degrade_for_matches_registry_parameters(models, crops):
    m = models["dirac-deblur"]
    y = degrade_for(m, crops[:1], generator=torch.Generator().manual_seed(0))
    y0 = degrade_for(m, crops[:1], generator=torch.Generator().manual_seed(0))
    assert torch.equal(y, y0)
    noise = (y - flow_for(m).degrade(crops[:1], torch.tensor(1.0))).std()
    assert abs(float(noise) - m.metadata["dirac"]["sigma_max"]) < 0.01
