"""Restore a user's own image files with a shipped or trained predictor (``flowrestore restore``).

The library behind the command: which solver a name means (:data:`SOLVERS`, :func:`make_solver`),
which model a task means and what degradation it expects (:func:`expected_degradation`), which
files a run restores and under which names (:func:`list_inputs`, :func:`output_name`), and the run
itself (:func:`restore_files`), which reads files with :mod:`flowrestore.imageio` and restores
large images tile by tile with :mod:`flowrestore.tiling`. :data:`DESCRIPTION` is the command's
help text.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from flowrestore.errors import ConfigError, describe

__all__ = [
    "SOLVERS",
    "TASK_MODELS",
    "DESCRIPTION",
    "default_threads",
    "set_threads",
    "make_solver",
    "load_model",
    "expected_degradation",
    "resolve_device",
    "list_inputs",
    "output_name",
    "check_output_dir",
    "restore_files",
    "RestoreReport",
    "add_arguments",
    "models_help",
    "main",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")

# solver name -> (methods it applies to, description, class in flowrestore.solvers): the one table
# of solver names, shared with the demo and the registry's held-out scores
from flowrestore.pretrained.scores import SOLVERS, make_solver  # noqa: E402

#: Work (pixels x evaluations) above which an estimate is printed: about 10 s on one CPU core.
ESTIMATE_ABOVE = 4e6

TASK_MODELS = {"deblur": "indi-deblur", "sr4": "indi-sr4", "dirac-deblur": "dirac-deblur"}

DESCRIPTION = """\
Restore image files with a shipped predictor (--task) or your own trainer checkpoint.

Inputs: files in any format Pillow reads, and folders (their .png .jpg .jpeg .bmp .tif .tiff
.webp .gif files, not recursive). A file given several times (relative, absolute, ../ paths) is
restored once.

Outputs: OUTDIR/<stem>.png for a PNG input and OUTDIR/<stem>_<ext>.png otherwise (a.jpg ->
a_jpg.png), the same name in every run. Existing outputs are kept unless --overwrite. Two inputs
that would get one name (a.png in two folders) are reported as failed; restore them into
different folders. The output folder is created and checked for writing before anything runs.

Files as they are: the EXIF orientation is applied (the output is upright, its EXIF orientation
reset to 1), EXIF and ICC profile are kept, 16-bit inputs give 16-bit PNGs, the value range comes
from the file's mode (8-bit /255, 16-bit /65535), alpha is kept unchanged (resized for sr4), grey
stays grey, palette images become RGB(A), CMYK becomes RGB (through its ICC profile when present).

Large images are restored in overlapping tiles (size from the model's receptive field and the
--memory budget; --tile 0 restores the whole image at once); the result matches whole-image
restoration within 1e-4 away from tile seams and within 1/255 at the seams. Before a long job an
estimate of the time and peak memory is printed; the progress bar counts tile steps.

sr4: the input is the low-resolution image; it is upsampled 4x (bicubic, as in training) and
restored (--no-upsample for inputs already at the target size).

Failures: an unreadable file is reported once (FAILED <path>: <reason>) and skipped; the exit code
is 0 when every file was restored or already there, 1 when a file failed, 2 for a usage error.

