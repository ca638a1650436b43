"""What ``flowrestore demo`` will run, decided and checked before any work.

:func:`plan_demo` turns the command's options into a :class:`DemoPlan`: for each photo task the
shipped model, its spec (:mod:`flowrestore.methods`) and its runs — the method's showcase
(:class:`flowrestore.methods.Showcase`), or the ``--solver``/``--steps`` the user chose, each
checked against the method; the crop checked against what each task needs, the SSIM window and the
photos' sizes; the step counts, seed, threads and device checked; the output folder created and
test-written last. The task and solver checks import no torch, so those usage errors answer at once.
:func:`description` is the command's help text, with the solvers each task runs by default read
from the same records.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from numbers import Integral
from pathlib import Path

from flowrestore.errors import ConfigError, describe
from flowrestore.methods import METHODS, ModelSpec
from flowrestore.pretrained import TASK_MODELS, pretrained_info

__all__ = [
    "MAX_SEED",
    "OUTPUTS",
    "SSIM_MIN_CROP",
    "TASKS",
    "DemoPlan",
    "DemoTask",
    "check_demo_outputs",
    "description",
    "plan_demo",
    "runs_for",
]

#: The smallest crop side the scores take: SSIM's Gaussian window (σ = 1.5, 11×11,
#: :func:`flowrestore.metrics.ssim`).
SSIM_MIN_CROP = 11
#: Seeds lie below this: the solvers' noise generator is seeded with ``seed + 1``.
MAX_SEED = 2**63 - 1

#: The photo tasks of the demo (``--task all`` runs them all), by command-line task name.
TASKS: tuple[str, ...] = tuple(TASK_MODELS)


@dataclass(frozen=True)
class DemoTask:
    """One photo task: its command-line ``name``, shipped ``model`` name, ``spec`` and ``runs``
    (``(solver, steps, output[, t_end])``; solver ``"phi"`` is the one-shot clean estimate)."""

    name: str
    model: str
    spec: ModelSpec
    runs: tuple[tuple, ...]


@dataclass(frozen=True)
class DemoPlan:
    """A checked demo run: the tasks, the output folder, crop size, device, seed, threads and
    notes to print (e.g. a task that runs its default solver)."""

    tasks: tuple[DemoTask, ...]
    out: Path
    crop: int
    device: str | None
    seed: int
    threads: int | None
    quick: bool
    notes: tuple[str, ...] = ()


def runs_for(spec: ModelSpec, solvers, steps, quick: bool) -> tuple[tuple, ...]:
    """The runs of one task: the showcase without options, else each solver × step count.

    ``solvers``: the names that apply to this method (others were already sorted out); none: the
    method's default solver. ``steps``: none: the showcase's step counts for ``--solver``. A
    solver or step count given twice runs once.
    """
    method, show = spec.method, spec.method.showcase
    if not solvers and not steps:
        return show.quick_runs if quick else show.runs
    solvers = dict.fromkeys(solvers or [method.default_solver])  # a repeat runs once, in order
    steps = dict.fromkeys(steps or (show.quick_steps if quick else show.steps))
    return tuple((s, n, method.default_output) for s in solvers for n in steps)


def _match_solvers(specs: dict[str, ModelSpec], solvers) -> tuple[dict, list[str]]:
    """Per task, the given solvers that apply to its method. A solver that applies to none of
    the chosen tasks is refused (so with one task, every solver must apply to it)."""
    if not solvers:
        return {t: [] for t in specs}, []
    per_task = {
        t: [s for s in solvers if s in spec.method.solver_names()] for t, spec in specs.items()
    }
    for s in solvers:
        if not any(s in chosen for chosen in per_task.values()):
            takes = "; ".join(
                f"{t} ({spec.method.title}) takes {', '.join(spec.method.solver_names())}"
                for t, spec in specs.items()
            )
            raise ConfigError(f"--solver {s} does not apply to --task {', '.join(specs)}: {takes}")
    notes = [
        f"{t}: none of --solver {' '.join(solvers)} applies to a {spec.method.title} model; "
        f"running its default {spec.method.default_solver}"
        for t, spec in specs.items()
        if not per_task[t]
    ]
    return per_task, notes


def _names(solvers) -> list[str] | None:
    """``solvers`` as a list of names (one name may come bare); anything else refused."""
    if solvers is None:
        return None
    solvers = [solvers] if isinstance(solvers, str) else list(solvers)
    if not all(isinstance(s, str) for s in solvers):
        raise ConfigError(f"--solver takes solver names, got {describe(solvers)}")
    return solvers


def _counts(steps) -> list[int] | None:
    """``steps`` as a list of step counts, each an int >= 1 (one count may come bare)."""
    if steps is None:
        return None
    steps = [steps] if isinstance(steps, Integral) else list(steps)
    for n in steps:
        if isinstance(n, bool) or not isinstance(n, Integral) or n < 1:
            raise ConfigError(f"--steps takes step counts, each an int >= 1, got {describe(n)}")
    return [int(n) for n in steps]


def _check_crop_fits(crop: int) -> None:
    """Refuse a crop larger than a held-out photo (read from scikit-image, not decoded)."""
    import skimage.data

    from flowrestore.training.data import HELDOUT_IMAGES

    for name in HELDOUT_IMAGES:
        h, w = getattr(skimage.data, name)().shape[:2]
        if crop > min(h, w):
            raise ConfigError(f"--crop {crop}: larger than the held-out photo {name} ({h}x{w})")


def plan_demo(
    *,
    tasks=TASKS,
    solvers=None,
    steps=None,
    device=None,
    out="flowrestore-demo",
    crop=None,
    quick: bool = False,
    seed: int = 0,
    threads=None,
) -> DemoPlan:
    """Check the demo's options and decide its runs (see the module docstring)."""
    from flowrestore.restore.files import check_output_dir

    names = (tasks,) if isinstance(tasks, str) else tuple(tasks)
    if not names or any(t not in TASKS for t in names):
        raise ConfigError(f"demo: tasks must be among {TASKS}, got {names!r}")
    solvers, steps = _names(solvers), _counts(steps)
    if crop is not None and (isinstance(crop, bool) or not isinstance(crop, Integral)):
        raise ConfigError(f"--crop must be an int (pixels), got {describe(crop)}")
    crop = (64 if quick else 192) if crop is None else int(crop)  # 0 is refused, not the default
    specs = {t: ModelSpec.of(pretrained_info(TASK_MODELS[t])) for t in names}
    per_task, notes = _match_solvers(specs, solvers)
    if crop < SSIM_MIN_CROP:  # the scores need it: found now, not after the first task ran
        raise ConfigError(
            f"--crop {crop}: the SSIM score needs crops of at least {SSIM_MIN_CROP}x"
            f"{SSIM_MIN_CROP} (its Gaussian window)"
        )
    for t, spec in specs.items():
        if crop % spec.scale:
            raise ConfigError(
                f"--crop {crop}: task {t} needs a multiple of {spec.scale} (its degradation "
                f"averages {spec.scale}x{spec.scale} blocks)"
            )
    _check_crop_fits(crop)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < MAX_SEED:
        raise ConfigError(f"--seed {seed!r}: must be an int in [0, 2**63 - 1)")
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
    ):
        raise ConfigError(f"--threads must be a positive int or None, got {describe(threads)}")
    from flowrestore.runtime import resolve_device

    resolve_device(device)  # an unusable --device is refused before the output folder is made
    return DemoPlan(
        tasks=tuple(
            DemoTask(t, TASK_MODELS[t], spec, runs_for(spec, per_task[t], steps, quick))
            for t, spec in specs.items()
        ),
        out=check_demo_outputs(check_output_dir(out)),
        crop=crop,
        device=device,
        seed=seed,
        threads=threads,
        quick=quick,
        notes=tuple(notes),
    )


