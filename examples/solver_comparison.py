"""Solver comparison on the closed-form oracles: error vs NFE for every solver.

Left: the Gaussian-prior oracle (relative error of ``x̂_0`` against the closed-form ODE solution).
Right: a 4-D Dirac mixture (fraction of samples landing on a different centre than a tight
float64 reference). flowrestore's solvers and torchdiffeq's methods (via ``fr.Torchdiffeq``) run
on the same ``InDIFlow``: the residual-flow ODE ``dx/dt = (x − F(x, t))/t`` of InDI (Delbracio &
Milanfar, "Inversion by Direct Iteration", TMLR 2023) from ``t = 1`` (``x = y``) to ``t = 0``
(docs/math.md §1; Euler is the InDI sampler, its semi-linear form gives the multistep solvers),
with the exact ``F = E[x | x_t]`` of the closed-form oracles (§2); the solvers and their
step-size control are those of §6.

    python examples/solver_comparison.py [--out ./out] [--quick]

Writes ``OUT/solver_comparison.png`` and prints its path.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import flowrestore as fr


def solvers(quick: bool):
    fixed = [2, 4, 8] if quick else [2, 3, 4, 6, 8, 12, 16, 24, 32]
    rtols = [1e-3] if quick else [1e-2, 1e-3, 1e-4, 1e-5, 1e-6]
    out = {
        "Euler (=InDI)": (fr.Euler(), fr.Uniform(), fixed),
        "Heun, Power(2)": (fr.Heun(), fr.Power(2.0), fixed),
        "RK4, Power(2)": (fr.RK4(), fr.Power(2.0), fixed),
        "SemiLinear order 2": (fr.SemiLinearMultistep(order=2), fr.Uniform(), fixed),
        "SemiLinear order 3": (fr.SemiLinearMultistep(order=3), fr.Uniform(), fixed),
        "SemiLinear order 3, 4 nodes": (
            fr.SemiLinearMultistep(order=3, nodes=4),
            fr.Uniform(),
            fixed,
        ),
        "torchdiffeq rk4, Power(3)": (fr.Torchdiffeq("rk4"), fr.Power(3.0), fixed),
    }
    adaptive = {
        "Dopri5 (per-sample)": [fr.Dopri5(rtol=r, atol=r * 1e-2) for r in rtols],
        "Bosh3 (per-sample)": [fr.Bosh3(rtol=r, atol=r * 1e-2) for r in rtols],
        "torchdiffeq dopri5": [fr.Torchdiffeq("dopri5", rtol=r, atol=r * 1e-2) for r in rtols],
    }
    return out, adaptive


def curves(flow, y, metric, quick):
    fixed, adaptive = solvers(quick)
    res = {}
    for name, (solver, spacing, steps) in fixed.items():
        res[name] = []
        for n in steps:
            sol = fr.solve(flow, solver, y, steps=n, spacing=spacing)
            res[name].append((int(sol.stats.nfe.max()), metric(sol.x)))
    for name, sols in adaptive.items():
        res[name] = []
        for solver in sols:
            sol = fr.solve(flow, solver, y)
            res[name].append((int(sol.stats.nfe.max()), metric(sol.x)))
    return res


def main(argv=None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="./out")
    p.add_argument("--quick", action="store_true", help="a few points per curve (smoke test)")
    a = p.parse_args(argv)
    if Path(a.out).is_file():
        p.error(f"--out {a.out}: a file, not a folder")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g = torch.Generator().manual_seed(0)
    dim, batch, n_mix = (16, 4, 200) if a.quick else (256, 32, 2000)
    orc = fr.oracles.GaussianOracle(
        std=0.5 + torch.rand(dim, generator=g, dtype=torch.float64), noise_std=0.8
    )
    _, y = orc.sample(batch, generator=g)
    ref = orc.ode_solution(y, 0.0)
    gauss = curves(
        fr.InDIFlow(orc.posterior_mean),
        y,
        lambda x: max(float((x - ref).norm() / ref.norm()), 1e-16),
        a.quick,
    )

    mix = fr.oracles.DiracMixture(
        centers=torch.randn(8, 4, generator=g, dtype=torch.float64),
        weights=torch.rand(8, generator=g, dtype=torch.float64) + 0.1,
        H=0.3 + 0.7 * torch.rand(4, generator=g, dtype=torch.float64),
        noise_std=1.5,
    )
    _, ym, _ = mix.sample(n_mix, generator=g)
    mflow = fr.InDIFlow(mix.posterior_mean)
    ref_c = mix.nearest_center(fr.solve(mflow, fr.Dopri5(rtol=1e-9, atol=1e-11, t_min=1e-4), ym).x)[
        0
    ]
    mixture = curves(
        mflow,
        ym,
        lambda x: float((mix.nearest_center(x)[0] != ref_c).double().mean()) + 0.5 / n_mix,
        a.quick,
    )

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, res, ylabel in (
        (axes[0], gauss, "relative error at t = 0"),
        (axes[1], mixture, "fraction on a wrong centre (+0.5/M)"),
    ):
        for name, pts in res.items():
            pts = sorted(pts)
            style = "s--" if "torchdiffeq" in name else "o-"
            ax.plot([q[0] for q in pts], [q[1] for q in pts], style, ms=3, lw=1, label=name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("NFE")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_title("Gaussian-prior oracle")
    axes[1].set_title(f"4-D Dirac mixture ({n_mix} samples)")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "solver_comparison.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(path)
    return path


if __name__ == "__main__":
    main()
