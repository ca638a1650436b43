"""The validation run behind the model flows' default grids (issue 16): candidate grids on
schedules, shifts and noise ranges that ``benchmarks/unseen.py`` (the test set) does not contain.

Each candidate replaces the flow's declared grid (what ``steps=N`` lays, and what the peers "on
flowrestore's grid" run on); everything else is ``benchmarks.unseen``'s: exact Gaussian models, 64
dimensions, mean ``0.5·N(0, 1)``, per-coordinate std uniform in a range, 64 noises per prior,
worst relative error to the closed-form map; flowrestore's default-constructed solvers against the
peers of ``benchmarks.fewnfe`` at equal NFE 3–10. Validation families (none in ``unseen``):

* diffusion: diffusers' ``sigmoid``; ``linear`` with β 5e-4–0.015, with T = 750 / 1500, and
  rescaled to zero terminal SNR; ``squaredcos_cap_v2`` with T = 4000; ``scaled_linear`` with β
  1e-4–0.02 and 0.0015–0.0195 (ε, v);
* EDM denoisers with (σ_max, σ_min) = (80, 0.002), (50, 0.01), (20, 0.05), (160, 0.004);
* flow matching with shift 1, 1.5, 3, 4, 7;
* prior std ranges [0.07, 0.7], [0.2, 2], [0.03, 0.3]; prior seeds 11, 12, 13 (``unseen``: 777,
  9001, 31337 and other ranges).

Candidates: diffusion — DDPM's quadratic grid as noise levels (the default), the same without the
levels below the model's σ_0, the model's own timesteps (the default before 2026-12-04), the VP
SDE's levels from σ_0, and the default grid with ``IPNDM(ab_order=4)`` or with Heun and RK4 ending
where Euler does at equal evaluations (Midpoint's rule); EDM — DDPM's levels (the default), the VP
SDE's from σ_min (before) and the Euler-matched ends; flow matching — ``Shifted(shift, rho=2,
end_shift=√shift)`` (the default), the same with end shift ``shift`` (the plain shifted grid, the
default before 2026-12-04 21:40), ``shift^0.75``, ``shift^0.25`` and 1, and DDPM's levels as
flow-matching times ``σ/(1 + σ)``, the same for every shift.

Run: ``python -m benchmarks.grid_validation [--only diffusion,edm,fm]`` (about 7 minutes on one
thread). Prints, per candidate, the (problem, NFE 4–10) cells where the best default trails the
best peer, the geometric mean of best default / best peer over those cells, and the rows behind
Euler at ``steps ≥ 3``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import torch

import flowrestore as fr
from flowrestore.flows.diffusion import REFERENCE_SIGMAS, reference_levels
from flowrestore.grids import NoiseLevels, Shifted, Spacing

from . import fewnfe as FN
from . import unseen as U
from .common import declare_grid, machine, table
from .model_grids import vp_sde_levels

DIFF = {
    "sigmoid/eps": ("sigmoid", 1e-4, 0.02, 1000, False, "epsilon"),
    "linear(5e-4,0.015)/eps": ("linear", 5e-4, 0.015, 1000, False, "epsilon"),
    "scaled_linear(1e-4,0.02)/v": ("scaled_linear", 1e-4, 0.02, 1000, False, "v_prediction"),
    "squaredcos-T4000/eps": ("squaredcos_cap_v2", 1e-4, 0.02, 4000, False, "epsilon"),
    "linear-T1500/v": ("linear", 1e-4, 0.02, 1500, False, "v_prediction"),
    "linear-T750/eps": ("linear", 1e-4, 0.02, 750, False, "epsilon"),
    "scaled_linear(0.0015,0.0195)/eps": ("scaled_linear", 0.0015, 0.0195, 1000, False, "epsilon"),
    "linear-zsnr/v": ("linear", 1e-4, 0.02, 1000, True, "v_prediction"),
}
EDM = {
    "edm-80/0.002": (80.0, 0.002),
    "edm-50/0.01": (50.0, 0.01),
    "edm-20/0.05": (20.0, 0.05),
    "edm-160/0.004": (160.0, 0.004),
}
FM = {"fm-shift1": 1.0, "fm-shift1.5": 1.5, "fm-shift3": 3.0, "fm-shift4": 4.0, "fm-shift7": 7.0}
RANGES = ((0.07, 0.7), (0.2, 2.0), (0.03, 0.3))
SEEDS = (11, 12, 13)
REF_MAX = REFERENCE_SIGMAS[-1]  # DDPM linear schedule's σ_max (157)


def _own_timesteps(flow) -> Spacing:
    """The diffusion default before 2026-12-04: the model's own levels, quadratic in the index."""
    return NoiseLevels(tuple((flow.sigmas / flow.sigma_max).tolist()), rho=2.0)


def _above_sigma0(flow) -> Spacing:
    """DDPM's levels without those below the model's smallest trained level σ_0."""
    s0 = float(flow.sigmas[0])
    kept = tuple(v for v in reference_levels(flow.sigma_max) if v * flow.sigma_max >= s0)
    return NoiseLevels(kept, rho=2.0)


def _vp_from_sigma0(flow) -> Spacing:
    """The VP SDE's levels (the EDM default before 2026-12-04) from the model's σ_0."""
    return vp_sde_levels(float(flow.sigmas[0]), flow.sigma_max)


def _vp_from_sigma_min(flow) -> Spacing:
    """The EDM default before 2026-12-04: the VP SDE's levels from the denoiser's σ_min."""
    return vp_sde_levels(flow.sigma_min, flow.sigma_max)


