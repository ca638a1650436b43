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
    default_solver,
    degrade_for,
    flow_for,
    heldout_crops,
    list_pretrained,
    model_spec,
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


@pytest.mark.parametrize("name", NAMES)
def test_the_registrys_heldout_scores_reproduce(name, models):
    """``flowrestore pretrained`` prints the registry's held-out scores: they are what the
    method's held-out runs measure with today's solvers and declared spacings (within 0.05 dB;
    after a change, ``python -m flowrestore.pretrained.train_all --rescore``)."""
    from flowrestore.pretrained.train_all import heldout_scores

    recorded = pretrained_info(name)["heldout"]
    now = heldout_scores(models[name], model_spec(models[name]))
    assert now["crop"] == recorded["crop"] and now["images"] == recorded["images"]
    pairs = list(zip(recorded["results"], now["results"], strict=True))
    for old, new in pairs:
        assert (old["solver"], old["steps"], old["nfe"]) == (
            new["solver"],
            new["steps"],
            new["nfe"],
        )
        assert abs(old["psnr"] - new["psnr"]) < 0.05, (name, old, new)


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


def test_float64_and_bfloat16_states_run_in_the_weights_dtype(models, crops):
    """A float32 predictor takes a float64 or bfloat16 state: computed in float32, returned in the
    state's dtype (the README's precision section), equal to the float32 solve up to rounding."""
    import flowrestore as fr

    flow = flow_for(models["indi-deblur"])
    y = degrade_for(models["indi-deblur"], crops[:1, :, :32, :32], torch.Generator().manual_seed(0))
    ref = solve(flow, fr.Euler(), y, steps=2).x
    x64 = solve(flow, fr.Euler(), y.double(), steps=2).x
    assert x64.dtype == torch.float64 and float((x64 - ref.double()).abs().max()) < 1e-5
    x16 = solve(flow, fr.Euler(), y.bfloat16(), steps=2).x
    assert x16.dtype == torch.bfloat16 and float((x16.float() - ref).abs().max()) < 0.05


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present here")
def test_pretrained_on_cuda_without_cuda_is_a_clear_error():
    with pytest.raises(ConfigError, match="device 'cuda': CUDA is not available.*device='cpu'"):
        pretrained("indi-deblur", device="cuda")


@pytest.mark.parametrize("name", NAMES)
def test_images_in_0_255_are_refused_before_the_first_evaluation(name, models, crops):
    """An 8-bit image not divided by 255 is refused with one line naming x_start, before the
    predictor is called; images in [0, 1] (noisy ones too) pass."""
    model = models[name]
    calls = []
    hook = model.register_forward_hook(lambda *_: calls.append(1))
    try:
        with pytest.raises(ConfigError, match=r"x_start has values in \[0, 2\d\d\].*divide by 255"):
            solve(flow_for(model), default_solver(model), crops[:1] * 255, steps=2)
        assert calls == []
        y = degrade_for(model, crops[:1, :, :32, :32], generator=torch.Generator().manual_seed(0))
        solve(flow_for(model), default_solver(model), y, steps=1)
        assert calls
    finally:
        hook.remove()


def test_the_range_check_reads_the_state_once_per_solve_not_per_step(models, crops):
    """The value-range check is one host read when the solve is planned: the syncs it adds to a
    solve do not grow with the number of steps."""
    from syncs import SyncCounter

    import flowrestore as fr

    model = models["indi-deblur"]
    y = degrade_for(model, crops[:1, :, :16, :16], generator=torch.Generator().manual_seed(0))
    added = []
    for steps in (2, 6):
        counts = []
        # checked by flow_for, checked by the predictor's declaration, unchecked (a wrapper
        # that declares no range)
        for flow in (flow_for(model), fr.InDIFlow(model), fr.InDIFlow(lambda x, t: model(x, t))):
            with SyncCounter() as sc:
                solve(flow, fr.Euler(), y, steps=steps)
            counts.append(sc.count)
        assert counts[0] == counts[1], counts  # one check either way, not two
        added.append(counts[0] - counts[2])
    assert added[0] == added[1] >= 1, added


def test_every_method_record_is_consistent_with_the_trainer_and_the_registry():
    """One record per method: its solvers build, its default solver is one of them, its training
    objective is the trainer's, and every shipped model names a known method and task."""
    from flowrestore.methods import METHODS, ModelSpec
    from flowrestore.solvers import Solver
    from flowrestore.training.objectives import OBJECTIVES

    for name, method in METHODS.items():
        assert all(isinstance(c.build(), Solver) for c in method.solvers)
        assert method.solver_names()[0] == method.default_solver
        assert method.objective() is OBJECTIVES[name]
    for n in NAMES:
        spec = ModelSpec.of(pretrained_info(n))
        assert spec.method is METHODS[pretrained_info(n)["method"]]
        assert spec.metadata()["task_params"] == spec.params


