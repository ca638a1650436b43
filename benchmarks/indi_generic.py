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

**Round 2** (``--round 2``, the default since 2026-12-05 17:00; ``--round 1`` is the run above):
the validation split grows to four task types — the two shipped predictors and round 1's two
held-out ones, all on the validation crops — and two more predictors trained for round 2 only
(:data:`HELDOUT2`: 2× super-resolution with the trainer's default parametrisation, JPEG at quality
40 with noise 0.02 and ``F = x − t v``) are the test split, on the test crops. The candidates add
``Uniform()`` and ``StartRefined(ρ)`` for ρ 1.25 and 1.5 (:func:`round_candidates`): a
``SemiLinearMultistep()`` declaring nothing lays its own ``StartRefined(rho=1.7)``
(:meth:`~flowrestore.SemiLinearMultistep.default_spacing`), which round 2's rule re-chooses.

**Round 3** (``--round 3``, the default since 2026-12-06): the candidates add ``Power(ρ)`` for
ρ 1.5, 2, 3 — steps shrinking toward ``t = 0``, where a trained denoiser's field changes fastest
and which no earlier candidate refined — with the end rules and laid exactly; the test split adds
two denoisers trained for round 3 only (:data:`HELDOUT3`: σ = 0.05 with the trainer's default
parametrisation, σ = 0.2 with ``F = x − t v``). The task records (:func:`write`) are chosen from
round 3's candidates.

``--problem choose`` (with ``--load`` of a ``--split test --save`` run) runs
:func:`flowrestore.integrate.choose_spacing` — the tool for a predictor that declares nothing — for
each test model and solver on warm-up crops that are never scored
(:data:`benchmarks.fewnfe_problems.WARM_CROPS`, 64²) and scores its choice on the test crops
beside the loop's rule and the best candidate.
"""

from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path

import torch

import flowrestore as fr
from benchmarks import fewnfe_problems as P
from benchmarks import indi_spacing
from benchmarks.indi_spacing import NFES, NONE, _load, _mean, _save, _spec, candidates

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
#: round 2's test predictors, trained for it only (2026-12-05 16:36, this machine, side by side;
#: committed without the optimizer state and RNG)
HELDOUT2 = {
    "indi-sr2": (
        "python -m flowrestore.training.trainer --task sr4 --task-param factor=2 --method indi "
        "--steps 3000 --seed 3 --threads 1 --no-progress "
        "--out benchmarks/heldout-indi/indi-sr2.ckpt"
    ),
    "indi-jpeg40": (
        "python -m flowrestore.training.trainer --task jpeg --task-param quality=40 --task-param "
        "noise=0.02 --method indi --steps 3000 --seed 4 --threads 1 --velocity --time-scale 10 "
        "--no-progress --out benchmarks/heldout-indi/indi-jpeg40.ckpt"
    ),
}
#: round 3's test predictors: two denoisers, trained for it only (2026-12-06 17:54, this machine,
#: side by side; committed without the optimizer state and RNG)
HELDOUT3 = {
    "indi-denoise05": (
        "python -m flowrestore.training.trainer --task denoise --task-param sigma=0.05 --method "
        "indi --steps 3000 --seed 6 --threads 1 --no-progress "
        "--out benchmarks/heldout-indi/indi-denoise05.ckpt"
    ),
    "indi-denoise20": (
        "python -m flowrestore.training.trainer --task denoise --task-param sigma=0.2 --method "
        "indi --steps 3000 --seed 7 --threads 1 --velocity --time-scale 10 --no-progress "
        "--out benchmarks/heldout-indi/indi-denoise20.ckpt"
    ),
}
#: the models of each split, per round (module docstring)
ROUNDS = {
    1: {"val": VAL_MODELS, "test": tuple(HELDOUT)},
    2: {"val": VAL_MODELS + tuple(HELDOUT), "test": tuple(HELDOUT2)},
    3: {"val": VAL_MODELS + tuple(HELDOUT), "test": tuple(HELDOUT2) + tuple(HELDOUT3)},
}
#: the round whose candidates the task records (:func:`write`) are chosen from
RECORD_ROUND = 3


def round_candidates(round_: int) -> dict[str, fr.Spacing | None]:
    """The candidates of a round: :func:`benchmarks.indi_spacing.candidates`, and from round 2
    also ``Uniform()`` and ``StartRefined(ρ)`` for ρ 1.25 and 1.5, from round 3 ``Power(ρ)`` for
    ρ 1.5, 2, 3, with the end rules and laid exactly (module docstring)."""
    out = candidates()
    if round_ >= 2:
        out["Uniform()"] = fr.Uniform()
        for rho in (1.25, 1.5):
            sr = fr.StartRefined(rho=rho, closing_pair=False)
            out[f"StartRefined(rho={rho:g})"] = sr
            out[f"Unrefined(StartRefined(rho={rho:g}))"] = fr.Unrefined(sr)
    if round_ >= 3:
        for rho in (1.5, 2.0, 3.0):
            out[f"Power(rho={rho:g})"] = fr.Power(rho=rho)
            out[f"Unrefined(Power(rho={rho:g}))"] = fr.Unrefined(fr.Power(rho=rho))
    return out


@functools.cache
def load(name: str):
    """A round's model: a shipped predictor, or a held-out checkpoint loaded as
    ``flowrestore restore --checkpoint`` loads a user's."""
    from flowrestore.pretrained import pretrained
    from flowrestore.restore.models import load_model

    return pretrained(name) if name in VAL_MODELS else load_model(checkpoint=HERE / f"{name}.ckpt")


