"""Classifier-free guidance on every model flow (Ho & Salimans 2022, eq. 6), against a closed form.

Two class-conditional exact models of Gaussian priors with the same std ``s`` and means ``c_k``:
every model output (ε, v, x₀, the flow-matching velocity, EDM's ``D``) is affine in the prior mean
with coefficients that do not depend on it, so the guided output ``u + w (c − u)`` of the
label-``k`` model ``c`` and the null-label model ``u`` is *exactly* the model of
``N(c_∅ + w (c_k − c_∅), s²)`` — whose probability-flow map is closed form. A guided solve must
land there, each row with its own label.
"""

from __future__ import annotations

import pytest
import torch

import flowrestore as fr
from flowrestore.oracles import (
    GaussianDenoiserOracle,
    GaussianDiffusionOracle,
    GaussianFlowMatchingOracle,
)
from flowrestore.oracles.diffusion import linear_alphas_cumprod

F64 = torch.float64
DIM, W = 8, 3.0


class Labelled:
    """``model(x, time, class_labels)``: row ``i`` answered by ``models[class_labels[i]]``; records
    the batch size of every call."""

    def __init__(self, models):
        self.models, self.calls = models, []

    def __call__(self, x, time, class_labels):
        self.calls.append(x.shape[0])
        outs = torch.stack([m(x, time) for m in self.models])
        return outs[class_labels, torch.arange(x.shape[0])]


def _means():
    g = torch.Generator().manual_seed(8)
    return torch.randn(3, DIM, generator=g, dtype=F64), 0.2 + 0.5 * torch.rand(
        DIM, generator=g, dtype=F64
    )


def _family(kind, means, std):
    """``(flow class, its kwargs, model per mean, exact map(mean, x))``."""
    if kind == "diffusion":
        abar = linear_alphas_cumprod()
        make = lambda m: GaussianDiffusionOracle(  # noqa: E731
            mean=m, std=std, alphas_cumprod=abar, prediction_type="v_prediction"
        )
        kw = {"alphas_cumprod": abar, "prediction_type": "v_prediction"}
        return fr.DiffusionFlow, kw, make, lambda m, x: make(m).exact_map(x)
    if kind == "flow-matching":
        make = lambda m: GaussianFlowMatchingOracle(mean=m, std=std)  # noqa: E731
        return fr.FlowMatchingFlow, {}, make, lambda m, x: make(m).exact_map(x)
    make = lambda m: GaussianDenoiserOracle(mean=m, std=std)  # noqa: E731
    kw = {"sigma_max": 80.0, "sigma_min": 0.002}
    return fr.DenoiserFlow, kw, make, lambda m, x: make(m).exact_map(x, 80.0)


@pytest.mark.parametrize("kind", ["diffusion", "flow-matching", "edm"])
def test_guided_solve_lands_on_the_guided_prior(kind):
    means, std = _means()
    cls, kw, make, exact = _family(kind, means, std)
    model = Labelled([make(m) for m in means])  # label 2 is the null class
    labels = torch.tensor([0, 1, 0, 1, 1, 0])
    null = torch.full_like(labels, 2)
    flow = cls(
        model, cond={"class_labels": labels}, uncond={"class_labels": null}, guidance_scale=W, **kw
    )
    x = torch.randn(6, DIM, generator=torch.Generator().manual_seed(9), dtype=F64)
    x = x * 80.0 if kind == "edm" else x
    got = fr.solve(flow, fr.RK4(), x, steps=200).x
    guided = means[2] + W * (means[labels] - means[2])  # per-row mean of the guided prior
    want = torch.stack([exact(guided[i], x[i : i + 1])[0] for i in range(6)])
    err = float(((got - want).norm(dim=1) / want.norm(dim=1)).max())
    assert err <= 1e-6, err
    # one network call per evaluation, on the doubled batch
    assert set(model.calls) == {12}
    assert f"guidance_scale={W:g}" in repr(flow)
    # w = 1 is the conditional model (its unconditional half not computed), w = 0 the null one
    for w, rows in ((1.0, labels), (0.0, null)):
        model.calls.clear()
        guided_w = cls(
            model,
            cond={"class_labels": labels},
            uncond={"class_labels": null},
            guidance_scale=w,
            **kw,
        )
        plain = cls(model, cond={"class_labels": rows}, **kw)
        a = fr.solve(guided_w, fr.Euler(), x, steps=5).x
        b = fr.solve(plain, fr.Euler(), x, steps=5).x
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
        assert w == 0.0 or set(model.calls) == {6}


