"""DPS, DiffPIR, DDRM and BIRD side by side on one diffusers DDPM, one operator, one loop.

1. **The model**: the faces DDPM of ``examples/bird_diffusion.py``, shipped in
   ``benchmarks/ddpm-faces`` (a diffusers ``DDPMPipeline`` folder, 1.1 MB) and loaded by path,
   ``fr.DiffusionFlow.from_diffusers`` (local files only, nothing downloads). It was produced by
   that example's :func:`train_ddpm` with ``steps=2000, batch=32, channels=16, seed=0, lr=2e-3,
   prediction_type="v_prediction"`` under ``torch.set_num_threads(1)`` (its ``training.json``:
   3195 s on a shared 2-core CPU): a ``UNet2DModel`` 16/32/32 channels, DDPM's linear
   1000-step schedule, Adam with one-cycle rates and an EMA (decay 0.995) on the 80 training LFW
   faces (4 crop offsets × flips), 24×24 grey in ``[−1, 1]``. ``--model FOLDER`` uses another
   pipeline; ``--retrain`` (or a checkout without the folder) trains one into ``OUT/ddpm-faces``
   with ``--train-steps/--batch/--channels/--seed``.
2. **Three tasks** on held-out faces, noise ``σ_y = 0.01`` (in ``[0, 1]``):
   Gaussian deblurring (width 1.5 px, 19 taps), motion deblurring (a 9×9 camera-shake kernel per
   face, ``fr.degradations.motion_kernel``) — both with ``padding="circular"``, the blur whose SVD
   is known in closed form (the unitary DFT, :mod:`flowrestore.flows.spectral`), which DDRM and
   DiffPIR's proximal step need; DPS and BIRD use the same operator — and 4× super-resolution
   (``Downsample(4)``: 4×4 block means, SVD by the block DCT).
3. **Methods** (docs/math.md §10; the DDPM as a residual flow, §8; BIRD, §5), all on EDM's
   ρ = 7 grid in σ (:data:`GRID`) at 10, 20 and 50 network evaluations (NFE): DPS
   (``fr.DPSStep``, Chung et al. 2023), DiffPIR (``fr.DiffPIRFlow`` + ``fr.DiffPIRStep``, Zhu
   et al. 2023), DDRM (``fr.DDRMStep``, Kawar et al. 2022, the paper's
   η = 0.85, η_b = 1); on the Gaussian blur also BIRD (``fr.BlindInversion``, Chihaoui et al.
   2024) with the width *unknown* (start 1.0, bounds 0.3–3): Ψ = 10 DDIM steps, 300 Adam
   iterations, the detached gradient, cosine-decayed rates; its NFE is all its solves.
4. **Hyperparameters are chosen on validation faces and reported on disjoint test faces**:
   held-out faces 0–7 choose DPS's ζ and DiffPIR's λ (its re-noising ζ = 1) — per task and NFE —
   and BIRD's latent learning rate, by mean PSNR (grids: :data:`GRIDS`, and why they are these);
   the table reports held-out faces 8–19.
   BIRD's validation runs also record their PSNR every ``--bird-every`` iterations (an extra
   solve of ``Ψ`` at those iterates, not counted in BIRD's NFE) — the curve in the summary.
5. **Output**: ``OUT/compare_restoration.md`` (the table, also printed: PSNR, SSIM, data
   consistency as the RMS of ``y − A x̂`` against ``σ_y``, NFE, seconds per image), the figure
   ``OUT/compare_restoration.png`` (one test face per task and method; PSNR against NFE) and
   ``OUT/summary.json`` (with wall and CPU seconds of the whole comparison, training excluded).
6. **Two cores**: the work is cut into jobs — BIRD's validation run per learning rate, BIRD on
   the test faces once those are in, and each task × guided method — run by ``--workers``
   forked processes (default 2) of ``--threads`` torch threads each (default 1). At these sizes
   (a batch of 8–12 faces of 24×24) one process with 2 intra-op threads was *slower* than one
   thread on the shared machine — 50-NFE DPS on 8 faces took 45 s wall / 33 CPU s on 2 threads
   against 3.7 s / 3.7 s on 1 — so the second core is used by a second process instead.

deepinv's DPS/DiffPIR are not compared: deepinv 0.5.0 imports torchvision at import time, and
the only torchvision that accepts torch 2.13 on the registries reached here (0.28.0; 0.29.x
requires torch ≥ 2.14) is a CUDA build whose ``_C.so`` needs ``libc10_cuda.so``, absent from the
CPU torch: ``import torchvision`` (so ``import deepinv``) fails with "operator torchvision::nms
does not exist". Installing it would take another torch build.

Run: ``python examples/compare_restoration.py --out runs/compare`` (README "Guided restoration
on a trained DDPM": the recorded table, its command and its time); ``--quick`` is a
seconds-long smoke run (a 3-step model trained into OUT, 2 + 2 faces, NFE 2 and 3).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded: the model is trained here

import torch

import flowrestore as fr
from flowrestore.degradations import Downsample, GaussianBlur, MotionBlur, motion_kernel
from flowrestore.inversion import BlindInversion, Param
from flowrestore.metrics import psnr, ssim


def _bird_example():
    """``examples/bird_diffusion.py`` as a module (its ``faces`` and ``train_ddpm``)."""
    spec = importlib.util.spec_from_file_location(
        "bird_diffusion", Path(__file__).with_name("bird_diffusion.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BIRD = _bird_example()
TASKS = ("gaussian deblur", "motion deblur", "4x super-resolution")
METHODS = ("DPS", "DiffPIR", "DDRM")
#: the time grid every method runs on: EDM's rho = 7 in sigma, the diffusion flow's default when
#: the table was recorded (issue 16 changed the default; pinned so the recorded run reproduces)
GRID = fr.Karras(rho=7.0)
#: hyperparameter grids searched on the validation faces (per task and NFE; BIRD once)
#: (after a full run with DPS ζ ∈ {1, 3, 10}, DiffPIR λ ∈ {1, 7, 30} × ζ ∈ {0.3, 1} and BIRD
#: lr ∈ {0.05, 0.1, 0.2}: DPS chose the edge ζ = 10 on super-resolution and DiffPIR the edge λ = 1
#: in 7 of 9 cases, so the grids gained ζ = 30 and λ = 0.3; DiffPIR's λ = 30 and ζ = 0.3 and BIRD's
#: lr = 0.2 — last at every point of its validation curve — never won and were dropped; README)
GRIDS = {
    "DPS": [{"zeta": z} for z in (1.0, 3.0, 10.0, 30.0)],
    "DiffPIR": [{"lam": lam, "zeta": 1.0} for lam in (0.3, 1.0, 7.0)],
    "DDRM": [{"eta": 0.85, "eta_b": 1.0}],
    "BIRD": [{"lr_latent": lr} for lr in (0.05, 0.1)],
}
QUICK_GRIDS = {
    "DPS": [{"zeta": 1.0}],
    "DiffPIR": [{"lam": 7.0, "zeta": z} for z in (0.0, 0.3)],
    "DDRM": [{"eta": 0.85, "eta_b": 1.0}],
    "BIRD": [{"lr_latent": 0.1}],
}
#: the options --quick overrides
QUICK_SETS = ("--train-steps", "--batch", "--channels", "--val-faces", "--test-faces", "--nfe",
              "--bird-steps", "--bird-iterations", "--bird-every")  # fmt: skip
#: the options that only shape a model trained here (--retrain, --quick, or no shipped model)
TRAIN_SETS = ("--train-steps", "--batch", "--channels")
WIDTH = 1.5  # the Gaussian blur's width in pixels
#: the trained faces DDPM shipped with the repository (see the module docstring)
SHIPPED = Path(__file__).resolve().parents[1] / "benchmarks" / "ddpm-faces"


def operator(task: str, n: int, seed: int):
    """The task's operator for ``n`` faces (motion: one kernel per face, drawn from ``seed``)."""
    if task == "gaussian deblur":
        return GaussianBlur(WIDTH, kernel_size=19, padding="circular")
    if task == "motion deblur":
        g = torch.Generator().manual_seed(seed)
        return MotionBlur(motion_kernel(9, 0.5, generator=g, batch=n), padding="circular")
    return Downsample(4)


