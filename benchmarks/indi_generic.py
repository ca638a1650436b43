"""Does one grid spacing serve every InDI predictor trained with flowrestore's trainer? (issue 16)

A shipped predictor's registry entry declares a ``StartRefined`` spacing per solver
(``benchmarks.indi_spacing``); a checkpoint a user trains (``python -m flowrestore.training
--method indi``, loaded by ``flowrestore restore --checkpoint``) and a plain ``fr.InDIFlow(F)``
declare none: the loop's rule (uniform steps; ``Power``/``EndRefined`` for the solvers that land
by denoising). This benchmark asks whether a declaration chosen on the shipped predictors would be
a better default for every trained predictor:

* **validation** (would choose): the shipped ``indi-deblur`` and ``indi-sr4`` with their fitted
  grids and declarations removed (``flow_for(model, grids=None, spacings=None)``), on the few-NFE
  benchmark's validation crops (:data:`benchmarks.fewnfe_problems.VAL_CROPS`);
* **test** (chose nothing): two predictors trained for this check only, on tasks no validation
  model has (``benchmarks/heldout-indi/``, commands in :data:`HELDOUT`): JPEG at quality 20 with
  the trainer's default parametrisation (``F`` itself, time embedding scale 1000) and Gaussian
  denoising at σ = 0.1 (the shipped predictors' ``F = x − t v``, scale 10), on the test crops
  (:data:`benchmarks.fewnfe_problems.TEST_CROPS`).

Candidates: :func:`benchmarks.indi_spacing.candidates` (no declaration, and ``StartRefined(ρ)``
for ρ in 1.7–6 with the end rules and laid exactly). Solvers: the six of
:data:`benchmarks.indi_spacing.SOLVERS` and ``SemiLinearMultistep()`` (without a declaration: its
own ``StartRefined(rho=1.7)``). Score: PSNR (dB) of the worst crop to a 400-evaluation reference
at each of 3–10 evaluations; a row's mean over them. The rule a shared default would follow: for
each solver, the candidate with the highest mean of the *worse model's* row (:func:`choose`).

``--problem choose`` (with ``--load`` of a ``--split test --save`` run) runs
:func:`flowrestore.integrate.choose_spacing` — the tool for a predictor that declares nothing — for
each test model and solver on warm-up crops that are never scored
(:data:`benchmarks.fewnfe_problems.WARM_CROPS`, 64²) and scores its choice on the test crops
beside the loop's rule and the best candidate.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import flowrestore as fr
from benchmarks import fewnfe_problems as P
from benchmarks import indi_spacing
from benchmarks.indi_spacing import NFES, NONE, _load, _mean, _save, candidates

SOLVERS = {**indi_spacing.SOLVERS, "SemiLinearMultistep()": fr.SemiLinearMultistep}
VAL_MODELS = ("indi-deblur", "indi-sr4")
HERE = Path(__file__).resolve().parent / "heldout-indi"
#: the test split's predictors and the commands that trained them (2026-12-05, this machine;
#: the committed files are those checkpoints without the optimizer state and RNG, 1.6 MB each)
HELDOUT = {
    "indi-jpeg": (
        "python -m flowrestore.training.trainer --task jpeg --method indi --steps 3000 --seed 1 "
        "--threads 1 --no-progress --out benchmarks/heldout-indi/indi-jpeg.ckpt"
    ),
    "indi-denoise": (
        "python -m flowrestore.training.trainer --task denoise --task-param sigma=0.1 --method "
        "indi --steps 3000 --seed 2 --threads 1 --velocity --time-scale 10 --no-progress "
        "--out benchmarks/heldout-indi/indi-denoise.ckpt"
    ),
}


def problems(split: str):
    """``(model name, problem)`` for the split (module docstring); every flow declares nothing."""
    from flowrestore.restore.models import load_model

    bare = {"grids": None, "spacings": None}
    if split == "val":
        return [(m, P.indi_photos(m, "val", flow_options=bare)) for m in VAL_MODELS]
    out = []
    for name in HELDOUT:
        model = load_model(checkpoint=HERE / f"{name}.ckpt")
        out.append((name, P.indi_photos(name, "test", model=model, flow_options=bare)))
    return out


def run(split: str, log=print) -> dict[tuple[str, str, str], dict[int, float]]:
    """The worst crop's PSNR per (model, candidate, solver) and NFE."""
    res = {}
    for model, problem in problems(split):
        log(f"{model}, {split}: {problem.note}")
        (inst,) = problem.instances
        for cname, spacing in candidates().items():
            flow = indi_spacing._declaring(inst, spacing, SOLVERS)
            for sname, make in SOLVERS.items():
                row = {}
                for steps in range(1, 11):
                    with torch.no_grad():
                        sol = fr.solve(flow, make(), inst.x, steps=steps)
                    nfe = int(sol.stats.nfe.max())
                    if nfe in NFES:
                        row[nfe] = float(P.score(problem, inst, sol.x))
                res[(model, cname, sname)] = row
                log(f"  {cname:36s} {sname:22s} " + " ".join(f"{row[n]:.2f}" for n in row))
    return res


