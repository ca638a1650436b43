"""Loop overhead per step with a near-free predictor (issue 6, item 2).

Three loops integrate the same drift on the same grid (``steps`` steps from ``t = 1`` to
``t = 0.01``, so no endpoint special case is involved) and the wall time per step is compared:

* ``flowrestore`` — ``fr.solve(fr.InDIFlow(F), fr.Euler() | fr.RK4(), y, grid=grid)`` with its
  default options (output checks, device-side non-finite tracking);
* ``torchdiffeq`` — ``torchdiffeq.odeint(drift, y, grid, method="euler" | "rk4")``;
* ``plain`` — a hand-written ``for`` loop of the same update;
* ``flowrestore`` with ``check_finite=False`` (no per-step non-finite tracking) as a fourth column.

``F(x, t) = x`` (the drift is then ``0``) is nearly free, so what is measured is the loop. The SDE
table compares ``fr.EulerMaruyama`` on an ``fr.SDEFlow`` with ``torchsde.sdeint(method="euler")``
(additive noise, near-free drift and diffusion). Times are the minimum over interleaved repeats.
"""

from __future__ import annotations

import torch

import flowrestore as fr

from .common import table, time_interleaved


def _ode_variants(method: str, shape, steps: int, device, dtype=torch.float32):
    import torchdiffeq

    y = torch.randn(shape, device=device, dtype=dtype)
    grid = torch.linspace(1.0, 0.01, steps + 1, dtype=torch.float64)
    grid_dev = grid.to(device=device, dtype=dtype)
    flow = fr.InDIFlow(lambda x, t: x)
    solver = {"euler": fr.Euler(), "rk4": fr.RK4()}[method]

    def drift(t, x):
        return flow.drift(t, x)

    def fr_run():
        return fr.solve(flow, solver, y, grid=grid).x

    def td_run():
        return torchdiffeq.odeint(drift, y, grid_dev, method=method)[-1]

    ts = grid_dev
    hs = grid_dev.diff()

    def plain_run():
        x = y
        for i in range(steps):
            t, h = ts[i], hs[i]
            if method == "euler":
                x = x + h * drift(t, x)
            else:
                k1 = drift(t, x)
                k2 = drift(t + h / 2, x + (h / 2) * k1)
                k3 = drift(t + h / 2, x + (h / 2) * k2)
                k4 = drift(t + h, x + h * k3)
                x = x + (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4)
        return x

    def fr_nocheck():
        return fr.solve(flow, solver, y, grid=grid, check_finite=False).x

    return {
        "flowrestore": fr_run,
        "torchdiffeq": td_run,
        "plain": plain_run,
        "flowrestore_nocheck": fr_nocheck,
    }


def _sde_variants(shape, steps: int, device, dtype=torch.float32):
    import torchsde

    b = shape[0]
    y = torch.randn(shape, device=device, dtype=dtype)
    flat = y.reshape(b, -1)
    f = lambda t, x: -0.1 * x  # noqa: E731 (near-free drift and diffusion)
    g = lambda t, x: torch.ones_like(x) * 0.1  # noqa: E731
    flow = fr.SDEFlow(f, g, noise_type="diagonal")
    grid = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
    solver = fr.solvers.EulerMaruyama()

    class SDE(torch.nn.Module):
        noise_type, sde_type = "diagonal", "ito"

        def f(self, t, x):
            return f(t, x)

        def g(self, t, x):
            return g(t, x)

    sde = SDE()
    ts = grid.to(device=device, dtype=dtype)
    dt = 1.0 / steps

    def fr_run():
        return fr.solve(flow, solver, y, grid=grid).x

    def fr_nocheck():
        return fr.solve(flow, solver, y, grid=grid, check_finite=False).x

    def ts_run():
        return torchsde.sdeint(sde, flat, ts[[0, -1]], method="euler", dt=dt)[-1]

    def plain_run():
        x = y
        sq = dt**0.5
        for i in range(steps):
            t = ts[i]
            x = x + dt * f(t, x) + g(t, x) * (sq * torch.randn_like(x))
        return x

    return {
        "flowrestore": fr_run,
        "torchsde": ts_run,
        "plain": plain_run,
        "flowrestore_nocheck": fr_nocheck,
    }


CASES = {"batch 1 (1x3x64x64)": (1, 3, 64, 64), "batch 64 (64x3x64x64)": (64, 3, 64, 64)}


def run(device="cpu", steps: int = 50, repeats: int = 7, quick: bool = False):
    """Per-step times (µs) and ratios; returns a list of rows."""
    rows = []
    for case, shape in CASES.items():
        big = shape[0] > 1
        reps = max(2, repeats // 2) if big and device == "cpu" else repeats
        n = max(5, steps // 5) if (big and device == "cpu") or quick else steps
        for method in ("euler", "rk4"):
            with torch.no_grad():
                t = time_interleaved(_ode_variants(method, shape, n, device), reps, device)
            rows.append(_row(case, method, "torchdiffeq", t, n))
        if hasattr(fr.solvers, "EulerMaruyama"):
            t = time_interleaved(_sde_variants(shape, n, device), reps, device)
            rows.append(_row(case, "euler-maruyama", "torchsde", t, n))
    return rows


def _row(case, method, other, t, n):
    us = {k: 1e6 * v / n for k, v in t.items()}
    excess_fr = us["flowrestore"] - us["plain"]
    excess_o = us[other] - us["plain"]
    return {
        "case": case,
        "method": method,
        "other": other,
        "steps": n,
        "fr_us": us["flowrestore"],
        "other_us": us[other],
        "plain_us": us["plain"],
        "ratio": us["flowrestore"] / us[other],
        "nocheck_us": us["flowrestore_nocheck"],
        "ratio_nocheck": us["flowrestore_nocheck"] / us[other],
        "excess_ratio": excess_fr / excess_o if excess_o > 0 else float("nan"),
    }


def report(rows) -> str:
    return table(
        [
            "case",
            "method",
            "steps",
            "flowrestore µs/step",
            "fr check_finite=False µs/step",
            "other µs/step",
            "plain loop µs/step",
            "wall ratio fr/other",
            "wall ratio fr(no check)/other",
            "overhead ratio (fr−plain)/(other−plain)",
        ],
        [
            [
                r["case"],
                f"{r['method']} (vs {r['other']})",
                r["steps"],
                r["fr_us"],
                r["nocheck_us"],
                r["other_us"],
                r["plain_us"],
                r["ratio"],
                r["ratio_nocheck"],
                r["excess_ratio"],
            ]
            for r in rows
        ],
    )