def observe(task: str, x: torch.Tensor, noise: float, seed: int):
    """``(A, y)``: the operator and its noisy measurement of the faces ``x`` in ``[0, 1]``."""
    op = operator(task, x.shape[0], seed)
    y = op(x)
    g = torch.Generator().manual_seed(seed + 1)
    return op, y + noise * torch.randn(y.shape, generator=g)


def guided_solve(method: str, flow, op, y, noise: float, nfe: int, hp: dict, seed: int):
    """One baseline on the faces' measurements ``y`` (``[0, 1]``); returns ``(x̂, nfe, s)``."""
    g = torch.Generator().manual_seed(seed)
    x_T = torch.randn((y.shape[0], *FACE_SHAPE), generator=g)
    ym, sm = 2 * y - 1, 2 * noise  # the model works in [−1, 1]; A keeps constants
    if method == "DiffPIR":
        guided = fr.DiffPIRFlow(flow, op, ym, noise_std=sm, lam=hp["lam"])
        solver = fr.DiffPIRStep(zeta=hp["zeta"])
    else:
        guided = fr.GuidedFlow(flow, op, ym, noise_std=sm)
        solver = fr.DPSStep(zeta=hp["zeta"]) if method == "DPS" else fr.DDRMStep(**hp)
    t0 = time.perf_counter()
    sol = fr.solve(guided, solver, x_T, steps=nfe, spacing=GRID, generator=g)
    seconds = time.perf_counter() - t0
    return ((sol.x + 1) / 2).clamp(0, 1), int(sol.stats.nfe.max()), seconds


