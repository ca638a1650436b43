"""The grid a shipped InDI predictor declares for the solvers without fitted grids (issue 16).

``python -m benchmarks.indi_spacing --split val|test`` solves the shipped ``indi-deblur`` and
``indi-sr4`` predictors (:func:`benchmarks.fewnfe_problems.indi_photos`: 96×96 crops, PSNR to a
400-evaluation reference, worst crop) with each default-constructed solver that has no fitted
grids — ``Euler()``, ``Midpoint()``, ``Heun()``, ``RK4()``, ``IPNDM()``, ``DataIPNDM()`` — at every
``steps`` costing 3–10 evaluations, on each candidate spacing declared through
``flow_for(model, spacings={solver class: spacing})``: the loop's rule without a declaration
(uniform, or ``Power``/``EndRefined`` for the solvers that land by denoising) and
``StartRefined(rho, closing_pair=False)`` for several ``rho``, first with the loop's end rules on
it (Heun and RK4 land by the denoising step and get its end refined, Midpoint its last point
matched to Euler's), then laid exactly as given (``fr.Unrefined``; the same grid for Euler and the
multistep solvers, which no end rule touches).

The rule (applied to ``--split val``, which chooses; ``--split test`` reports crops that chose
nothing): score each candidate by the mean over the six solvers of each one's mean over 3–10
evaluations of the worst model's PSNR; candidates within ``TIE_DB`` of the best score tie, and the
tie goes to the earliest in :func:`candidates` — the loop's end rules before ``Unrefined``, then
the smallest ``rho`` (the least start-refined grid, whose last positive time is the smallest).
``SemiLinearMultistep()`` is not a candidate's: it has fitted grids at 3–10 steps and its own
default (``StartRefined(rho=1.7)``) at other counts, where a larger ``rho`` loses (validation
deblur at 12 steps: 64.4 dB on its default, 58.8 on ``rho = 3``).

``--problem choose`` runs :func:`flowrestore.integrate.choose_spacing` for each of the six solvers
on warm-up inputs that are never scored (:func:`benchmarks.fewnfe.warmups`: 8 other crops of 64²
of the validation photos for the predictors, declared spacings off; 16 other draws of ``y`` for
each Gaussian oracle instance of the split) and prints what it chooses and how long it takes: the
tool a user runs on their own predictor.

``--problem gauss`` runs the same candidates on issue 10's Gaussian oracle (an exact posterior
mean, :func:`benchmarks.fewnfe_problems.gaussian_indi`; relative error, worst instance) and prints
each candidate's error relative to the loop's rule: why ``InDIFlow`` declares no spacing by
default (a predictor's flow declares its own).
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

import flowrestore as fr
from benchmarks import fewnfe_problems as P

NFES = tuple(range(3, 11))
MODELS = ("indi-deblur", "indi-sr4")
SOLVERS = {
    "Euler()": fr.Euler,
    "Midpoint()": fr.Midpoint,
    "Heun()": fr.Heun,
    "RK4()": fr.RK4,
    "IPNDM()": fr.IPNDM,
    "DataIPNDM()": fr.DataIPNDM,
}
RHOS = (1.7, 2.0, 2.5, 3.0, 4.0)
NONE = "the loop's rule"
TIE_DB = 0.5


def candidates() -> dict[str, fr.Spacing | None]:
    """The declared spacings compared (``None``: no declaration): ``StartRefined`` with the
    loop's end rules on it, then laid exactly (``fr.Unrefined``)."""
    out: dict[str, fr.Spacing | None] = {NONE: None}
    for rho in RHOS:
        out[f"StartRefined(rho={rho:g})"] = fr.StartRefined(rho=rho, closing_pair=False)
    for rho in RHOS:
        sr = fr.StartRefined(rho=rho, closing_pair=False)
        out[f"Unrefined(StartRefined(rho={rho:g}))"] = fr.Unrefined(sr)
    return out


def _problems(split: str, which: str):
    """``(name, problem)`` pairs: the shipped predictors on photos, or the Gaussian oracle."""
    if which == "gauss":
        return [("gauss", P.gaussian_indi(split))]
    return [(model, P.indi_photos(model, split)) for model in MODELS]


def _declaring(inst, spacing):
    """The instance's flow declaring ``spacing`` for every solver compared (``None``: none)."""
    flow = copy.copy(inst.flow)
    flow.spacings = {cls: spacing for cls in SOLVERS.values()} if spacing else {}
    return flow


def run(split: str, which: str = "photos", log=print) -> dict[tuple[str, str, str], dict]:
    """The worst score per (problem, candidate, solver) and NFE: PSNR (worst crop) on the
    photos, relative error (worst instance) on the oracle."""
    res: dict[tuple[str, str, str], dict[int, float]] = {}
    for pname, problem in _problems(split, which):
        log(f"{pname}, {split}: {problem.note}")
        for cname, spacing in candidates().items():
            for sname, make in SOLVERS.items():
                row = {}
                for inst in problem.instances:
                    flow = _declaring(inst, spacing)
                    for steps in range(1, 11):
                        with torch.no_grad():
                            sol = fr.solve(flow, make(), inst.x, steps=steps)
                        nfe = int(sol.stats.nfe.max())
                        if nfe in NFES:
                            s = P.score(problem, inst, sol.x)
                            row[nfe] = P.worse(problem.kind, row.get(nfe, s), s)
                res[(pname, cname, sname)] = row
                log(f"  {cname:26s} {sname:12s} " + " ".join(f"{row[n]:.3g}" for n in row))
    return res


