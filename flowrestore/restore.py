"""Restore a user's own image files: ``flowrestore restore PATH... -o OUTDIR``.

::

    flowrestore restore photo.jpg scans/ --task deblur --solver heun --steps 10 -o restored/
    flowrestore restore small.png --task sr4 -o big/            # output is 4x larger
    flowrestore restore noisy/ --task dirac-deblur --steps 25 -o out/
    flowrestore restore in/ --checkpoint my_run.pt -o out/      # a trainer checkpoint
    torchrun --nproc_per_node=2 -m flowrestore.cli restore in/ -o out/   # files split by rank

**Inputs.** Files (any format Pillow reads: PNG, JPEG, ...) and folders (their image files —
``.png .jpg .jpeg .bmp .tif .tiff .webp``, not recursive). Whole images are processed, any size:
the U-Net pads internally to a multiple of its down-sampling factor and crops back, so there are
no tiles and no seams (memory grows with the image area). Colour images are restored as RGB
(an alpha channel is dropped); grey images are restored as RGB (the predictors are 3-channel) and
saved grey. For ``sr4`` the input is the low-resolution image: it is upsampled 4× (bicubic, as in
training) and then restored (``--no-upsample`` for inputs already at the target size).

**Batches.** Images of the same size are restored together in batches of ``--batch-size``
(default 4); other images one group at a time. Outputs are ``OUTDIR/<name>.png`` (8-bit PNG;
when two inputs share a name the extension is kept, ``a_jpg.png``). Existing outputs are skipped
unless ``--overwrite``.

**Failures.** An unreadable or corrupt file (or one whose restoration fails) is reported
(``FAILED <path>: <reason>``) and skipped; the others are still restored. The exit code is 0 when
every file was restored or skipped as already done, and 1 when any file failed (so scripts notice).

**Several processes.** Under ``torchrun`` (``RANK``/``WORLD_SIZE`` in the environment; no process
group is created) the sorted list of input files is split as ``files[rank::world_size]``: every
file is handled by exactly one process, none is lost. On CUDA each process uses
``cuda:LOCAL_RANK``. Stochastic solvers (Dirac's ``em``) use one seed per file (``--seed`` plus the
file's index in the sorted list), so results do not depend on the batching or the number of
processes.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from flowrestore.errors import ConfigError, describe

__all__ = ["SOLVERS", "TASK_MODELS", "default_threads", "make_solver", "load_model",
           "list_inputs", "restore_files", "RestoreReport", "main"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

# solver name -> (methods it applies to, description)
SOLVERS: dict[str, tuple[tuple[str, ...], str]] = {
    "euler": (("indi",), "Euler on InDI's residual ODE (= InDI's sampler with eps = 0)"),
    "heun": (("indi",), "Heun (2nd order), last step the denoising step"),
    "midpoint": (("indi",), "explicit midpoint (2nd order)"),
    "rk4": (("indi",), "classical Runge-Kutta (4th order), last step the denoising step"),
    "indi": (("indi",), "InDI's discrete sampler (eps = 0)"),
    "em": (("dirac",), "Euler-Maruyama = Dirac's update (paper eq. 7)"),
    "sra1": (("dirac",), "Roessler's SRA1 (strong order 1.5 for additive noise)"),
}

TASK_MODELS = {"deblur": "indi-deblur", "sr4": "indi-sr4", "dirac-deblur": "dirac-deblur"}


def default_threads() -> int:
    """CPU threads for inference: ``OMP_NUM_THREADS`` if set, else ``min(4, cores - 1)`` (>= 1).

    One core is left free on purpose: on a shared 2-core machine two OpenMP threads competing
    with one other busy process ran the U-Net 5x slower than one thread (0.42 vs 0.084 s per
    192x192 image and evaluation).
    """
    env = os.environ.get("OMP_NUM_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores - 1))


def set_threads(threads: int | None, device) -> int:
    """Apply ``threads`` (or :func:`default_threads`) to torch when running on CPU."""
    n = threads or default_threads()
    if torch.device(device).type == "cpu":
        torch.set_num_threads(n)
    return n


def make_solver(name: str, method: str = "indi"):
    """The solver object for a name in :data:`SOLVERS`, checked against the flow's method."""
    import flowrestore.solvers as S

    if name not in SOLVERS:
        raise ConfigError(f"solver must be one of {sorted(SOLVERS)}, got {describe(name)}")
    if method not in SOLVERS[name][0]:
        ok = sorted(k for k, (m, _) in SOLVERS.items() if method in m)
        raise ConfigError(
            f"solver {name!r} does not apply to a {method} predictor; use one of {ok}"
        )
    if name in ("em", "sra1"):
        from flowrestore.solvers.sde import SRA1, EulerMaruyama

        return EulerMaruyama() if name == "em" else SRA1()
    return {"euler": S.Euler, "heun": S.Heun, "midpoint": S.Midpoint, "rk4": S.RK4,
            "indi": S.InDISampler}[name]()