def models(res) -> list[str]:
    """The models the rows cover, in order."""
    return list(dict.fromkeys(key[0] for key in res))


def worse(res, cname: str, sname: str) -> float:
    """The rule's score: the mean over NFE of the worse model's row."""
    return min(_mean(res[(m, cname, sname)]) for m in models(res))


def choose(res) -> dict[str, str]:
    """The rule's choice per solver (module docstring)."""
    out = {}
    for sname in SOLVERS:
        score = {c: worse(res, c, sname) for c in candidates()}
        best = max(score.values())
        out[sname] = next(c for c in candidates() if score[c] == best)
    return out


def report(res, split: str, chosen: dict[str, str]) -> str:
    """Markdown: per solver and model the mean over 3–10 NFE of the loop's rule, of ``chosen``
    (the shared rule's choice, from the validation rows) and of this split's best candidate;
    then each model's rows on the first two."""
    ms = models(res)
    lines = [
        f"#### {split} split — mean over 3–10 NFE of the worst crop's PSNR (dB)",
        "",
        "| solver | validation's shared choice | "
        + " | ".join(f"{m}: loop's rule / shared choice / best (candidate)" for m in ms)
        + " |",
        "|---|---" + "|---" * len(ms) + "|",
    ]
    for sname in SOLVERS:
        cells = []
        for m in ms:
            best = max(candidates(), key=lambda c, m=m: _mean(res[(m, c, sname)]))
            rule, mine = _mean(res[(m, NONE, sname)]), _mean(res[(m, chosen[sname], sname)])
            top = _mean(res[(m, best, sname)])
            cells.append(f"{rule:.2f} / {mine:.2f} ({mine - rule:+.2f}) / {top:.2f} ({best})")
        lines.append(f"| {sname} | {chosen[sname]} | " + " | ".join(cells) + " |")
    lines.append("")
    for m in ms:
        lines += indi_spacing.rows_head(m, split)
        for sname in SOLVERS:
            for cname in dict.fromkeys((NONE, chosen[sname])):
                row = res[(m, cname, sname)]
                cells = " | ".join(f"{row[n]:.2f}" if n in row else "–" for n in NFES)
                lines.append(f"| {cname} | {sname} | {cells} |")
        lines.append("")
    return "\n".join(lines)


def _label(spacing) -> str:
    """A spacing as a short label (``uniform``, ``ρ = 3``, ``ρ = 3 as given``)."""
    exact = isinstance(spacing, fr.Unrefined)
    rho = getattr(spacing.base if exact else spacing, "rho", None)
    return ("uniform" if rho is None else f"ρ = {rho:g}") + (" as given" if exact else "")


def choose_report(res, log=print) -> str:
    """Markdown for ``--problem choose``: :func:`~flowrestore.integrate.choose_spacing`'s choice
    per test model and solver, from warm-up crops never scored, scored on the test crops beside
    the loop's rule and the best candidate of ``res`` (the test rows)."""
    from flowrestore.integrate import choose_spacing
    from flowrestore.pretrained import degrade_for

    lines = [
        "| model | solver | choice (seconds) | choice | loop's rule | best candidate |",
        "|---|---|---|---|---|---|",
    ]
    for model, problem in problems("test"):
        (inst,) = problem.instances
        _, clean = P.crop_images(P.WARM_CROPS, 64)
        warm = degrade_for(inst.flow.network, clean, generator=torch.Generator().manual_seed(7))
        for sname, make in SOLVERS.items():
            start = time.perf_counter()
            with torch.no_grad():
                choice = choose_spacing(inst.flow, make(), warm)
            took = time.perf_counter() - start
            row = {}
            for steps in range(1, 11):
                with torch.no_grad():
                    sol = fr.solve(inst.flow, make(), inst.x, steps=steps, spacing=choice.spacing)
                nfe = int(sol.stats.nfe.max())
                if nfe in NFES:
                    row[nfe] = float(P.score(problem, inst, sol.x))
            best = max(candidates(), key=lambda c: _mean(res[(model, c, sname)]))
            cells = (
                f"{_label(choice.spacing)} ({took:.1f} s)",
                f"{_mean(row):.2f}",
                f"{_mean(res[(model, NONE, sname)]):.2f}",
                f"{_mean(res[(model, best, sname)]):.2f} ({best})",
            )
            log(f"  {model} {sname}: {cells}")
            lines.append(f"| {model} | {sname} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    """Command line (module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", choices=("val", "test"), default="val")
    ap.add_argument("--problem", choices=("rows", "choose"), default="rows")
    ap.add_argument("--save", help="write the rows to this JSON file")
    ap.add_argument("--load", help="report the rows of an earlier --save instead of solving")
    ap.add_argument("--val", help="the validation rows (a --save) whose shared choice to report")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    res = _load(args.load) if args.load else run(args.split)
    if args.save:
        _save(res, args.save)
    if args.problem == "choose":
        print(choose_report(res))
    else:
        chosen = choose(_load(args.val) if args.val else res)
        print(f"the shared rule's choice: {chosen}\n")
        print(report(res, args.split, chosen))
    print(f"\n({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