def choose(split: str, log=print) -> str:
    """Markdown: :func:`~flowrestore.integrate.choose_spacing`'s choice per problem and solver."""
    from benchmarks.fewnfe import warmups
    from flowrestore.integrate import choose_spacing
    from flowrestore.pretrained import flow_for, pretrained

    cases = []
    for model in MODELS:
        problem = P.indi_photos(model, split)
        flow = flow_for(pretrained(model), spacings=None)
        cases.append((model, flow, warmups(problem, split)[0]))
    gauss = P.gaussian_indi(split)
    for i, (inst, w) in enumerate(zip(gauss.instances, warmups(gauss, split), strict=True)):
        cases.append((f"Gaussian oracle {i + 1}", inst.flow, w))
    lines = ["| problem | " + " | ".join(SOLVERS) + " |", "|---" * (len(SOLVERS) + 1) + "|"]
    for name, flow, w in cases:
        cells = []
        for make in SOLVERS.values():
            start = time.perf_counter()
            with torch.no_grad():
                choice = choose_spacing(flow, make(), w)
            exact = isinstance(choice.spacing, fr.Unrefined)
            rho = getattr(choice.spacing.base if exact else choice.spacing, "rho", None)
            label = ("uniform" if rho is None else f"ρ = {rho:g}") + (" as given" if exact else "")
            cells.append(f"{label} ({time.perf_counter() - start:.1f} s)")
        log(f"  {name}: {cells}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def oracle_report(res, split: str) -> str:
    """Markdown for ``--problem gauss``: each candidate's error over the loop's rule's."""
    head = "| declared spacing | solver | " + " | ".join(f"{n} NFE" for n in NFES) + " |"
    lines = [f"#### Gaussian oracle, {split} split — relative error / the loop's rule's", ""]
    lines += [head, "|---|---" + "|---" * len(NFES) + "|"]
    for cname in candidates():
        for sname in SOLVERS:
            row, base = res[("gauss", cname, sname)], res[("gauss", NONE, sname)]
            cells = " | ".join(f"{row[n] / base[n]:.2f}" if n in row else "–" for n in NFES)
            lines.append(f"| {cname} | {sname} | {cells} |")
    return "\n".join(lines)


def scores(res) -> dict[str, float]:
    """Each candidate's score (module docstring): mean over solvers of the mean over NFE of the
    worst model's PSNR."""
    out = {}
    for cname in candidates():
        per_solver = []
        for sname in SOLVERS:
            rows = [res[(m, cname, sname)] for m in MODELS]
            worst = [min(r[n] for r in rows) for n in rows[0]]
            per_solver.append(sum(worst) / len(worst))
        out[cname] = sum(per_solver) / len(per_solver)
    return out


def chosen(score: dict[str, float]) -> str:
    """The rule's choice (module docstring)."""
    best = max(score.values())
    tied = [c for c in candidates() if c != NONE and score[c] >= best - TIE_DB]
    return tied[0] if tied else NONE  # candidates(): end rules first, rho increasing


def report(res, split: str) -> str:
    """Markdown: per solver and model the rows, then the scores and the choice."""
    lines = []
    for model in MODELS:
        lines += [
            f"#### {model}, {split} split — PSNR (dB) to the reference, worst crop",
            "",
            "| declared spacing | solver | " + " | ".join(f"{n} NFE" for n in NFES) + " |",
            "|---|---" + "|---" * len(NFES) + "|",
        ]
        for cname in candidates():
            for sname in SOLVERS:
                row = res[(model, cname, sname)]
                cells = " | ".join(f"{row[n]:.2f}" if n in row else "–" for n in NFES)
                lines.append(f"| {cname} | {sname} | {cells} |")
        lines.append("")
    score = scores(res)
    lines += [
        "| declared spacing | score (dB) | best solver per NFE, worst model |",
        "|---|---|---|",
    ]
    for cname, s in score.items():
        best = []
        for n in NFES:
            vals = [
                min(res[(m, cname, sname)][n] for m in MODELS)
                for sname in SOLVERS
                if n in res[(MODELS[0], cname, sname)]
            ]
            best.append(f"{max(vals):.2f}")
        lines.append(f"| {cname} | {s:.2f} | {' / '.join(best)} |")
    lines += ["", f"rule's choice on this split: **{chosen(score)}**"]
    return "\n".join(lines)


def main(argv=None) -> None:
    """Command line (module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", choices=("val", "test"), default="val")
    ap.add_argument("--problem", choices=("photos", "gauss", "choose"), default="photos")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    if args.problem == "choose":
        print(choose(args.split))
        print(f"\n({time.perf_counter() - start:.0f} s)")
        return
    res = run(args.split, args.problem)
    if args.problem == "gauss":
        print(oracle_report(res, args.split))
    else:
        print(report(res, args.split))
    print(f"\n({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
