"""Few-NFE defaults on exact *multimodal* priors: Gaussian mixtures (issue 16).

Every exact model of ``benchmarks.fewnfe`` (a) and ``benchmarks.unseen`` is a Gaussian prior, whose
probability-flow trajectories are straight lines in a standardised coordinate — smoother than any
trained model's. This benchmark asks the same questions on priors with several modes, where the
posterior switches between components during the solve, as it does on real data: exact
:class:`flowrestore.oracles.GaussianMixtureOracle` models (64 dimensions, 8 components, means
``spread·N(0, I)``, per-coordinate component stds uniform in a range, weights ``softmax(N(0,
¼))``), as an EDM denoiser (σ ∈ [0.002, 80]), a DDPM ε-model (linear β), a cosine-schedule
v-model and a flow-matching velocity (shift 3); 64 noises per prior.

* **Reference**: ``RK4()`` with 400 steps on the flow's declared grid; its agreement with
  ``Midpoint()`` with 1500 steps is reported per problem (there is no closed form).
* **Scores** (per method and NFE, the worst over the prior seeds): the *median* sample's relative
  error ``‖x − x_ref‖/‖x_ref‖`` (the headline: at these budgets a few samples per prior that start
  near a watershed between components land on another one, which a worst-sample score reports
  for every method alike) and the share of samples on another component than the reference's.
* **Methods**: flowrestore's default-constructed solvers with ``steps=N`` (``benchmarks.fewnfe
  .OURS``), the option ``IPNDM(landing_order=4)`` (the reference iPNDM's landing; not a default),
  and the peers of ``benchmarks.unseen`` (diffusers on their own defaults and on flowrestore's grid,
  the reference iPNDM, k-diffusion on Karras' grid).
* **Splits**: ``--split val`` (prior seeds 11, 12) and ``--split test`` (2101–2103); no default was
  chosen on either (they were chosen on ``benchmarks.fewnfe_problems``' validation split).

Run: ``python -m benchmarks.multimodal [--split test] [--only FAMILY,...] [--out DIR]`` (about
10 minutes on one thread); writes ``DIR/multimodal.md`` and ``DIR/multimodal.jsonl`` (default
``DIR``: ``benchmarks/out/multimodal``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import sys
import time
from pathlib import Path

import torch

import flowrestore as fr
from flowrestore.oracles import GaussianMixtureOracle
from flowrestore.oracles.diffusion import linear_alphas_cumprod

from . import fewnfe as FN
from . import fewnfe_problems as P
from . import unseen as U
from .common import machine, table

F64 = torch.float64
NFES = tuple(range(3, 11))
SEEDS = {"val": (11, 12), "test": (2101, 2102, 2103)}
#: (means' spread, component std range)
PRIORS = ((0.5, (0.05, 1.0)), (1.0, (0.02, 0.2)), (0.3, (0.1, 0.5)))
FAMILIES = ("edm-80", "linear/eps", "cosine/v", "fm-shift3")
#: the option reported beside the defaults (the reference iPNDM's landing order)
OPTION = "IPNDM(landing_order=4)"
OURS = {**FN.OURS, OPTION: FN.Ours(lambda: fr.IPNDM(landing_order=4), 1)}
REFERENCE_STEPS, CHECK_STEPS = 400, 1500


def mixture(seed: int, spread: float, lo: float, hi: float, *, k=8, dim=64):
    """The prior of one seed (module docstring)."""
    g = torch.Generator().manual_seed(seed)
    means = spread * torch.randn(k, dim, generator=g, dtype=F64)
    stds = lo + (hi - lo) * torch.rand(k, dim, generator=g, dtype=F64)
    weights = torch.softmax(0.5 * torch.randn(k, generator=g, dtype=F64), 0)
    return GaussianMixtureOracle(means=means, stds=stds, weights=weights)


def make_flow(family: str, oracle: GaussianMixtureOracle):
    """``(flow, start noise scale, extra)`` of ``family`` over the oracle (``extra``: what the
    peers of ``benchmarks.unseen.answers`` need)."""
    if family == "edm-80":
        return fr.DenoiserFlow(oracle, sigma_max=80.0, sigma_min=0.002), 80.0, {}
    if family in ("linear/eps", "cosine/v"):
        abar = linear_alphas_cumprod() if family == "linear/eps" else P.cosine_alphas_cumprod()
        ptype = "epsilon" if family == "linear/eps" else "v_prediction"
        model = oracle.diffusion_model(alphas_cumprod=abar, prediction_type=ptype)
        flow = fr.DiffusionFlow(model, alphas_cumprod=abar, prediction_type=ptype)
        extra = {"model": model, "alphas_cumprod": flow.alphas_cumprod, "prediction_type": ptype}
        return flow, 1.0, extra
    if family == "fm-shift3":
        flow = fr.FlowMatchingFlow(oracle.flow_matching_model(), shift=3.0)
        return flow, 1.0, {"shift": 3.0}
    raise ValueError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")


def make_problem(family: str, spread: float, lo: float, hi: float, seeds, batch=64) -> P.Problem:
    """One instance per seed; ``extra['oracle']`` scores components, ``extra['agreement']`` is the
    reference's worst relative distance to the check solve."""
    instances = []
    for seed in seeds:
        oracle = mixture(seed, spread, lo, hi)
        flow, scale, extra = make_flow(family, oracle)
        g = torch.Generator().manual_seed(seed + 1000)
        x = scale * torch.randn(batch, *oracle.event_shape, generator=g, dtype=F64)
        with torch.no_grad():
            ref = fr.solve(flow, fr.RK4(), x, steps=REFERENCE_STEPS).x
            check = fr.solve(flow, fr.Midpoint(), x, steps=CHECK_STEPS).x
        extra = {**extra, "oracle": oracle, "agreement": float(relative(check, ref).max())}
        instances.append(P.Instance(flow, x, ref, P.flow_denoiser(flow), extra))
    name = f"{family} spread {spread} std[{lo},{hi}]"
    return P.Problem(name, "rel", family in ("linear/eps", "cosine/v"), instances)


