"""``IPNDM()``'s guarded landing on diffusion and EDM models: with and without it (issue 16).

:class:`~flowrestore.IPNDM` truncates the Adams–Bashforth series of its step onto ``t = 0`` per
sample at its smallest term, on flows whose time is a noise level with reciprocal stages
(``landing_guard=None``: diffusion and EDM models; flowrestore/solvers/adams.py, "The guarded
landing"); after two steps, where the history has not settled (the series' second term above
0.9 times the first), it lands on the newest value alone ("The landing after two steps",
``UNSETTLED_RATIO``). This benchmark is the record of both choices:

* **validation** (chose it): the few-NFE benchmark's exact linear/ε and cosine/v models and both
  trained DDPMs (``benchmarks/ddpm-faces``, v; ``benchmarks/ddpm-faces-eps``, ε) on their
  validation seeds (:mod:`benchmarks.fewnfe_problems`), and the exact Gaussian-*mixture* priors of
  :mod:`benchmarks.multimodal` under EDM, linear/ε and cosine/v on its validation prior seeds
  (11, 12);
* **test** (chose nothing): the four exact families of the few-NFE benchmark's (a), both DDPMs on
  their test noises, and the mixtures on the test prior seeds (2101–2103).

Each table has ``IPNDM()`` (guarded; both rules), ``IPNDM(landing_guard=False)`` (the published
update, neither rule) and
``Euler()`` with ``steps=N`` on the flow's declared grid, 3–10 evaluations; the score is the worst
sample's relative error (the mixtures: the median sample's, as in :mod:`benchmarks.multimodal`,
worst over the priors), and the last row the published error over the guarded one. Flow
matching and InDI are not rows: the default does not guard there (``tests/fewnfe/test_adams.py``).

Run: ``OMP_NUM_THREADS=1 python -m benchmarks.landing_guard [--split val|test|both]`` (about
15 minutes for both on one core).
"""

from __future__ import annotations

import math
import time

import torch

import flowrestore as fr

from . import fewnfe_problems as P
from . import multimodal as M
from .common import split_parser, splits
from .start_corrector import report, run_problem

ROWS = {
    "IPNDM() (guarded landing)": lambda: fr.IPNDM(),
    "IPNDM(landing_guard=False)": lambda: fr.IPNDM(landing_guard=False),
    "Euler()": lambda: fr.Euler(),
}
#: the mixture families the default guards (flow matching does not)
MIXTURE_FAMILIES = ("edm-80", "linear/eps", "cosine/v")


def problems(split: str) -> list:
    """``(problem, score)`` of ``split`` (module docstring); ``score=None``: the worst sample."""
    exact = [("linear", "epsilon"), ("cosine", "v_prediction")]
    if split == "test":
        exact += [("linear", "sample"), ("linear-zsnr", "v_prediction")]
    out = [(P.diffusion_oracles(s, p, split), None) for s, p in exact]
    out += [(P.ddpm_faces(split), None), (P.ddpm_faces(split, folder=P.DDPM_EPS), None)]
    for family in MIXTURE_FAMILIES:
        for spread, (lo, hi) in M.PRIORS:
            problem = M.make_problem(family, spread, lo, hi, M.SEEDS[split])
            out.append((problem, lambda _p, inst, x: M.scores(inst, x)[0]))
    return out


def less_accurate(a: float, b: float) -> bool:
    """Whether error ``a`` is worse than error ``b``; a diverged (NaN) ``a`` is, beside a finite
    ``b`` (``NaN > b`` is False)."""
    return a > b or (math.isnan(a) and not math.isnan(b))


def main(argv=None) -> None:
    a = split_parser("python -m benchmarks.landing_guard", __doc__).parse_args(argv)
    torch.set_grad_enabled(False)
    for split in splits(a):
        print(f"## {split} split\n", flush=True)
        behind = {name: 0 for name in ROWS if name != "Euler()"}
        cells = 0
        for problem, score in problems(split):
            t0 = time.perf_counter()
            res = run_problem(problem, ROWS, score)
            print(report(problem, res, "published / guarded"), flush=True)
            euler = res["Euler()"]
            for name in behind:
                behind[name] += sum(less_accurate(res[name][n], euler[n]) for n in euler)
            cells += len(euler)
            print(f"\n({time.perf_counter() - t0:.0f} s)\n", flush=True)
        print(f"cells behind Euler (of {cells}): {behind}\n", flush=True)


if __name__ == "__main__":
    main()