def task_of(name: str) -> str:
    """The task a round's model was trained for (its metadata)."""
    return load(name).metadata["task"]


def problems(split: str, round_: int = 3, only=None):
    """``(model name, problem)`` for the split and round (module docstring), or only the models
    named in ``only``; every flow declares nothing."""
    bare = {"grids": None, "spacings": None}
    out = []
    for name in ROUNDS[round_][split]:
        if only and name not in only:
            continue
        model = None if name in VAL_MODELS else load(name)
        out.append((name, P.indi_photos(name, split, model=model, flow_options=bare)))
    return out


def run(
    split: str, round_: int = 3, only=None, log=print
) -> dict[tuple[str, str, str], dict[int, float]]:
    """The worst crop's PSNR per (model, candidate, solver) and NFE (``only``: those models)."""
    res = {}
    for model, problem in problems(split, round_, only):
        log(f"{model}, {split}: {problem.note}")
        (inst,) = problem.instances
        for cname, spacing in round_candidates(round_).items():
            flow = indi_spacing._declaring(inst, spacing, SOLVERS)
            for sname, make in SOLVERS.items():
                row = res[(model, cname, sname)] = _row(problem, inst, flow, make)
                log(f"  {cname:36s} {sname:22s} " + " ".join(f"{row[n]:.2f}" for n in row))
    return res


def _row(problem, inst, flow, make) -> dict[int, float]:
    """The worst crop's PSNR at each of :data:`NFES` evaluations, ``steps=N`` on ``flow``."""
    row = {}
    for steps in range(1, 11):
        with torch.no_grad():
            sol = fr.solve(flow, make(), inst.x, steps=steps)
        nfe = int(sol.stats.nfe.max())
        if nfe in NFES:
            row[nfe] = float(P.score(problem, inst, sol.x))
        if nfe >= max(NFES):
            break  # more steps only spend more evaluations
    return row


def models(res) -> list[str]:
    """The models the rows cover, in order."""
    return list(dict.fromkeys(key[0] for key in res))


def cands(res) -> list[str]:
    """The candidates the rows cover, in order."""
    return list(dict.fromkeys(key[1] for key in res))


def worse(res, cname: str, sname: str) -> float:
    """The rule's score: the mean over NFE of the worse model's row."""
    return min(_mean(res[(m, cname, sname)]) for m in models(res))


