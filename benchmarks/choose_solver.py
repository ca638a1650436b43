"""A solver chosen per model on warm-up inputs beside the best default and peer (issue 16).

``python -m benchmarks.choose_solver --split test --which abe`` runs, for each problem of the
few-NFE benchmark (``benchmarks/fewnfe_problems.py``; (a) exact diffusion oracles, (b) the
v-model DDPM, (e) the ε-model DDPM, (c) the shipped InDI predictors) and each NFE 3–10,
:func:`flowrestore.integrate.choose_solver` on the warm-up inputs the benchmark's fits use
(:func:`benchmarks.fewnfe.warmups`: 16 other noises per instance, other crops of the
validation photos; never scored), and scores the chosen solver's ``steps=N`` solve on the
split's instances beside the best default-constructed solver and the best peer of
``benchmarks/fewnfe.py`` (the same rows, computed in this run). The chooser's candidates
(:func:`flowrestore.integrate.candidate_solvers`) were listed before any run; nothing was tuned
on either split. Prints one table per problem: per NFE the chosen solver(s), its score, the best
default's, the best peer's, and the chooser's time (one thread).
"""

from __future__ import annotations

import argparse
import functools
import math
import time

import torch

import flowrestore as fr
from benchmarks import fewnfe as B
from benchmarks import fewnfe_problems as P
from flowrestore.integrate import choose_solver

NFES = tuple(range(3, 11))


def short(solver) -> str:
    """A short name: ``IPNDM()``, ``IPNDM(landing_order=4)``, ``UniPC(nodes=3)``..."""
    name = type(solver).__name__
    if name == "IPNDM" and solver.landing_order != solver.ab_order:
        return f"IPNDM(landing_order={solver.landing_order})"
    if name == "UniPC" and solver.nodes != 2:
        return f"UniPC(nodes={solver.nodes})"
    if name == "SemiLinearMultistep" and solver.power == 0:
        return "SemiLinearMultistep(power=0)"
    return f"{name}()"


def run(problem, split: str, power: float = 1.0, log=print) -> list[dict]:
    """Per NFE: the chosen solvers, their worst score, the best default's and peer's, seconds."""
    warm = B.warmups(problem, split)
    res = B.run_problem(problem, NFES, log=lambda *a: None)
    rows = []
    for n in NFES:
        scores, names, secs = [], [], 0.0
        for inst, w in zip(problem.instances, warm, strict=True):
            t0 = time.perf_counter()
            c = choose_solver(inst.flow, w, n, power=power)
            secs = max(secs, time.perf_counter() - t0)
            with torch.no_grad():
                x = fr.solve(inst.flow, c.solver, inst.x, steps=c.steps).x
            scores.append(P.score(problem, inst, x))
            names.append(short(c.solver) + ("" if c.nfe == n else f" [{c.nfe}]"))
        worst = functools.reduce(lambda a, b: P.worse(problem.kind, a, b), scores)  # NaN stays
        # a NaN row (a diverged answer) is never the best default or peer
        finite = {k: v[n] for k, v in res.items() if n in v and not math.isnan(v[n])}
        ours = {k: v for k, v in finite.items() if B.is_ours(k) and not B.is_fitted(k)}
        peers = {k: v for k, v in finite.items() if not B.is_ours(k)}
        pick = min if problem.kind != "psnr" else max
        bd = pick(ours.items(), key=lambda kv: kv[1], default=("–", math.nan))
        bp = pick(peers.items(), key=lambda kv: kv[1], default=("–", math.nan))
        rows.append(
            {
                "nfe": n,
                "chosen": sorted(set(names)),
                "score": worst,
                "default": bd,
                "peer": bp,
                "seconds": secs,
            }
        )
        log(f"{problem.name} {n} NFE: {rows[-1]}")
    return rows


def table(problem, rows) -> str:
    """Markdown: chosen solver(s), score, best default, best peer, ratio to the peer."""
    head = (
        f"#### {problem.name}\n\n| NFE | chosen (per instance) | score | best default | "
        "best peer | chosen vs peer | choice (s) |\n|---|---|---|---|---|---|---|"
    )
    out = [head]
    for r in rows:
        ratio = (
            f"{r['score'] - r['peer'][1]:+.2f} dB"
            if problem.kind == "psnr"
            else f"{r['score'] / r['peer'][1]:.2f}×"
        )
        out.append(
            f"| {r['nfe']} | {', '.join(r['chosen'])} | {r['score']:.4g} | "
            f"{r['default'][0]} {r['default'][1]:.4g} | {r['peer'][0]} {r['peer'][1]:.4g} | "
            f"{ratio} | {r['seconds']:.1f} |"
        )
    return "\n".join(out)


def main(argv=None) -> None:
    """Command line (module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", choices=("val", "test"), default="test")
    ap.add_argument("--which", default="abe", help="problem groups: a, b, c, e")
    ap.add_argument("--power", type=float, default=1.0, help="choose_solver's power (inf: max)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    probs = B.problems_for(args.split, tuple(args.which))
    out = [table(p, run(p, args.split, args.power)) for p in probs.values()]
    print("\n\n".join(out))
    print(f"\n({args.split} split, power {args.power}, {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