def bird_inversion(flow, steps: int, iterations: int, hp: dict) -> BlindInversion:
    """BIRD with the Gaussian width unknown (start 1.0, bounds 0.3–3), the detached gradient."""
    return BlindInversion(
        flow,
        solver=fr.Euler(),
        steps=steps,
        spacing=GRID,
        degradation=fr.BlindOperator(
            GaussianBlur, width=Param(init=1.0, bounds=(0.3, 3.0)), padding="circular"
        ),
        iterations=iterations,
        lr_latent=hp["lr_latent"],
        lr_degradation=0.1,
        gradient="detached",
        schedule="cosine",
    )


def bird_solve(flow, y, noise: float, steps: int, iterations: int, hp: dict, seed: int):
    """BIRD on the faces' measurements ``y``; returns ``(x̂, nfe, s, estimated widths)``."""
    inv = bird_inversion(flow, steps, iterations, hp)
    res = inv.run(2 * y - 1, generator=torch.Generator().manual_seed(seed))
    x_hat = ((res.x + 1) / 2).clamp(0, 1)
    return x_hat, res.nfe, res.time_s, res.params["width"]  # nfe: per image, every solve


def scores(x_hat, x, op, y, noise: float) -> dict:
    """Mean PSNR, SSIM and the RMS of ``y − A x̂`` in units of ``σ_y`` over the faces (in image
    units when ``σ_y = 0``: a ratio to 0 would print ``inf``)."""
    resid = (y - op(x_hat)).flatten(1).square().mean(1).sqrt() / (noise if noise > 0 else 1.0)
    return {
        "psnr": float(psnr(x_hat, x).mean()),
        "ssim": float(ssim(x_hat, x).mean()),
        "residual": float(resid.mean()),
    }


FACE_SHAPE = (1, 24, 24)


