"""Accuracy per NFE on the closed-form oracles (issue 6, item 1).

* Gaussian prior (256 coordinates, σ_c ∈ [0.5, 1.5], σ_N = 0.8, 64 samples): relative error
  ``‖x̂_0 − x_0‖ / ‖x_0‖`` against the closed-form ODE solution at ``t = 0`` (docs/math.md §2a).
* Hard Dirac mixture (4-D, 8 random centres, random weights, ``H`` diagonal in [0.3, 1],
  ``σ = 1.5``, 4000 samples): how many samples land on a different centre than a float64
  reference (per-sample Dopri5, rtol 1e-10, t_min 1e-4, then the denoising step).

flowrestore's solvers and torchdiffeq's methods run on the same :class:`InDIFlow`; torchdiffeq runs
through :class:`fr.Torchdiffeq` (integrate to the last positive grid point or ``t_min``, then the
denoising step ``x_0 = F(x_t, t)``). Fitted grids (:func:`fit_grid`) are calibrated on *other*
samples of the Gaussian oracle than those measured here (fitting the
mixture grid on an MSE objective overfitted and lost to the uniform grid, so none is used)
(``python -m benchmarks fit`` writes them to
``benchmarks/fitted_grids.json``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

import flowrestore as fr
from flowrestore.integrate import Fitted, fit_grid
from flowrestore.solvers.semilinear import SemiLinearMultistep

from .common import table

FITTED = Path(__file__).with_name("fitted_grids.json")
GAUSS_GOAL, MIX_GOAL_NFE = 1e-4, 24


def gaussian_problem(batch: int = 64, dim: int = 256, seed: int = 1, dtype=torch.float64):
    """The Gaussian-prior oracle, a batch of observations and the exact ``x(0)``."""
    std = 0.5 + torch.rand(dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    orc = fr.oracles.GaussianOracle(std=std, noise_std=0.8)
    _, y = orc.sample(batch, generator=torch.Generator().manual_seed(seed))
    return orc, y.to(dtype), orc.ode_solution(y, 0.0).to(dtype)


def mixture_problem(n: int = 4000, seed: int = 1):
    """The hard 4-D Dirac mixture, ``n`` observations and the reference landing centres."""
    g = torch.Generator().manual_seed(3)  # of seeds 1-3 the hardest for torchdiffeq's rk4
    centers = torch.randn(8, 4, generator=g, dtype=torch.float64)
    weights = torch.rand(8, generator=g, dtype=torch.float64) + 0.1
    h = 0.3 + 0.7 * torch.rand(4, generator=g, dtype=torch.float64)
    mix = fr.oracles.DiracMixture(centers=centers, weights=weights, H=h, noise_std=1.5)
    _, y, _ = mix.sample(n, generator=torch.Generator().manual_seed(seed))
    ref = fr.solve(
        fr.InDIFlow(mix.posterior_mean), fr.Dopri5(rtol=1e-10, atol=1e-12, t_min=1e-4), y
    )
    return mix, y, ref.x


def _td(method, **kw):
    return fr.Torchdiffeq(method, **kw)


def _fixed(label, solver, spacing, steps, lib="flowrestore"):
    return [(lib, label, solver, {"steps": n, "spacing": spacing}) for n in steps]


def _adaptive(label, make, rtols, lib):
    return [(lib, f"{label} rtol={r:g}", make(r), {}) for r in rtols]


def candidates(kind: str, fitted: dict):
    """(library, label, solver, solve kwargs) of every configuration measured."""
    if kind == "gaussian":
        few, more = [2, 3, 4, 5, 6, 8], [2, 3, 4, 5, 6, 8, 12, 16]
    else:
        few, more = [4, 6, 8, 12, 16, 20, 24, 32], [8, 12, 16, 20, 24, 32, 48, 64, 96]
    rtols = [1e-3, 1e-4, 1e-5, 1e-6]
    rows = []
    rows += _fixed("Euler (=InDI) uniform", fr.Euler(), fr.Uniform(), more)
    rows += _fixed("Midpoint uniform", fr.Midpoint(), fr.Uniform(), [n for n in more if n <= 48])
    rows += _fixed("Heun Power(2)", fr.Heun(), fr.Power(2.0), more)
    rows += _fixed("RK4 Power(2)", fr.RK4(), fr.Power(2.0), few)
    rows += _fixed("RK4 Power(3)", fr.RK4(), fr.Power(3.0), few)
    rows += _adaptive(
        "Dopri5 (per-sample)", lambda r: fr.Dopri5(rtol=r, atol=r * 1e-2), rtols, "flowrestore"
    )
    for order, nodes in ((2, None), (3, None), (3, 3), (3, 4)):
        s = SemiLinearMultistep(order=order, nodes=nodes)
        rows += _fixed(f"SemiLinear o{order} n{s.nodes} uniform", s, fr.Uniform(), more)
    for key, grid in fitted.get(kind, {}).items():
        order, nodes, steps = (int(v) for v in key.split("-"))
        s = SemiLinearMultistep(order=order, nodes=nodes)
        rows += _fixed(f"SemiLinear o{order} n{nodes} fitted grid", s, Fitted(tuple(grid)), [steps])
    for m in ("euler", "midpoint", "rk4"):
        sp = fr.Uniform() if m == "euler" else fr.Power(3.0 if m == "rk4" else 2.0)
        rows += _fixed(f"{m} {sp!r}", _td(m), sp, more if m != "rk4" else few, "torchdiffeq")
    rows += _fixed("rk4 Uniform()", _td("rk4"), fr.Uniform(), few, "torchdiffeq")
    for m in ("dopri5", "bosh3"):
        rows += _adaptive(m, lambda r, m=m: _td(m, rtol=r, atol=r * 1e-2), rtols, "torchdiffeq")
    return rows


def load_fitted() -> dict:
    return json.loads(FITTED.read_text()) if FITTED.exists() else {}


def fit(out: Path | None = None, quick: bool = False) -> dict:
    """Fit grids for SemiLinearMultistep on calibration samples (seeds disjoint from the test)."""
    res = load_fitted()
    orc, yc, _ = gaussian_problem(batch=16, seed=99)
    flow = fr.InDIFlow(orc.posterior_mean)
    res.setdefault("gaussian", {})
    for steps in (4, 5) if quick else (4, 5, 6):
        # fit_grid solves its own teacher (issue 16): no reference is passed
        sp = fit_grid(flow, SemiLinearMultistep(order=3, nodes=3), yc, steps)
        res["gaussian"][f"3-3-{steps}"] = list(sp.times)
    (out or FITTED).write_text(json.dumps(res, indent=1))
    return res


def run_gaussian(dtype=torch.float64, device="cpu"):
    orc, y, ref = gaussian_problem(dtype=dtype)
    flow = fr.InDIFlow(orc.posterior_mean)
    y, ref = y.to(device), ref.to(device)
    out = []
    for lib, label, solver, kw in candidates("gaussian", load_fitted()):
        sol = fr.solve(flow, solver, y, **kw)
        err = float((sol.x - ref).norm() / ref.norm())
        out.append(
            {
                "lib": lib,
                "method": label,
                "steps": kw.get("steps", "adaptive"),
                "nfe": float(sol.stats.nfe.double().mean()),
                "nfe_max": int(sol.stats.nfe.max()),
                "value": err,
            }
        )
    return out


def run_mixture(n: int = 4000, device="cpu"):
    mix, y, ref = mixture_problem(n)
    ref_c, _ = mix.nearest_center(ref)
    flow = fr.InDIFlow(mix.posterior_mean)
    out = []
    for lib, label, solver, kw in candidates("mixture", load_fitted()):
        sol = fr.solve(flow, solver, y.to(device), **kw)
        c, _ = mix.nearest_center(sol.x.cpu())
        out.append(
            {
                "lib": lib,
                "method": label,
                "steps": kw.get("steps", "adaptive"),
                "nfe": float(sol.stats.nfe.double().mean()),
                "nfe_max": int(sol.stats.nfe.max()),
                "value": int((c != ref_c).sum()),
            }
        )
    return out


def best_at_goal(rows, ok) -> list[list]:
    """Per method: the fewest NFE (max over samples) meeting ``ok(value)``."""
    best = {}
    for r in rows:
        key = (r["lib"], r["method"].split(" rtol=")[0])
        if ok(r["value"]) and (key not in best or r["nfe_max"] < best[key]["nfe_max"]):
            best[key] = r
    seen = {(r["lib"], r["method"].split(" rtol=")[0]) for r in rows}
    lines = []
    for key in sorted(seen, key=lambda k: best[k]["nfe_max"] if k in best else math.inf):
        b = best.get(key)
        lines.append(
            [
                key[0],
                key[1],
                b["nfe_max"] if b else "not reached in the sweep",
                b["value"] if b else "-",
            ]
        )
    return lines


def report(gauss, mix, plot_dir: Path | None = None) -> str:
    parts = [
        "### Gaussian-prior oracle: relative error at t = 0 vs NFE",
        "",
        f"Fewest NFE reaching relative error ≤ {GAUSS_GOAL:g} (goal: ≤ 6 NFE):",
        "",
        table(
            ["library", "method", "NFE", "rel. error"],
            best_at_goal(gauss, lambda v: v <= GAUSS_GOAL),
        ),
        "",
        "All configurations:",
        "",
        table(
            ["library", "method", "steps", "NFE", "rel. error"],
            [[r["lib"], r["method"], r["steps"], r["nfe_max"], r["value"]] for r in gauss],
        ),
        "",
        "### Hard Dirac mixture: samples on a wrong centre (of 4000) vs NFE",
        "",
        f"Fewest NFE with no sample on a wrong centre (goal: ≤ {MIX_GOAL_NFE} NFE; adaptive "
        "methods: max NFE over samples, mean in the full table):",
        "",
        table(["library", "method", "NFE (max)", "wrong"], best_at_goal(mix, lambda v: v == 0)),
        "",
        "All configurations:",
        "",
        table(
            ["library", "method", "steps", "NFE mean", "NFE max", "wrong centre"],
            [[r["lib"], r["method"], r["steps"], r["nfe"], r["nfe_max"], r["value"]] for r in mix],
        ),
    ]
    if plot_dir is not None:
        plot(gauss, mix, plot_dir)
        parts += ["", f"Plot: `{plot_dir / 'accuracy.png'}`"]
    return "\n".join(parts)


def plot(gauss, mix, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def key(r):
        return (r["lib"], r["method"].split(" rtol=")[0])

    # one colour per method across both panels (so a curve means the same thing left and right)
    keys = list(dict.fromkeys(key(r) for r in [*gauss, *mix]))
    cmap = plt.get_cmap("tab20")
    colour = {k: cmap(i % 20) for i, k in enumerate(keys)}
    fig, axes = plt.subplots(1, 2, figsize=(14, 5.5))
    for ax, rows, ylab, floor in (
        (axes[0], gauss, "relative error at t=0", 1e-12),
        (axes[1], mix, "samples on a wrong centre (+0.5)", 0.5),
    ):
        groups = {}
        for r in rows:
            groups.setdefault(key(r), []).append(r)
        for (lib, name), rs in groups.items():
            rs = sorted(rs, key=lambda r: r["nfe_max"])
            ys = [max(r["value"] + (0.5 if floor == 0.5 else 0), floor) for r in rs]
            ax.plot(
                [r["nfe_max"] for r in rs],
                ys,
                "o-" if lib == "flowrestore" else "s--",
                label=f"{lib}: {name}",
                color=colour[(lib, name)],
                ms=3,
                lw=1,
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("NFE (max over samples)")
        ax.set_ylabel(ylab)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].axhline(GAUSS_GOAL, color="k", lw=0.8)
    axes[0].axvline(6, color="k", lw=0.8)
    axes[1].axvline(MIX_GOAL_NFE, color="k", lw=0.8)
    for ax in axes:
        ax.legend(fontsize=6, ncol=1, loc="upper right")
    axes[0].set_title("Gaussian oracle")
    axes[1].set_title("Hard Dirac mixture (4000 samples)")
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    path = out / "accuracy.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