def test_per_sample_steps_keep_each_row_with_its_own_labels():
    """Under per-sample error control the loop steps subsets of the batch; the unconditional
    keywords follow the rows like ``cond`` (``Flow.restrict``)."""
    means, std = _means()
    cls, kw, make, exact = _family("flow-matching", means, std)
    model = Labelled([make(m) for m in means])
    labels = torch.tensor([0, 1, 1, 0])
    flow = cls(
        model,
        cond={"class_labels": labels},
        uncond={"class_labels": torch.full_like(labels, 2)},
        guidance_scale=W,
        **kw,
    )
    x = torch.randn(4, DIM, generator=torch.Generator().manual_seed(3), dtype=F64)
    x[0] *= 4.0  # a harder row: the controller steps it more often than the others
    got = fr.solve(flow, fr.Dopri5(rtol=1e-9, atol=1e-11), x).x
    guided = means[2] + W * (means[labels] - means[2])
    want = torch.stack([exact(guided[i], x[i : i + 1])[0] for i in range(4)])
    assert float((got - want).abs().max()) <= 1e-6
    assert len(set(model.calls)) > 1  # subsets of the (doubled) batch were evaluated


def test_guidance_arguments_are_checked_before_any_work():
    model = Labelled([lambda x, t: x])
    labels = torch.zeros(2, dtype=torch.long)
    abar = linear_alphas_cumprod()
    make = lambda **kw: fr.DiffusionFlow(model, alphas_cumprod=abar, **kw)  # noqa: E731
    with pytest.raises(fr.ConfigError, match="needs uncond"):
        make(cond={"class_labels": labels}, guidance_scale=2.0)
    with pytest.raises(fr.ConfigError, match="same keywords"):
        make(cond={"class_labels": labels}, uncond={"y": labels}, guidance_scale=2.0)
    with pytest.raises(fr.ConfigError, match="same keywords"):
        make(uncond={"class_labels": labels}, guidance_scale=2.0)
    with pytest.raises(fr.ShapeError, match="one row per sample"):
        make(cond={"class_labels": labels}, uncond={"class_labels": labels[:1]}, guidance_scale=2.0)
    with pytest.raises(fr.ConfigError, match="finite"):
        make(
            cond={"class_labels": labels},
            uncond={"class_labels": labels},
            guidance_scale=float("nan"),
        )
    with pytest.raises(fr.ArgumentTypeError, match="guidance_scale"):
        make(cond={"class_labels": labels}, uncond={"class_labels": labels}, guidance_scale=True)
    flow = make(cond={"class_labels": labels}, uncond={"class_labels": labels}, guidance_scale=2.0)
    with pytest.raises(fr.ShapeError, match="per-sample"):  # three rows to solve, two labels
        fr.solve(flow, fr.Euler(), torch.zeros(3, 4, dtype=F64), steps=2)
    assert model.calls == []