Several processes: under torchrun (RANK/WORLD_SIZE set) each process takes every WORLD_SIZE-th
file of the sorted list, starting at its RANK; on CUDA each process uses cuda:LOCAL_RANK.
Stochastic solvers (Dirac's em) seed each file and tile from --seed, the file's index and the
tile's index, so results do not depend on batching or the number of processes.
"""


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


def expected_degradation(meta: dict) -> str:
    """In words: the input a predictor was trained on, and what it does to other inputs."""
    p, task = meta.get("task_params", {}), meta.get("task")
    if meta.get("method") == "dirac" and task == "deblur":
        noise = meta.get("dirac", {}).get("sigma_max", 0.05)
        return (
            f"a photo blurred by a Gaussian of std {p.get('blur_sigma', 2.0):g} px with noise "
            f"of std {noise:g}; on a sharp or differently blurred photo it over-sharpens "
            f"(halos, ringing)"
        )
    if task == "deblur":
        return (
            f"a photo blurred by a Gaussian of std {p.get('blur_sigma', 2.0):g} px (noise std "
            f"{p.get('noise', 0.0):g}); on a sharp photo it adds halos and ringing, on a "
            f"stronger blur it sharpens too little"
        )
    if task == "sr4":
        f = p.get("factor", 4)
        return (
            f"an image {f}x smaller than wanted, made by {f}x{f} averaging; it is upsampled "
            f"{f}x ({p.get('upsample', 'bicubic')}) and restored, so the output is {f}x larger"
        )
    if task == "denoise":
        return f"an image with Gaussian noise of std {p.get('sigma', 0.1):g} (values in [0, 1])"
    if task == "jpeg":
        return f"a JPEG-compressed image (quality {p.get('quality', 20)})"
    return f"the {task!r} degradation it was trained on ({p})"


def load_model(task: str | None = None, checkpoint: str | os.PathLike | None = None, device="cpu"):
    """A predictor with ``.metadata``: a shipped one by task/model name, or a trainer checkpoint."""
    if checkpoint is not None:
        from flowrestore.training.checkpoint import load_predictor
        from flowrestore.training.data import _task_params

        if not Path(checkpoint).is_file():
            raise ConfigError(f"checkpoint {str(checkpoint)!r}: no such file")
        try:
            model = load_predictor(checkpoint, device=device)
        except Exception as exc:  # noqa: BLE001 (any unpickling error: not a trainer checkpoint)
            raise ConfigError(
                f"checkpoint {str(checkpoint)!r}: cannot load it ({type(exc).__name__}: {exc})"
            ) from exc
        cfg = model.train_config
        meta = {
            "name": str(checkpoint),
            "method": cfg["method"],
            "task": cfg["task"],
            "task_params": _task_params(cfg["task"], cfg["task_params"]),
        }
        if cfg["method"] == "dirac":
            meta["dirac"] = {
                "sigma_min": cfg["sigma_min"],
                "sigma_max": cfg["sigma_max"],
                "lookahead": cfg["lookahead"],
            }
        model.metadata = meta
        return model
    from flowrestore.pretrained import list_pretrained, pretrained

    name = TASK_MODELS.get(task, task)
    if name not in list_pretrained():
        raise ConfigError(
            f"task must be one of {sorted(TASK_MODELS)} or a shipped model "
            f"{list_pretrained()}, got {describe(task)}"
        )
    return pretrained(name, device=device)


def resolve_device(device=None) -> torch.device:
    """``device`` as a torch device (default: ``cuda:LOCAL_RANK`` if CUDA works, else CPU).

    Raises :class:`ConfigError` with a plain reason when CUDA is asked for but not usable.
    """
    if device is None:
        if torch.cuda.is_available():
            return torch.device(f"cuda:{os.environ.get('LOCAL_RANK', '0')}")
        return torch.device("cpu")
    text = str(device)
    if not re.fullmatch(r"cpu|cuda(:\d+)?", text):
        raise ConfigError(f"device must be cpu, cuda or cuda:N, got {describe(device)}")
    dev = torch.device(text)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = (
                "this PyTorch was built without CUDA"
                if torch.version.cuda is None
                else "no CUDA device is visible"
            )
            raise ConfigError(
                f"device {text!r}: CUDA is not available ({why}; torch "
                f"{torch.__version__}); use --device cpu"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device {text!r}: only {torch.cuda.device_count()} CUDA device(s)")
    return dev


def list_inputs(paths) -> tuple[list[Path], list[tuple[str, str]]]:
    """``(files, problems)``: files named and image files in folders named (not recursive).

    Files are de-duplicated by resolved path (the first spelling is kept) and sorted by it;
    ``problems`` lists ``(path, reason)`` for paths that do not exist.
    """
    seen: dict[Path, Path] = {}
    problems = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            found = sorted(
                q for q in p.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_EXTENSIONS
            )
        elif p.exists():
            found = [p]
        else:
            problems.append((str(p), "no such file or folder"))
            continue
        for q in found:
            seen.setdefault(q.resolve(), q)
    return [seen[k] for k in sorted(seen, key=str)], problems


def output_name(path) -> str:
    """The output file name of an input, from its name alone: ``a.png`` -> ``a.png``,
    ``a.jpg`` -> ``a_jpg.png``, ``a.tif`` -> ``a_tif.png``, ``a`` -> ``a.png``."""
    path = Path(path)
    ext = path.suffix[1:]
    if not ext or ext.lower() == "png":
        return f"{path.stem}.png"
    return f"{path.stem}_{ext}.png"


def check_output_dir(out_dir) -> Path:
    """Create ``out_dir`` if needed and check that a file can be written there; returns it."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output folder {str(out)!r} is an existing file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"output folder {str(out)!r} cannot be created ({exc.strerror or exc})"
        ) from exc
    try:
        with tempfile.NamedTemporaryFile(dir=out, prefix=".flowrestore-write-check-"):
            pass
    except OSError as exc:
        raise ConfigError(
            f"output folder {str(out)!r} is not writable ({exc.strerror or exc})"
        ) from exc
    return out


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


