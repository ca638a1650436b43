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
nothing): for each model and each solver, the candidate with the highest mean over 3–10
evaluations of that solver's worst-crop PSNR; candidates that lay the same grid for the solver
(a ``StartRefined`` and its ``Unrefined`` twin, for Euler and the multistep solvers) score the same
and the earlier in :func:`candidates` is kept. ``--write`` (validation only) records the choice in
the shipped registry (``"spacings": {"per_solver": ...}``, read by
:func:`flowrestore.pretrained.flow_for`). Each split's report also gives the joint score of
2026-12-05 (the mean over the six solvers of each one's mean over 3–10 evaluations of the worst
model's PSNR, one spacing for all), the registry's declaration per solver, and the cells where a
Runge–Kutta or multistep solver falls behind Euler at equal evaluations.
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
from flowrestore.pretrained import _write_registry_file

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
RHOS = (1.7, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0)
NONE = "the loop's rule"
JOINT = "Unrefined(StartRefined(rho=3))"  # the joint rule's choice of 2026-12-05


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


def _declaring(inst, spacing, solvers=None):
    """The instance's flow declaring ``spacing`` for every solver compared (``solvers``, default
    :data:`SOLVERS`; ``spacing=None``: none)."""
    flow = copy.copy(inst.flow)
    classes = (solvers or SOLVERS).values()
    flow.spacings = {cls: spacing for cls in classes} if spacing else {}
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


def _mean(row: dict) -> float:
    """The mean of a row over its NFE."""
    return sum(row.values()) / len(row)


def per_solver(res) -> dict[tuple[str, str], str]:
    """The rule's choice (module docstring) per ``(model, solver)``."""
    out = {}
    for model in MODELS:
        for sname in SOLVERS:
            score = {c: _mean(res[(model, c, sname)]) for c in candidates()}
            best = max(score.values())
            out[(model, sname)] = next(c for c in candidates() if score[c] == best)
    return out


def declared(model: str, solvers=None, cands=None, spacings=None) -> dict[str, str]:
    """The shipped registry's declaration for ``model`` (or the ``spacings`` given), as candidate
    names per solver (of ``solvers``, default :data:`SOLVERS`, among ``cands``, default
    :func:`candidates`)."""
    from flowrestore.pretrained import flow_for, pretrained

    if spacings is None:
        spacings = flow_for(pretrained(model)).spacings
    named = (cands or candidates()).items()
    names = {spacing: cname for cname, spacing in named if spacing is not None}
    return {
        sname: names.get(spacings[cls], repr(spacings[cls])) if cls in spacings else NONE
        for sname, cls in (solvers or SOLVERS).items()
    }


def behind_euler(res, choice: dict[tuple[str, str], str]) -> list[str]:
    """Cells where a solver on ``choice`` lands farther from the reference than Euler on its own
    ``choice`` with the same evaluations (dB behind)."""
    cells = []
    for model in MODELS:
        euler = res[(model, choice[(model, "Euler()")], "Euler()")]
        for sname in list(SOLVERS)[1:]:
            row = res[(model, choice[(model, sname)], sname)]
            cells += [
                f"{model} {sname} @{n} {row[n] - euler[n]:+.2f}" for n in row if row[n] < euler[n]
            ]
    return cells


def _spec(spacing) -> dict:
    """A candidate spacing as a registry record (:func:`flowrestore.methods.indi._spacing`)."""
    if isinstance(spacing, fr.Unrefined):
        return {"Unrefined": _spec(spacing.base)}
    if isinstance(spacing, fr.Uniform):
        return {"Uniform": {}}
    if isinstance(spacing, fr.Power):
        return {"Power": {"rho": spacing.rho}}
    return {"StartRefined": {"rho": spacing.rho, "closing_pair": spacing.closing_pair}}


def write(res, path=None, when: str = "") -> dict:
    """Record :func:`per_solver`'s validation choice in the shipped registry; returns it."""
    import json
    from importlib import resources
    from pathlib import Path

    path = Path(path or resources.files("flowrestore.pretrained").joinpath("registry.json"))
    registry = json.loads(path.read_text())
    choice = per_solver(res)
    for model in MODELS:
        old = registry["models"][model].get("spacings", {})
        # the embedded pairs' entries (benchmarks.indi_spacing_pairs) are kept
        keep = {k: v for k, v in old.get("per_solver", {}).items() if f"{k}()" not in SOLVERS}
        per, notes = dict(keep), []
        for sname in SOLVERS:
            cname = choice[(model, sname)]
            mean = _mean(res[(model, cname, sname)])
            name = sname.removesuffix("()")
            if cname != NONE:
                per[name] = _spec(candidates()[cname])
            notes.append(f"{name}: {cname} {mean:.2f}")
        registry["models"][model]["spacings"] = {
            **{k: v for k, v in old.items() if k.startswith("pairs_")},
            "per_solver": per,
            "command": "python -m benchmarks.indi_spacing --split val --write",
            "chosen": (
                "per solver, the candidate with the highest mean over 3-10 NFE of the worst "
                f"validation crop's PSNR (dB){when}: {'; '.join(notes)}"
            ),
        }
    _write_registry_file(path, registry)  # atomic: a failed write leaves the registry whole
    return choice


def rows_head(model: str, split: str) -> list[str]:
    """The heading of a model's table of rows (one line per candidate and solver)."""
    return [
        f"#### {model}, {split} split — PSNR (dB) to the reference, worst crop",
        "",
        "| declared spacing | solver | " + " | ".join(f"{n} NFE" for n in NFES) + " |",
        "|---|---" + "|---" * len(NFES) + "|",
    ]


def report(res, split: str) -> str:
    """Markdown: per solver and model the rows, then the scores and the choice."""
    lines = []
    for model in MODELS:
        lines += rows_head(model, split)
        for cname in candidates():
            for sname in SOLVERS:
                row = res[(model, cname, sname)]
                cells = " | ".join(f"{row[n]:.2f}" if n in row else "–" for n in NFES)
                lines.append(f"| {cname} | {sname} | {cells} |")
        lines.append("")
    score = scores(res)
    lines += [
        "Joint score (one spacing for all six solvers, the rule before 2026-12-05 12:00):",
        "",
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
    mine = per_solver(res)
    shipped = {(m, sname): c for m in MODELS for sname, c in declared(m).items()}
    joint = {key: JOINT for key in mine}
    lines += [
        "",
        "Per solver: mean over 3–10 NFE of the worst crop's PSNR (dB) on this split",
        "",
        "| model | solver | this split's best | the registry's declaration | " + JOINT + " |",
        "|---|---|---|---|---|",
    ]
    for (model, sname), cname in mine.items():
        cells = [
            f"{c} {_mean(res[(model, c, sname)]):.2f}" if c in candidates() else c
            for c in (cname, shipped[(model, sname)], JOINT)
        ]
        lines.append(f"| {model} | {sname} | " + " | ".join(cells) + " |")
    lines += ["", "Cells behind Euler at equal NFE (each solver on its spacing):", ""]
    for label, choice in (
        ("this split's best", mine),
        ("the registry's declaration", shipped),
        (JOINT, joint),
    ):
        cells = behind_euler(res, choice) if all(c in candidates() for c in choice.values()) else []
        lines.append(f"- {label}: {len(cells)} ({', '.join(cells) or 'none'})")
    return "\n".join(lines)


def _save(res, path: str) -> None:
    import json

    rows = [[*key, {str(n): v for n, v in row.items()}] for key, row in res.items()]
    with open(path, "w") as f:
        json.dump(rows, f)


def _load(path: str) -> dict:
    import json

    with open(path) as f:
        return {(p, c, s): {int(n): v for n, v in row.items()} for p, c, s, row in json.load(f)}


def main(argv=None) -> None:
    """Command line (module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", choices=("val", "test"), default="val")
    ap.add_argument("--problem", choices=("photos", "gauss", "choose"), default="photos")
    ap.add_argument("--save", help="write the rows to this JSON file")
    ap.add_argument("--load", help="report the rows of an earlier --save instead of solving")
    ap.add_argument(
        "--write", action="store_true", help="record the validation choice in the registry"
    )
    args = ap.parse_args(argv)
    if args.write and (args.split != "val" or args.problem != "photos"):
        ap.error(f"--write records a choice of --split val --problem photos, got {args.split}")
    start = time.perf_counter()
    if args.problem == "choose":
        print(choose(args.split))
        print(f"\n({time.perf_counter() - start:.0f} s)")
        return
    res = _load(args.load) if args.load else run(args.split, args.problem)
    if args.save:
        _save(res, args.save)
    if args.write:
        stamp = time.strftime(", %Y-%m-%d", time.gmtime())
        log_choice = write(res, when=stamp)
        print(f"registry: {log_choice}")
    if args.problem == "gauss":
        print(oracle_report(res, args.split))
    else:
        print(report(res, args.split))
    print(f"\n({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