def choose(res) -> dict[str, str]:
    """The rule's choice per solver (module docstring)."""
    out = {}
    for sname in SOLVERS:
        score = {c: worse(res, c, sname) for c in cands(res)}
        best = max(score.values())
        out[sname] = next(c for c in cands(res) if score[c] == best)
    return out


def per_task(res, tasks=None) -> dict[tuple[str, str], str]:
    """Round 2's rule for a trained checkpoint's declaration: per (task, solver), the candidate
    with the highest mean over 3–10 NFE of that task's validation model (one per task; ``tasks``
    maps a model to its task, default :func:`task_of`); exact ties go to the earlier candidate."""
    task = tasks.get if tasks else task_of
    out = {}
    for m in models(res):
        if any(key[0] == task(m) for key in out):
            raise ValueError(f"two validation models of task {task(m)!r}")
        for sname in SOLVERS:
            score = {c: _mean(res[(m, c, sname)]) for c in cands(res)}
            best = max(score.values())
            out[(task(m), sname)] = next(c for c in cands(res) if score[c] == best)
    return out


def write(res, path=None) -> dict:
    """Record :func:`per_task`'s validation choice as the trained checkpoints' declarations
    (:data:`flowrestore.methods.indi.TASK_SPACINGS_FILE`); returns the choice."""
    import json
    from pathlib import Path

    from flowrestore.methods.indi import TASK_SPACINGS_FILE

    choice, spacings = per_task(res), round_candidates(RECORD_ROUND)
    target = Path(path or TASK_SPACINGS_FILE)
    old = json.loads(target.read_text())["tasks"] if target.exists() else {}
    tasks = {}
    for m in models(res):
        # the embedded pairs' entries (benchmarks.indi_spacing_pairs) are kept
        before = old.get(task_of(m), {})
        kept = {k: v for k, v in before.get("per_solver", {}).items() if f"{k}()" not in SOLVERS}
        per, notes = dict(kept), []
        for sname in SOLVERS:
            cname = choice[(task_of(m), sname)]
            name = sname.removesuffix("()")
            if cname != NONE:
                per[name] = _spec(spacings[cname])
            notes.append(f"{name}: {cname} {_mean(res[(m, cname, sname)]):.2f}")
        tasks[task_of(m)] = {
            "per_solver": per,
            "validation": m,
            "chosen": "; ".join(notes),
            **{k: v for k, v in before.items() if k.startswith("pairs_")},
        }
    record = {
        "command": "python -m benchmarks.indi_generic --round 3 --split val --write",
        "rule": (
            "per task and solver, the candidate with the highest mean over 3-10 NFE of the worst "
            "validation crop's PSNR (dB) to the reference, on the task's validation predictor "
            "with its own declarations removed"
        ),
        "tasks": tasks,
    }
    target.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    return choice


def declared(name: str) -> dict[str, str]:
    """What a round's model declares when loaded as a user loads it (a checkpoint: its task's
    record), as candidate names per solver."""
    from flowrestore.pretrained import flow_for

    spacings = flow_for(load(name), grids=None).spacings
    names = {sp: c for c, sp in round_candidates(RECORD_ROUND).items() if sp is not None}
    return {
        sname: names.get(spacings[cls], repr(spacings[cls])) if cls in spacings else NONE
        for sname, cls in SOLVERS.items()
    }


def task_report(res) -> str:
    """Markdown: per test model and solver the mean over 3–10 NFE of the loop's rule, of what the
    checkpoint declares by its task (:func:`declared`) and of the best candidate."""
    lines = [
        "| model (task) | solver | loop's rule | declared by the task | best candidate |",
        "|---|---|---|---|---|",
    ]
    for m in models(res):
        mine = declared(m)
        for sname in SOLVERS:
            best = max(cands(res), key=lambda c, m=m: _mean(res[(m, c, sname)]))
            rule, got = _mean(res[(m, NONE, sname)]), _mean(res[(m, mine[sname], sname)])
            top = _mean(res[(m, best, sname)])
            lines.append(
                f"| {m} ({task_of(m)}) | {sname} | {rule:.2f} | {got:.2f} ({got - rule:+.2f}; "
                f"{mine[sname]}) | {top:.2f} ({best}) |"
            )
    return "\n".join(lines)


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
            best = max(cands(res), key=lambda c, m=m: _mean(res[(m, c, sname)]))
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