def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an int >= {minimum}, got {describe(value)}")


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass
class _Job:
    idx: int
    path: Path
    target: Path
    size: tuple[int, int]  # output (height, width)
    plan: object


def restore_files(
    inputs,
    out_dir,
    *,
    model,
    solver="multistep",
    steps: int = 10,
    batch_size: int = 4,
    device=None,
    overwrite: bool = False,
    upsample: bool = True,
    seed: int = 0,
    output: str | None = None,
    tile: int | None = None,
    overlap: int | None = None,
    memory_budget: int | None = None,
    progress: bool = True,
    log=print,
) -> RestoreReport:
    """Restore image files into ``out_dir`` (see :data:`DESCRIPTION`); this process's report.

    ``tile``/``overlap``/``memory_budget`` (bytes) go to :func:`flowrestore.tiling.plan_tiles`
    (``tile=0``: whole images). ``log`` receives the estimate and the summary lines; per-file
    lines go through the progress bar's writer to stdout (FAILED lines to stderr), once each.
    """
    from tqdm.auto import tqdm

    from flowrestore.imageio import displayed_size
    from flowrestore.pretrained import flow_for
    from flowrestore.tiling import activation_bytes_per_pixel, default_budget, plan_tiles

    _check_int("steps", steps, 1)
    _check_int("batch_size", batch_size, 1)
    _check_int("seed", seed, 0)
    meta = model.metadata
    method = meta["method"]
    solver_obj = make_solver(solver, method) if isinstance(solver, str) else solver
    if output is None:
        output = "posterior_mean" if method == "dirac" else "last"
    rank, world = _dist()
    device = resolve_device(device)
    out_dir = check_output_dir(out_dir)
    model = model.to(device)
    flow = flow_for(model)
    factor = meta["task_params"].get("factor", 4) if meta["task"] == "sr4" and upsample else 1

    files, missing = list_inputs(inputs)
    report = RestoreReport(rank=rank, world_size=world)
    mine = list(enumerate(files))[rank::world]
    by_name: dict[str, list[Path]] = {}
    for f in files:
        by_name.setdefault(output_name(f), []).append(f)

    def fail(path, reason):
        report.failed.append((str(path), reason))
        tqdm.write(f"FAILED {path}: {reason}", file=sys.stderr)

    if rank == 0:
        for path, reason in missing:
            fail(path, reason)
    jobs: list[_Job] = []
    for idx, path in mine:
        name = output_name(path)
        target = out_dir / name
        if len(by_name[name]) > 1:
            others = ", ".join(str(o) for o in by_name[name] if o != path)
            fail(
                path,
                f"output name {name} is also that of {others}; restore them into "
                f"different -o folders",
            )
            continue
        if target.resolve() == path.resolve():
            fail(path, f"the output {target} would replace the input; choose another -o folder")
            continue
        if target.exists() and not overwrite:
            report.skipped.append((str(path), str(target)))
            tqdm.write(f"skipped {path}: {target} exists (--overwrite to replace)")
            continue
        try:
            w, h = displayed_size(path)
        except Exception as exc:  # noqa: BLE001 (any decoder error means: skip this file)
            fail(path, f"cannot read image ({type(exc).__name__}: {exc})")
            continue
        size = (h * factor, w * factor)
        plan = plan_tiles(
            *size,
            model=model,
            tile=tile,
            overlap=overlap,
            memory_budget=memory_budget,
            device=device,
        )
        jobs.append(_Job(idx, path, target, size, plan))

    total = sum(j.plan.count for j in jobs) * steps
    if jobs:
        _estimate(jobs, model, flow, solver_obj, steps, output, device, log)
    bar = tqdm(
        total=total,
        unit="tile-step",
        disable=not progress or not jobs,
        file=sys.stderr,
        desc=f"restore[{rank}]" if world > 1 else "restore",
        position=rank if world > 1 else None,
    )
    common = {
        "flow": flow,
        "solver": solver_obj,
        "steps": steps,
        "output": output,
        "device": device,
        "factor": factor,
        "seed": seed,
        "bar": bar,
        "model": model,
    }

    whole: dict[tuple[int, int], list[_Job]] = {}
    for j in jobs:
        if j.plan.count == 1:
            whole.setdefault(j.size, []).append(j)
    for j in jobs:
        if j.plan.count > 1:
            _run([j], common, report, fail)
    budget = memory_budget or default_budget(device)
    for size in sorted(whole):
        group = whole[size]
        fits = budget // (size[0] * size[1] * activation_bytes_per_pixel(model))
        per_batch = max(1, min(batch_size, fits))
        for k in range(0, len(group), per_batch):
            _run(group[k : k + per_batch], common, report, fail)
    bar.close()
    tag = f"[rank {rank}/{world}] " if world > 1 else ""
    log(
        f"{tag}restored {len(report.restored)}, skipped {len(report.skipped)} (output exists), "
        f"failed {len(report.failed)} of {len(mine) + (len(missing) if rank == 0 else 0)} files"
    )
    return report


