"""What a run will do, decided before anything is restored: the jobs, their tiles and batches.

:class:`RestoreSettings` holds what every batch needs (the flow, solver, steps, output, device, the
spec's input preparation and the seed). :func:`plan_jobs` turns this process's files into
:class:`Job` s — or into skipped and failed entries of the report, each said once: a name shared by
two inputs, an output that would replace its input, an existing output (replaced with
``overwrite`` only when it is an earlier output of this tool: never another file), an unreadable
file.
:func:`batches` groups same-size whole images into batches that fit the memory budget; tiled images
run one by one. A file that is this tool's own output, lying where its output would go (a folder
restored into itself), is skipped and is no input at all: its name does not clash with the file it
was restored from.
"""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from flowrestore.restore.files import is_own_output
from flowrestore.restore.naming import file_seed, output_name

__all__ = [
    "RestoreSettings",
    "RestoreReport",
    "Job",
    "plan_jobs",
    "batches",
    "foreign_output",
    "EXISTS",
    "NOT_OURS",
    "OWN_INPUT",
]


@dataclass
class RestoreReport:
    """What one process did: restored ``(input, output)`` pairs, skipped and failed files."""

    restored: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    rank: int = 0
    world_size: int = 1


@dataclass(frozen=True)
class RestoreSettings:
    """Everything a batch of files needs: the predictor's spec and model, the flow, solver,
    ``steps``, ``output``, ``device``, the output/input size ratio ``scale`` (1: no upsampling)
    and the user's ``seed``; ``compile``: ``fr.solve``'s ``compile=`` (``False``: eager)."""

    spec: object
    model: object
    flow: object
    solver: object
    steps: int
    output: str
    device: object
    scale: int
    seed: int
    compile: bool | str | dict = False


@dataclass
class Job:
    """One file to restore: ``path`` → ``target``, output ``size`` (height, width), its tile
    ``plan`` and its noise ``seed`` (from ``--seed`` and the file's content)."""

    path: Path
    target: Path
    size: tuple[int, int]
    plan: object
    seed: int


@dataclass(frozen=True)
class TileOptions:
    """The ``tile``/``overlap``/``memory_budget`` options of a run, for :func:`plan_tiles`."""

    tile: int | None = None
    overlap: int | None = None
    memory_budget: int | None = None


def _name_key(name: str) -> str:
    """``name`` as case- and normalisation-insensitive disks (macOS, Windows) compare it: A.png
    and a.png, é composed and decomposed, are one file there."""
    return unicodedata.normalize("NFC", name).casefold()


#: Why a file is skipped, as the summary line counts it (``skip``'s ``kind``).
EXISTS = "output exists"
NOT_OURS = "output name taken by another file"
OWN_INPUT = "input is an output of flowrestore restore"


def foreign_output(target: Path) -> str | None:
    """Why ``target`` must not be replaced, or None: something is at the name (a file, a link —
    even a broken one —, a folder) that is no earlier output of ``flowrestore restore``
    (:func:`~.files.is_own_output`). ``--overwrite`` replaces only those outputs."""
    if target.is_symlink():
        return f"{target} is a symbolic link, not an output of flowrestore restore"
    if not target.exists() or is_own_output(target):
        return None
    if not target.is_file():
        return f"{target} exists and is no regular file (no output of flowrestore restore)"
    return f"{target} exists and is a file not written by flowrestore restore"


def _conflict(path: Path, target: Path, names: dict[str, list[Path]], overwrite: bool):
    """``(kind, reason)`` when ``path`` is not restored (kind "failed", or a skip kind:
    :data:`EXISTS`, :data:`NOT_OURS`), else None."""
    name = target.name
    if len(names[_name_key(name)]) > 1:
        others = ", ".join(str(o) for o in names[_name_key(name)] if o != path)
        return (
            "failed",
            f"output name {name} is also that of {others}; restore them into different -o folders",
        )
    if target.resolve() == path.resolve() or _same_file(target, path):
        return "failed", f"the output {target} would replace the input; choose another -o folder"
    if not (target.exists() or target.is_symlink()):
        return None
    foreign = foreign_output(target)
    if foreign is not None:  # never replaced, not even with --overwrite
        return NOT_OURS, f"{foreign}; kept (--overwrite replaces only earlier outputs)"
    if not overwrite:
        return EXISTS, f"{target} exists (--overwrite to replace)"
    return None


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` exists and is ``b`` under another spelling (``A.PNG`` and ``a.png`` on a
    case-insensitive disk, a hard link), which ``resolve()`` does not see."""
    try:
        return a.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def plan_jobs(
    mine, everyone, out_dir: Path, settings, *, overwrite, tiles: TileOptions, skip, fail
) -> list[Job]:
    """The jobs of this process's files ``mine`` (``everyone``: all processes' files, to find
    shared output names, compared as :func:`_name_key` does); ``skip(path, target, why, kind)``
    (``kind``: :data:`EXISTS`, :data:`NOT_OURS` or :data:`OWN_INPUT`) and ``fail(path, why)``
    report the rest.

    ``overwrite``: replace earlier outputs of ``flowrestore restore`` at the output names; any
    other file there (or a symbolic link) is kept and its input skipped, with or without it."""
    from flowrestore.imageio import displayed_size
    from flowrestore.tiling import plan_tiles

    own = {
        f
        for f in everyone
        if (out_dir / output_name(f)).resolve() == f.resolve() and is_own_output(f)
    }  # this tool's outputs in their own output folder: never inputs
    names: dict[str, list[Path]] = {}
    for f in everyone:
        if f not in own:
            names.setdefault(_name_key(output_name(f)), []).append(f)
    jobs = []
    for path in mine:
        target = out_dir / output_name(path)
        if path in own:
            skip(path, target, f"{path.name} is an output of flowrestore restore", OWN_INPUT)
            continue
        conflict = _conflict(path, target, names, overwrite)
        if conflict is not None:
            kind, why = conflict
            fail(path, why) if kind == "failed" else skip(path, target, why, kind)
            continue
        try:
            w, h = displayed_size(path)
            seed = file_seed(path, settings.seed)
        except Exception as exc:  # noqa: BLE001 (any decoder error means: skip this file)
            fail(path, f"cannot read image ({type(exc).__name__}: {exc})")
            continue
        size = (h * settings.scale, w * settings.scale)
        plan = plan_tiles(
            *size,
            model=settings.flow,
            tile=tiles.tile,
            overlap=tiles.overlap,
            memory_budget=tiles.memory_budget,
            device=settings.device,
        )
        jobs.append(Job(path, target, size, plan, seed))
    return jobs


def batches(jobs: list[Job], *, batch_size: int, budget: int, bytes_per_pixel: int):
    """Tiled jobs one by one, then whole images of one size together, as many as fit ``budget``
    bytes of activations and at most ``batch_size``."""
    out = [[j] for j in jobs if j.plan.count > 1]
    whole: dict[tuple[int, int], list[Job]] = {}
    for j in jobs:
        if j.plan.count == 1:
            whole.setdefault(j.size, []).append(j)
    for size in sorted(whole):
        group = whole[size]
        fits = budget // (size[0] * size[1] * bytes_per_pixel)
        per_batch = max(1, min(batch_size, fits))
        out += [group[k : k + per_batch] for k in range(0, len(group), per_batch)]
    return out
