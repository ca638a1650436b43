"""The problems of the few-NFE benchmark (issue 16), each with a validation and a test split.

Defaults are chosen on the **validation** split only; ``benchmarks/RESULTS.md`` reports the
**test** split, which chose nothing. Every problem yields *instances* — a flow, a start batch and a
reference answer — and says how an answer is scored (``kind``):

* ``"rel"`` — worst per-sample relative error ``‖x − x_ref‖ / ‖x_ref‖`` (lower is better);
* ``"rel-c"`` — issue 10's Gaussian oracle: ``‖x − x_ref‖ / ‖x_ref − c‖`` over the batch;
* ``"psnr"`` — PSNR (dB) in ``[0, 1]`` to a 400-NFE reference, per crop (higher is better);
* ``"wrong"`` — samples of a Dirac mixture landing on another centre than the reference's.

Problems (docs/math.md §2, §8):

* **(a) exact diffusion models** of stiff Gaussian priors — 64 dimensions, mean ``0.5·N(0, 1)``,
  per-coordinate std uniform in ``[0.05, 1]`` — under DDPM's linear β schedule with an ε-model,
  the cosine schedule (``squaredcos_cap_v2``, ``σ_max ≈ 2·10⁴``) with a v-model, the linear
  schedule with an x₀-model, and (added 2026-12-03, after every default was chosen) the linear
  schedule rescaled to zero terminal SNR with a v-model (``x_T`` pure noise; diffusers' schedulers
  get the flow's table, whose last ``ᾱ`` stands in for 0); ``x_T`` at the last trained
  timestep; reference: the closed-form probability-flow map. Validation priors: seeds 11–13
  (the seeds ``diffusion_grids.py`` and issue 16 measured); test priors: seeds 2101–2105.
* **(b) a DDPM trained with diffusers**: ``examples/bird_diffusion.py``'s faces ``UNet2DModel``
  (v-prediction, linear schedule; :func:`ddpm_folder` trains it if it is not there); reference:
  a 500-step solve. Validation noises: seeds 0–1; test: seeds 100–103 (8 noises each).
* **(c) the shipped InDI predictors** ``indi-deblur`` and ``indi-sr4`` on 96×96 crops of
  scikit-image photos the models never saw (:data:`VAL_CROPS`, :data:`TEST_CROPS`; the training
  photos are ``flowrestore.training.data.TRAINING_IMAGES``). A second test split, ``"extra"``
  (:data:`EXTRA_CROPS`, added 2026-12-06 after every default was chosen), crops other photos:
  the motorcycle pair's right image, ``microaneurysms`` and two held-out LFW faces upscaled 4×.
* **(d) issue 10's oracles**: the InDI Gaussian oracle (256 dimensions, ``σ_c ∈ [0.5, 1.5]``,
  ``σ_N = 0.8``) and the hard 4-D Dirac mixture (8 centres, ``σ = 1.5``, 4096 samples).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

import flowrestore as fr
from flowrestore.oracles.diffusion import (
    GaussianDiffusionOracle,
    linear_alphas_cumprod,
    zero_terminal_snr,
)

F64 = torch.float64
HERE = Path(__file__).resolve().parent

#: 96×96 crops ``(photo, scale, top, left)`` of photos no shipped model trained on. Validation:
#: the three held-out photos (they chose the old default grid); test: photos that chose nothing.
VAL_CROPS = (
    ("astronaut", 1.0, 208, 208),
    ("astronaut", 1.0, 60, 180),
    ("camera", 1.0, 100, 200),
    ("camera", 1.0, 330, 120),
    ("coffee", 1.0, 150, 250),
    ("coffee", 1.0, 40, 60),
)
TEST_CROPS = (
    ("stereo_motorcycle", 1.0, 260, 330),
    ("stereo_motorcycle", 1.0, 290, 520),
    ("stereo_motorcycle", 1.0, 40, 500),
    ("retina", 1 / 3, 167, 25),
    ("retina", 1 / 3, 200, 250),
    ("cell", 1.0, 327, 382),
)
#: a second test split (2026-12-06, after every default was chosen): photos neither split nor
#: any fit used — the stereo pair's *right* image, a fundus detail, held-out LFW faces (80–99) ×4
EXTRA_CROPS = (
    ("stereo_motorcycle_right", 1.0, 100, 100),
    ("stereo_motorcycle_right", 1.0, 300, 200),
    ("stereo_motorcycle_right", 1.0, 400, 600),
    ("microaneurysms", 1.0, 0, 0),
    ("lfw_subset:85", 4.0, 0, 0),
    ("lfw_subset:95", 4.0, 2, 2),
)
CROPS = {"val": VAL_CROPS, "test": TEST_CROPS, "extra": EXTRA_CROPS}
#: warm-up crops for fitted grids: other positions in the validation photos (never scored)
WARM_CROPS = (
    ("astronaut", 1.0, 300, 350),
    ("astronaut", 1.0, 400, 100),
    ("camera", 1.0, 200, 50),
    ("camera", 1.0, 50, 400),
    ("coffee", 1.0, 250, 450),
    ("coffee", 1.0, 300, 150),
    ("coffee", 1.0, 100, 400),
    ("astronaut", 1.0, 150, 400),
)
DIFFUSION_SEEDS = {"val": (11, 12, 13), "test": (2101, 2102, 2103, 2104, 2105)}
DDPM_SEEDS = {"val": (0, 1), "test": (100, 101, 102, 103)}
GAUSS_SEEDS = {"val": (11, 12, 13, 14), "test": (4101, 4102, 4103, 4104)}
MIX_SEEDS = {"val": (301, 302, 303), "test": (5101, 5102, 5103, 5104, 5105)}


@dataclass
class Instance:
    """One scored problem: ``flow`` from ``x`` (user units), answer ``ref``; ``denoise(σ, x̄)``
    drives σ-grid peers on the flow's state; ``extra`` holds what a kind needs to score."""

    flow: fr.Flow
    x: Tensor
    ref: Tensor
    denoise: object
    extra: dict = field(default_factory=dict)


