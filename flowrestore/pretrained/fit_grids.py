"""Fit the shipped InDI predictors' few-NFE grids and record them in ``registry.json``.

A learned flow's best step times depend on the predictor (GITS, Chen et al. 2024: a schedule
fitted on a few warm-up inputs is worth more than a solver's order at 5–6 evaluations). For each
step count ``N`` in :data:`STEPS` this fits the grid of the InDI default solver
``SemiLinearMultistep()`` with :func:`flowrestore.integrate.fit_grids` (:data:`FITS`:
``fit_grid``'s default settings and a longer search) on
:data:`WARM` — crops of the held-out photos ``astronaut``, ``camera``, ``coffee``, which trained
nothing — and then checks it on *other* crops of the same photos (:data:`CHECK`) against a
400-evaluation reference (RK4, 100 steps, ``Power(2)``). The better fit is recorded for ``N``
only if its worst checked crop is at least as close to the reference as the solver's generic
default grid's; the registry keeps both numbers. :func:`flowrestore.pretrained.flow_for` then
declares the recorded grids (:class:`~flowrestore.FittedGrids`): ``steps=N`` with
``SemiLinearMultistep()`` runs on them, any other solver or step count as before.

Run (about 10 minutes per model on 2 CPU cores)::

    python -m flowrestore.pretrained.fit_grids --threads 2

The benchmark that reports these grids on photos that chose nothing is
``python -m benchmarks.fewnfe --split test --which c``.
"""

from __future__ import annotations

import argparse
import json
import math
from importlib import resources

import torch

STEPS = tuple(range(3, 11))
#: warm-up crops (photo, size, count, seed): positions drawn by ``torch.Generator(seed)``
WARM = (("astronaut", 64, 3, 0), ("camera", 64, 3, 1), ("coffee", 64, 2, 2))
#: crops that check each fitted grid against the generic default (other draws, larger)
CHECK = (("astronaut", 96, 2, 10), ("camera", 96, 2, 11), ("coffee", 96, 2, 12))
COMMAND = "python -m flowrestore.pretrained.fit_grids --threads 2"
#: the fits tried at each step count (the check keeps the best): ``fit_grid``'s defaults, and a
#: longer search — a 128-step teacher and 192 refinement solves; at 10 steps the defaults' 64
#: solves leave the 9 free times of the grid short of converged (deblur check: 63.0 dB against
#: 67.6 with the longer search, first run of this command)
FITS = {"default": {}, "long": {"teacher_steps": 128, "refine": 192}}


def crops(spec) -> torch.Tensor:
    """Clean crops ``[B, 3, s, s]`` of held-out photos at seeded random positions."""
    from flowrestore.training.data import HELDOUT_IMAGES, load_image

    out = []
    for photo, size, count, seed in spec:
        if photo not in HELDOUT_IMAGES:
            raise ValueError(f"{photo!r} is not a held-out photo")
        im = load_image(photo, channels=3)
        g = torch.Generator().manual_seed(seed)
        for _ in range(count):
            top = int(torch.randint(0, im.shape[-2] - size + 1, (1,), generator=g))
            left = int(torch.randint(0, im.shape[-1] - size + 1, (1,), generator=g))
            out.append(im[:, top : top + size, left : left + size])
    return torch.stack(out).contiguous()


def _db(error: float) -> float | None:
    """A check's worst-crop PSNR (dB, 2 decimals) from its error ``-PSNR``; ``None`` where it is
    not finite (a grid whose solve failed scores ``inf``): ``json.dumps`` would write
    ``-Infinity``, which is not JSON, into the registry."""
    return round(-error, 2) if math.isfinite(error) else None


def fit_model(name: str, steps=STEPS, log=print) -> dict:
    """Fit, check and return the registry's ``"grids"`` entry for the shipped model ``name``
    (:func:`flowrestore.integrate.fit_grids`, judged by the worst check crop's PSNR)."""
    import flowrestore as fr
    from flowrestore.integrate import fit_grids
    from flowrestore.metrics import psnr
    from flowrestore.pretrained import degrade_for, flow_for, pretrained

    model = pretrained(name)
    flow = flow_for(model, grids=None)  # fit from the generic default, not an older record
    solver = fr.SemiLinearMultistep()
    warm = degrade_for(model, crops(WARM), generator=torch.Generator().manual_seed(7))
    y = degrade_for(model, crops(CHECK), generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        ref = fr.solve(flow, fr.RK4(), y, steps=100, spacing=fr.Power(2.0)).x
    checked, seconds = {}, {}

    def record(r):
        n, db = str(r["steps"]), {k: _db(v) for k, v in r["fits"].items()}
        seconds[n] = round(r["seconds"], 1)
        best = min(r["fits"], key=r["fits"].get)  # the library's pick (unrounded)
        checked[n] = {
            "generic_db": _db(r["default"]),
            "fitted_db": db[best],
            "fit": best,
            "tries_db": db,
        }
        log(
            f"{name} N={n}: default {-r['default']:.2f} dB, fitted "
            + ", ".join(f"{label} {-r['fits'][label]:.2f}" for label in db)
            + f" dB ({r['kept'] or 'none'} kept; fits {seconds[n]} s)"
        )

    grids = fit_grids(
        flow,
        solver,
        warm,
        steps,
        x_check=y,
        reference=ref,
        error=lambda x, r: -psnr(x.clamp(0, 1), r.clamp(0, 1)),
        tries=FITS,
        log=record,
    )
    return {
        **(grids.to_dict() if grids is not None else {"solver": repr(solver), "times": {}}),
        "check_worst_psnr": checked,
        "fit_seconds": seconds,
        "warmup": [list(w) for w in WARM],
        "check": [list(c) for c in CHECK],
        "command": COMMAND,
    }


def main(argv=None) -> None:
    """Fit the grids of the shipped InDI models and write them into ``registry.json``.

    Every request is checked before the first fit (minutes each). The registry is read again
    just before writing, so what another tool recorded meanwhile is kept, and it is replaced
    atomically. Torch's thread count is restored on return.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["indi-deblur", "indi-sr4"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dry-run", action="store_true", help="print, do not write")
    args = parser.parse_args(argv)
    # refused before any fit: a bad name after a good one failed 10 minutes in, writing nothing
    from flowrestore.pretrained import _write_registry_file, list_pretrained, pretrained_info

    indi = [n for n in list_pretrained() if pretrained_info(n)["method"] == "indi"]
    bad = [n for n in args.models if n not in indi]
    if bad:
        parser.error(f"--models: {bad} are not shipped InDI predictors; choose from {indi}")
    if len(set(args.models)) != len(args.models):
        parser.error(f"--models names a model twice: {args.models}")
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        entries = {name: fit_model(name) for name in args.models}
    finally:
        torch.set_num_threads(threads)
    if args.dry_run:
        print(json.dumps(entries, indent=1))
        return
    ref = resources.files("flowrestore.pretrained").joinpath("registry.json")
    with resources.as_file(ref) as path:
        data = json.loads(path.read_text())
        for name, entry in entries.items():
            data["models"][name]["grids"] = entry
        _write_registry_file(path, data)


if __name__ == "__main__":
    main()