def choose(method, task, nfe, flow, faces, cfg) -> dict:
    """The grid point with the best mean PSNR on the validation faces."""
    op, y = observe(task, faces, cfg.noise, cfg.seed)
    best, best_psnr = None, -float("inf")
    for hp in cfg.grids[method]:
        if len(cfg.grids[method]) == 1:
            return hp
        x_hat, _, _ = guided_solve(method, flow, op, y, cfg.noise, nfe, hp, cfg.seed + 7)
        p = float(psnr(x_hat, faces).mean())
        if p > best_psnr:
            best, best_psnr = hp, p
    return best


def bird_validation(lr: dict, flow, faces, cfg) -> dict:
    """BIRD at one latent learning rate on the validation faces: the mean PSNR every
    ``cfg.bird_every`` iterations of the full run (its curve) and at its end."""
    _, y = observe("gaussian deblur", faces, cfg.noise, cfg.seed)
    curve: dict[int, float] = {}

    def record(k, state):
        if k % cfg.bird_every == 0 and k < cfg.bird_iterations:
            with torch.no_grad():  # Ψ(z) of this iterate: one extra solve, not part of BIRD
                x_hat = ((inv.generate(state.latent) + 1) / 2).clamp(0, 1)
            curve[k] = float(psnr(x_hat, faces).mean())

    inv = bird_inversion(flow, cfg.bird_steps, cfg.bird_iterations, lr)
    # the latent's draw follows --seed (5 at the default seed 0, as recorded)
    g = torch.Generator().manual_seed(cfg.seed + 5)
    res = inv.run(2 * y - 1, generator=g, callback=record)
    curve[cfg.bird_iterations] = float(psnr(((res.x + 1) / 2).clamp(0, 1), faces).mean())
    return {"hp": lr, "curve": curve}


def observed_row(task, op, y, x, noise) -> dict:
    """The measurement itself as an estimate (nearest up-sampling for super-resolution)."""
    up = y if y.shape == x.shape else y.repeat_interleave(4, -2).repeat_interleave(4, -1)
    up = up.clamp(0, 1)
    return {"task": task, "method": "observed", "nfe": 0, "psnr": float(psnr(up, x).mean()),
            "ssim": float(ssim(up, x).mean()), "residual": None, "s_per_image": 0.0,
            "hp": {}, "image": up[0]}  # fmt: skip


def evaluate_method(task, method, flow, val, test, cfg, log) -> list[dict]:
    """One method at every NFE on the test faces, each with its validation-chosen setting."""
    op, y = observe(task, test, cfg.noise, cfg.seed + 100)
    rows, n = [], test.shape[0]
    for nfe in cfg.nfes:
        hp = choose(method, task, nfe, flow, val, cfg)
        x_hat, used, secs = guided_solve(method, flow, op, y, cfg.noise, nfe, hp, cfg.seed + 11)
        found = scores(x_hat, test, op, y, cfg.noise)
        rows.append({"task": task, "method": method, "nfe": used, "s_per_image": secs / n,
                     "hp": hp, "image": x_hat[0], **found})  # fmt: skip
        log(f"  {task:20s} {method:8s} NFE {used:3d}  PSNR {found['psnr']:.2f} dB  {hp}")
    return rows


def evaluate_bird(flow, test, validation: list[dict], cfg, log) -> dict:
    """Blind BIRD on the test faces with the learning rate whose validation run ended best."""
    best = max(validation, key=lambda v: v["curve"][cfg.bird_iterations])
    op, y = observe("gaussian deblur", test, cfg.noise, cfg.seed + 100)
    x_hat, used, secs, widths = bird_solve(
        flow, y, cfg.noise, cfg.bird_steps, cfg.bird_iterations, best["hp"], cfg.seed + 13
    )
    err = float(((widths - WIDTH).abs() / WIDTH).mean())
    row = {"task": "gaussian deblur", "method": "BIRD (blind)", "nfe": used,
           "s_per_image": secs / test.shape[0], "width_error": err, "image": x_hat[0],
           "hp": {**best["hp"], "steps": cfg.bird_steps, "iterations": cfg.bird_iterations},
           **scores(x_hat, test, op, y, cfg.noise)}  # fmt: skip
    log(f"  {'gaussian deblur':20s} BIRD     NFE {used:4d}  PSNR {row['psnr']:.2f} dB  "
        f"width ±{err:.1%}  {best['hp']}")  # fmt: skip
    return row