def _run(chunk: list[_Job], c: dict, report: RestoreReport, fail) -> None:
    """Read, restore (tiled when the plan has several tiles) and write a batch of same-size jobs."""
    from flowrestore.imageio import from_tensor, read_image, to_tensor, write_image
    from flowrestore.integrate import solve
    from flowrestore.tiling import restore_tiled

    bar = c["bar"]
    bar.set_postfix_str(chunk[0].path.name if len(chunk) == 1 else f"{len(chunk)} images")
    pics, ok = [], []
    for j in chunk:
        try:
            pics.append(read_image(j.path))
            ok.append(j)
        except Exception as exc:  # noqa: BLE001
            fail(j.path, f"cannot decode image ({type(exc).__name__}: {exc})")
            bar.update(j.plan.count * c["steps"])
    if not ok:
        return
    try:
        y = torch.stack([to_tensor(p) for p in pics]) if len(pics) > 1 else to_tensor(pics[0])[None]
        if c["factor"] > 1:
            h, w = y.shape[-2:]
            mode = c["model"].metadata["task_params"].get("upsample", "bicubic")
            y = torch.nn.functional.interpolate(
                y,
                size=(h * c["factor"], w * c["factor"]),
                mode=mode,
                **({} if mode == "nearest" else {"align_corners": False}),
            ).clamp_(0.0, 1.0)
        seeds = [c["seed"] + 100_000 * j.idx for j in ok]
        if len(ok) == 1 and ok[0].plan.count > 1:
            outs = restore_tiled(
                c["flow"],
                c["solver"],
                y[0],
                steps=c["steps"],
                plan=ok[0].plan,
                device=c["device"],
                seed=seeds[0],
                output=c["output"],
                on_step=bar.update,
            )[None]
        else:
            outs = solve(
                c["flow"],
                c["solver"],
                y.to(c["device"]).contiguous(memory_format=torch.channels_last),
                steps=c["steps"],
                output=c["output"],
                seeds=seeds,
                callback=lambda *_: bar.update(len(ok)),
            ).x
        del y
    except Exception as exc:  # noqa: BLE001
        for j in ok:
            fail(j.path, f"restoration failed ({type(exc).__name__}: {exc})")
        return
    for j, pic, x in zip(ok, pics, outs, strict=True):
        try:
            write_image(j.target, from_tensor(x, pic))
        except Exception as exc:  # noqa: BLE001
            fail(j.path, f"cannot write {j.target} ({type(exc).__name__}: {exc})")
            continue
        report.restored.append((str(j.path), str(j.target)))
        notes = f" ({'; '.join(pic.notes)})" if pic.notes else ""
        bar.write(f"restored {j.path} -> {j.target}{notes}")


