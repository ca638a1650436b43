"""IPNDM's analytic first step (``start_estimate``), at equal evaluations (issue 16).

At a pure-noise start a diffusion or flow-matching model's clean estimate is the data's mean
whatever the input, so :class:`~flowrestore.IPNDM` and :class:`~flowrestore.DataIPNDM` may take
it there instead of evaluating the model (flowrestore/solvers/adams.py, "The analytic first
step"; Zhou et al. 2024's AFS with that estimate instead of 0): ``steps=N + 1`` costs ``N``
evaluations. Each table compares, at ``N`` evaluations, the default solve (``steps=N``) with the
one given the estimate (``steps=N + 1``) — :class:`~flowrestore.IPNDM` in both forms and
:class:`~flowrestore.UniPC` — and Euler for scale; the last rows are the default's error over
the estimate's, per solver. The estimate is
:func:`flowrestore.integrate.estimate_start`: the model's own clean estimate at the start,
averaged over 16 warm-up noises that are never scored (one evaluation of that batch). On the two
trained DDPMs a row also takes the mean image of their 80 training faces
(``examples/bird_diffusion.faces("train")`` in ``[−1, 1]``), which is not the model's estimate.
Problems:

* the exact diffusion models of the few-NFE benchmark's (a) (:mod:`benchmarks.fewnfe_problems`;
  64-D stiff Gaussian priors);
* the two trained DDPMs (``benchmarks/ddpm-faces``, v; ``benchmarks/ddpm-faces-eps``, ε);
* the Gaussian-mixture priors of :mod:`benchmarks.multimodal` (EDM, linear/ε, cosine/v, flow
  matching with shift 3; spreads 0.5, 1.0, 0.3).

Nothing is tuned here (the option has no parameter); both splits are reported, validation
(the problems' validation seeds) and test (their test seeds, and two more exact families).
Score: worst sample's relative error (the mixtures: the median sample's, worst prior).

Run: ``OMP_NUM_THREADS=1 python -m benchmarks.analytic_start [--split val|test|both]`` (about
8 minutes for both on one core).
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import torch

import flowrestore as fr
from flowrestore.integrate import estimate_start

from . import fewnfe_problems as P
from . import multimodal as M
from .common import split_parser, splits
from .landing_guard import less_accurate

NFES = range(3, 11)
#: name -> (solver given the estimates {"model": ..., "training": ...}, extra steps at equal
#: evaluations); a row whose estimate a problem lacks is left out
ROWS = {
    "IPNDM()": (lambda m: fr.IPNDM(), 0),
    "IPNDM(start_estimate=estimate)": (lambda m: fr.IPNDM(start_estimate=m["model"]), 1),
    "DataIPNDM()": (lambda m: fr.DataIPNDM(), 0),
    "DataIPNDM(start_estimate=estimate)": (lambda m: fr.DataIPNDM(start_estimate=m["model"]), 1),
    "DataIPNDM(start_estimate=training mean)": (
        lambda m: fr.DataIPNDM(start_estimate=m["training"]),
        1,
    ),
    "UniPC()": (lambda m: fr.UniPC(), 0),
    "UniPC(start_estimate=estimate)": (lambda m: fr.UniPC(start_estimate=m["model"]), 1),
    "Euler()": (lambda m: fr.Euler(), 0),
}
PAIRS = (
    ("IPNDM()", "IPNDM(start_estimate=estimate)"),
    ("DataIPNDM()", "DataIPNDM(start_estimate=estimate)"),
    ("UniPC()", "UniPC(start_estimate=estimate)"),
)
WARMUP = 16


def training_mean() -> torch.Tensor:
    """The mean image ``[1, 1, 24, 24]`` of the trained DDPMs' 80 training faces, in ``[−1, 1]``."""
    path = Path(__file__).resolve().parent.parent / "examples" / "bird_diffusion.py"
    spec = importlib.util.spec_from_file_location("bird_diffusion_example", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return (mod.faces("train") * 2 - 1).mean(0, keepdim=True)


def problems(split: str):
    """``(problem, warm-up noises of instance i, training mean or None, score)`` of ``split``
    (module docstring)."""
    exact = [("linear", "epsilon"), ("cosine", "v_prediction")]
    if split == "test":
        exact += [("linear", "sample"), ("linear-zsnr", "v_prediction")]
    for schedule, ptype in exact:
        prob = P.diffusion_oracles(schedule, ptype, split)
        yield prob, lambda inst, g: inst.extra["model"].sample_latent(WARMUP, g), None, None
    faces = training_mean()
    for folder in (None, P.DDPM_EPS):
        prob = P.ddpm_faces(split, folder=folder)
        yield prob, lambda inst, g: torch.randn(WARMUP, *inst.x.shape[1:], generator=g), faces, None
    for family in M.FAMILIES:
        for spread, (lo, hi) in M.PRIORS:
            prob = M.make_problem(family, spread, lo, hi, M.SEEDS[split])
            yield prob, _mixture_noise, None, lambda _p, inst, x: M.scores(inst, x)[0]


def _mixture_noise(inst, g):
    """Start noises like the mixture problem's own (EDM's at σ_max = 80, else unit)."""
    scale = 80.0 if isinstance(inst.flow, fr.DenoiserFlow) else 1.0
    return scale * torch.randn(WARMUP, *inst.x.shape[1:], generator=g, dtype=inst.x.dtype)


def run_problem(problem, warm, training, score) -> dict[str, dict[int, float]]:
    """Worst score per row and evaluation count (checked against the solve's own count)."""
    means = []
    for i, inst in enumerate(problem.instances):
        noise = warm(inst, torch.Generator().manual_seed(90_000 + i))
        means.append({"model": estimate_start(inst.flow, noise), "training": training})
    res = {}
    for name, (make, extra) in ROWS.items():
        if "training" in name and training is None:
            continue
        row = {}
        for n in NFES:
            worst = None
            for inst, m in zip(problem.instances, means, strict=True):
                with torch.no_grad():
                    sol = fr.solve(inst.flow, make(m), inst.x, steps=n + extra)
                if int(sol.stats.nfe.max()) != n:
                    raise AssertionError(f"{name}: {n + extra} steps cost {sol.stats.nfe.max()}")
                s = (score or P.score)(problem, inst, sol.x)
                # lower is better for both scores; a NaN (diverged) instance stays NaN
                worst = s if worst is None else P.worse("rel", worst, s)
            row[n] = worst
        res[name] = row
    return res


def report(problem, res) -> str:
    """A markdown table with the rows and each form's gain (default error / with the mean)."""
    head = f"| {problem.name} | " + " | ".join(f"{n} NFE" for n in NFES) + " |"
    lines = [head, "|---" * (len(NFES) + 1) + "|"]
    for name, row in res.items():
        lines.append(f"| {name} | " + " | ".join(f"{row[n]:.3g}" for n in NFES) + " |")
    for off, on in PAIRS:
        gains = " | ".join(f"{res[off][n] / res[on][n]:.2f}×" for n in NFES)
        lines.append(f"| gain, {off.removesuffix('()')} | {gains} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    a = split_parser("python -m benchmarks.analytic_start", __doc__).parse_args(argv)
    torch.set_grad_enabled(False)
    for split in splits(a):
        print(f"## {split} split\n", flush=True)
        worse = {on: [] for _, on in PAIRS}
        cells = 0
        for problem, warm, training, score in problems(split):
            t0 = time.perf_counter()
            res = run_problem(problem, warm, training, score)
            print(
                report(problem, res),
                f"\n({time.perf_counter() - t0:.0f} s)\n",
                sep="\n",
                flush=True,
            )
            for off, on in PAIRS:
                worse[on] += [
                    (problem.name, n) for n in NFES if less_accurate(res[on][n], res[off][n])
                ]
            cells += len(NFES)
        for on, where in worse.items():
            print(f"{on} less accurate than without in {len(where)} of {cells} cells: {where}\n")


if __name__ == "__main__":
    main()
