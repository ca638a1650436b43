"""The run: :func:`restore_files` restores files into a folder, batch by batch.

The steps, each a function: check the options and build the :class:`RestoreSettings` (the model's
spec from :mod:`flowrestore.methods` gives the flow, the default solver and output, the input
preparation); list this process's files; plan the jobs (:mod:`.planning`); print an estimate
(:mod:`.estimates`); then for each batch read the files, prepare the model input, solve (tiled
when the plan has several tiles, :func:`flowrestore.tiling.restore_tiled`) and write the outputs
(:mod:`flowrestore.imageio`), marked as this tool's own.
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace

import torch

from flowrestore.errors import ConfigError, describe
from flowrestore.integrate.solve import _OUTPUTS
from flowrestore.methods import ModelSpec
from flowrestore.restore.estimates import estimate
from flowrestore.restore.files import check_output_dir, list_inputs, own_output_text
from flowrestore.restore.planning import (
    EXISTS,
    NOT_OURS,
    OWN_INPUT,
    Job,
    RestoreReport,
    RestoreSettings,
    TileOptions,
    batches,
    foreign_output,
    plan_jobs,
)
from flowrestore.runtime import resolve_device

__all__ = ["restore_files", "RestoreReport", "RestoreSettings"]


def _dist() -> tuple[int, int]:
    rank, world = os.environ.get("RANK", "0"), os.environ.get("WORLD_SIZE", "1")
    try:
        r, w = int(rank), int(world)
    except ValueError:
        r, w = -1, 0
    if w < 1 or not 0 <= r < w:
        raise ConfigError(f"bad RANK={rank!r} / WORLD_SIZE={world!r} in the environment")
    return r, w


def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an int >= {minimum}, got {describe(value)}")


def _check_bool(name: str, value) -> None:
    if not isinstance(value, bool):  # overwrite="no" is truthy: it would replace outputs
        raise ConfigError(f"{name} must be a bool, got {describe(value)}")


def _settings(model, solver, steps, output, device, upsample, seed, compile) -> RestoreSettings:
    """Check the options against the model's spec; move the model; build flow and solver.

    Everything every solve would refuse (a solver object for another kind of flow, an unknown
    ``output``, a ``compile`` that is none) is refused here, once, before any file is read:
    not as the same failure of every file."""
    from flowrestore.integrate.compiled import compile_options
    from flowrestore.solvers.base import Solver

    _check_int("steps", steps, 1)
    _check_int("seed", seed, 0)
    spec = ModelSpec.of(model)
    solver_obj = spec.method.solver(solver) if solver is None or isinstance(solver, str) else solver
    if not isinstance(solver_obj, Solver):
        raise ConfigError(
            f"solver must be a solver name or a flowrestore Solver, got {describe(solver)}"
        )
    device = resolve_device(device)
    compile_options(compile, device)
    model = model.to(device)
    flow = spec.flow(model)
    solver_obj.check_flow(flow)
    output = spec.method.default_output if output is None else output
    if output not in _OUTPUTS:
        raise ConfigError(f"output must be one of {_OUTPUTS}, got {describe(output)}")
    if output == "posterior_mean" and not flow.has_denoiser:
        raise ConfigError(
            f"output='posterior_mean' needs a clean-image estimate; {type(flow).__name__} has none"
        )
    return RestoreSettings(
        spec=spec,
        model=model,
        flow=flow,
        solver=solver_obj,
        steps=steps,
        output=output,
        device=device,
        scale=spec.scale if upsample else 1,
        seed=seed,
        compile=compile,
    )


class _Reporter:
    """Records skipped/failed files in the report and says each once (FAILED on stderr)."""

    def __init__(self, report: RestoreReport):
        from tqdm.auto import tqdm

        self.report, self.write = report, tqdm.write
        self.kinds: dict[str, int] = {}  # skips by kind (planning.EXISTS, ...), for the summary

    def fail(self, path, reason) -> None:
        self.report.failed.append((str(path), reason))
        self.write(f"FAILED {path}: {reason}", file=sys.stderr)

    def skip(self, path, target, why, kind=EXISTS) -> None:
        self.report.skipped.append((str(path), str(target)))
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        self.write(f"skipped {path}: {why}")

    def skipped(self) -> str:
        """``skipped N`` and why, for the summary: ``skipped 2 (output exists)``, or each
        reason's count when there are several."""
        n = len(self.report.skipped)
        if not self.kinds:
            return f"skipped {n}"
        if len(self.kinds) == 1:
            return f"skipped {n} ({next(iter(self.kinds))})"
        order = [k for k in (EXISTS, NOT_OURS, OWN_INPUT) if k in self.kinds]  # fixed order
        order += [k for k in self.kinds if k not in order]
        return f"skipped {n} ({'; '.join(f'{k}: {self.kinds[k]}' for k in order)})"