@pytest.mark.parametrize("phi", [0.0, 0.7, 1.0])
def test_guidance_rescale_is_diffusers_rescale_noise_cfg(phi):
    """Lin et al.'s §3.4 rescale on the model's output: with ``φ = 1`` the guided output has each
    sample's standard deviation of the conditional output; any ``φ`` matches diffusers' function."""
    diffusers = pytest.importorskip("diffusers")
    from diffusers.guiders.guider_utils import rescale_noise_cfg

    del diffusers
    means, std = _means()
    cls, kw, make, _ = _family("diffusion", means, std)
    model = Labelled([make(m) for m in means])
    labels, null = torch.tensor([0, 1, 1]), torch.full((3,), 2)
    x = torch.randn(3, DIM, generator=torch.Generator().manual_seed(5), dtype=F64) * 2.0
    t = torch.tensor(0.01, dtype=F64)
    flow = cls(
        model,
        cond={"class_labels": labels},
        uncond={"class_labels": null},
        guidance_scale=W,
        guidance_rescale=phi,
        **kw,
    )
    plain = cls(
        model, cond={"class_labels": labels}, uncond={"class_labels": null}, guidance_scale=W, **kw
    )
    c = cls(model, cond={"class_labels": labels}, **kw).predict(t, x)
    g = plain.predict(t, x)
    got = flow.predict(t, x)
    torch.testing.assert_close(got, rescale_noise_cfg(g, c, guidance_rescale=phi))
    if phi == 1.0:
        torch.testing.assert_close(got.std(dim=1), c.std(dim=1))
        assert float((g.std(dim=1) / c.std(dim=1) - 1).abs().min()) > 0.05  # it did rescale
    with pytest.raises(fr.ConfigError, match="needs"):
        cls(model, cond={"class_labels": labels}, guidance_rescale=0.5, **kw)
    for bad in (1.0005, -1e-6, 1.5):  # the interval is closed, and just outside it is refused
        with pytest.raises(fr.ConfigError, match=r"\[0, 1\]"):
            cls(
                model,
                cond={"class_labels": labels},
                uncond={"class_labels": null},
                guidance_scale=W,
                guidance_rescale=bad,
                **kw,
            )


def test_the_guided_baselines_and_bird_run_on_a_guided_model():
    """DPS, DDRM and DiffPIR (through ``GuidedFlow``/``DiffPIRFlow``) and BIRD ask the flow for its
    clean estimate, so they see the guided model: each answer finite, each network call on the
    doubled batch."""
    means, std = _means()
    cls, kw, make, _ = _family("flow-matching", means, std)
    model = Labelled([make(m) for m in means])
    labels = torch.tensor([0, 1])
    flow = cls(
        model,
        cond={"class_labels": labels},
        uncond={"class_labels": torch.full_like(labels, 2)},
        guidance_scale=W,
        **kw,
    )
    mask = (torch.arange(DIM) % 2 == 0).to(F64)
    A = fr.degradations.Inpainting(mask)
    g = torch.Generator().manual_seed(0)
    y = mask * torch.randn(2, DIM, generator=g, dtype=F64)
    x1 = torch.randn(2, DIM, generator=g, dtype=F64)
    runs = {
        "DDRM": lambda: (
            fr.solve(
                fr.GuidedFlow(flow, A, y, noise_std=0.05), fr.DDRMStep(), x1, steps=5, generator=g
            ).x
        ),
        "DPS": lambda: (
            fr.solve(fr.GuidedFlow(flow, A, y), fr.DPSStep(zeta=1.0), x1, steps=5, generator=g).x
        ),
        "DiffPIR": lambda: (
            fr.solve(fr.DiffPIRFlow(flow, A, y, noise_std=0.05), fr.Euler(), x1, steps=5).x
        ),
    }
    for name, run in runs.items():
        model.calls.clear()
        out = run()
        assert bool(torch.isfinite(out).all()) and set(model.calls) == {4}, (name, model.calls)
    # BIRD on images: the same guided model of a prior on 4×4 images
    gi = torch.Generator().manual_seed(1)
    img_means = torch.randn(3, 1, 4, 4, generator=gi, dtype=F64)
    img_model = Labelled([GaussianFlowMatchingOracle(mean=m, std=0.3) for m in img_means])
    img_flow = cls(
        img_model,
        cond={"class_labels": labels},
        uncond={"class_labels": torch.full_like(labels, 2)},
        guidance_scale=W,
        **kw,
    )
    blur = fr.BlindOperator(
        fr.degradations.GaussianBlur, width=fr.Param(init=0.5, bounds=(0.3, 1.0))
    )
    bird = fr.BlindInversion(img_flow, solver=fr.Euler(), steps=3, degradation=blur, iterations=2)
    y_img = torch.rand(2, 1, 4, 4, generator=gi, dtype=F64)
    res = bird.run(y_img, generator=gi)
    assert bool(torch.isfinite(res.x).all()) and set(img_model.calls) == {4}, img_model.calls