@dataclass
class Problem:
    """A family of instances: ``kind`` (module docstring), ``diffusion`` = has a diffusers model
    (peers on their own defaults apply), and the instances of the requested split."""

    name: str
    kind: str
    diffusion: bool
    instances: list[Instance]
    note: str = ""


def cosine_alphas_cumprod(T: int = 1000, s: float = 0.008) -> Tensor:
    """Nichol & Dhariwal's cosine schedule with β ≤ 0.999 (diffusers' ``squaredcos_cap_v2``)."""
    f = lambda u: np.cos((u / T + s) / (1 + s) * np.pi / 2) ** 2  # noqa: E731
    betas = np.minimum(1 - f(np.arange(1, T + 1)) / f(np.arange(T)), 0.999)
    return torch.from_numpy(np.cumprod(1 - betas))


def flow_denoiser(flow):
    """``denoise(σ, x̄)`` of a residual flow whose time is ``σ / σ_max`` (InDI: ``σ_max = 1``)."""
    scale = getattr(flow, "sigma_max", 1.0)

    def denoise(sigma: float, x: Tensor) -> Tensor:
        return flow.denoise(torch.tensor(sigma / scale, dtype=x.dtype), x)

    return denoise


def diffusion_oracles(schedule: str, ptype: str, split: str, *, dim=64, batch=64, seeds=None):
    """(a): exact models of stiff Gaussian priors (module docstring); ``schedule``: ``"linear"``
    or ``"cosine"``, either with ``"-zsnr"``."""
    base = schedule.removesuffix("-zsnr")
    if base not in ("linear", "cosine"):
        raise ValueError(
            f"unknown schedule {schedule!r}: expected 'linear' or 'cosine', optionally + '-zsnr'"
        )
    abar = linear_alphas_cumprod() if base == "linear" else cosine_alphas_cumprod()
    if schedule.endswith("-zsnr"):  # rescaled to zero terminal SNR (Lin et al. 2024): x_T noise
        abar = zero_terminal_snr(abar)
    out = []
    for seed in seeds or DIFFUSION_SEEDS[split]:
        g = torch.Generator().manual_seed(seed)
        c = 0.5 * torch.randn(dim, generator=g, dtype=F64)
        sc = 0.05 + 0.95 * torch.rand(dim, generator=g, dtype=F64)
        oracle = GaussianDiffusionOracle(mean=c, std=sc, alphas_cumprod=abar, prediction_type=ptype)
        flow = fr.DiffusionFlow(oracle, alphas_cumprod=abar, prediction_type=ptype)
        x_T = oracle.sample_latent(batch, torch.Generator().manual_seed(seed + 1000))
        # diffusers' schedulers get the flow's table (a zero-SNR one with its stand-in last ᾱ)
        extra = {"model": oracle, "alphas_cumprod": flow.alphas_cumprod, "prediction_type": ptype}
        out.append(Instance(flow, x_T, oracle.exact_map(x_T), flow_denoiser(flow), extra))
    label = {"epsilon": "ε", "v_prediction": "v", "sample": "x₀"}[ptype]
    return Problem(f"{schedule}/{label} oracle", "rel", True, out)