def restore_files(
    inputs,
    out_dir,
    *,
    model,
    solver=None,
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
    compile: bool | str | dict = False,
    log=print,
) -> RestoreReport:
    """Restore image files into ``out_dir`` (see ``flowrestore restore --help``); this process's
    report.

    ``inputs``: a file or folder, or several; ``model``: a predictor with ``.metadata``
    (:func:`load_model`); ``solver``: a name of its method's solvers, a solver object, or
    ``None`` for the method's default (as ``output``). ``overwrite``: replace earlier outputs of
    ``flowrestore restore`` at the output names; any other file there (or a symbolic link) is
    kept and its input skipped, said in one line naming it.
    ``tile``/``overlap``/``memory_budget`` (bytes) go to :func:`flowrestore.tiling.plan_tiles`
    (``tile=0``: whole images). ``log`` receives the estimate and the summary lines; per-file
    lines go through the progress bar's writer to stdout (FAILED lines to stderr), once each.
    ``compile`` goes to :func:`flowrestore.solve` (``True``: the steps compiled once per input
    shape — tiles share one — and replayed as a CUDA graph on CUDA; the bar then advances per
    solve instead of per step).
    """
    from flowrestore.tiling import activation_bytes_per_pixel, default_budget

    _check_int("batch_size", batch_size, 1)
    for name, value, least in (("tile", tile, 0), ("overlap", overlap, 0)):
        if value is not None:  # refused before the folder is made, whatever the image sizes
            _check_int(name, value, least)
    if memory_budget is not None:
        _check_int("memory_budget", memory_budget, 1)
    for name, flag in (("overwrite", overwrite), ("upsample", upsample), ("progress", progress)):
        _check_bool(name, flag)
    settings = _settings(model, solver, steps, output, device, upsample, seed, compile)
    rank, world = _dist()
    out_dir = check_output_dir(out_dir)
    files, missing = list_inputs(inputs)
    mine = files[rank::world]
    report = RestoreReport(rank=rank, world_size=world)
    say = _Reporter(report)
    for path, reason in missing if rank == 0 else ():
        say.fail(path, reason)
    tiles = TileOptions(tile=tile, overlap=overlap, memory_budget=memory_budget)
    jobs = plan_jobs(
        mine, files, out_dir, settings, overwrite=overwrite, tiles=tiles, skip=say.skip,
        fail=say.fail,
    )  # fmt: skip
    groups = batches(
        jobs,
        batch_size=batch_size,
        budget=memory_budget or default_budget(settings.device),
        bytes_per_pixel=activation_bytes_per_pixel(settings.model),
    )
    if jobs:
        estimate(jobs, settings, log, groups=groups)
    bar = _progress_bar(jobs, settings.steps, progress, rank, world)
    for group in groups:
        _restore_batch(group, settings, say, bar)
    bar.close()
    tag = f"[rank {rank}/{world}] " if world > 1 else ""
    total = len(mine) + (len(missing) if rank == 0 else 0)
    log(
        f"{tag}restored {len(report.restored)}, {say.skipped()}, "
        f"failed {len(report.failed)} of {total} files"
    )
    return report


def _progress_bar(jobs, steps, progress, rank, world):
    from tqdm.auto import tqdm

    return tqdm(
        total=sum(j.plan.count for j in jobs) * steps,
        unit="tile-step",
        disable=not progress or not jobs,
        file=sys.stderr,
        desc=f"restore[{rank}]" if world > 1 else "restore",
        position=rank if world > 1 else None,
    )


def _read(chunk: list[Job], settings, say, bar):
    """Decode the batch's files; ``(pictures, jobs)`` of those that decoded."""
    from flowrestore.imageio import read_image

    pics, ok = [], []
    for j in chunk:
        try:
            pics.append(read_image(j.path))
            ok.append(j)
        except Exception as exc:  # noqa: BLE001
            say.fail(j.path, f"cannot decode image ({type(exc).__name__}: {exc})")
            bar.update(j.plan.count * settings.steps)
    return pics, ok


