"""Dirac on a 2-D mixture: trajectories, data consistency along the reverse process, early stopping.

DiracDiffusion (Fabian, Tinaz & Soltanolkotabi, "DiracDiffusion: Denoising and Incremental
Reconstruction with Assured Data-Consistency", ICML 2024) in the setting of docs/math.md §4, with
the exact predictor ``Φ = E[x_0 | y_t]`` from the oracle: prior ``Σ_i w_i δ(x − c_i)`` with
centres ``(±1, ±1)`` and weights ``(0.1, 0.2, 0.3, 0.4)``, degradation ``A_t = diag(a_t)``,
``a_t = 1 − t (1 − (1, 0.3))`` (the second coordinate shrinks to 0.3 at ``t = 1``) and ``σ_t``
geometric 0.01 → 0.5. Observations ``y_1 = A_1 x_0 + σ_1 z`` (``x_0`` ~
prior) are run back to ``t = 0`` by Dirac's discrete reverse step (``fr.DiracStep``, paper eq. 7).

Three panels:

1. reverse-SDE trajectories of a few hundred samples from ``y_1`` to ``y_0``, coloured by the
   centre they land on (the landing frequencies tend to the weights, docs/math.md §4);
2. data consistency ``‖ỹ − A_1(Φ(y_t, t))‖`` along the reverse process
   (``sol.records["data_consistency"]``; ``ỹ = y_1``), mean and quartile band over samples;
3. early stopping: the posterior-mean output ``Φ(y_{t_end}, t_end)`` (``output="posterior_mean"``)
   for ``t_end`` = 1 (no step: the MMSE estimate), 0.95, ..., 0.25, 0: its distortion (mean squared
   error to the true ``x_0``) against two perception proxies, the fraction of outputs within 0.05
   of a centre and the energy distance of the output cloud to the prior. Stopping early lowers the
   distortion; running to 0 makes the outputs look like prior samples (the distortion–perception
   trade-off). Every early-stopped solve reuses the same noise, so it stops the *same* paths
   (checked); the curves evaluate ``Φ`` along the saved path, the markers are those solves.

    python examples/dirac_mixture.py [--out ./out] [--samples 4000] [--steps 200] [--seed 0]
        [--show 300]

Writes ``OUT/dirac_mixture.png``, prints its path and a table of the numbers, and returns them
(``main()`` -> dict) for the smoke test.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch

import flowrestore as fr

T_ENDS = (1.0, 0.95, 0.9, 0.85, 0.75, 0.5, 0.25, 0.0)
ON_CENTRE = 0.05
ENERGY_POINTS = 2000


def setup():
    """The docs/math.md §4 mixture, its degradation family and noise schedule."""
    centers = torch.tensor(
        [[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]], dtype=torch.float64
    )
    weights = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    d = torch.tensor([1.0, 0.3], dtype=torch.float64)
    family = fr.degradations.DiagonalFamily(
        a=lambda t: 1 - t[:, None] * (1 - d.to(t)),
        derivative=lambda t: -(1 - d.to(t)) + 0 * t[:, None],
    )
    sigma = fr.schedules.Geometric(0.01, 0.5)
    mix = fr.oracles.DiracMixture(centers=centers, weights=weights, H=d, noise_std=0.5)
    return mix, family, sigma


def energy_distance(x: torch.Tensor, mix) -> float:
    """Energy distance between the empirical law of ``x`` ``[n, 2]`` (its first 2000 points) and
    the prior: ``2 E‖X − C‖ − E‖X − X'‖ − E‖C − C'‖``, exact in the prior; ≥ 0, and ≈ 0 only
    when the cloud sits on the centres with the prior's weights."""
    x = x[:ENERGY_POINTS]  # n² cost; the curve evaluates ~40 of these
    c, w = mix.centers, mix.weights
    xc = (torch.cdist(x, c) * w).sum(1).mean()
    xx = torch.cdist(x, x).mean()
    cc = w @ torch.cdist(c, c) @ w
    return float(2 * xc - xx - cc)