def run_jobs(jobs: dict, workers: int, parts: Path) -> dict:
    """Run ``jobs`` (name → ``(dependencies, fn)``, ``fn(results) -> result``) on ``workers``
    forked processes, each started once its dependencies have finished, first ready first;
    results come back through ``parts/INDEX.pt``, removed once read (and ``parts`` with the last,
    when empty: it is no output). ``workers == 1`` runs them here, in order."""
    results: dict = {}
    if workers == 1:
        for name, (_, fn) in jobs.items():
            results[name] = fn(results)
        return results
    import multiprocessing
    import multiprocessing.connection

    ctx, running, waiting = multiprocessing.get_context("fork"), {}, dict(jobs)
    parts.mkdir(parents=True, exist_ok=True)
    while waiting or running:
        ready = [n for n, (deps, _) in waiting.items() if all(d in results for d in deps)]
        while ready and len(running) < workers:
            name = ready.pop(0)
            fn = waiting.pop(name)[1]
            path = parts / f"{list(jobs).index(name)}.pt"
            proc = ctx.Process(target=_job, args=(fn, dict(results), path))
            proc.start()
            running[proc.sentinel] = (name, proc, path)
        done = multiprocessing.connection.wait(list(running))
        for sentinel in done:
            name, proc, path = running.pop(sentinel)
            proc.join()
            if proc.exitcode != 0:
                for _, other, _ in running.values():
                    other.terminate()
                raise RuntimeError(f"job {name!r} failed (exit code {proc.exitcode})")
            results[name] = torch.load(path, weights_only=False)
            path.unlink()
    try:
        parts.rmdir()
    except OSError:  # not empty: files that are not this run's are left alone
        pass
    return results


def _job(fn, results: dict, path: Path) -> None:
    """A forked worker: one torch thread, the job's result saved to ``path``."""
    torch.set_num_threads(1)
    torch.save(fn(results), path)