class FlowMatchingLevels(Spacing):
    """DDPM's quadratic grid as noise levels in flow-matching time ``t = σ/(1 + σ)`` (``t = 1``:
    σ = ∞, first step onto DDPM's second level), the same for every shift."""

    def __call__(self, steps: int, t0: float, t1: float) -> torch.Tensor:
        sig = NoiseLevels(reference_levels(REF_MAX), rho=2.0)(steps, 1.0, 0.0) * REF_MAX
        grid = sig / (1 + sig)
        grid[0], grid[-1] = t0, t1
        return grid

    @property
    def end_exponent(self) -> float:
        """Quadratic in the index near 0, as the diffusion grid."""
        return 2.0


def _end(flow, power: float) -> Spacing:
    """The flow-matching default's law with its last positive point at ``shift**power · N^{−2}``
    (``power`` 1: the plain shifted grid; 0: the unshifted grid's end)."""
    return Shifted(flow.shift, 2.0, end_shift=flow.shift**power)


class _MatchedHeun(fr.Heun):
    """Heun with its last positive point matched to Euler's at equal evaluations (Midpoint's rule,
    :class:`~flowrestore.grids.EulerMatchedEnd`)."""

    end_matches_euler = True


class _MatchedRK4(fr.RK4):
    """RK4 with Midpoint's Euler-matched end."""

    end_matches_euler = True


def _variant(name: str | None) -> dict | None:
    """``answers``' defaults for a candidate: ``ipndm4`` (``IPNDM(ab_order=4)``), ``matched``
    (Heun and RK4 with Euler-matched ends), ``None`` (the defaults)."""
    if name is None:
        return None
    ours = dict(FN.OURS)
    if name == "ipndm4":
        ours["IPNDM()"] = FN.Ours(lambda: fr.IPNDM(ab_order=4), 1)
    elif name == "matched":
        ours["Heun()"] = FN.Ours(_MatchedHeun, 2)
        ours["RK4()"] = FN.Ours(_MatchedRK4, 4)
    else:
        raise ValueError(f"unknown variant {name!r}")
    return ours


#: group -> (family tables, candidates: name -> (grid of a flow or None for the default, ours))
GROUPS = {
    "diffusion": (
        {"diff": DIFF, "fm": {}, "edm": {}},
        {
            "DDPM levels (default)": (None, None),
            "DDPM levels ≥ σ_0": (_above_sigma0, None),
            "own timesteps (before 2026-12-04)": (_own_timesteps, None),
            "VP SDE levels from σ_0": (_vp_from_sigma0, None),
            "DDPM levels, IPNDM(ab_order=4)": (None, "ipndm4"),
            "DDPM levels, Heun and RK4 with Euler-matched ends": (None, "matched"),
        },
    ),
    "edm": (
        {"diff": {}, "fm": {}, "edm": EDM},
        {
            "DDPM levels (default)": (None, None),
            "VP SDE levels from σ_min (before 2026-12-04)": (_vp_from_sigma_min, None),
            "DDPM levels, Heun and RK4 with Euler-matched ends": (None, "matched"),
        },
    ),
    "fm": (
        {"diff": {}, "fm": FM, "edm": {}},
        {
            "Shifted(shift, 2, end_shift=√shift) (default)": (None, None),
            "Shifted(shift, 2) (before 2026-12-04 21:40)": (lambda f: Shifted(f.shift, 2.0), None),
            "Shifted(shift, 2, end_shift=shift^0.75)": (lambda f: _end(f, 0.75), None),
            "Shifted(shift, 2, end_shift=shift^0.25)": (lambda f: _end(f, 0.25), None),
            "Shifted(shift, 2, end_shift=1)": (lambda f: _end(f, 0.0), None),
            "DDPM levels, every shift": (lambda f: FlowMatchingLevels(), None),
        },
    ),
}


def _prepare(grid_of):
    def prepare(problem):
        for inst in problem.instances:
            declare_grid(inst.flow, grid_of(inst.flow))

    return None if grid_of is None else prepare


def summary(cells: list[dict]) -> list:
    """``[cells behind the best peer / compared, geo-mean best default / best peer, rows behind
    Euler at steps ≥ 3]`` (NFE 4–10 for the first two)."""
    a = U.analyze(cells)
    logs = []
    for c in cells:
        mine, peer = U.best_default(c["res"]), U.best_peer(c["res"])
        if c["n"] >= 4 and mine is not None and peer is not None:
            logs.append(math.log(mine / peer))
    geo = math.exp(sum(logs) / len(logs)) if logs else math.nan
    euler = sum(r[6] is not None and r[6] >= 3 for r in a["behind_euler"])
    return [f"{len(a['behind_peer'])} of {a['compared']}", f"{geo:.3f}", euler]


def main(argv=None) -> int:
    """Command line (module docstring)."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.grid_validation", description=__doc__)
    ap.add_argument("--only", default=",".join(GROUPS), help="groups: diffusion, edm, fm")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    rows = []
    for group in a.only.split(","):
        tables, candidates = GROUPS[group]
        families = [*tables["diff"], *tables["fm"], *tables["edm"]]
        for name, (grid_of, ours) in candidates.items():
            cells, errors = U.run(
                families,
                RANGES,
                SEEDS,
                U.NFES,
                log=lambda s: None,
                tables=tables,
                prepare=_prepare(grid_of),
                ours=_variant(ours),
            )
            rows.append([group, name, *summary(cells), len(errors)])
            print(f"{group}: {name} done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    print(f"Machine: {machine()}; prior seeds {SEEDS}, std ranges {RANGES}, NFE 3–10.\n")
    headers = [
        "group",
        "candidate grid",
        "NFE 4–10 cells behind the best peer",
        "geo-mean best default / best peer",
        "rows behind Euler at steps ≥ 3",
        "errors",
    ]
    print(table(headers, rows))
    print(f"\n({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
