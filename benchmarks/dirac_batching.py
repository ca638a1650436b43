"""Per-image time of a 50-step Dirac solve at batch 1 vs batch 16 (CPU by default).

The issue's setting: 3×64×64 images, ``A_t`` a Gaussian blur of width ``0.3 → 3.0`` (61-tap
kernel), ``σ_t`` geometric ``0.01 → 0.05``, Dirac's eq. 7 step (``DiracStep``), ``t_end = 0``,
``output="posterior_mean"``. The predictor is a small time-conditioned U-Net
(:class:`flowrestore.training.unet.UNet`, untrained: timing only) or the exact Dirac-mixture
posterior mean over a handful of image centres. Each step applies the 61-tap blur three times
per image (``A_t Φ``, ``A_{t−Δt} Φ`` and ``A_1 Φ`` for the data-consistency record).
Prints a markdown table::

    python benchmarks/dirac_batching.py [--predictor unet|oracle|both] [--steps 50]
                                        [--batches 1 16] [--threads N] [--repeats 2]
                                        [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import time

import torch

import flowrestore as fr
from flowrestore.flows import DiracSDE
from flowrestore.solvers import DiracStep


def make_predictor(kind: str, family, sigma, device: str = "cpu"):
    if kind == "unet":
        from flowrestore.training.unet import UNet

        net = (
            UNet(in_channels=3, base_channels=16, channel_mults=(1, 2), num_res_blocks=1)
            .eval()
            .to(device)
        )
        return lambda y, t: net(y, t)
    g = torch.Generator().manual_seed(0)
    centers = torch.rand(8, 3, 64, 64, generator=g).to(device)
    oracle = fr.oracles.DiracMixture(centers=centers, noise_std=0.05)
    k = centers.shape[0]

    def A(x, t):  # the oracle applies A_t to the K centres tiled B times at one shared time
        return family(x[:k], float(t[0])).repeat(x.shape[0] // k, 1, 1, 1)

    return oracle.dirac_predictor(A=A, sigma=sigma)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_solve(
    kind: str, batch: int, steps: int, repeats: int, device: str = "cpu"
) -> tuple[float, int]:
    family = fr.degradations.GaussianBlurFamily(kernel_size=61, width=fr.schedules.Linear(0.3, 3.0))
    sigma = fr.schedules.Geometric(0.01, 0.05)
    sde = DiracSDE(make_predictor(kind, family, sigma, device), family, sigma)
    g = torch.Generator().manual_seed(1)
    y = family(torch.rand(batch, 3, 64, 64, generator=g), 1.0) + 0.05 * torch.randn(
        batch, 3, 64, 64, generator=g
    )
    y = y.to(device)
    g = torch.Generator(device=device).manual_seed(2)  # draws on the state's device
    fr.solve(sde, DiracStep(), y, steps=2, generator=g)  # warm-up (kernel cache, allocator)
    best = float("inf")
    nfe = 0
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        sol = fr.solve(sde, DiracStep(), y, steps=steps, generator=g, output="posterior_mean")
        _sync(device)
        best = min(best, time.perf_counter() - t0)
        nfe = int(sol.stats.nfe[0])
    return best, nfe


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--predictor", choices=("unet", "oracle", "both"), default="both")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu or cuda (times include a device sync)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    kinds = ("unet", "oracle") if args.predictor == "both" else (args.predictor,)
    print(
        f"Dirac solve, {args.steps} DiracStep (eq. 7) steps, 3×64×64, blur 61-tap, float32, "
        f"{torch.get_num_threads()} CPU thread(s), device {args.device}, best of {args.repeats}\n"
    )
    print("| predictor | batch | NFE | solve (s) | per image (ms) | per image per step (ms) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    with torch.inference_mode():
        for kind in kinds:
            for b in args.batches:
                sec, nfe = time_solve(kind, b, args.steps, args.repeats, args.device)
                print(
                    f"| {kind} | {b} | {nfe} | {sec:.3f} | {1e3 * sec / b:.1f} | "
                    f"{1e3 * sec / b / args.steps:.2f} |"
                )


if __name__ == "__main__":
    main()