def _model_input(pics, settings) -> torch.Tensor:
    """The pictures as one batch ``[B, C, H, W]`` the model takes (``C``: the network's channels,
    :func:`flowrestore.tiling.network_channels`; ``sr4``: upsampled)."""
    from flowrestore.imageio import to_tensor
    from flowrestore.tiling import network_channels

    c = network_channels(settings.model)
    y = (
        torch.stack([to_tensor(p, c) for p in pics])
        if len(pics) > 1
        else to_tensor(pics[0], c)[None]
    )
    return settings.spec.prepare(y) if settings.scale > 1 else y


def _solve(y: torch.Tensor, ok: list[Job], settings, bar) -> torch.Tensor:
    """Restore the batch: one tiled solve for a many-tile image, else one batched solve."""
    from flowrestore.integrate import solve
    from flowrestore.tiling import restore_tiled

    s = settings
    if len(ok) == 1 and ok[0].plan.count > 1:
        return restore_tiled(
            s.flow,
            s.solver,
            y[0],
            steps=s.steps,
            plan=ok[0].plan,
            device=s.device,
            seed=ok[0].seed,
            output=s.output,
            on_step=bar.update,
            compile=s.compile,
        )[None]
    # a compiled solve takes no per-step callback: the bar advances once, by the solve's steps
    callback = None if s.compile else (lambda *_: bar.update(len(ok)))
    x = solve(
        s.flow,
        s.solver,
        y.to(s.device).contiguous(memory_format=torch.channels_last),
        steps=s.steps,
        output=s.output,
        seeds=[j.seed for j in ok],
        callback=callback,
        compile=s.compile,
    ).x
    if s.compile:
        bar.update(len(ok) * s.steps)
    return x


def _write(ok: list[Job], pics, outs, say, bar) -> None:
    from flowrestore.imageio import from_tensor, write_image

    for j, pic, x in zip(ok, pics, outs, strict=True):
        foreign = foreign_output(j.target)  # put there while this run restored: never replaced
        if foreign is not None:
            say.skip(j.path, j.target, f"{foreign} (it appeared during the run); kept", NOT_OURS)
            continue
        try:
            out = replace(from_tensor(x, pic), text=own_output_text(j.path))
            write_image(j.target, out)
        except Exception as exc:  # noqa: BLE001
            say.fail(j.path, f"cannot write {j.target} ({type(exc).__name__}: {exc})")
            continue
        say.report.restored.append((str(j.path), str(j.target)))
        notes = f" ({'; '.join(pic.notes)})" if pic.notes else ""
        bar.write(f"restored {j.path} -> {j.target}{notes}")


def _restore_batch(chunk: list[Job], settings, say, bar) -> None:
    """Read, prepare, restore and write a batch of same-size jobs."""
    bar.set_postfix_str(chunk[0].path.name if len(chunk) == 1 else f"{len(chunk)} images")
    from flowrestore.imageio import to_grey
    from flowrestore.tiling import network_channels

    pics, ok = _read(chunk, settings, say, bar)
    if not ok:
        return
    if network_channels(settings.model) == 1:  # a grey model: colour files restored as grey
        pics = [to_grey(p) for p in pics]
    _solve_and_write(pics, ok, settings, say, bar)


def _solve_and_write(pics, ok: list[Job], settings, say, bar) -> None:
    """Restore and write decoded pictures; when a batch fails, each file is tried alone, so one
    file's failure (NaN, memory) does not fail the others."""
    done = bar.n
    try:
        outs = _solve(_model_input(pics, settings), ok, settings, bar)
    except Exception as exc:  # noqa: BLE001
        bar.n = done  # the failed attempt's steps are no progress: the bar ends at its total
        if len(ok) > 1:
            for j, pic in zip(ok, pics, strict=True):
                _solve_and_write([pic], [j], settings, say, bar)
            return
        bar.update(ok[0].plan.count * settings.steps)  # a failed file is done, as in _read
        say.fail(ok[0].path, f"restoration failed ({type(exc).__name__}: {exc})")
        return
    _write(ok, pics, outs, say, bar)
