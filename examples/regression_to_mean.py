"""Regression to the mean: one-step MMSE vs InDI with N steps on a 2-D Dirac mixture.

The InDI paper's figure 2 (Delbracio & Milanfar, "Inversion by Direct Iteration", TMLR 2023;
docs/math.md §2c): with the exact posterior mean as predictor, one step
(``N = 1``) returns ``E[x | y]``, a weighted average of the centres that lies *between* them
(regression to the mean), while InDI with many small steps transports every observation onto one
of the centres, and the landing frequencies match the mixture weights.

    python examples/regression_to_mean.py [--out ./out] [--samples 4000] [--steps 1 2 5 50]
        [--sigma 1.0] [--seed 0]

Writes ``OUT/regression_to_mean.png`` and prints its path.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import flowrestore as fr


def main(argv=None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="./out")
    p.add_argument("--samples", type=int, default=4000)
    p.add_argument("--steps", type=int, nargs="+", default=[1, 2, 5, 50])
    p.add_argument("--sigma", type=float, default=1.0, help="observation noise σ")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if Path(a.out).is_file():
        p.error(f"--out {a.out}: a file, not a folder")
    if a.samples < 1 or min(a.steps) < 1:
        p.error(f"--samples and --steps must be >= 1, got {a.samples} and {a.steps}")
    if len(set(a.steps)) != len(a.steps):
        p.error(f"--steps {' '.join(map(str, a.steps))}: each step count at most once")
    if not 0 < a.sigma < float("inf"):
        p.error(f"--sigma must be a finite number > 0, got {a.sigma}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    centers = torch.tensor(
        [[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]], dtype=torch.float64
    )
    weights = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    mix = fr.oracles.DiracMixture(centers=centers, weights=weights, noise_std=a.sigma)
    _, y, _ = mix.sample(a.samples, generator=torch.Generator().manual_seed(a.seed))
    flow = fr.InDIFlow(mix.posterior_mean)

    panels = [("observations y", y)]
    for n in a.steps:
        x = fr.solve(flow, fr.InDISampler(), y, steps=n).x
        panels.append(("one step = MMSE E[x|y]" if n == 1 else f"InDI, {n} steps", x))

    fig, axes = plt.subplots(
        1, len(panels), figsize=(3.2 * len(panels), 3.4), sharex=True, sharey=True
    )
    for ax, (title, pts) in zip(axes, panels, strict=True):
        ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.3, color="tab:blue", rasterized=True)
        ax.scatter(centers[:, 0], centers[:, 1], s=60, marker="x", color="tab:red")
        idx, dist = mix.nearest_center(pts)
        freq = torch.bincount(idx, minlength=4).double() / len(idx)
        on = float((dist < 0.05).double().mean())
        ax.set_title(f"{title}\non a centre: {100 * on:.0f}%", fontsize=9)
        if title != "observations y":
            ax.text(
                0.02,
                0.02,
                "freq " + " ".join(f"{v:.2f}" for v in freq.tolist()),
                transform=ax.transAxes,
                fontsize=7,
            )
        ax.set_xlim(-3, 3)
        ax.set_ylim(-3, 3)
        ax.set_aspect("equal")
    w = " ".join(f"{v:g}" for v in weights.tolist())
    fig.suptitle(f"Regression to the mean (weights {w}, σ = {a.sigma:g})", fontsize=10)
    fig.tight_layout()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "regression_to_mean.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(path)
    return path


if __name__ == "__main__":
    main()