def load_model(task: str | None = None, checkpoint: str | os.PathLike | None = None,
               device="cpu"):
    """A predictor with ``.metadata``: a shipped one by task/model name, or a trainer checkpoint."""
    if checkpoint is not None:
        from flowrestore.training.checkpoint import load_predictor

        model = load_predictor(checkpoint, device=device)
        cfg = model.train_config
        meta = {"name": str(checkpoint), "method": cfg["method"], "task": cfg["task"],
                "task_params": cfg["task_params"]}
        if cfg["method"] == "dirac":
            meta["dirac"] = {"sigma_min": cfg["sigma_min"], "sigma_max": cfg["sigma_max"],
                             "lookahead": cfg["lookahead"]}
        from flowrestore.training.data import _task_params

        meta["task_params"] = _task_params(cfg["task"], cfg["task_params"])
        model.metadata = meta
        return model
    from flowrestore.pretrained import list_pretrained, pretrained

    name = TASK_MODELS.get(task, task)
    if name not in list_pretrained():
        raise ConfigError(f"task must be one of {sorted(TASK_MODELS)} or a shipped model "
                          f"{list_pretrained()}, got {describe(task)}")
    return pretrained(name, device=device)


def list_inputs(paths) -> list[Path]:
    """Files named and image files in folders named (not recursive), sorted, without duplicates."""
    files = set()
    for p in paths:
        p = Path(p)
        if p.is_dir():
            files.update(q for q in p.iterdir()
                         if q.is_file() and q.suffix.lower() in IMAGE_EXTENSIONS)
        else:
            files.add(p)
    return sorted(files, key=lambda q: str(q))


def output_names(files: list[Path]) -> list[str]:
    """``<stem>.png`` per input, made unique deterministically (same on every rank)."""
    stems = [f.stem for f in files]
    names, seen = [], set()
    for f, stem in zip(files, stems, strict=True):
        name = f"{stem}.png" if stems.count(stem) == 1 else f"{stem}_{f.suffix.lstrip('.')}.png"
        base, k = name[:-4], 1
        while name in seen:
            k += 1
            name = f"{base}_{k}.png"
        seen.add(name)
        names.append(name)
    return names


@dataclass
class RestoreReport:
    """What one process did: restored ``(input, output)`` pairs, skipped and failed files."""

    restored: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    rank: int = 0
    world_size: int = 1


def _dist():
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"bad RANK={rank} / WORLD_SIZE={world} in the environment")
    return rank, world


