"""How ``fit_weights``' options were chosen (issue 16): validation inputs only, never the test set.

``history`` (clean estimates per step, 2–4) and the objective's power mean of the warm-up
samples' errors (:data:`flowrestore.integrate.weight_fitting.POWER`: 1, the mean, or 4, which
weighs the worst more), fitted at 5 and 6 NFE on each problem's warm-up inputs (those of
:func:`benchmarks.fewnfe.warmups`, never scored) and on the grid ``fit_grid`` fits for
``DataIPNDM()`` there, and scored against:

* ``b``: the diffusers-trained DDPM on a **validation pool** of 48 noises (seeds 0–5, 8 each: the
  validation split's seeds 0–1 and four more; the test split's are 100–103), each against its
  500-step reference;
* ``a``: the exact linear/ε and cosine/v models of the validation priors (seeds 11–13).

Each row: worst / mean relative error; the first row per cell is ``DataIPNDM()`` on the fitted
grid (what the weights start from). The iteration budget (25 objective evaluations) was checked
against 40 on the DDPM's validation split (16 noises): 0.0615 / 0.0391 vs 0.0620 / 0.0388 worst at
5 / 6 NFE.

Run: ``python -m benchmarks.weight_options --which b`` (about 6 minutes on two threads) or
``--which a`` (about 2 minutes).
"""

from __future__ import annotations

import argparse
import itertools

import torch

import flowrestore as fr
import flowrestore.integrate.weight_fitting as weight_fitting
from flowrestore.integrate import fit_grid, fit_weights, relative_error

from . import fewnfe_problems as P

HISTORIES = (2, 3, 4)
POWERS = (1.0, 4.0)
NFES = (5, 6)
DDPM_POOL = (0, 1, 2, 3, 4, 5)


def cases(which: str):
    """``(name, flow, inputs, references, warm-up inputs)`` for the group."""
    if which == "b":
        prob = P.ddpm_faces("val", seeds=DDPM_POOL)
        xs = torch.cat([i.x for i in prob.instances])
        refs = torch.cat([i.ref for i in prob.instances])
        warm = torch.randn(16, *xs.shape[1:], generator=torch.Generator().manual_seed(90_000))
        yield "DDPM (48 noises)", prob.instances[0].flow, xs, refs, warm
        return
    for schedule, ptype in (("linear", "epsilon"), ("cosine", "v_prediction")):
        prob = P.diffusion_oracles(schedule, ptype, "val")
        for i, inst in enumerate(prob.instances):
            g = torch.Generator().manual_seed(90_000 + i)
            yield (
                f"{prob.name} #{i}",
                inst.flow,
                inst.x,
                inst.ref,
                inst.extra["model"].sample_latent(16, g),
            )


def run(which: str, log=print) -> list[tuple]:
    """Rows ``(case, nfe, setting, worst, mean)``."""
    rows = []
    saved = weight_fitting.POWER
    try:
        for name, flow, xs, refs, warm in cases(which):
            for n in NFES:
                grid = fit_grid(flow, fr.DataIPNDM(), warm, n)
                with torch.no_grad():
                    e = relative_error(
                        fr.solve(flow, fr.DataIPNDM(), xs, steps=n, spacing=grid).x, refs
                    )
                rows.append((name, n, "DataIPNDM(), fitted grid", float(e.max()), float(e.mean())))
                log(f"  {rows[-1]}")
                for history, power in itertools.product(HISTORIES, POWERS):
                    weight_fitting.POWER = power
                    solver = fit_weights(flow, warm, n, history=history, spacing=grid)
                    with torch.no_grad():
                        e = relative_error(fr.solve(flow, solver, xs, steps=n).x, refs)
                    setting = f"history={history}, power={power:g}"
                    rows.append((name, n, setting, float(e.max()), float(e.mean())))
                    log(f"  {rows[-1]}")
    finally:
        weight_fitting.POWER = saved
    return rows


def table(rows) -> str:
    lines = ["| case | NFE | weights | worst | mean |", "|---|---|---|---|---|"]
    lines += [f"| {c} | {n} | {s} | {w:.4g} | {m:.4g} |" for c, n, s, w, m in rows]
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--which", choices=("a", "b"), default="b")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    print(table(run(a.which, log=lambda *_: None)))
