"""The default few-NFE solve on the shipped InDI predictors (issue 16, goal (c)), in minutes.

``python -m benchmarks.indi_default --split val|test [--peers ipndm|all]`` scores
``fr.solve(flow, fr.SemiLinearMultistep(), y, steps=N)`` — the default grid
(:meth:`~flowrestore.SemiLinearMultistep.default_spacing`) and solver — at 3–10 NFE on
``indi-deblur`` and ``indi-sr4`` (PSNR to a 400-NFE reference, worst crop;
:func:`benchmarks.fewnfe_problems.indi_photos`) beside the reference iPNDM on the same grid
(``--peers all``: also DPM-Solver++/UniPC on that grid and on a uniform σ grid, as
``benchmarks/fewnfe.py`` runs them) and checks the goals: non-decreasing in NFE from 3 to 10,
≥ 45 dB at ≤ 6 NFE, at least as good as the best peer at 4–10 NFE. Defaults are chosen on
``--split val``; ``--split test`` reports photos that chose nothing, ``--split extra`` other
photos added after every choice (:data:`benchmarks.fewnfe_problems.EXTRA_CROPS`). Unlike
``python -m benchmarks.fewnfe --which c`` it fits no grids.
"""

from __future__ import annotations

import argparse
import time

import torch

import flowrestore as fr
from benchmarks import fewnfe_problems as P
from benchmarks.fewnfe import _sigma_peers, default_grid
from benchmarks.peers import ipndm

NFES = tuple(range(3, 11))
MODELS = ("indi-deblur", "indi-sr4")
PEER = "iPNDM, flowrestore's grid"


def peers(inst, n: int, which: str) -> dict[str, torch.Tensor]:
    """The peers' answers at ``n`` NFE on the default grid (``all``: also a uniform σ grid)."""
    flow, grid = inst.flow, default_grid(inst.flow, n)
    if which == "all":
        uniform = torch.linspace(1.0, 0.0, n + 1, dtype=torch.float64)  # as benchmarks/fewnfe.py
        grids = {"flowrestore's grid": grid, "uniform σ": uniform}
        return {k: v for k, v in _sigma_peers(inst, n, grids).items() if "Karras" not in k}
    x = ipndm(inst.denoise, flow.to_state(inst.x, 1.0), grid)[0]
    return {PEER: flow.from_state(x, 0.0)}


def run(name: str, split: str, which: str, log=print) -> dict[str, dict[int, float]]:
    """Worst-crop PSNR per method and NFE for one predictor."""
    problem = P.indi_photos(name, split)
    inst = problem.instances[0]
    log(f"{problem.name}, {split}: {problem.note}")
    res: dict[str, dict[int, float]] = {}
    for n in NFES:
        with torch.no_grad():
            sol = fr.solve(inst.flow, fr.SemiLinearMultistep(), inst.x, steps=n)
            if int(sol.stats.nfe.max()) != n:
                raise AssertionError(f"{n} steps cost {int(sol.stats.nfe.max())} evaluations")
            answers = {"SemiLinearMultistep() (default)": sol.x, **peers(inst, n, which)}
        for k, x in answers.items():
            res.setdefault(k, {})[n] = float(P.psnr(x, inst.ref).min())
    return res


def table(name: str, res: dict[str, dict[int, float]]) -> str:
    """A markdown table and the goals' verdicts."""
    ours = res["SemiLinearMultistep() (default)"]
    head = "| method | " + " | ".join(f"{n} NFE" for n in NFES) + " |"
    lines = [f"#### {name}", "", head, "|---" * (len(NFES) + 1) + "|"]
    for k, v in res.items():
        lines.append(f"| {k} | " + " | ".join(f"{v[n]:.2f}" for n in NFES) + " |")
    best_peer = {n: max(v[n] for k, v in res.items() if v is not ours) for n in NFES}
    mono = all(ours[b] >= ours[a] for a, b in zip(NFES[:-1], NFES[1:], strict=True))
    at6 = max(ours[n] for n in NFES if n <= 6)
    behind = [n for n in NFES if n >= 4 and ours[n] < best_peer[n]]
    lines += [
        "",
        f"non-decreasing 3–10: {'yes' if mono else 'no'}; best at ≤ 6 NFE {at6:.2f} dB "
        f"(≥ 45: {'yes' if at6 >= 45 else 'no'}); behind the best peer at 4–10 NFE: "
        f"{behind or 'none'}",
    ]
    return "\n".join(lines)


def main(argv=None) -> None:
    """Command line (module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", choices=("val", "test", "extra"), default="val")
    ap.add_argument("--peers", choices=("ipndm", "all"), default="ipndm")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    out = [table(m, run(m, args.split, args.peers)) for m in MODELS]
    print("\n\n".join(out))
    print(f"\n({args.split} split, {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
