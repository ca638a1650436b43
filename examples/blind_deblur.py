"""Blind deblurring of faces with BIRD through a small generative InDI flow (docs/math.md §1, §5).

BIRD: Chihaoui, Lemkhenter & Favaro, "Blind Image Restoration via Fast Diffusion Inversion",
NeurIPS 2024; the flow is InDI's (Delbracio & Milanfar, "Inversion by Direct Iteration", TMLR 2023).

1. **Train a generative InDI model** on the bundled LFW faces (``skimage.data.lfw_subset()``: its
   first 100 images are faces; :func:`flowrestore.training.lfw_faces` splits them 80 train / 20
   held out), cropped to 24×24 grayscale. "Generative" means the degraded image is pure noise:
   ``y = randn_like(x)``, so the InDI flow carries noise at ``t = 1`` to faces at ``t = 0``. The
   loss is :func:`flowrestore.training.indi_loss` with ``p = 2`` (the flow needs the posterior
   *mean*) on a tiny :class:`flowrestore.training.UNet`; the trained weights are cached in the
   output directory, so a re-run skips training.
2. **Blur held-out faces** with per-face Gaussian widths unknown to the solver, plus noise.
3. **Invert**: :class:`flowrestore.inversion.BlindInversion` with ``Ψ`` = a few Euler steps of the
   flow, the latent kept on its sphere and the width (one unknown per face) in its bounds.
4. Print estimated vs true widths and PSNRs; write ``blind_deblur.png`` (observed | restored |
   truth).

Run: ``python examples/blind_deblur.py --out runs/blind_deblur`` (a few minutes on 2 CPU cores;
``--help`` for the knobs). ``--train-steps 5 --iterations 3 --faces 2`` is a seconds-long smoke run.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

import flowrestore as fr
from flowrestore.inversion import BlindInversion, Param
from flowrestore.metrics import psnr
from flowrestore.training import EMA, UNet, indi_loss, lfw_faces

SIZE = 24  # LFW subset faces are 25×25; the U-Net wants multiples of 4


def faces(split: str, *, offset: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Grayscale faces ``[N, 1, 24, 24]`` in [0, 1]: a 24×24 crop of the 25×25 images."""
    i, j = offset
    return lfw_faces(split, channels=1)[:, :, i : i + SIZE, j : j + SIZE].contiguous()