def metrics(out: torch.Tensor, x0: torch.Tensor, mix) -> dict:
    """Distortion (MSE to the true ``x_0``) and the two perception proxies of an output cloud."""
    _, d = mix.nearest_center(out)
    return {
        "mse": float(((out - x0) ** 2).sum(1).mean()),
        "on_centre": float((d < ON_CENTRE).double().mean()),
        "energy": energy_distance(out, mix),
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="./out")
    p.add_argument("--samples", type=int, default=4000)
    p.add_argument("--steps", type=int, default=200, help="reverse steps from t = 1 to t = 0")
    p.add_argument("--show", type=int, default=300, help="trajectories drawn in panel 1")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if Path(a.out).is_file():
        p.error(f"--out {a.out}: a file, not a folder")
    if a.steps < 1:
        p.error(f"--steps must be >= 1, got {a.steps}")
    if a.samples < 2:
        p.error(f"--samples must be >= 2, got {a.samples}")
    if a.show < 0:
        p.error(f"--show must be >= 0, got {a.show}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    start = time.perf_counter()
    mix, family, sigma = setup()
    x0, y1, label = mix.sample(a.samples, generator=torch.Generator().manual_seed(a.seed))
    sde = fr.DiracSDE(mix.dirac_predictor(A=family, sigma=sigma), family, sigma)
    solver = fr.DiracStep()
    grid = torch.linspace(1.0, 0.0, a.steps + 1, dtype=torch.float64)

    def noise():  # the same Brownian draws for every solve: early stopping stops the same paths
        return torch.Generator().manual_seed(a.seed + 1)

    full = fr.solve(sde, solver, y1, grid=grid, save_at="steps", generator=noise())
    landed, dist = mix.nearest_center(full.x)
    landing = torch.bincount(landed, minlength=4).double() / a.samples
    correct = float((landed == label).double().mean())
    dc = full.records["data_consistency"]  # [steps, B], at each step's start time
    dc_t = grid[:-1]

    # Early stopping. The curves: Φ(y_t, t) on the saved path at every `every`-th grid time.
    # The table: one solve per t_end with output="posterior_mean" (same noise, so the same paths;
    # checked against the curve).
    every = max(1, a.steps // 40)
    curve_k = list(range(0, a.steps + 1, every))
    if curve_k[-1] != a.steps:
        curve_k.append(a.steps)
    curve = [metrics(sde.denoise(grid[k], full.trajectory[k]), x0, mix) for k in curve_k]
    curve_t = grid[curve_k]
    rows = []
    for t_end in T_ENDS:
        k = round((1.0 - t_end) * a.steps)
        if k == 0:  # no step: Φ(y_1, 1), the MMSE estimate
            out = sde.denoise(grid[0], y1)
        else:
            out = fr.solve(
                sde, solver, y1, grid=grid[: k + 1], generator=noise(), output="posterior_mean"
            ).x
        if not torch.allclose(out, sde.denoise(grid[k], full.trajectory[k]), atol=1e-10):
            raise RuntimeError(f"early-stopped solve at t = {float(grid[k]):g} left the path")
        rows.append({"t_end": float(grid[k]), **metrics(out, x0, mix)})
    elapsed = time.perf_counter() - start

    # ------------------------------------------------------------------ figure
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    ax = axes[0]
    traj = full.trajectory  # [steps + 1, B, 2], t = 1 → 0
    show = min(a.show, a.samples)
    for j in range(show):
        ax.plot(traj[:, j, 0], traj[:, j, 1], lw=0.3, alpha=0.3, color=colors[int(landed[j])])
    ax.scatter(traj[0, :show, 0], traj[0, :show, 1], s=3, color="0.4", label="y_1", zorder=3)
    a1c = mix.apply_H(mix.centers)
    ax.scatter(a1c[:, 0], a1c[:, 1], s=50, marker="+", color="k", label="A_1 c_i", zorder=4)
    ax.scatter(
        mix.centers[:, 0],
        mix.centers[:, 1],
        s=90,
        marker="x",
        color="k",
        lw=2,
        label="centres c_i",
        zorder=4,
    )
    for i, (c, w) in enumerate(zip(mix.centers, mix.weights, strict=True)):
        ax.annotate(
            f"w={float(w):.1f}  landed {float(landing[i]):.3f}",
            (float(c[0]), float(c[1])),
            xytext=(0, 10 if c[1] > 0 else -16),
            textcoords="offset points",
            ha="center",
            fontsize=8,
            color=colors[i],
        )
    ax.set_xlim(-3.2, 2.6)
    ax.set_ylim(-2.2, 2.2)
    ax.set_aspect("equal")
    ax.legend(loc="upper left", fontsize=7, framealpha=0.8)
    ax.set_title(
        f"reverse SDE, {show} of {a.samples} paths, coloured by landing centre", fontsize=9
    )

    ax = axes[1]
    lo, hi = torch.quantile(dc, torch.tensor([0.25, 0.75], dtype=dc.dtype), dim=1)
    ax.fill_between(dc_t, lo, hi, alpha=0.3, label="quartiles over samples")
    ax.plot(dc_t, dc.mean(1), lw=2, label="mean")
    # E‖σ z‖ in 2-D for the observation noise σ of y_1: ‖ỹ − A_1 x_0‖ on average
    noise_level = float(mix.noise_std) * math.sqrt(math.pi / 2)
    ax.axhline(noise_level, ls="--", color="k", lw=1, label="E‖σ_1 z‖ (true x_0)")
    ax.set_xlim(1, 0)
    ax.set_xlabel("t (reverse process runs 1 → 0)")
    ax.set_ylabel("‖ỹ − A_1(Φ(y_t, t))‖")
    ax.legend(fontsize=8)
    ax.set_title("data consistency along the reverse process", fontsize=9)

    ax = axes[2]
    ct = curve_t.tolist()
    te = [r["t_end"] for r in rows]
    mmse = rows[0]["mse"]
    ax.plot(ct, [c["mse"] for c in curve], color="tab:purple", label="distortion: MSE to x_0")
    ax.plot(te, [r["mse"] for r in rows], "o", color="tab:purple", ms=4)
    ax.axhline(2 * mmse, ls=":", color="tab:purple", lw=1, label="2 × MMSE (posterior sample)")
    ax.set_xlabel("t_end (early stop; output Φ(y_t_end, t_end))")
    ax.set_ylabel("MSE to x_0", color="tab:purple")
    ax.set_xlim(1.02, -0.02)
    ax2 = ax.twinx()
    ax2.plot(
        ct,
        [c["on_centre"] for c in curve],
        "--",
        color="tab:green",
        label=f"within {ON_CENTRE} of a centre",
    )
    ax2.plot(te, [r["on_centre"] for r in rows], "s", color="tab:green", ms=4)
    ax2.plot(
        ct, [c["energy"] for c in curve], "--", color="tab:brown", label="energy distance to prior"
    )
    ax2.plot(te, [r["energy"] for r in rows], "^", color="tab:brown", ms=4)
    ax2.set_ylabel("perception proxies")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="center right")
    ax.set_title("early stopping: distortion vs perception (markers: table)", fontsize=9)
    s0, s1 = (float(v) for v in sigma(torch.tensor([0.0, 1.0], dtype=torch.float64)))
    a1 = ", ".join(f"{float(v):g}" for v in family.a(torch.ones(1, dtype=torch.float64))[0])
    fig.suptitle(
        f"Dirac on a 2-D mixture: A_t = diag(1 − t (1 − a_1)), a_1 = ({a1}), "
        f"σ_t = {s0:g}^(1−t) {s1:g}^t, exact Φ, DiracStep (eq. 7), {a.steps} steps",
        fontsize=10,
    )
    fig.tight_layout()
    out_dir = Path(a.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "dirac_mixture.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)

    # ------------------------------------------------------------------ table
    se = (mix.weights * (1 - mix.weights) / a.samples).sqrt()
    print(f"landing frequencies ({a.samples} samples, {a.steps} steps, seed {a.seed}):")
    print("  centre      weight  landed  (±1 s.e.)")
    for i in range(4):
        c = mix.centers[i].tolist()
        print(
            f"  ({c[0]:+.0f}, {c[1]:+.0f})    {float(mix.weights[i]):.3f}   "
            f"{float(landing[i]):.3f}   ({float(se[i]):.3f})"
        )
    print(
        f"  landed on its own x_0: {correct:.3f}; max distance of y_0 to its centre: "
        f"{float(dist.max()):.3f}"
    )
    print("early stopping (output = posterior mean Φ(y_t_end, t_end)):")
    print(f"  MMSE (t_end = 1) {mmse:.4f}; a posterior sample has 2 × MMSE = {2 * mmse:.4f}")
    print(f"  t_end   MSE to x_0   within {ON_CENTRE:g} of a centre   energy distance to prior")
    for r in rows:
        print(
            f"  {r['t_end']:.2f}    {r['mse']:.4f}       {r['on_centre']:.3f}"
            f"                     {r['energy']:.4f}"
        )
    print(
        f"data consistency: mean {float(dc[0].mean()):.3f} at t = 1 → "
        f"{float(dc[-1].mean()):.3f} at t = {float(dc_t[-1]):.3g} (E‖σ_1 z‖ = {noise_level:.3f})"
    )
    print(f"time: {elapsed:.1f} s")
    print(path)
    return {
        "path": path,
        "weights": mix.weights.tolist(),
        "landing": landing.tolist(),
        "correct": correct,
        "early_stopping": rows,
        "data_consistency_mean": dc.mean(1).tolist(),
        "seconds": elapsed,
    }


if __name__ == "__main__":
    main()
