"""Time ``fit_grid`` on the shipped U-Nets as a user calls it (issue 16's "≤ 30 s" goal).

``fit_grid(flow, SemiLinearMultistep(), y, n)`` with every default, on the few-NFE benchmark's
warm-up batch (8 crops of 64² from the validation photos, :data:`benchmarks.fewnfe_problems.
WARM_CROPS`, degraded by each model's own degradation), for ``n`` = 5 and 6 evaluations; prints
the wall time and the number of network evaluations of the batch (forward and velocity calls
counted on the model). Wall time depends on the machine and its load; the evaluation count does
not.

Run: ``python -m benchmarks.fit_time`` (``--threads`` to set torch's threads, default 2; about
2 minutes).
"""

from __future__ import annotations

import argparse
import time

import torch

import flowrestore as fr
from flowrestore.integrate import fit_grid

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


if __name__ == "__main__":  # pragma: no cover
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    print("| model | NFE | fit (s) | evaluations of the 8-crop batch |\n|---|---|---|---|")
    for name, n, secs, evals in run(log=lambda *_: None):
        print(f"| {name} | {n} | {secs:.1f} | {evals} |")
