"""The grid a shipped InDI predictor declares for the embedded pairs ``Bosh3()`` and ``Dopri5()``
(issue 16).

:mod:`benchmarks.indi_spacing` chooses the declared spacing of the few-step solvers on 3–10
evaluations; an embedded pair costs 3 (Bosh3) or 6 (Dopri5) evaluations a step, so it has one or
two cells there, and without a declaration a pair on a shipped predictor got the loop's rule for a
solver landing by the denoising step — ``Power(rho = order/2)``, refined toward ``t = 0``, while a
learned restoration predictor changes fastest at the *start*: on the validation crops of
``indi-sr4`` Bosh3 and Dopri5 with ``steps=10`` were 14.4 and 16.2 dB behind Euler at the same
evaluations (``python -m benchmarks.split_landing``, 2026-12-07).

``python -m benchmarks.indi_spacing_pairs --split val|test`` solves InDI predictors
(:func:`benchmarks.fewnfe_problems.indi_photos`: 96×96 crops, PSNR to a 400-evaluation
reference, worst crop) with each pair at ``steps = 3–10`` on each candidate: the loop's rule (no
declaration) and, laid exactly, ``Unrefined(StartRefined(rho, closing_pair=False))`` for ρ in
1.25–4 and ``Unrefined(Power(rho))`` for ρ in 1.5–3 (with the loop's end rules on it,
``StartRefined(rho=2)`` was 11 dB below its ``Unrefined`` twin for Bosh3 on the validation
``indi-sr4``, a scratch scan of 2026-12-07, as for Heun and RK4 in ``indi_spacing``; ρ 5 and 6
were never chosen in the first run, ρ ≤ 1.5 and ``Power`` serve the JPEG and denoising tasks in
:mod:`benchmarks.indi_generic`). The predictors:

* **validation** (chooses): the shipped ``indi-deblur`` and ``indi-sr4`` and the validation
  checkpoints of the JPEG and denoising tasks (``indi-jpeg``, ``indi-denoise``:
  :data:`benchmarks.indi_generic.HELDOUT`) on the validation crops — for each task the predictor
  :mod:`benchmarks.indi_generic` chose its other solvers' spacings on;
* **test** (chose nothing): the shipped predictors on the test crops, and the checkpoints trained
  for :mod:`benchmarks.indi_generic`'s test splits only (2× super-resolution, JPEG at quality 40,
  two denoisers), each loaded as a user's checkpoint is, declaring its task's record.

The rule: per model and pair, the candidate with the highest mean over ``steps = 3–10`` of the
worst crop's PSNR. Each report also lists, for the choice and for what each model declares, the
steps where the pair lands farther from the reference than Euler (on its own declared spacing)
with the same evaluations. ``--write`` (validation, all four models) adds the choice to the shipped
registry's ``"spacings": {"per_solver": ...}`` beside :mod:`benchmarks.indi_spacing`'s entries
(read by :func:`flowrestore.pretrained.flow_for`) and to each task's record of
:data:`flowrestore.methods.indi.TASK_SPACINGS_FILE` (what a checkpoint trained for that task
declares) beside :mod:`benchmarks.indi_generic`'s.

Run: ``OMP_NUM_THREADS=1 python -m benchmarks.indi_spacing_pairs --split val --models indi-deblur
indi-sr4 --save A`` (and the other two models ``--save B`` beside it), then ``--split val --load A
B --write``; about 10 minutes per model on one core (15 beside another run).
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
from benchmarks.indi_spacing import MODELS, NONE, _spec
from flowrestore.paths import write_atomic
from flowrestore.pretrained import _write_registry_file

SOLVERS = {"Bosh3()": fr.Bosh3, "Dopri5()": fr.Dopri5}
STEPS = tuple(range(3, 11))


#: the predictors of each split (module docstring)
SPLIT_MODELS = {
    "val": ("indi-deblur", "indi-sr4", "indi-jpeg", "indi-denoise"),
    "test": (
        "indi-deblur",
        "indi-sr4",
        "indi-sr2",
        "indi-jpeg40",
        "indi-denoise05",
        "indi-denoise20",
    ),
}
START_RHOS = (1.25, 1.5, 1.7, 2.0, 2.5, 3.0, 4.0)
POWER_RHOS = (1.5, 2.0, 3.0)


def candidates() -> dict[str, fr.Spacing | None]:
    """The declarations compared (``None``: none; module docstring)."""
    out: dict[str, fr.Spacing | None] = {NONE: None}
    for rho in START_RHOS:
        sr = fr.StartRefined(rho=rho, closing_pair=False)
        out[f"Unrefined(StartRefined(rho={rho:g}))"] = fr.Unrefined(sr)
    for rho in POWER_RHOS:
        out[f"Unrefined(Power(rho={rho:g}))"] = fr.Unrefined(fr.Power(rho=rho))
    return out


def _declaring(flow, spacing):
    """``flow`` (a shipped predictor's, its own declarations kept) declaring ``spacing`` for the
    pairs (``None``: no declaration for them)."""
    out = copy.copy(flow)
    out.spacings = {k: v for k, v in flow.spacings.items() if k not in SOLVERS.values()}
    if spacing is not None:
        out.spacings.update(dict.fromkeys(SOLVERS.values(), spacing))
    return out


def _load(name: str):
    """A shipped predictor, or a held-out checkpoint of :mod:`benchmarks.indi_generic` loaded as
    a user's (declaring its task's record)."""
    from benchmarks.indi_generic import load

    return load(name)


def run(split: str, models=None, log=print) -> dict:
    """``{(model, candidate, solver): {steps: (nfe, worst PSNR, Euler's worst PSNR)}}``."""
    res: dict = {}
    for model in models or SPLIT_MODELS[split]:
        problem = P.indi_photos(model, split, model=None if model in MODELS else _load(model))
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


def _models(res) -> list[str]:
    """The models measured in ``res``, in order."""
    return list(dict.fromkeys(key[0] for key in res))


def per_solver(res) -> dict[tuple[str, str], str]:
    """The rule's choice (module docstring) per ``(model, solver)``; ties keep the earlier."""
    out = {}
    for model in _models(res):
        for sname in SOLVERS:
            score = {c: _mean(res[(model, c, sname)]) for c in candidates()}
            out[(model, sname)] = max(candidates(), key=lambda c, s=score: s[c])
    return out


def declared(model: str) -> dict[str, str]:
    """What ``model`` declares for the pairs as a user loads it (a shipped predictor: its
    registry entry; a checkpoint: its task's record), as candidate names."""
    from flowrestore.pretrained import flow_for

    return B.declared(model, SOLVERS, candidates(), flow_for(_load(model)).spacings)


def report(res, split: str) -> str:
    """Markdown: per model the rows, then the choice, what the model declares and the cells
    behind Euler."""
    lines = []
    for model in _models(res):
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
    decl = {model: declared(model) for model in _models(res)}  # loads each model once
    names = {key[1] for key in res}  # the candidates measured
    lines += [
        "| model | solver | this split's best | what it declares (registry or task record) |",
        "|---|---|---|---|",
    ]
    for (model, sname), cname in mine.items():
        cells = [
            f"{c} {_mean(res[(model, c, sname)]):.2f}" if c in names else c
            for c in (cname, decl[model][sname])
        ]
        lines.append(f"| {model} | {sname} | {cells[0]} | {cells[1]} |")
    lines += ["", "Steps behind Euler at equal evaluations (Euler on its declared spacing):", ""]
    for label, pick in (("this split's best", mine), ("what each declares", None)):
        cells = []
        for (model, sname), cname in mine.items():
            c = cname if pick else decl[model][sname]
            if c not in names:
                continue
            row = res[(model, c, sname)]
            cells += [
                f"{model} {sname} @{n} steps ({v[0]} NFE) {v[1] - v[2]:+.2f} dB"
                for n, v in row.items()
                if v[1] < v[2]
            ]
        lines.append(f"- {label}: {len(cells)} ({', '.join(cells) or 'none'})")
    return "\n".join(lines)


def _merge(entry: dict, model: str, res, choice, when: str) -> None:
    """Put ``model``'s choice for the pairs into a ``{"per_solver": ...}`` record, in place."""
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
        f"validation crop's PSNR (dB) on {model}{when}: {'; '.join(notes)}"
    )


def write(res, path=None, when: str = "", tasks_path=None) -> dict:
    """Add :func:`per_solver`'s validation choice to the shipped registry's ``per_solver``
    spacings (the shipped predictors) and to the record of each validation model's task
    (:data:`flowrestore.methods.indi.TASK_SPACINGS_FILE`, whose ``validation`` must name that
    model), the other solvers' entries kept; returns the choice."""
    from importlib import resources
    from pathlib import Path

    from benchmarks.indi_generic import task_of
    from flowrestore.methods.indi import TASK_SPACINGS_FILE

    missing = [m for m in SPLIT_MODELS["val"] if m not in _models(res)]
    if missing:
        raise ValueError(f"--write needs every validation model's rows; missing {missing}")
    path = Path(path or resources.files("flowrestore.pretrained").joinpath("registry.json"))
    tasks_path = Path(tasks_path or TASK_SPACINGS_FILE)
    registry, record = json.loads(path.read_text()), json.loads(tasks_path.read_text())
    choice = per_solver(res)
    for model in SPLIT_MODELS["val"]:
        if model in MODELS:
            _merge(registry["models"][model]["spacings"], model, res, choice, when)
        task = task_of(model)
        if record["tasks"][task].get("validation") != model:
            raise ValueError(f"task {task!r} is not validated on {model} ({tasks_path})")
        _merge(record["tasks"][task], model, res, choice, when)
    _write_registry_file(path, registry)  # atomic: a failed write leaves the registry whole
    text = json.dumps(record, indent=1, ensure_ascii=False) + "\n"
    write_atomic(tasks_path, lambda f: f.write(text.encode()))
    return choice


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.indi_spacing_pairs", description=__doc__
    )
    ap.add_argument("--split", choices=("val", "test"), default="val")
    ap.add_argument("--models", nargs="+", metavar="NAME", help="a subset of the split's models")
    ap.add_argument("--save", help="write the rows to this JSON file")
    ap.add_argument("--load", nargs="+", help="report the rows of earlier --save runs instead")
    ap.add_argument("--write", action="store_true", help="record the choice (validation only)")
    a = ap.parse_args(argv)
    if a.write and a.split != "val":
        ap.error("--write records the validation split's choice: use --split val")
    bad = [m for m in a.models or () if m not in SPLIT_MODELS[a.split]]
    if bad:
        ap.error(f"--models {bad} not in the {a.split} split: {SPLIT_MODELS[a.split]}")
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    if a.load:
        res = {}
        for f in a.load:
            res.update({k: {n: tuple(v) for n, v in r.items()} for k, r in B._load(f).items()})
    else:
        res = run(a.split, a.models, log=lambda m: print(m, flush=True))
        print(f"\n({time.perf_counter() - t0:.0f} s)\n")
    if a.save:
        B._save(res, a.save)
    print(report(res, a.split), flush=True)
    if a.write:
        when = time.strftime(", %Y-%m-%d", time.gmtime())
        print("\nwritten:", write(res, when=when))


if __name__ == "__main__":
    main()