def train_generative(
    out: Path, *, steps: int, batch: int, base_channels: int, seed: int, lr: float = 2e-3, log=print
) -> torch.nn.Module:
    """Train (or load from ``out``) an InDI predictor for ``y`` = pure Gaussian noise."""
    config = {
        "steps": steps,
        "batch": batch,
        "base_channels": base_channels,
        "seed": seed,
        "lr": lr,
        "size": SIZE,
        "version": 3,  # 3: initial weights drawn from the seed
    }
    path = out / "generative_unet.pt"
    torch.manual_seed(seed)  # the initial weights too: the same seed trains the same model
    model = UNet(
        in_channels=1, base_channels=base_channels, channel_mults=(1, 2, 2), residual=False
    )
    if path.exists():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if saved.get("config") == config:
            model.load_state_dict(saved["model"])
            log(f"loaded cached generative model from {path}")
            return model.eval()
        log(f"replacing {path} (trained with {saved.get('config')}) by {config}")
    # 4 crop offsets × 2 flips of the 80 training faces
    x_train = torch.cat([faces("train", offset=(i, j)) for i in (0, 1) for j in (0, 1)])
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    ema = EMA(model, decay=0.995)
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        idx = torch.randint(0, len(x_train), (batch,), generator=g)
        x = x_train[idx]
        flip = torch.rand(batch, generator=g) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        y = torch.randn(x.shape, generator=g)  # generative: the "degraded" image is noise
        loss = indi_loss(model, x, y, p=2, generator=g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        ema.update(model)
        if step % max(1, steps // 10) == 0 or step == steps:
            log(
                f"  train step {step:5d}/{steps}  loss {loss.item():.4f}  "
                f"({time.perf_counter() - t0:.0f} s)"
            )
    ema.copy_to(model)
    out.mkdir(parents=True, exist_ok=True)
    torch.save({"config": config, "model": model.state_dict()}, path)
    return model.eval()


def figure(path: Path, y, x_hat, x, w_true, w_est) -> None:
    """Rows: faces; columns: observed | restored | truth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = x.shape[0]
    fig, axes = plt.subplots(n, 3, figsize=(4.5, 1.6 * n), squeeze=False)
    for i in range(n):
        for j, (img, title) in enumerate(
            (
                (y, f"observed (w={w_true[i]:.2f})"),
                (x_hat, f"restored (ŵ={w_est[i]:.2f})"),
                (x, "truth"),
            )
        ):
            ax = axes[i, j]
            ax.imshow(img[i, 0].clamp(0, 1).numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_title(title, fontsize=6)
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_summary(out: Path, summary: dict, example: str) -> Path:
    """Write ``OUT/summary.json`` tagged ``"example": example``. The examples share that name (the
    README runs them all with ``--out ./out``): replacing one another example wrote (or one of
    unknown origin) is said on stderr, even with ``--quiet``."""
    path = out / "summary.json"
    if path.exists():
        try:
            before = json.loads(path.read_text()).get("example")
        except (ValueError, AttributeError):
            before = None
        if before != example:
            print(
                f"{example}: replacing {path} (written by {before or 'something else'})",
                file=sys.stderr,
            )
    path.write_text(json.dumps({"example": example, **summary}, indent=1))
    return path


def check_args(p: argparse.ArgumentParser, args) -> None:
    """Refuse, before any training, a setting the inversion would refuse after it (exit 2)."""
    held_out = len(faces("heldout"))
    rules = (
        ("--out", args.out, "a folder, not a file", not args.out.is_file()),
        ("--train-steps", args.train_steps, "at least 1", args.train_steps >= 1),
        ("--batch", args.batch, "at least 1", args.batch >= 1),
        ("--base-channels", args.base_channels, "at least 1", args.base_channels >= 1),
        (
            "--faces",
            args.faces,
            f"in 1..{held_out} (the held-out faces)",
            1 <= args.faces <= held_out,
        ),
        ("--flow-steps", args.flow_steps, "at least 1", args.flow_steps >= 1),
        ("--iterations", args.iterations, "at least 0", args.iterations >= 0),
        ("--lr-latent", args.lr_latent, "finite and above 0", 0 < args.lr_latent < math.inf),
        ("--lr-width", args.lr_width, "finite and above 0", 0 < args.lr_width < math.inf),
        (
            "--threads",
            args.threads,
            "at least 1 (or left out)",
            args.threads is None or args.threads >= 1,
        ),
        (
            "--init-width",
            args.init_width,
            "in [0.3, 3.0] (its bounds)",
            0.3 <= args.init_width <= 3,
        ),
        ("--noise", args.noise, "finite and at least 0", 0 <= args.noise < math.inf),
    )
    for flag, value, want, ok in rules:
        if not ok:
            p.error(f"{flag} must be {want}, got {value}")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("runs/blind_deblur"))
    p.add_argument("--train-steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--base-channels", type=int, default=16)
    p.add_argument("--faces", type=int, default=6, help="held-out faces to restore")
    p.add_argument("--flow-steps", type=int, default=5, help="Euler steps of Ψ")
    p.add_argument("--iterations", type=int, default=200)
    p.add_argument("--lr-latent", type=float, default=2e-2)
    p.add_argument("--lr-width", type=float, default=2e-2)
    p.add_argument("--gradient", choices=("exact", "detached"), default="exact")
    p.add_argument("--noise", type=float, default=0.01)
    p.add_argument("--init-width", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    check_args(p, args)  # before training: a negative --faces sliced 19 faces silently
    log = (lambda *a, **k: None) if args.quiet else print
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)

    model = train_generative(
        args.out,
        steps=args.train_steps,
        batch=args.batch,
        base_channels=args.base_channels,
        seed=args.seed,
        log=log,
    )
    model.requires_grad_(False)  # only the latent and the width are optimised
    flow = fr.InDIFlow(model)

    # held-out faces, each blurred with its own width (unknown to the inversion), plus noise
    g = torch.Generator().manual_seed(args.seed + 1)
    x = faces("heldout")[: args.faces]
    n = x.shape[0]
    w_true = torch.linspace(1.0, 2.5, n) if n > 1 else torch.tensor([1.5])
    y = fr.degradations.GaussianBlur(w_true, kernel_size=19)(x)
    y = y + args.noise * torch.randn(y.shape, generator=g)

    inv = BlindInversion(
        flow,
        solver=fr.Euler(),
        steps=args.flow_steps,
        degradation=fr.BlindOperator(
            fr.degradations.GaussianBlur, width=Param(init=args.init_width, bounds=(0.3, 3.0))
        ),
        iterations=args.iterations,
        lr_latent=args.lr_latent,
        lr_degradation=args.lr_width,
        gradient=args.gradient,
    )
    res = inv.run(
        y, generator=torch.Generator().manual_seed(args.seed + 2), progress=not args.quiet
    )
    w_est = res.params["width"]
    p_obs, p_res = psnr(y.clamp(0, 1), x), psnr(res.x.clamp(0, 1), x)
    log(
        f"BIRD ({res.gradient} gradient, {args.flow_steps} Euler steps, {args.iterations} "
        f"iterations): {res.time_s:.1f} s for {n} faces ({res.time_s / n:.2f} s per face)"
    )
    log(" face  true w  est. w   rel.err  PSNR observed  PSNR restored  residual")
    for i in range(n):
        log(
            f" {i:4d}  {w_true[i]:6.3f}  {w_est[i]:6.3f}  {abs(w_est[i] / w_true[i] - 1):7.1%}"
            f"  {p_obs[i]:10.2f} dB  {p_res[i]:10.2f} dB  {res.residual_rms[i]:.4f}"
        )
    log(
        f" mean  PSNR observed {p_obs.mean():.2f} dB, restored {p_res.mean():.2f} dB; "
        f"noise {args.noise}"
    )
    fig_path = args.out / "blind_deblur.png"
    figure(fig_path, y, res.x, x, w_true.tolist(), w_est.tolist())
    summary = {
        # every option it ran with (the seed included): the run can be repeated from the summary
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "gradient": res.gradient,
        "iterations": args.iterations,
        "time_s": res.time_s,
        "true_width": w_true.tolist(),
        "estimated_width": w_est.tolist(),
        "psnr_observed": p_obs.tolist(),
        "psnr_restored": p_res.tolist(),
        "residual_rms": res.residual_rms.tolist(),
        "figure": str(fig_path),
    }
    write_summary(args.out, summary, "blind_deblur.py")
    log(f"wrote {fig_path}")
    return summary


if __name__ == "__main__":
    main()
