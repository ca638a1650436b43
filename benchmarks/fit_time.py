"""Time ``fit_grid`` and ``fit_weights`` as a user calls them (issue 16's "≤ 30 s" goal).

``fit_grid(flow, SemiLinearMultistep(), y, n)`` with every default, on the few-NFE benchmark's
warm-up batch (8 crops of 64² from the validation photos, :data:`benchmarks.fewnfe_problems.
WARM_CROPS`, degraded by each model's own degradation), for ``n`` = 5 and 6 evaluations; prints
the wall time and the number of network evaluations of the batch (forward and velocity calls
counted on the model). Wall time depends on the machine and its load; the evaluation count does
not.

``--ddpm``: instead, the diffusers-trained DDPM of group (b) on its 16 warm-up noises (the
benchmark's, seed 90 000): ``fit_grid(flow, DataIPNDM(), x, n)`` and ``fit_weights(flow, x, n)``
(which fits that grid, then the weights through differentiable solves: the evaluations counted
are forward ones, each of the weights' also has a backward pass).

Run: ``python -m benchmarks.fit_time [--ddpm]`` (``--threads`` to set torch's threads, default 2;
about 2 minutes).
"""

from __future__ import annotations

import argparse
import time

import torch

import flowrestore as fr
from flowrestore.integrate import fit_grid, fit_weights

from . import fewnfe_problems as P

MODELS = ("indi-deblur", "indi-sr4")
NFES = (5, 6)


def run(log=print) -> list[tuple[str, int, float, int]]:
    """Rows ``(model, nfe, seconds, evaluations)``."""
    from flowrestore.pretrained import degrade_for, flow_for, pretrained

    rows = []
    for name in MODELS:
        model = pretrained(name)
        _, clean = P.crop_images(P.WARM_CROPS, 64)
        y = degrade_for(model, clean, generator=torch.Generator().manual_seed(7))
        calls = []
        for attr in ("forward", "velocity"):
            plain = getattr(model, attr)
            setattr(
                model, attr, lambda x, t, plain=plain, calls=calls: calls.append(1) or plain(x, t)
            )
        flow = flow_for(model)
        for n in NFES:
            calls.clear()
            t = time.perf_counter()
            fit_grid(flow, fr.SemiLinearMultistep(), y, n)
            rows.append((name, n, time.perf_counter() - t, len(calls)))
            log(f"  {name} {n} NFE: {rows[-1][2]:.1f} s, {rows[-1][3]} evaluations")
    return rows


def run_ddpm(log=print) -> list[tuple[str, int, float, int]]:
    """Rows ``(fit, nfe, seconds, evaluations)`` on the DDPM of group (b)."""
    flow = fr.DiffusionFlow.from_diffusers(P.ddpm_folder())
    flow.model.requires_grad_(False)
    x = torch.randn(16, 1, 24, 24, generator=torch.Generator().manual_seed(90_000))
    calls = []
    plain = flow.model.forward
    flow.model.forward = lambda *a, **k: calls.append(1) or plain(*a, **k)
    rows = []
    for n in NFES:
        for name, fit in (
            ("fit_grid(DataIPNDM())", lambda n=n: fit_grid(flow, fr.DataIPNDM(), x, n)),
            ("fit_weights", lambda n=n: fit_weights(flow, x, n)),
        ):
            calls.clear()
            t = time.perf_counter()
            fit()
            rows.append((name, n, time.perf_counter() - t, len(calls)))
            log(f"  {name} {n} NFE: {rows[-1][2]:.1f} s, {rows[-1][3]} evaluations")
    return rows


if __name__ == "__main__":  # pragma: no cover
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--ddpm", action="store_true", help="the DDPM of group (b) instead")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    if a.ddpm:
        print("| DDPM fit | NFE | fit (s) | evaluations of the 16-noise batch |\n|---|---|---|---|")
        for name, n, secs, evals in run_ddpm(log=lambda *_: None):
            print(f"| {name} | {n} | {secs:.1f} | {evals} |")
        raise SystemExit
    print("| model | NFE | fit (s) | evaluations of the 8-crop batch |\n|---|---|---|---|")
    for name, n, secs, evals in run(log=lambda *_: None):
        print(f"| {name} | {n} | {secs:.1f} | {evals} |")