def _estimate(jobs, model, flow, solver, steps, output, device, log) -> None:
    """Print the expected time and peak memory before a long job (about 10 s or more)."""
    from flowrestore.tiling import (
        activation_bytes_per_pixel,
        count_evaluations,
        seconds_per_megapixel,
    )

    nfe = count_evaluations(flow, solver, steps, output=output)
    work = sum(j.plan.processed_pixels for j in jobs) * nfe
    if work < ESTIMATE_ABOVE:
        return
    biggest = max(jobs, key=lambda j: j.plan.tile_shape[0] * j.plan.tile_shape[1])
    rate = seconds_per_megapixel(model, biggest.plan.tile_shape)
    seconds = work / 1e6 * rate
    th, tw = biggest.plan.tile_shape
    bpp = activation_bytes_per_pixel(model)
    big = max(jobs, key=lambda j: j.size[0] * j.size[1])
    image_bytes = big.size[0] * big.size[1] * (2 * 12 + 6 + 6)  # y, sum, decoded, quantised
    peak = _rss_bytes() + image_bytes + th * tw * biggest.plan.batch * (bpp + 8 * 12)
    mpx = sum(j.size[0] * j.size[1] for j in jobs) / 1e6
    tiles = sum(j.plan.count for j in jobs)
    log(
        f"estimate: {len(jobs)} image(s), {mpx:.1f} Mpx out, {tiles} tile(s) up to {th}x{tw}, "
        f"{nfe} evaluations each: about {_duration(seconds)} on {device} "
        f"({rate:.2f} s per Mpx and evaluation, measured now); peak memory about "
        f"{peak / 2**20:.0f} MB"
    )


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# ----------------------------------------------------------------------------- command line
class _Devices:
    """``choices=`` for ``--device``: cpu, cuda and cuda:N."""

    def __contains__(self, value) -> bool:
        return isinstance(value, str) and re.fullmatch(r"cpu|cuda(:\d+)?", value) is not None

    def __iter__(self):
        return iter(("cpu", "cuda", "cuda:N"))