def ddpm_folder(train_log=print) -> Path:
    """The faces DDPM of ``examples/bird_diffusion.py`` (its defaults: 2000 steps, v-prediction,
    linear schedule): ``benchmarks/ddpm-faces`` if present, else trained into ``benchmarks/out``
    (about 15 minutes on one thread) and reused from there."""
    shipped = HERE / "ddpm-faces"
    if (shipped / "model_index.json").exists():
        return shipped
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "bird_diffusion_example", HERE.parent / "examples" / "bird_diffusion.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    folder, _ = mod.train_ddpm(
        HERE / "out" / "ddpm", steps=2000, batch=32, channels=16, seed=0, log=train_log
    )
    return folder


#: (e): a second DDPM from the same trainer, an ε-model (most released diffusion models predict ε)
#: — ``training.json`` holds the command; no default was chosen on it
DDPM_EPS = HERE / "ddpm-faces-eps"


def ddpm_faces(split: str, *, batch=8, seeds=None, reference_steps=500, folder=None):
    """(b): the trained DDPM (``folder``: another, e.g. :data:`DDPM_EPS` for (e)); reference:
    ``SemiLinearMultistep`` with 500 steps on the flow's default grid."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    flow = fr.DiffusionFlow.from_diffusers(folder or ddpm_folder())
    ptype = flow.prediction_type
    flow.model.requires_grad_(False)
    abar = flow.alphas_cumprod
    out = []
    for seed in seeds or DDPM_SEEDS[split]:
        x_T = torch.randn(batch, 1, 24, 24, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            ref = fr.solve(flow, fr.SemiLinearMultistep(), x_T, steps=reference_steps).x
        extra = {"model": flow.model, "alphas_cumprod": abar, "prediction_type": ptype}
        extra["clip_range"] = getattr(flow.clip, "range", None)  # the checkpoint's clip_sample
        out.append(Instance(flow, x_T, ref, flow_denoiser(flow), extra))
    label = {"epsilon": "ε", "v_prediction": "v", "sample": "x₀"}[ptype]
    return Problem(f"DDPM faces (diffusers, {label}, linear)", "rel", True, out)


def _photo(photo: str, load_image) -> Tensor:
    """A scikit-image photo ``[3, H, W]``; ``stereo_motorcycle`` (a stereo pair with its
    disparity) is its left image, ``stereo_motorcycle_right`` its right one, ``lfw_subset:i``
    face ``i`` of LFW (grey, repeated)."""
    import skimage.data
    from skimage.util import img_as_float

    if photo.startswith("lfw_subset:"):
        face = torch.from_numpy(skimage.data.lfw_subset()[int(photo.split(":")[1])]).float()
        return face.expand(3, *face.shape).contiguous()
    if photo not in ("stereo_motorcycle", "stereo_motorcycle_right"):
        return load_image(photo, channels=3)
    im = img_as_float(skimage.data.stereo_motorcycle()[photo.endswith("right")])
    return torch.from_numpy(im.transpose(2, 0, 1).copy()).float()


def _lfw_training_face(photo: str) -> bool:
    """Whether ``photo`` names an LFW face the shipped models may have trained on (0–79)."""
    return photo.startswith("lfw_subset:") and int(photo.split(":")[1]) < 80


def crop_images(crops, size: int = 96) -> tuple[list[str], Tensor]:
    """``[N, 3, size, size]`` crops in [0, 1] of scikit-image photos (RGB; grey repeated)."""
    from skimage.transform import rescale

    from flowrestore.training.data import TRAINING_IMAGES, load_image

    names, ims = [], []
    for photo, scale, top, left in crops:
        if photo in TRAINING_IMAGES or photo in ("cat",) or _lfw_training_face(photo):
            raise ValueError(f"{photo!r} trained the shipped models: not a held-out photo")
        im = _photo(photo, load_image)
        if scale != 1.0:
            arr = rescale(im.permute(1, 2, 0).numpy(), scale, channel_axis=2, anti_aliasing=True)
            im = torch.from_numpy(arr).permute(2, 0, 1).float()
        ims.append(im[:, top : top + size, left : left + size])
        names.append(f"{photo}@{top},{left}" + ("" if scale == 1 else f"×{scale:.2g}"))
    return names, torch.stack(ims).contiguous()


def indi_photos(name: str, split: str, *, size: int = 96, model=None, flow_options=None):
    """(c): a shipped InDI predictor on held-out crops; reference: RK4, 100 steps ``Power(2)``
    (400 evaluations); ``agreement_db`` (in ``extra``): Midpoint 200 uniform steps against it.
    ``model``: another predictor with ``.metadata`` (default: the shipped one named ``name``);
    ``flow_options``: keywords for its flow (e.g. ``grids=None, spacings=None``)."""
    from flowrestore.pretrained import degrade_for, flow_for, pretrained

    names, clean = crop_images(CROPS[split], size)
    model = pretrained(name) if model is None else model
    y = degrade_for(model, clean, generator=torch.Generator().manual_seed(0))
    flow = flow_for(model, **(flow_options or {}))
    with torch.no_grad():
        ref = fr.solve(flow, fr.RK4(), y, steps=100, spacing=fr.Power(2.0)).x
        ref2 = fr.solve(flow, fr.Midpoint(), y, steps=200, spacing=fr.Uniform()).x
    agree = float(psnr(ref2, ref).min())
    inst = Instance(flow, y, ref, flow_denoiser(flow), {"names": names, "agreement_db": agree})
    return Problem(f"{name} (photos)", "psnr", False, [inst], f"references agree to {agree:.1f} dB")


def psnr(a: Tensor, b: Tensor) -> Tensor:
    """Per-image PSNR (dB) in [0, 1]."""
    return fr.metrics.psnr(a.clamp(0, 1), b.clamp(0, 1))


def gaussian_indi(split: str, *, dim=256, batch=32, seeds=None):
    """(d) issue 10's Gaussian oracle: InDI denoising of ``N(c, diag σ_c²)``, exact ``x(0)``."""
    out = []
    for s in seeds or GAUSS_SEEDS[split]:
        std = 0.5 + torch.rand(dim, generator=torch.Generator().manual_seed(s), dtype=F64)
        mean = torch.randn(dim, generator=torch.Generator().manual_seed(s + 1), dtype=F64)
        orc = fr.oracles.GaussianOracle(mean=mean, std=std, noise_std=0.8)
        _, y = orc.sample(batch, generator=torch.Generator().manual_seed(s + 2))
        flow = fr.InDIFlow(orc.posterior_mean)
        out.append(
            Instance(
                flow,
                y,
                orc.ode_solution(y, 0.0),
                flow_denoiser(flow),
                {"mean": orc.mean, "oracle": orc},
            )
        )
    return Problem("InDI Gaussian oracle (issue 10)", "rel-c", False, out)