#: The files ``flowrestore demo`` writes into ``--out``.
OUTPUTS: tuple[str, ...] = ("restorations.png", "table.md", "results.json")
#: The PNG text key that marks the demo's figure as its own.
FIGURE_KEY = "flowrestore-demo"
#: The first characters of the demo's own ``table.md``.
TABLE_HEAD = "# flowrestore demo:"
_JSON_KEYS = {"crop", "device", "images", "seconds", "tasks"}


def _is_own_output(path: Path) -> bool:
    """Whether ``path`` is a file an earlier ``flowrestore demo`` wrote (a rerun may replace it)."""
    import json

    if path.is_symlink() or not path.is_file():
        return False
    try:
        if path.name == "table.md":
            with open(path, encoding="utf-8") as f:
                return f.read(len(TABLE_HEAD)) == TABLE_HEAD
        if path.name == "results.json":
            data = json.loads(path.read_text(encoding="utf-8"))
            return isinstance(data, dict) and set(data) == _JSON_KEYS
        from PIL import Image

        with Image.open(path) as im:
            return im.format == "PNG" and FIGURE_KEY in im.info
    except (OSError, ValueError):
        return False


def check_demo_outputs(out: Path) -> Path:
    """Refuse an ``out`` folder where a file the demo would write exists and is not an earlier
    demo's output (the user's own ``results.json``, say): the demo never replaces a user's
    file. Returns ``out``."""
    for name in OUTPUTS:
        path = out / name
        if (path.exists() or path.is_symlink()) and not _is_own_output(path):
            raise ConfigError(
                f"--out {str(out)!r}: {name} exists and was not written by flowrestore demo; "
                "the demo would replace it (choose another --out, or move the file)"
            )
    return out


