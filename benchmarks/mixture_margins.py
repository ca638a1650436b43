"""What limits issue 10's hard-mixture goal (0 of 4096 on a wrong centre at ≤ 24 NFE): a diagnostic.

The hard mixture (:func:`benchmarks.fewnfe_problems.mixture_indi`: 8 Dirac centres in 4-D,
``σ = 1.5``) sends every input ``y`` to one centre; the inputs sent to two different centres are
separated by a watershed, and an input close to it needs an accurate solve to land on the right
side. This sweep measures, per instance of a split:

* **wrong at fixed budgets** — samples on another centre than the float64 Dopri5 reference
  (``rtol = 1e-10``) for ``IPNDM()`` (the best default at 24 NFE in ``benchmarks/fewnfe.py``) at
  24, 48 and 96 steps, ``RK4()`` at 25 steps (97 evaluations) and Dopri5 at ``rtol`` 1e-4 / 1e-6;
* **the margins of the samples ``IPNDM()`` gets wrong at 24 NFE** — the smallest perturbation of
  the input, relative to ``‖y‖``, that moves the reference's own answer to another centre (33
  sizes from 1e-9 to 1e-1, 8 random directions each): how close to the watershed those inputs lie;
* **flips under a perturbation of every input** of relative size 1e-6 … 1e-3 (one random
  direction per sample): how many of the 4096 samples a solve whose error acts like such a
  perturbation may get wrong;
* **``IPNDM()``'s per-sample error at 24 NFE** — median, 99 % and 99.9 % quantiles of
  ``‖x − x_ref‖ / ‖x_ref‖``.

Run: ``OMP_NUM_THREADS=1 python -m benchmarks.mixture_margins [--split test|val]`` (about 4
minutes on one core for the test split's 5 instances).
"""

from __future__ import annotations

import argparse

import torch

import flowrestore as fr

from . import fewnfe_problems as P

F64 = torch.float64
SIZES = torch.logspace(-9, -1, 33, dtype=F64)
PERTURB = (1e-6, 1e-5, 1e-4, 1e-3)


def _reference(inst, y: torch.Tensor) -> torch.Tensor:
    """The benchmark's reference solve of ``y`` (float64 Dopri5, ``rtol = 1e-10``)."""
    with torch.no_grad():
        return fr.solve(inst.flow, fr.Dopri5(rtol=1e-10, atol=1e-12, t_min=1e-4), y).x


def _centre(inst, x: torch.Tensor) -> torch.Tensor:
    return inst.extra["mixture"].nearest_center(x.double())[0]


def budgets(inst) -> list[tuple[str, int, int]]:
    """``(method, evaluations, samples on a wrong centre)`` for the fixed budgets."""
    runs = [
        ("IPNDM(), steps=24", fr.IPNDM, {"steps": 24}),
        ("IPNDM(), steps=48", fr.IPNDM, {"steps": 48}),
        ("IPNDM(), steps=96", fr.IPNDM, {"steps": 96}),
        ("RK4(), steps=25", fr.RK4, {"steps": 25}),
        ("Dopri5(rtol=1e-4)", lambda: fr.Dopri5(rtol=1e-4, atol=1e-6, t_min=1e-4), {}),
        ("Dopri5(rtol=1e-6)", lambda: fr.Dopri5(rtol=1e-6, atol=1e-8, t_min=1e-4), {}),
    ]
    out = []
    for name, make, kw in runs:
        with torch.no_grad():
            sol = fr.solve(inst.flow, make(), inst.x, **kw)
        wrong = int((_centre(inst, sol.x) != inst.ref).sum())
        out.append((name, int(sol.stats.nfe.max()), wrong))
    return out


def margins(inst, x24: torch.Tensor) -> list[float]:
    """Per sample ``IPNDM()`` lands on a wrong centre at 24 NFE: the smallest relative input
    perturbation (of :data:`SIZES`, 8 random directions) that moves the reference's centre."""
    bad = (_centre(inst, x24) != inst.ref).nonzero().flatten().tolist()
    out = []
    for i in bad:
        y = inst.x[i].double()
        u = torch.randn(8, y.numel(), generator=torch.Generator().manual_seed(i), dtype=F64)
        u = u / u.norm(dim=1, keepdim=True) * y.norm()
        ys = (y + SIZES[:, None, None] * u[None]).reshape(-1, y.numel())
        flipped = (_centre(inst, _reference(inst, ys)) != inst.ref[i]).reshape(len(SIZES), 8)
        hit = flipped.any(dim=1).nonzero().flatten()
        out.append(float(SIZES[hit[0]]) if len(hit) else float("inf"))
    return out


def flips(inst) -> list[int]:
    """Samples whose reference centre moves under a relative perturbation of each of
    :data:`PERTURB` (one random direction per sample)."""
    y = inst.x.double()
    u = torch.randn(y.shape, generator=torch.Generator().manual_seed(7), dtype=F64)
    u = u / u.norm(dim=1, keepdim=True) * y.norm(dim=1, keepdim=True)
    return [int((_centre(inst, _reference(inst, y + d * u)) != inst.ref).sum()) for d in PERTURB]


def main(split: str = "test", log=print) -> str:
    """The three tables (markdown) for ``split``."""
    prob = P.mixture_indi(split)
    seeds = P.MIX_SEEDS[split]
    rows_b, rows_m = [], []
    names = None
    for seed, inst in zip(seeds, prob.instances, strict=True):
        b = budgets(inst)
        names = names or [f"{n} ({e} NFE)" for n, e, _ in b]
        with torch.no_grad():
            x24 = fr.solve(inst.flow, fr.IPNDM(), inst.x, steps=24).x
        err = (x24.double() - _reference(inst, inst.x.double())).norm(dim=1)
        err = err / _reference(inst, inst.x.double()).norm(dim=1)
        q = torch.quantile(err, torch.tensor([0.5, 0.99, 0.999], dtype=F64)).tolist()
        m = margins(inst, x24)
        f = flips(inst)
        rows_b.append(f"| {seed} | " + " | ".join(str(w) for *_, w in b) + " |")
        rows_m.append(
            f"| {seed} | {', '.join(f'{v:.1e}' for v in sorted(m)) or '–'} | "
            + " | ".join(str(v) for v in f)
            + " | "
            + " / ".join(f"{v:.1e}" for v in q)
            + " |"
        )
        log(rows_b[-1])
        log(rows_m[-1])
    head_b = "| instance | " + " | ".join(names) + " |"
    head_m = (
        "| instance | margins of IPNDM()'s wrong samples at 24 NFE | "
        + " | ".join(f"flips at {d:.0e}" for d in PERTURB)
        + " | IPNDM() error at 24 NFE: median / 99 % / 99.9 % |"
    )
    return "\n".join(
        [
            f"Samples on a wrong centre ({split} split, 4096 samples per instance):",
            "",
            head_b,
            "|" + "---|" * (len(names) + 1),
            *rows_b,
            "",
            head_m,
            "|" + "---|" * (len(PERTURB) + 3),
            *rows_m,
        ]
    )


if __name__ == "__main__":  # pragma: no cover
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", choices=("val", "test"), default="test")
    torch.set_num_threads(1)
    print(main(ap.parse_args().split, log=lambda *_: None))