def choose_report(res, round_: int = 3, log=print) -> str:
    """Markdown for ``--problem choose``: :func:`~flowrestore.integrate.choose_spacing`'s choice
    per test model and solver, from warm-up crops never scored, scored on the test crops
    (declared for the solver) beside the loop's rule and the best candidate of ``res`` (the test
    rows)."""
    from flowrestore.integrate import choose_spacing
    from flowrestore.pretrained import degrade_for

    lines = [
        "| model | solver | choice (seconds) | choice | loop's rule | best candidate |",
        "|---|---|---|---|---|---|",
    ]
    for model, problem in problems("test", round_):
        (inst,) = problem.instances
        _, clean = P.crop_images(P.WARM_CROPS, 64)
        warm = degrade_for(inst.flow.network, clean, generator=torch.Generator().manual_seed(7))
        for sname, make in SOLVERS.items():
            start = time.perf_counter()
            with torch.no_grad():
                choice = choose_spacing(inst.flow, make(), warm)
            took = time.perf_counter() - start
            # declared, as the tool's answer is meant to be used (the landing rules apply on it;
            # before 2026-12-05 17:15 this passed spacing=, laid as given: wrong for Midpoint,
            # Heun and RK4 whenever the choice was not laid exactly)
            declaring = indi_spacing._declaring(inst, choice.spacing, {sname: make})
            row = _row(problem, inst, declaring, make)
            best = max(cands(res), key=lambda c: _mean(res[(model, c, sname)]))
            cells = (
                f"{_label(choice.spacing)} ({took:.1f} s)",
                f"{_mean(row):.2f}",
                f"{_mean(res[(model, NONE, sname)]):.2f}",
                f"{_mean(res[(model, best, sname)]):.2f} ({best})",
            )
            log(f"  {model} {sname}: {cells}")
            lines.append(f"| {model} | {sname} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _merged(paths) -> dict:
    """The rows of several ``--save`` runs (e.g. one per ``--models`` group)."""
    return {key: row for path in paths for key, row in _load(path).items()}


def main(argv=None) -> None:
    """Command line (module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", choices=("val", "test"), default="val")
    ap.add_argument("--round", type=int, choices=(1, 2, 3), default=3)
    ap.add_argument("--models", help="only these models of the split (comma list)")
    ap.add_argument("--problem", choices=("rows", "choose"), default="rows")
    ap.add_argument("--save", help="write the rows to this JSON file")
    ap.add_argument(
        "--load", nargs="+", help="report the rows of earlier --save runs instead of solving"
    )
    ap.add_argument(
        "--val", nargs="+", help="the validation rows (--save runs) whose shared choice to report"
    )
    ap.add_argument(
        "--write", action="store_true", help="record the per-task choice (round 2, --split val)"
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    only = args.models.split(",") if args.models else None
    res = _merged(args.load) if args.load else None
    res = res if res is not None else run(args.split, args.round, only)
    if args.save:
        _save(res, args.save)
    if args.problem == "choose":
        print(choose_report(res, args.round))
    else:
        chosen = choose(_merged(args.val) if args.val else res)
        print(f"the shared rule's choice: {chosen}\n")
        print(report(res, args.split, chosen))
        if args.round == 2 and args.split == "val":
            print(f"\nper task: {write(res) if args.write else per_task(res)}")
        if args.round == 2 and args.split == "test":
            print("\n" + task_report(res))
    print(f"\n({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