def _int_at_least(minimum: int, what: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value

    parse.__name__ = what  # argparse names the type in some messages
    return parse


def models_help() -> str:
    """One paragraph per shipped model: its task name and the degradation it expects."""
    import textwrap

    from flowrestore.pretrained import list_pretrained, pretrained_info

    by_model = {v: k for k, v in TASK_MODELS.items()}
    lines = ["What each model expects (other inputs give poor or harmful results):"]
    for name in list_pretrained():
        task = by_model.get(name, name)
        label = task if task == name else f"{task} ({name})"
        text = f"--task {label}: {expected_degradation(pretrained_info(name))}."
        lines.append(textwrap.fill(text, 100, initial_indent="  ", subsequent_indent="      "))
    return "\n".join(lines)


def add_arguments(p) -> None:
    """The ``flowrestore restore`` options (also used by :mod:`flowrestore.cli`)."""
    from flowrestore.pretrained import list_pretrained

    pos = _int_at_least(1, "a positive integer")
    nonneg = _int_at_least(0, "an integer >= 0")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files and/or folders")
    p.add_argument(
        "-o",
        "--out",
        "--output-dir",
        dest="out",
        required=True,
        help="output folder (created if needed)",
    )
    tasks = list(TASK_MODELS) + [m for m in list_pretrained() if m not in TASK_MODELS]
    p.add_argument(
        "--task",
        default="deblur",
        choices=tasks,
        help="which shipped model (default deblur; see the list below)",
    )
    p.add_argument(
        "--checkpoint",
        default=None,
        help="a trainer checkpoint (python -m flowrestore.training.trainer --out ...) "
        "instead of a shipped predictor",
    )
    p.add_argument(
        "--solver",
        default=None,
        choices=list(SOLVERS),
        help="multistep, euler, heun, midpoint, rk4, indi (InDI models); em, sra1 (Dirac); "
        "default multistep for InDI (one evaluation per step), em for Dirac",
    )
    p.add_argument("--steps", type=pos, default=10, help="solver steps (default 10)")
    p.add_argument(
        "--output",
        choices=("last", "posterior_mean"),
        default=None,
        help="last iterate or posterior-mean estimate (default: last for InDI, "
        "posterior_mean for Dirac)",
    )
    p.add_argument(
        "--batch-size",
        type=pos,
        default=4,
        help="small same-size images restored together (default 4)",
    )
    p.add_argument(
        "--tile",
        type=nonneg,
        default=None,
        help="tile side in pixels (default: from the memory budget, at most 512 on "
        "CPU and 1024 on CUDA); 0 restores each image whole",
    )
    p.add_argument(
        "--overlap",
        type=nonneg,
        default=None,
        help="tile overlap in pixels (default: the model's receptive-field radius, "
        "48 for the shipped models)",
    )
    p.add_argument(
        "--memory",
        type=pos,
        default=None,
        metavar="MB",
        help="memory budget for the predictor's activations, in MB (default 512 on "
        "CPU, half the free memory on CUDA)",
    )
    p.add_argument(
        "--device",
        default=None,
        choices=_Devices(),
        metavar="{cpu,cuda,cuda:N}",
        help="default: cuda if available, else cpu",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument(
        "--no-upsample", action="store_true", help="sr4: the inputs are already at the target size"
    )
    p.add_argument("--seed", type=nonneg, default=0, help="noise seed of stochastic solvers")
    p.add_argument(
        "--threads",
        type=pos,
        default=None,
        help="CPU threads (default: OMP_NUM_THREADS, else min(4, cores - 1))",
    )
    p.add_argument("--no-progress", action="store_true", help="do not show the progress bar")
    p.add_argument("--debug", action="store_true", help="show the full traceback of a usage error")


def main(args) -> int:
    """``flowrestore restore``: 0 if no file failed, 1 otherwise; raises ConfigError on misuse."""
    _dist()
    device = resolve_device(args.device)
    set_threads(args.threads, device)
    check_output_dir(args.out)  # before loading anything
    files, missing = list_inputs(args.paths)
    if not files and not missing:
        raise ConfigError(f"no image files found in {args.paths}")
    model = load_model(args.task, args.checkpoint, device=device)
    method = model.metadata["method"]
    solver = args.solver or ("multistep" if method == "indi" else "em")
    make_solver(solver, method)  # a wrong solver for the model is a usage error: before any work
    budget = args.memory * 2**20 if args.memory else None
    report = restore_files(
        args.paths,
        args.out,
        model=model,
        solver=solver,
        steps=args.steps,
        batch_size=args.batch_size,
        device=device,
        overwrite=args.overwrite,
        upsample=not args.no_upsample,
        seed=args.seed,
        output=args.output,
        tile=args.tile,
        overlap=args.overlap,
        memory_budget=budget,
        progress=not args.no_progress,
    )
    return 1 if report.failed else 0
