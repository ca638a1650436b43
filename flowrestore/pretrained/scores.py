"""Score a predictor on held-out images: degrade as trained, restore with named solvers, measure.

The registry's held-out numbers (``python -m flowrestore.pretrained.train_all``) and the photo demo
(``flowrestore demo``) both come from :func:`evaluate`. :data:`SOLVERS` is the one table of the
solver names the command line, the demo and the registry use.
"""

from __future__ import annotations

import time

import torch

from flowrestore.errors import ConfigError, describe

__all__ = ["SOLVERS", "evaluate", "make_solver"]

# solver name -> (methods it applies to, description, class in flowrestore.solvers)
SOLVERS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "euler": (("indi",), "Euler on InDI's residual ODE (= InDI's sampler with eps = 0)", "Euler"),
    "multistep": (
        ("indi",),
        "semi-linear multistep (order 3, 1 NFE per step; the few-NFE default)",
        "SemiLinearMultistep",
    ),
    "heun": (("indi",), "Heun (2nd order), last step the denoising step", "Heun"),
    "midpoint": (("indi",), "explicit midpoint (2nd order)", "Midpoint"),
    "rk4": (("indi",), "classical Runge-Kutta (4th order), last step the denoising step", "RK4"),
    "indi": (("indi",), "InDI's discrete sampler (eps = 0)", "InDISampler"),
    "em": (
        ("dirac",),
        "Dirac's reverse step (paper eq. 7: Euler-Maruyama with R-hat)",
        "DiracStep",
    ),
    "sra1": (("dirac",), "Roessler's SRA1 (strong order 1.5 for additive noise)", "SRA1"),
}


def make_solver(name: str, method: str = "indi"):
    """The solver object for a name in :data:`SOLVERS`, checked against the predictor's method."""
    import flowrestore.solvers as S

    if name not in SOLVERS:
        raise ConfigError(f"solver must be one of {sorted(SOLVERS)}, got {describe(name)}")
    if method not in SOLVERS[name][0]:
        ok = sorted(k for k, (m, _, _) in SOLVERS.items() if method in m)
        raise ConfigError(f"solver {name!r} does not apply to {method} predictors; use one of {ok}")
    return getattr(S, SOLVERS[name][2])()


def evaluate(
    model, clean: torch.Tensor, runs, *, seed: int = 0, device="cpu", keep_images: bool = False
) -> list[dict]:
    """Degrade ``clean`` ([N, C, H, W]) as the model was trained, restore with each run, score.

    ``runs``: ``(solver_name, steps, output[, t_end])`` (names of :data:`SOLVERS`; ``output``
    ``"last"`` or ``"posterior_mean"``; ``t_end`` stops early, default 0).
    ``solver="phi"`` is the one-shot clean estimate ``F(y, 1)`` / ``Φ(y, 1)`` (1 NFE). The first
    row is the degraded input (``solver="input"``, NFE 0). Rows: mean PSNR/SSIM over the images,
    per-image PSNR, NFE, seconds per image, high-frequency energy relative to the clean image's
    (``hf_ratio``).
    """
    from flowrestore.integrate import solve
    from flowrestore.metrics import high_frequency_energy, psnr, ssim
    from flowrestore.pretrained import degrade_for, flow_for

    device = torch.device(device)
    model = model.to(device)
    x = clean.to(device)
    gen = torch.Generator().manual_seed(seed)
    y = degrade_for(model, x.cpu(), generator=gen).to(device)
    hf_clean = high_frequency_energy(x)

    def score(out, **kw):
        out = out.clamp(0.0, 1.0)
        p = psnr(out, x)
        row = {
            **kw,
            "psnr": float(p.mean()),
            "psnr_per_image": [round(float(v), 3) for v in p],
            "ssim": float(ssim(out, x).mean()),
            "hf_ratio": float((high_frequency_energy(out) / hf_clean).mean()),
        }
        if keep_images:
            row["images"] = out.cpu()
        return row

    rows = [score(y, solver="input", steps=0, output="-", t_end=None, nfe=0, seconds_per_image=0.0)]
    flow = flow_for(model)
    method = model.metadata["method"]
    for run in runs:
        solver_name, steps, output = run[:3]
        t_end = run[3] if len(run) > 3 else None
        g = torch.Generator(device=device).manual_seed(seed + 1)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        if solver_name == "phi":
            with torch.no_grad():
                out, nfe = flow.denoise(torch.ones(y.shape[0], device=device), y), 1
        else:
            solver = make_solver(solver_name, method)
            sol = solve(flow, solver, y, steps=steps, output=output, generator=g, t_end=t_end)
            out, nfe = sol.x, int(sol.stats.nfe.max())  # includes the posterior-mean evaluation
        if device.type == "cuda":
            torch.cuda.synchronize()
        sec = (time.perf_counter() - t0) / x.shape[0]
        rows.append(
            score(
                out,
                solver=solver_name,
                steps=steps,
                output=output,
                t_end=t_end,
                nfe=nfe,
                seconds_per_image=sec,
            )
        )
    return rows
