"""Round 3 of ``benchmarks.indi_generic``, the runs behind its numbers (issue 16, 2026-12-06).

Two questions about ``Power(ρ)`` spacings (steps shrinking toward ``t = 0``, where a trained
denoiser's field changes fastest), each on a split's predictors declaring nothing
(:func:`benchmarks.indi_generic.problems`, round 3: validation = round 2's four, test = round 2's
two and the two denoisers of :data:`benchmarks.indi_generic.HELDOUT3`):

* ``--problem choose``: :func:`flowrestore.integrate.choose_spacing` on 8 degraded 64² warm-up
  crops of the validation photos (never scored) with round 2's default candidates (uniform,
  ``StartRefined``) and with the ``Power`` ones added; each choice declared and scored on the
  split's crops beside the loop's rule.
* ``--problem records``: per solver, the task record of round 2 (the checkpoint's declaration,
  re-scored) and each ``Power`` candidate of round 3; the per-task rule can only change where a
  ``Power`` candidate beats the record (the record was the best of round 2's candidates; a solver
  changed since round 2 has to be re-scored on all of them: ``--problem rescore``).

Score: the mean over 3–10 evaluations of the worst crop's PSNR (dB) to the reference. One thread.
``python -m benchmarks.indi_round3 --problem choose --split test`` (about 11 min on this machine).
"""

from __future__ import annotations

import argparse

import torch

import flowrestore as fr
from benchmarks import fewnfe_problems as P
from benchmarks import indi_generic as G
from benchmarks import indi_spacing
from benchmarks.indi_spacing import _mean

#: round 3's added candidates (``benchmarks.indi_generic.round_candidates(3)`` minus round 2's)
POWERS = {k: v for k, v in G.round_candidates(3).items() if k not in G.round_candidates(2)}


def choose(names, split: str, log=print) -> None:
    """``--problem choose`` (module docstring)."""
    from flowrestore.integrate import choose_spacing
    from flowrestore.integrate.choose import CANDIDATE_SPACINGS
    from flowrestore.pretrained import degrade_for

    old = tuple(c for c in CANDIDATE_SPACINGS if not isinstance(c, fr.Power))
    for name, problem in G.problems(split, 3, names):
        (inst,) = problem.instances
        _, clean = P.crop_images(P.WARM_CROPS, 64)
        warm = degrade_for(inst.flow.network, clean, generator=torch.Generator().manual_seed(7))
        log(f"{name} ({split}): {problem.note}")
        for sname, make in G.SOLVERS.items():
            with torch.no_grad():
                a = choose_spacing(inst.flow, make(), warm, candidates=old).spacing
                b = choose_spacing(inst.flow, make(), warm).spacing
            rule = _mean(G._row(problem, inst, inst.flow, make))
            got = {}
            for sp in dict.fromkeys((a, b)):
                flow = indi_spacing._declaring(inst, sp, {sname: make})
                got[sp] = _mean(G._row(problem, inst, flow, make))
            got_a, got_b = got[a], got[b]
            log(
                f"  {sname:24s} rule {rule:.2f} | round 2 {a!r} {got_a:.2f} "
                f"| round 3 {b!r} {got_b:.2f}"
            )


def records(names, split: str, log=print) -> None:
    """``--problem records`` (module docstring)."""
    from flowrestore.methods.indi import task_spacings

    for name, problem in G.problems(split, 3, names):
        (inst,) = problem.instances
        rec = task_spacings(G.task_of(name)) or {}
        log(f"{name} ({split}, task {G.task_of(name)}): {problem.note}")
        for sname, make in G.SOLVERS.items():
            for cname, sp in {"record": rec.get(make), **POWERS}.items():
                row = G._row(problem, inst, indi_spacing._declaring(inst, sp, {sname: make}), make)
                label = repr(sp) if cname == "record" else ""
                log(f"  {sname:24s} {cname:28s} {label:20s} {_mean(row):.2f}")


def rescore(names, solver: str, split: str, log=print) -> None:
    """``--problem rescore``: one solver on every round-2 candidate (module docstring)."""
    make = G.SOLVERS[solver]
    for name, problem in G.problems(split, 3, names):
        (inst,) = problem.instances
        scores = {}
        for cname, sp in G.round_candidates(2).items():
            flow = indi_spacing._declaring(inst, sp, {solver: make})
            scores[cname] = _mean(G._row(problem, inst, flow, make))
        best = max(scores, key=scores.get)
        log(f"{name}: best of round 2's candidates for {solver}: {best} {scores[best]:.2f}")


def main(argv=None) -> None:
    """Command line (module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problem", choices=("choose", "records", "rescore"), default="choose")
    ap.add_argument("--split", choices=("val", "test"), default="test")
    ap.add_argument("--models", help="only these models of the split (comma list)")
    ap.add_argument("--solver", default="IPNDM()", help="--problem rescore: the solver")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    names = args.models.split(",") if args.models else list(G.ROUNDS[3][args.split])
    if args.problem == "choose":
        choose(names, args.split)
    elif args.problem == "records":
        records(names, args.split)
    else:
        rescore(names, args.solver, args.split)


if __name__ == "__main__":  # pragma: no cover
    main()