def relative(x, ref):
    """Per-sample relative error ``‖x − ref‖/‖ref‖``."""
    return (x.double() - ref.double()).flatten(1).norm(dim=1) / ref.double().flatten(1).norm(dim=1)


def scores(inst: P.Instance, x) -> tuple[float, float, float]:
    """Median and worst relative error, share of samples on another component."""
    e = relative(x, inst.ref)
    oracle = inst.extra["oracle"]
    wrong = (oracle.component(x.double()) != oracle.component(inst.ref.double())).double().mean()
    return float(e.median()), float(e.max()), float(wrong)


def run_problem(problem: P.Problem, nfes, errors: list, log) -> list[dict]:
    """Cells ``{problem, n, median, worst, wrong}``: per method the worst over the instances (a
    non-finite score stays in it and is listed in ``errors``). A method that failed on
    any instance (an exception, a wrong evaluation count) is left out of the cell, as in
    ``benchmarks.unseen.run_problem``: its worst over the other instances would understate it."""
    cells = []
    for n in nfes:
        t0, cell = time.perf_counter(), {"median": {}, "worst": {}, "wrong": {}}
        failed: set[str] = set()

        def fail(method, why, n=n, failed=failed, drop=True):
            if drop:
                failed.add(method)
            errors.append({"problem": problem.name, "n": n, "method": method, "error": why})

        for inst in problem.instances:
            for name, x in U.answers(problem, inst, n, fail, {}, OURS).items():
                for key, v in zip(("median", "worst", "wrong"), scores(inst, x), strict=True):
                    if key == "median" and not math.isfinite(v):
                        fail(name, f"non-finite score {v}", drop=False)
                    old = cell[key].get(name)
                    cell[key][name] = v if old is None else P.worse("rel", old, v)
        if "peers" in failed:  # a peer missing on one instance would understate its worst case
            cell = {key: {k: v for k, v in d.items() if k in OURS} for key, d in cell.items()}
        cell = {key: {k: v for k, v in d.items() if k not in failed} for key, d in cell.items()}
        cells.append({"problem": problem.name, "n": n, **cell})
        log(f"{problem.name} n={n} {time.perf_counter() - t0:.1f}s")
    return cells


def best(res: dict, ours: bool) -> tuple[float, str]:
    """The best default's (``ours``) or the best peer's score and name."""
    names = [k for k in res if (k in FN.OURS) == ours and k != OPTION and math.isfinite(res[k])]
    return min((res[k], k) for k in names) if names else (math.nan, "–")