def _runs_text(runs) -> str:
    by_solver: dict[tuple, list[str]] = {}
    for r in runs:
        solver, n, output = r[:3]
        t_end = r[3] if len(r) > 3 else None
        label = f"{n}" + (f" (t_end {t_end:g})" if t_end else "")
        by_solver.setdefault((solver, output), []).append(label)
    parts = []
    for (solver, output), labels in by_solver.items():
        if solver == "phi":
            parts.append("phi (one-shot clean estimate, 1 NFE)")
        else:
            parts.append(f"{solver} {', '.join(labels)} steps ({output})")
    return "; ".join(parts)


def description() -> str:
    """The help text of ``flowrestore demo``: what it does and what it runs by default."""
    lines = [
        "Restore center crops of the held-out photos astronaut, camera and coffee (never used for",
        "training) with the shipped predictors; print PSNR / SSIM / NFE / seconds per image /",
        "sharpness tables and write table.md, results.json and restorations.png to --out.",
        "",
        "Runs by default (--quick: fewer):",
    ]
    for method in METHODS.values():
        tasks = [t for t in TASKS if ModelSpec.of(pretrained_info(TASK_MODELS[t])).method is method]
        if not tasks:
            continue
        text = (
            f"{', '.join(tasks)} ({method.title}): {_runs_text(method.showcase.runs)}; "
            f"{method.default_solver} is restore's default."
        )
        lines.append(textwrap.fill(text, 92, initial_indent="  ", subsequent_indent="      "))
    lines += [
        "",
        "--solver and --steps choose the runs instead: each solver with each step count (with",
        "--solver alone, the step counts above; with --steps alone, the default solver). A solver",
        "that applies to none of the chosen tasks is refused; a task none of them applies to runs",
        "its default solver. --task toy runs every solver on the closed-form toy posteriors",
        "and prints its tables (it takes --quick, --seed and --threads, no other option).",
        "Usage errors are one line with exit code 2, found before anything runs.",
    ]
    return "\n".join(lines)
