"""The grid a shipped InDI predictor declares for the embedded pairs ``Bosh3()`` and ``Dopri5()``
(issue 16).

:mod:`benchmarks.indi_spacing` chooses the declared spacing of the few-step solvers on 3–10
evaluations; an embedded pair costs 3 (Bosh3) or 6 (Dopri5) evaluations a step, so it has one or
two cells there, and without a declaration a pair on a shipped predictor got the loop's rule for a
solver landing by the denoising step — ``Power(rho = order/2)``, refined toward ``t = 0``, while a
learned restoration predictor changes fastest at the *start*: on the validation crops of
``indi-sr4`` Bosh3 and Dopri5 with ``steps=10`` were 14.4 and 16.2 dB behind Euler at the same
evaluations (``python -m benchmarks.split_landing``, 2026-12-07).

``python -m benchmarks.indi_spacing_pairs --split val|test`` solves the shipped ``indi-deblur`` and
``indi-sr4`` predictors (:func:`benchmarks.fewnfe_problems.indi_photos`: 96×96 crops, PSNR to a
400-evaluation reference, worst crop) with each pair at ``steps = 3–10`` on each candidate: the
loop's rule (no declaration) and ``Unrefined(StartRefined(rho, closing_pair=False))`` for the
``rho`` of :data:`benchmarks.indi_spacing.RHOS` (laid exactly: with the loop's end rules on it,
``StartRefined(rho=2)`` was 11 dB below its ``Unrefined`` twin for Bosh3 on the validation
``indi-sr4``, a scratch scan of 2026-12-07, as for Heun and RK4 in ``indi_spacing``).

The rule (applied to ``--split val``, which chooses; ``--split test`` reports crops that chose
nothing): per model and pair, the candidate with the highest mean over ``steps = 3–10`` of the
worst crop's PSNR. Each report also lists, for the choice and for the registry's declaration,
the steps where the pair lands farther from the reference than Euler (on its own declared
spacing) with the same evaluations. ``--write`` (validation only) adds the choice to the shipped
registry's ``"spacings": {"per_solver": ...}`` beside :mod:`benchmarks.indi_spacing`'s entries
(read by :func:`flowrestore.pretrained.flow_for`).

Run: ``OMP_NUM_THREADS=1 python -m benchmarks.indi_spacing_pairs --split val`` (about 20 minutes
per split on one core).
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import torch

import flowrestore as fr
from benchmarks import fewnfe_problems as P
from benchmarks import indi_spacing as B
from benchmarks.indi_spacing import MODELS, NONE, RHOS, _spec

SOLVERS = {"Bosh3()": fr.Bosh3, "Dopri5()": fr.Dopri5}
STEPS = tuple(range(3, 11))


def candidates() -> dict[str, fr.Spacing | None]:
    """The declarations compared (``None``: none; module docstring)."""
    out: dict[str, fr.Spacing | None] = {NONE: None}
    for rho in RHOS:
        sr = fr.StartRefined(rho=rho, closing_pair=False)
        out[f"Unrefined(StartRefined(rho={rho:g}))"] = fr.Unrefined(sr)
    return out


def _declaring(flow, spacing):
    """``flow`` (a shipped predictor's, its own declarations kept) declaring ``spacing`` for the
    pairs (``None``: no declaration for them)."""
    out = copy.copy(flow)
    out.spacings = {k: v for k, v in flow.spacings.items() if k not in SOLVERS.values()}
    if spacing is not None:
        out.spacings.update(dict.fromkeys(SOLVERS.values(), spacing))
    return out


def run(split: str, log=print) -> dict:
    """``{(model, candidate, solver): {steps: (nfe, worst PSNR, Euler's worst PSNR)}}``."""
    res: dict = {}
    for model in MODELS:
        problem = P.indi_photos(model, split)
        log(f"{model}, {split}: {problem.note}")
        euler: dict[tuple[int, int], float] = {}
        for cname, spacing in candidates().items():
            for sname, make in SOLVERS.items():
                row: dict[int, tuple[int, float, float]] = {}
                for i, inst in enumerate(problem.instances):
                    flow = _declaring(inst.flow, spacing)
                    for n in STEPS:
                        with torch.no_grad():
                            sol = fr.solve(flow, make(), inst.x, steps=n)
                            nfe = int(sol.stats.nfe.max())
                            if (i, nfe) not in euler:
                                y = fr.solve(inst.flow, fr.Euler(), inst.x, steps=nfe).x
                                euler[(i, nfe)] = P.score(problem, inst, y)
                        s, e = P.score(problem, inst, sol.x), euler[(i, nfe)]
                        _, s0, e0 = row.get(n, (nfe, s, e))
                        row[n] = (nfe, min(s, s0), min(e, e0))
                res[(model, cname, sname)] = row
                log(f"  {cname:34s} {sname:9s} " + " ".join(f"{v[1]:.2f}" for v in row.values()))
    return res


def _mean(row: dict) -> float:
    return sum(v[1] for v in row.values()) / len(row)


def per_solver(res) -> dict[tuple[str, str], str]:
    """The rule's choice (module docstring) per ``(model, solver)``; ties keep the earlier."""
    out = {}
    for model in MODELS:
        for sname in SOLVERS:
            score = {c: _mean(res[(model, c, sname)]) for c in candidates()}
            out[(model, sname)] = max(candidates(), key=lambda c, s=score: s[c])
    return out


def declared(model: str) -> dict[str, str]:
    """The shipped registry's declaration for the pairs, as candidate names."""
    return B.declared(model, SOLVERS, candidates())


def report(res, split: str) -> str:
    """Markdown: per model the rows, then the choice, the registry's and the cells behind
    Euler."""
    lines = []
    for model in MODELS:
        lines += [
            f"#### {model}, {split} split — PSNR (dB) to the reference, worst crop",
            "",
            "| declared spacing | solver | mean | "
            + " | ".join(f"{n} steps" for n in STEPS)
            + " |",
            "|---|---|---" + "|---" * len(STEPS) + "|",
        ]
        for cname in candidates():
            for sname in SOLVERS:
                row = res[(model, cname, sname)]
                cells = " | ".join(f"{row[n][1]:.2f}" for n in STEPS)
                lines.append(f"| {cname} | {sname} | {_mean(row):.2f} | {cells} |")
        lines.append("")
    mine = per_solver(res)
    lines += [
        "| model | solver | this split's best | the registry's declaration |",
        "|---|---|---|---|",
    ]
    for (model, sname), cname in mine.items():
        reg = declared(model)[sname]
        cells = [
            f"{c} {_mean(res[(model, c, sname)]):.2f}" if c in res_names(res) else c
            for c in (cname, reg)
        ]
        lines.append(f"| {model} | {sname} | {cells[0]} | {cells[1]} |")
    lines += ["", "Steps behind Euler at equal evaluations (Euler on its declared spacing):", ""]
    for label, pick in (("this split's best", mine), ("the registry's declaration", None)):
        cells = []
        for (model, sname), cname in mine.items():
            c = cname if pick else declared(model)[sname]
            if c not in res_names(res):
                continue
            row = res[(model, c, sname)]
            cells += [
                f"{model} {sname} @{n} steps ({v[0]} NFE) {v[1] - v[2]:+.2f} dB"
                for n, v in row.items()
                if v[1] < v[2]
            ]
        lines.append(f"- {label}: {len(cells)} ({', '.join(cells) or 'none'})")
    return "\n".join(lines)


def res_names(res) -> set[str]:
    """The candidate names measured in ``res``."""
    return {key[1] for key in res}


def write(res, path=None, when: str = "") -> dict:
    """Add :func:`per_solver`'s validation choice to the shipped registry's ``per_solver``
    spacings (the other solvers' entries kept); returns it."""
    from importlib import resources
    from pathlib import Path

    path = Path(path or resources.files("flowrestore.pretrained").joinpath("registry.json"))
    registry = json.loads(path.read_text())
    choice = per_solver(res)
    for model in MODELS:
        entry = registry["models"][model]["spacings"]
        notes = []
        for sname in SOLVERS:
            cname, name = choice[(model, sname)], sname.removesuffix("()")
            entry["per_solver"].pop(name, None)
            if cname != NONE:
                entry["per_solver"][name] = _spec(candidates()[cname])
            notes.append(f"{name}: {cname} {_mean(res[(model, cname, sname)]):.2f}")
        entry["pairs_command"] = "python -m benchmarks.indi_spacing_pairs --split val --write"
        entry["pairs_chosen"] = (
            "per embedded pair, the candidate with the highest mean over 3-10 steps of the worst "
            f"validation crop's PSNR (dB){when}: {'; '.join(notes)}"
        )
    path.write_text(json.dumps(registry, indent=1, ensure_ascii=False) + "\n")
    return choice


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.indi_spacing_pairs", description=__doc__
    )
    ap.add_argument("--split", choices=("val", "test"), default="val")
    ap.add_argument("--write", action="store_true", help="record the choice (validation only)")
    a = ap.parse_args(argv)
    if a.write and a.split != "val":
        ap.error("--write records the validation split's choice: use --split val")
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    res = run(a.split, log=lambda m: print(m, flush=True))
    print(f"\n({time.perf_counter() - t0:.0f} s)\n")
    print(report(res, a.split), flush=True)
    if a.write:
        when = time.strftime(", %Y-%m-%d", time.gmtime())
        print("\nwritten:", write(res, when=when))


if __name__ == "__main__":
    main()