def _read(path: Path):
    """Decode an image: ``(tensor [3, H, W] in [0, 1], was_grey)``; raises on corrupt files."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        grey = im.mode in ("1", "L", "LA", "I", "F") or im.mode.startswith("I;16")
        if im.mode in ("I", "F") or im.mode.startswith("I;16"):  # 16-bit / float grey
            a = np.asarray(im, dtype=np.float32)
            a = a / (65535.0 if a.max() > 255 else 255.0) if im.mode != "F" else a
            arr = np.repeat(np.clip(a, 0, 1)[..., None], 3, axis=-1)
        else:
            arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))), grey


def _write(x: torch.Tensor, grey: bool, path: Path) -> None:
    import numpy as np
    from PIL import Image

    arr = (x.clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    im = Image.fromarray(np.ascontiguousarray(arr), "RGB")
    if grey:
        im = im.convert("L")
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    im.save(tmp, format="PNG")
    os.replace(tmp, path)


def restore_files(inputs, out_dir, *, model, solver="heun", steps: int = 10, batch_size: int = 4,
                  device=None, overwrite: bool = False, upsample: bool = True, seed: int = 0,
                  output: str | None = None, progress: bool = True, log=print) -> RestoreReport:
    """Restore image files into ``out_dir`` (module docstring); returns this process's report."""
    from tqdm.auto import tqdm

    from flowrestore.integrate import solve
    from flowrestore.pretrained import flow_for

    if not (isinstance(steps, int) and steps >= 1):
        raise ConfigError(f"steps must be a positive int, got {describe(steps)}")
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ConfigError(f"batch_size must be a positive int, got {describe(batch_size)}")
    meta = model.metadata
    method = meta["method"]
    solver_obj = make_solver(solver, method) if isinstance(solver, str) else solver
    if output is None:
        output = "posterior_mean" if method == "dirac" else "last"
    rank, world = _dist()
    if device is None:
        device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    model = model.to(device)
    flow = flow_for(model)
    factor = meta["task_params"].get("factor", 4) if meta["task"] == "sr4" else 1
    stochastic = method == "dirac" or getattr(solver_obj, "eps", 0)

    files = list_inputs(inputs)
    names = output_names(files)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = RestoreReport(rank=rank, world_size=world)
    mine = list(enumerate(zip(files, names, strict=True)))[rank::world]
    bar = tqdm(total=len(mine), unit="img", disable=not progress,
               desc=f"restore[{rank}]" if world > 1 else "restore", position=rank if world > 1
               else None, file=sys.stderr)

    def fail(path, reason):
        report.failed.append((str(path), reason))
        bar.write(f"FAILED {path}: {reason}", file=sys.stderr)
        bar.update(1)

    # 1) headers only: sizes for grouping; unreadable files fail here.
    from PIL import Image

    groups: dict[tuple[int, int], list] = {}
    for idx, (path, name) in mine:
        target = out_dir / name
        if target.exists() and not overwrite:
            report.skipped.append((str(path), str(target)))
            bar.write(f"skipped {path}: {target} exists (--overwrite to replace)")
            bar.update(1)
            continue
        try:
            with Image.open(path) as im:
                size = im.size
        except Exception as exc:  # noqa: BLE001 (any decoder error means: skip this file)
            fail(path, f"cannot read image ({type(exc).__name__}: {exc})")
            continue
        groups.setdefault(size, []).append((idx, path, target))
    # 2) same-size batches
    for size in sorted(groups):
        items = groups[size]
        for k in range(0, len(items), batch_size):
            chunk, xs, greys = [], [], []
            for idx, path, target in items[k:k + batch_size]:
                try:
                    x, grey = _read(path)
                except Exception as exc:  # noqa: BLE001
                    fail(path, f"cannot decode image ({type(exc).__name__}: {exc})")
                    continue
                chunk.append((idx, path, target))
                xs.append(x)
                greys.append(grey)
            if not chunk:
                continue
            try:
                y = torch.stack(xs).to(device)
                if factor > 1 and upsample:
                    h, w = y.shape[-2:]
                    y = torch.nn.functional.interpolate(
                        y, size=(h * factor, w * factor), mode="bicubic", align_corners=False
                    ).clamp(0.0, 1.0)
                kw = {"seeds": [seed + idx for idx, _, _ in chunk]} if stochastic else {}
                sol = solve(flow, solver_obj, y, steps=steps, output=output, **kw)
                outs = sol.x.clamp(0.0, 1.0).cpu()
            except Exception as exc:  # noqa: BLE001
                for _, path, _ in chunk:
                    fail(path, f"restoration failed ({type(exc).__name__}: {exc})")
                continue
            for (_, path, target), x, grey in zip(chunk, outs, greys, strict=True):
                try:
                    _write(x, grey, target)
                except Exception as exc:  # noqa: BLE001
                    fail(path, f"cannot write {target} ({type(exc).__name__}: {exc})")
                    continue
                report.restored.append((str(path), str(target)))
                bar.write(f"restored {path} -> {target}")
                bar.update(1)
    bar.close()
    tag = f"[rank {rank}/{world}] " if world > 1 else ""
    log(f"{tag}restored {len(report.restored)}, skipped {len(report.skipped)} (output exists), "
        f"failed {len(report.failed)} of {len(mine)} files")
    for path, reason in report.failed:
        log(f"{tag}FAILED {path}: {reason}")
    return report


def add_arguments(p) -> None:
    """The ``flowrestore restore`` options (also used by :mod:`flowrestore.cli`)."""
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files and/or folders")
    p.add_argument("-o", "--out", "--output-dir", dest="out", required=True, help="output folder")
    p.add_argument("--task", default="deblur",
                   help=f"{' | '.join(TASK_MODELS)} or a shipped model name (default deblur)")
    p.add_argument("--checkpoint", default=None,
                   help="a trainer checkpoint (python -m flowrestore.training.trainer --out ...) "
                        "instead of a shipped predictor")
    p.add_argument("--solver", default=None,
                   help=f"{' | '.join(SOLVERS)} (default heun for InDI, em for Dirac)")
    p.add_argument("--steps", type=int, default=10, help="solver steps (default 10)")
    p.add_argument("--output", choices=("last", "posterior_mean"), default=None,
                   help="last iterate or posterior-mean estimate (default: last for InDI, "
                        "posterior_mean for Dirac)")
    p.add_argument("--batch-size", type=int, default=4, help="same-size images per batch")
    p.add_argument("--device", default=None,
                   help="cpu | cuda | cuda:N (default: cuda if available)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--no-upsample", action="store_true",
                   help="sr4: the inputs are already at the target size")
    p.add_argument("--seed", type=int, default=0, help="noise seed of stochastic solvers")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads (default: OMP_NUM_THREADS, else min(4, cores - 1))")
    p.add_argument("--no-progress", action="store_true")


def main(args) -> int:
    """``flowrestore restore``: 0 if no file failed, 1 otherwise."""
    rank, _ = _dist()
    device = args.device
    if device is None:
        device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if torch.cuda.is_available() else "cpu"
    set_threads(args.threads, device)
    model = load_model(args.task, args.checkpoint, device=device)
    method = model.metadata["method"]
    solver = args.solver or ("heun" if method == "indi" else "em")
    files = list_inputs(args.paths)
    if not files:
        print("flowrestore restore: no image files found", file=sys.stderr)
        return 1
    report = restore_files(files, args.out, model=model, solver=solver, steps=args.steps,
                           batch_size=args.batch_size, device=device, overwrite=args.overwrite,
                           upsample=not args.no_upsample, seed=args.seed, output=args.output,
                           progress=not args.no_progress)
    return 1 if report.failed else 0