def test_dirac_deblur_on_its_exact_family_restores_as_with_the_old_finite_difference_one(
    models, crops
):
    """The shipped dirac-deblur flow now uses GaussianBlurFamily (exact ∂_t A_t, A_1's 13 taps)
    instead of the blur callable it was trained with (kernel ±3 std at each t, ∂_t by finite
    differences): A_1 is the same blur, and Dirac's reverse step (which uses A_t, not ∂_t A_t)
    restores within 2e-3 of the old flow (measured 5.9e-4 on these crops, 10 steps)."""
    import flowrestore as fr
    from flowrestore.flows.dirac import DiracSDE
    from flowrestore.schedules import Geometric
    from flowrestore.training.data import gaussian_blur

    model = models["dirac-deblur"]
    new = flow_for(model)
    old = DiracSDE(
        model,
        lambda x, t: gaussian_blur(x, torch.as_tensor(t, dtype=x.dtype) * 2.0),
        Geometric(0.01, 0.05),
    )
    x = crops[:, :, :48, :48]
    one = torch.ones(3)
    assert float((new.degrade(x, one) - old.degrade(x, one)).abs().max()) < 1e-6
    y = degrade_for(model, x, generator=torch.Generator().manual_seed(0))
    kw = dict(steps=10, output="posterior_mean", seeds=[1, 2, 3])
    a = solve(new, fr.DiracStep(), y, **kw).x
    b = solve(old, fr.DiracStep(), y, **kw).x
    assert float((a - b).abs().max()) < 2e-3


def test_degrade_for_makes_the_inputs_the_flow_starts_from(models, crops):
    """Dirac: ``A_1(x) + σ_1 z`` with the flow's own family and noise schedule at ``t = 1`` (one
    normal per pixel from ``generator``); InDI: the task's degradation, its noise included."""
    x = crops[:2, :, :24, :24].double()
    model = models["dirac-deblur"]
    flow = flow_for(model)
    y = degrade_for(model, x, generator=torch.Generator().manual_seed(3))
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(3), dtype=x.dtype)
    one = torch.ones(2, dtype=x.dtype)
    want = flow.degrade(x, one) + flow.sigma2(one).sqrt().reshape(-1, 1, 1, 1) * z
    torch.testing.assert_close(y, want, rtol=1e-12, atol=1e-12)
    from flowrestore.pretrained import model_spec

    spec = model_spec(models["indi-deblur"])
    got = degrade_for(models["indi-deblur"], x, generator=torch.Generator().manual_seed(3))
    clean = spec.task.operator(spec.params)(x)
    noise = spec.params["noise"] * torch.randn(x.shape, generator=torch.Generator().manual_seed(3),
                                                dtype=x.dtype)  # fmt: skip
    torch.testing.assert_close(got, clean + noise, rtol=1e-12, atol=1e-12)


def test_evaluate_scores_each_run_on_its_clamped_restoration():
    """``evaluate`` (the registry's and the demo's numbers): the first row is the degraded input,
    each run's row is the solve's output clamped to [0, 1], scored against the clean images."""
    from flowrestore.pretrained.scores import evaluate

    model = pretrained("indi-deblur")
    clean = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    clean[:, :, :12, :12] = 0.0  # black and white corners: the restorations overshoot [0, 1]
    clean[:, :, -12:, -12:] = 1.0
    runs = [("euler", 2, "last"), ("phi", 1, "last"), ("euler", 4, "last", 0.5)]  # t_end 0.5
    rows = evaluate(model, clean, runs, seed=3, keep_images=True)
    assert [r["solver"] for r in rows] == ["input", "euler", "phi", "euler"]
    assert [r["t_end"] for r in rows] == [None, None, None, 0.5]
    assert [r["steps"] for r in rows] == [0, 2, 1, 4]
    y = degrade_for(model, clean, generator=torch.Generator().manual_seed(3))
    flow = flow_for(model)
    out = solve(flow, make_solver("euler", "indi"), y, steps=2).x
    with torch.no_grad():
        phi = flow.denoise(torch.ones(2), y)
    early = solve(flow, make_solver("euler", "indi"), y, steps=4, t_end=0.5)
    assert [r["nfe"] for r in rows] == [0, 2, 1, int(early.stats.nfe.max())]
    for row, x in zip(rows, (y, out, phi, early.x), strict=True):
        assert float(x.min()) < 0.0 or float(x.max()) > 1.0  # the clamp matters here
        torch.testing.assert_close(row["images"], x.clamp(0.0, 1.0))
        want = psnr(x.clamp(0.0, 1.0), clean)
        assert row["psnr"] == pytest.approx(float(want.mean()), abs=1e-4)
        assert row["psnr_per_image"] == pytest.approx([float(v) for v in want], abs=2e-3)


def test_heldout_crops_takes_any_size_from_8_and_centres_it():
    names, x = heldout_crops(8, channels=1)
    assert x.shape == (len(names), 1, 8, 8)
    from flowrestore.training.data import load_image

    full = load_image(names[0], channels=1)
    h, w = full.shape[-2:]
    top, left = (h - 8) // 2, (w - 8) // 2
    assert torch.equal(x[0], full[:, top : top + 8, left : left + 8])
    for bad in (7, 8.0, "8"):
        with pytest.raises(ConfigError, match=r"size must be an int >= 8"):
            heldout_crops(bad)