def table(rows: list[dict], noise: float, where: str = "") -> str:
    """The Markdown table of every row; ``where``: what ran on what (model, faces, seed)."""
    rms = "RMS(y − A x̂) / σ_y" if noise > 0 else "RMS(y − A x̂)"
    head = (
        f"| task | method | NFE | PSNR (dB) | SSIM | {rms} | s / image | "
        "chosen on validation faces |\n|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in rows:
        res = "—" if r["residual"] is None else f"{r['residual']:.2f}"
        hp = ", ".join(f"{k}={v:g}" for k, v in r["hp"].items())
        if "width_error" in r:
            hp += f"; width error {r['width_error']:.1%}"
        lines.append(
            f"| {r['task']} | {r['method']} | {r['nfe']} | {r['psnr']:.2f} | {r['ssim']:.3f} | "
            f"{res} | {r['s_per_image']:.3f} | {hp} |"
        )
    return "\n".join(lines) + f"\n\nσ_y = {noise} (images in [0, 1]).{where}\n"


def figure(path: Path, rows: list[dict], truth: torch.Tensor, nfes) -> None:
    """Top: the first test face per task and method at the largest NFE; bottom: PSNR vs NFE."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = ["observed", *METHODS, "BIRD (blind)", "truth"]
    fig = plt.figure(figsize=(1.6 * len(cols), 1.7 * len(TASKS) + 2.6))
    grid = fig.add_gridspec(len(TASKS) + 1, len(cols), height_ratios=[1] * len(TASKS) + [1.6])
    for i, task in enumerate(TASKS):
        shown = {r["method"]: r for r in rows if r["task"] == task and r["nfe"] in (0, *nfes[-1:])}
        shown.update({r["method"]: r for r in rows if r["task"] == task and "width_error" in r})
        for j, name in enumerate(cols):
            ax = fig.add_subplot(grid[i, j])
            ax.axis("off")
            img = truth if name == "truth" else shown.get(name, {}).get("image")
            if img is None:
                continue
            ax.imshow(img[0].numpy(), cmap="gray", vmin=0, vmax=1)
            label = name if name in ("truth",) else f"{name}\n{shown[name]['psnr']:.1f} dB"
            ax.set_title(label if i else f"{label}", fontsize=6)
        fig.text(0.005, 1 - (i + 0.6) / (len(TASKS) + 1.6), task, fontsize=7, rotation=90)
    for i, task in enumerate(TASKS):
        ax = fig.add_subplot(grid[len(TASKS), 2 * i : 2 * i + 2])
        for method in METHODS:
            pts = [
                (r["nfe"], r["psnr"]) for r in rows if r["task"] == task and r["method"] == method
            ]
            ax.plot(*zip(*pts, strict=True), marker="o", label=method)
        for r in rows:
            if r["task"] == task and r["method"] in ("observed", "BIRD (blind)"):
                ax.axhline(r["psnr"], ls="--" if r["method"] == "observed" else ":", color="gray")
        ax.set_xscale("log")
        ax.set_xticks(list(nfes), [str(n) for n in nfes])
        ax.minorticks_off()
        ax.set_title(f"{task}: PSNR vs NFE (dashed: observed, dotted: BIRD)", fontsize=6)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=5)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def parse(argv=None) -> argparse.Namespace:
    """The command line (``--quick``: a seconds-long smoke run)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("runs/compare_restoration"))
    p.add_argument("--model", type=Path, default=None,
                   help=f"a trained pipeline folder (default: {SHIPPED.parent.name}/"
                        f"{SHIPPED.name} where present, else train one into OUT)")  # fmt: skip
    p.add_argument("--retrain", action="store_true", help="train the DDPM into OUT instead")
    trains = "when a model is trained here (--retrain, or no shipped model)"
    p.add_argument("--train-steps", type=int, default=2000, help=trains)
    p.add_argument("--batch", type=int, default=32, help=trains)
    p.add_argument("--channels", type=int, default=16, help=trains)
    p.add_argument("--val-faces", type=int, default=8, help="held-out faces 0.. (validation)")
    p.add_argument("--test-faces", type=int, default=12, help="the held-out faces after them")
    p.add_argument("--nfe", type=int, nargs="+", default=[10, 20, 50])
    p.add_argument("--bird-steps", type=int, default=10)
    p.add_argument("--bird-iterations", type=int, default=300)
    p.add_argument("--bird-every", type=int, default=50, help="validation curve: every K iters")
    p.add_argument("--noise", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    p.add_argument("--workers", type=int, default=2, help="processes running the jobs")
    p.add_argument("--quick", action="store_true", help="tiny model, 2+2 faces, NFE 2 and 3")
    p.add_argument("--quiet", action="store_true")
    cfg = p.parse_args(argv)
    cfg.grids = GRIDS
    tokens = [a.split("=")[0] for a in (sys.argv[1:] if argv is None else argv)]

    def given(flag: str) -> bool:  # on the command line, abbreviations included
        return any(t.startswith("--") and len(t) > 2 and flag.startswith(t) for t in tokens)

    if cfg.quick:
        # --quick sets these: one given as well would be ignored without a word
        for flag in QUICK_SETS:
            if given(flag):
                p.error(f"{flag}: --quick sets it; leave out one or the other")
        cfg.train_steps, cfg.batch, cfg.channels, cfg.retrain = 3, 4, 8, cfg.model is None
        cfg.val_faces, cfg.test_faces, cfg.nfe = 2, 2, [2, 3]
        cfg.bird_steps, cfg.bird_iterations, cfg.bird_every, cfg.grids = 2, 2, 1, QUICK_GRIDS
    elif not cfg.retrain and (cfg.model is not None or (SHIPPED / "model_index.json").exists()):
        # no training happens: the shipped or given model is used as it is
        for flag in TRAIN_SETS:
            if given(flag):
                used = "--model" if cfg.model is not None else f"the shipped {SHIPPED.name}"
                p.error(f"{flag}: only trains a model (--retrain); this run uses {used}")
    cfg.nfes = sorted(cfg.nfe)
    held_out = len(BIRD.faces("heldout"))
    if min(cfg.val_faces, cfg.test_faces) < 1 or cfg.val_faces + cfg.test_faces > held_out:
        p.error(
            f"--val-faces {cfg.val_faces} --test-faces {cfg.test_faces}: each must be >= 1 and "
            f"their sum <= {held_out} (the held-out LFW faces)"
        )
    for flag, value in (("--workers", cfg.workers), ("--threads", cfg.threads),
                        ("--bird-every", cfg.bird_every)):  # fmt: skip
        if value < 1:
            p.error(f"{flag} must be >= 1, got {value}")
    # refused here, not after the model is trained or the first jobs have run
    counts = {"--nfe": min(cfg.nfe), "--bird-steps": cfg.bird_steps,
              "--bird-iterations": cfg.bird_iterations, "--train-steps": cfg.train_steps,
              "--batch": cfg.batch, "--channels": cfg.channels}  # fmt: skip
    bad = [f"{name} {value}" for name, value in counts.items() if value < 1]
    if bad:
        p.error(f"{', '.join(bad)}: must be >= 1")
    if not 0 <= cfg.noise < float("inf"):
        p.error(f"--noise must be a finite number >= 0 (images in [0, 1]), got {cfg.noise}")
    if cfg.retrain and cfg.model is not None:
        p.error("--retrain trains into OUT; it cannot be combined with --model")
    if len(set(cfg.nfe)) != len(cfg.nfe):
        p.error(f"--nfe {' '.join(map(str, cfg.nfe))}: each NFE at most once")
    if cfg.channels % 8:
        p.error(f"--channels {cfg.channels}: must be a multiple of 8 (the U-Net's GroupNorm)")
    if cfg.out.is_file():
        p.error(f"--out {cfg.out}: a file, not a folder")
    return cfg


def model_folder(cfg, log) -> tuple[Path, float, str]:
    """The DDPM folder, the training seconds it cost and where it came from."""
    if cfg.model is not None:
        return cfg.model, 0.0, "given"
    if not cfg.retrain and (SHIPPED / "model_index.json").exists():
        stamp = json.loads((SHIPPED / "training.json").read_text())
        return SHIPPED, float(stamp["seconds"]), "shipped"

    def train(_):
        return BIRD.train_ddpm(
            cfg.out, steps=cfg.train_steps, batch=cfg.batch, channels=cfg.channels,
            seed=cfg.seed, log=log,
        )  # fmt: skip

    # With workers, train in a forked child too: a CUDA build of torch refuses autograd in a
    # process forked after its parent ran autograd (seen with torch 2.11+cu130, no GPU needed)
    folder, seconds = (
        run_jobs({"train": ((), train)}, 2, cfg.out / "parts")["train"]
        if cfg.workers > 1
        else train(None)
    )
    return folder, seconds, "trained"


def jobs(flow, val, test, cfg, log) -> dict:
    """Every piece of work, by name: BIRD's validation runs (one per learning rate) first, then
    BIRD on the test faces once they are in, and each task × guided method."""
    bird_val = [f"bird-val {i}" for i in range(len(cfg.grids["BIRD"]))]
    todo = {
        name: ((), lambda _, hp=hp: bird_validation(hp, flow, val, cfg))
        for name, hp in zip(bird_val, cfg.grids["BIRD"], strict=True)
    }
    todo["bird-test"] = (
        tuple(bird_val),
        lambda done: evaluate_bird(flow, test, [done[n] for n in bird_val], cfg, log),
    )
    for task in TASKS:
        for method in METHODS:
            todo[f"{task} / {method}"] = (
                (),
                lambda _, t=task, m=method: evaluate_method(t, m, flow, val, test, cfg, log),
            )
    return todo


def main(argv=None) -> dict:
    """Load (or train) the DDPM, choose settings on the validation faces, score the test faces."""
    cfg = parse(argv)
    if cfg.model is not None and not (cfg.model / "model_index.json").is_file():
        # checked here, not in parse (model_folder accepts any folder): before OUT is made
        print(
            f"compare_restoration.py: error: --model {cfg.model}: not a diffusers pipeline "
            "folder (no model_index.json)",
            file=sys.stderr,
        )
        raise SystemExit(2)
    log = (lambda *a, **k: None) if cfg.quiet else (lambda *a: print(*a, flush=True))
    torch.set_num_threads(cfg.threads)
    cfg.out.mkdir(parents=True, exist_ok=True)
    folder, train_s, source = model_folder(cfg, log)
    t0, cpu0 = time.perf_counter(), _cpu_seconds()
    flow = fr.DiffusionFlow.from_diffusers(folder)  # local files only
    flow.model.requires_grad_(False)
    faces = BIRD.faces("heldout")
    val = faces[: cfg.val_faces]
    test = faces[cfg.val_faces : cfg.val_faces + cfg.test_faces]
    log(f"model: {folder} ({source}); validation: held-out faces 0-{cfg.val_faces - 1}; test: "
        f"held-out faces {cfg.val_faces}-{cfg.val_faces + cfg.test_faces - 1}; "
        f"{cfg.workers} worker(s) x {cfg.threads} thread(s)")  # fmt: skip
    done = run_jobs(jobs(flow, val, test, cfg, log), cfg.workers, cfg.out / "parts")
    rows = []
    for task in TASKS:
        op, y = observe(task, test, cfg.noise, cfg.seed + 100)
        rows.append(observed_row(task, op, y, test, cfg.noise))
        rows += [r for method in METHODS for r in done[f"{task} / {method}"]]
        if task == "gaussian deblur":
            rows.append(done["bird-test"])
    total, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
    where = (
        f" Model: {folder} ({source}); validation: held-out faces 0–{cfg.val_faces - 1}; test: "
        f"held-out faces {cfg.val_faces}–{cfg.val_faces + cfg.test_faces - 1}; seed {cfg.seed}; "
        f"{cfg.workers} worker(s) × {cfg.threads} thread(s)."
    )
    text = table(rows, cfg.noise, where)
    (cfg.out / "compare_restoration.md").write_text(text)
    log(text)
    figure(cfg.out / "compare_restoration.png", rows, test[0], cfg.nfes)
    curves = [done[f"bird-val {i}"] for i in range(len(cfg.grids["BIRD"]))]
    summary = {
        "model": str(folder),
        "model_source": source,
        "train_time_s": train_s,
        "total_time_s": total,
        "cpu_time_s": cpu,
        "threads": cfg.threads,
        "workers": cfg.workers,
        "validation_faces": list(range(cfg.val_faces)),
        "test_faces": list(range(cfg.val_faces, cfg.val_faces + cfg.test_faces)),
        "bird_validation": [{"hp": c["hp"], "psnr_by_iteration": c["curve"]} for c in curves],
        "rows": [{k: v for k, v in r.items() if k != "image"} for r in rows],
    }
    BIRD.write_summary(cfg.out, summary, "compare_restoration.py")
    log(f"total {total:.0f} s wall, {cpu:.0f} CPU s (all workers; the model's training, "
        f"{train_s:.0f} s, not included); wrote {cfg.out}")  # fmt: skip
    return summary


def _cpu_seconds() -> float:
    """CPU seconds of this process and of its finished workers."""
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


if __name__ == "__main__":
    main()