def report(cells: list[dict], agreement: dict, header: str) -> str:
    """The markdown report: per problem the defaults vs the peers, and the landing option."""
    lines = ["# Few-NFE defaults on multimodal priors (`benchmarks/multimodal.py`)", "", header]
    behind, compared, rows, land = 0, 0, [], []
    for c in cells:
        if c["n"] < 4:
            continue
        (b, bn), (pb, pn) = best(c["median"], True), best(c["median"], False)
        compared += 1
        behind += b > pb
        rows.append([c["problem"], c["n"], f"{bn} {b:.3g}", f"{pn} {pb:.3g}", f"{b / pb:.2f}"])
        if OPTION in c["median"] and "IPNDM()" in c["median"]:
            land.append((c["problem"], c["n"], c["median"]["IPNDM()"], c["median"][OPTION]))
    lines += [
        f"Best default-constructed solver behind the best peer (median-sample error) in "
        f"**{behind} of {compared}** (problem, NFE 4–10) cells.",
        "",
        "## Best default vs best peer (median-sample relative error, worst seed)",
        "",
        table(["problem", "NFE", "best default", "best peer", "ratio"], rows),
        "",
        "## `IPNDM()`'s landing (order 3) vs `IPNDM(landing_order=4)`",
        "",
    ]
    by_n = {}
    for _, n, a, b in land:
        by_n.setdefault(n, []).append(math.log(b / a))
    lines += [
        table(
            ["NFE", "geo-mean error ratio, order 4 / order 3", "cells where order 4 is better"],
            [
                [n, math.exp(sum(v) / len(v)), f"{sum(x < 0 for x in v)} of {len(v)}"]
                for n, v in sorted(by_n.items())
            ],
        ),  # fmt: skip
        "",
        "## Per problem: the reference's agreement with the check solve, wrong-component shares",
        "",
    ]
    prow = []
    for p, agree in agreement.items():
        pc = [c for c in cells if c["problem"] == p]
        for c in pc:
            (b, bn), (pb, pn) = best(c["median"], True), best(c["median"], False)
            prow.append(
                [p, f"{agree:.1e}", c["n"], f"{c['wrong'].get(bn, math.nan):.3f}",
                 f"{c['wrong'].get(pn, math.nan):.3f}", f"{c['worst'].get(bn, math.nan):.3g}",
                 f"{c['worst'].get(pn, math.nan):.3g}"]
            )  # fmt: skip
    lines += [
        table(
            [
                "problem",
                "reference agreement",
                "NFE",
                "wrong share, best default",
                "wrong share, best peer",
                "worst sample, best default",
                "worst sample, best peer",
            ],
            prow,
        ),  # fmt: skip
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    """Command line (module docstring)."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.multimodal", description=__doc__)
    ap.add_argument("--split", choices=sorted(SEEDS), default="test")
    ap.add_argument("--only", default=None, help="families containing one of these (comma list)")
    ap.add_argument("--nfes", default=",".join(map(str, NFES)))
    ap.add_argument("--out", default="benchmarks/out/multimodal")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    families = [f for f in FAMILIES if a.only is None or any(o in f for o in a.only.split(","))]
    nfes = tuple(int(n) for n in a.nfes.split(","))
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    t0, cells, errors, agreement = time.perf_counter(), [], [], {}
    for family in families:
        for spread, (lo, hi) in PRIORS:
            problem = make_problem(family, spread, lo, hi, SEEDS[a.split])
            agreement[problem.name] = max(i.extra["agreement"] for i in problem.instances)
            cells += run_problem(problem, nfes, errors, log)
    import diffusers

    now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    header = (
        f"Machine: {machine()}, diffusers {diffusers.__version__}\n\n"
        f"Run: {now}, `python -m benchmarks.multimodal {' '.join(argv or sys.argv[1:])}` "
        f"({time.perf_counter() - t0:.0f} s); split {a.split}, prior seeds "
        f"{', '.join(map(str, SEEDS[a.split]))}; {len(errors)} errors"
        + "".join(f"\n- {e}" for e in errors[:20])
        + "\n"
    )
    text = report(cells, agreement, header)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "multimodal.md").write_text(text + "\n")
    with open(out / "multimodal.jsonl", "w") as f:
        for rec in cells + [{"error": e} for e in errors] + [{"agreement": agreement}]:
            f.write(json.dumps(rec) + "\n")
    print(text)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