def mixture_indi(split: str, *, n=4096, seeds=None):
    """(d) issue 10's hard mixture: landing centre vs a float64 Dopri5 reference (rtol 1e-10)."""
    out = []
    for seed in seeds or MIX_SEEDS[split]:
        g = torch.Generator().manual_seed(seed)
        centers = torch.randn(8, 4, generator=g, dtype=F64)
        weights = torch.rand(8, generator=g, dtype=F64) + 0.1
        h = 0.3 + 0.7 * torch.rand(4, generator=g, dtype=F64)
        mix = fr.oracles.DiracMixture(centers=centers, weights=weights, H=h, noise_std=1.5)
        _, y, _ = mix.sample(n, generator=torch.Generator().manual_seed(seed + 1000))
        flow = fr.InDIFlow(mix.posterior_mean)
        ref = fr.solve(flow, fr.Dopri5(rtol=1e-10, atol=1e-12, t_min=1e-4), y).x
        centre = mix.nearest_center(ref)[0]
        out.append(Instance(flow, y, centre, flow_denoiser(flow), {"mixture": mix}))
    return Problem("hard mixture (issue 10)", "wrong", False, out)


def score(problem: Problem, inst: Instance, x: Tensor) -> float:
    """The instance's score of the answer ``x`` (worst over its samples where per-sample; a
    non-finite answer scores NaN, or, on the mixture, a wrong centre)."""
    x = x.detach()
    if problem.kind == "rel":
        num = (x.double() - inst.ref.double()).flatten(1).norm(dim=1)
        return float((num / inst.ref.double().flatten(1).norm(dim=1)).max())
    if problem.kind == "rel-c":
        ref = inst.ref.double()
        return float((x.double() - ref).norm() / (ref - inst.extra["mean"]).norm())
    if problem.kind == "psnr":
        return float(psnr(x, inst.ref).min())
    if problem.kind != "wrong":
        raise ValueError(f"unknown score kind {problem.kind!r}: expected rel, rel-c, psnr or wrong")
    centre = inst.extra["mixture"].nearest_center(x.double())[0]
    # a non-finite sample has no nearest centre (torch's min names centre 0 for a NaN): wrong
    finite = torch.isfinite(x).flatten(1).all(dim=1)
    return float(((centre != inst.ref) | ~finite).sum())


def worse(kind: str, a: float, b: float) -> float:
    """The worse of two scores of ``kind``."""
    if math.isnan(a) or math.isnan(b):
        return math.nan
    return min(a, b) if kind == "psnr" else max(a, b)


def better_or_equal(kind: str, a: float, b: float) -> bool:
    """Whether score ``a`` is at least as good as ``b``."""
    return a >= b if kind == "psnr" else a <= b


def tied(kind: str, a: float, b: float) -> bool:
    """Whether scores ``a`` and ``b`` are the same update's up to float32 round-off (``fr.UniPC()``
    and diffusers' UniPC-2 on the same grid: one runs the grid in float64, the other in float32):
    within 1e-4 relative, or 1e-3 dB. A tie is reported as such, never as ahead."""
    if kind == "psnr":
        return abs(a - b) <= 1e-3
    if kind == "wrong":
        return a == b
    return abs(a - b) <= 1e-4 * max(abs(a), abs(b))
