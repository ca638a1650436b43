"""How ``fit_grid``'s options were chosen (issue 16): the validation split, never the test split.

For each option value, every multistep default's grid is fitted at 5 and 6 NFE on the warm-up
inputs of :func:`benchmarks.fewnfe.warmups` and scored on the validation instances of
:mod:`benchmarks.fewnfe_problems` (worst relative error, or worst-crop PSNR for the photos); the
summary line is the geometric mean of the worst errors over the (problem, solver, NFE) cells.

* ``linearise`` (False chosen): the local search's linearised clean estimates, ``M`` evaluations;
* ``power`` (1 chosen): :data:`flowrestore.integrate.refine.POWER`, the refinement objective's
  power mean of the per-sample errors;
* ``simplex`` (0.5 chosen): :data:`flowrestore.integrate.refine.SIMPLEX_STEP`, the refinement's
  initial simplex in each logit.

Run: ``python -m benchmarks.fit_options --which a`` (about 5 minutes per option on one core;
``--which abc`` adds the DDPM and the shipped U-Net, about 20 minutes per option).
"""

from __future__ import annotations

import argparse
import math

import torch

import flowrestore as fr
import flowrestore.integrate.refine as refine
from flowrestore.integrate import fit_grid

from . import fewnfe as B
from . import fewnfe_problems as P

OPTIONS = {
    "linearise": ({"linearise": True}, {"linearise": False}),
    "simplex": ({"simplex": 0.25}, {"simplex": 0.5}, {"simplex": 1.0}),
    "power": ({"power": 1.0}, {"power": 4.0}),
}


def run(which: str, option: str, log=print) -> dict:
    """``{setting: {(problem, solver, nfe): score}}`` on the validation split."""
    problems = B.problems_for("val", tuple(which), False)
    out = {}
    for setting in OPTIONS[option]:
        kw = dict(setting)
        step = kw.pop("simplex", 0.5)
        power = kw.pop("power", 1.0)
        saved, refine.SIMPLEX_STEP = refine.SIMPLEX_STEP, step
        saved_power, refine.POWER = refine.POWER, power
        try:
            scores = {}
            for name, problem in problems.items():
                if problem.kind not in ("rel", "psnr"):
                    continue
                solvers = B.FIT_SOLVERS_PHOTOS if problem.kind == "psnr" else B.FIT_SOLVERS
                warm = B.warmups(problem, "val")
                for solver in solvers:
                    for n in (5, 6):
                        worst = None
                        for inst, w in zip(problem.instances, warm, strict=True):
                            grid = fit_grid(inst.flow, B.OURS[solver].make(), w, n, **kw)(n, 1, 0)
                            with torch.no_grad():
                                x = fr.solve(inst.flow, B.OURS[solver].make(), inst.x, grid=grid).x
                            s = P.score(problem, inst, x)
                            worst = s if worst is None else P.worse(problem.kind, worst, s)
                        scores[(name, solver, n)] = worst
                        log(f"  {setting} {name} {solver} {n} NFE: {worst:.4g}")
            out[str(setting)] = scores
        finally:
            refine.SIMPLEX_STEP = saved
            refine.POWER = saved_power
    return out


def summary(results: dict) -> str:
    """Per setting: the geometric mean of the relative errors (PSNR cells: mean dB)."""
    lines = []
    for setting, scores in results.items():
        rel = [math.log(v) for (name, _, _), v in scores.items() if "photos" not in name]
        db = [v for (name, _, _), v in scores.items() if "photos" in name]
        text = f"{setting}: geometric mean error {math.exp(sum(rel) / len(rel)):.4g}" if rel else ""
        if db:
            text += f", photos mean {sum(db) / len(db):.2f} dB"
        lines.append(text)
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--which", default="a", help="problem groups of the validation split")
    p.add_argument("--option", choices=tuple(OPTIONS), default="simplex")
    a = p.parse_args()
    torch.set_num_threads(1)
    print(summary(run(a.which, a.option)))
