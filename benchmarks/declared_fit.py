"""A model declaring grids fitted on its owner's inputs, on configurations that chose nothing.

``benchmarks.unseen`` finds cells where a peer on Karras' grid beats every default — data far
from the noise's scale (prior stds in [0.02, 0.2]), where a fixed grid's end is a trade between
data scales. The remedy README names is to fit a grid on a few of one's own inputs; since every
model flow takes ``grids=`` (:mod:`flowrestore.flows.declared`), ``steps=N`` alone then uses it.

This runs what such a user does, per prior (seeds 777, 9001, 31337, the unseen split):
``fit_grids(flow, IPNDM(), warm, steps=(4, ..., 10), x_check=check)`` on 16 warm-up noises and
16 check noises (other draws than the 64 scored ones; a fit is kept only where the check noises
come closer to a reference than on the default grid), then declares the result on the flow and
runs ``benchmarks.unseen``'s cells — every default-constructed solver and every peer — on the
declared flow and on the plain one, side by side in one process. The peers' grids do not move
(they run on ``SemiLinearMultistep()``'s grid, Karras' or their own).

Run: ``python -m benchmarks.declared_fit [--ranges 0.02:0.2] [--only SUBSTR]`` (about 10 minutes
on one thread for every family at [0.02, 0.2]).
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time

import torch

import flowrestore as fr
from flowrestore.integrate import fit_grids

from . import unseen as U
from .common import machine, table

NFES = tuple(range(4, 11))
WARM, CHECK = 16, 16


def declare_fitted(problem, log=print) -> float:
    """Fit ``IPNDM()``'s grids on each instance's own warm-up noises and declare them on its
    flow (in place); the seconds spent fitting."""
    start = time.perf_counter()
    for i, inst in enumerate(problem.instances):
        flow = inst.flow
        dim = inst.x.shape[1:]
        g = torch.Generator().manual_seed(50_000 + i)
        warm = flow.latent_std * torch.randn(WARM, *dim, generator=g, dtype=inst.x.dtype)
        check = flow.latent_std * torch.randn(CHECK, *dim, generator=g, dtype=inst.x.dtype)
        grids = fit_grids(flow, fr.IPNDM(), warm, NFES, x_check=check)
        declared = copy.copy(flow)
        declared.grids = grids
        inst.flow = declared
        kept = sorted(n for n, _ in grids.times) if grids is not None else []
        log(f"  {problem.name} #{i}: fitted grids kept at {kept}")
    return time.perf_counter() - start


def summary(plain: list[dict], fitted: list[dict]) -> list[list]:
    """Per problem: cells behind the best peer and the worst ratio, plain vs declared."""
    rows = []
    a, b = U.analyze(plain)["behind_peer"], U.analyze(fitted)["behind_peer"]
    for p in dict.fromkeys(c["problem"] for c in plain):
        qa, qb = [r for r in a if r[0] == p], [r for r in b if r[0] == p]
        wa = max((r[6] for r in qa), default=None)
        wb = max((r[6] for r in qb), default=None)
        best = [
            (U.best_default(c["res"]), U.best_default(d["res"]))
            for c, d in zip(plain, fitted, strict=True)
            if c["problem"] == p
        ]
        gm = math.exp(sum(math.log(y / x) for x, y in best if x and y) / len(best))
        rows.append(
            [
                p,
                f"{len(qa)} → {len(qb)}",
                "–" if wa is None else f"{wa:.2f}",
                "–" if wb is None else f"{wb:.2f}",
                f"{gm:.2f}",
            ]
        )
    return rows


def main(argv=None) -> int:
    """Command line (module docstring)."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.declared_fit", description=__doc__)
    ap.add_argument("--ranges", default="0.02:0.2")
    ap.add_argument("--only", default=None, help="families containing one of these (comma list)")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    families = [f for f in U.FAMILIES if a.only is None or any(o in f for o in a.only.split(","))]
    ranges = [tuple(float(v) for v in r.split(":")) for r in a.ranges.split(",")]
    t0 = time.perf_counter()
    log = lambda s: print(s, file=sys.stderr)  # noqa: E731
    plain, err_a = U.run(families, ranges, U.SEEDS, NFES, log=log)
    spent: list[float] = []
    fitted, err_b = U.run(
        families,
        ranges,
        U.SEEDS,
        NFES,
        log=log,
        prepare=lambda p: spent.append(declare_fitted(p, log)),
    )
    ba, bb = U.analyze(plain), U.analyze(fitted)
    fit = f"{min(spent):.1f}–{max(spent):.1f} s"
    print(f"Machine: {machine()}; {time.perf_counter() - t0:.0f} s in all; fits per problem "
          f"(3 priors, NFE 4–10): {fit} on one thread.\n")  # fmt: skip
    print(
        f"(problem, NFE 4–10) cells with the best default behind the best peer: "
        f"**{len(ba['behind_peer'])} of {ba['compared']}** on the flows' default grids, "
        f"**{len(bb['behind_peer'])} of {bb['compared']}** with `IPNDM()`'s fitted grids "
        f"declared; errors {len(err_a)} / {len(err_b)}.\n"
    )
    headers = [
        "problem",
        "cells behind the best peer, default → declared",
        "worst ratio, default",
        "worst ratio, declared",
        "best default's error, declared / default (geo-mean over NFE)",
    ]
    print(table(headers, summary(plain, fitted)))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
