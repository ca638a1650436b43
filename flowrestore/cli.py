"""The flowrestore command line.

flowrestore demo        restore the held-out bundled photos with the shipped predictors at
                        several NFEs and solvers, print PSNR/SSIM/NFE/time tables and write a
                        figure (--task toy: the closed-form toy-posterior tables instead)
flowrestore restore     restore your own image files: flowrestore restore PATH... -o OUTDIR
flowrestore pretrained  list the shipped predictors, what each expects, and their scores

Usage errors are one line on stderr with exit code 2, found before any work, leaving no new
output folder behind (--debug on demo and restore shows the traceback). restore takes its paths
before, between or after the options. --help, --version and argument errors answer without
importing torch.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import textwrap
from pathlib import Path

__all__ = ["build_parser", "main"]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("flowrestore")
    except PackageNotFoundError:  # run from a source tree that is not installed
        import flowrestore

        return flowrestore.__version__


class _Devices:
    """``choices=`` for ``--device``: cpu, cuda and cuda:N."""

    def __contains__(self, value) -> bool:
        from flowrestore.runtime import DEVICE_PATTERN

        return isinstance(value, str) and re.fullmatch(DEVICE_PATTERN, value) is not None

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


_POSITIVE = _int_at_least(1, "a positive integer")
_NONNEG = _int_at_least(0, "an integer >= 0")


def _add_device(p) -> None:
    p.add_argument(
        "--device",
        default=None,
        choices=_Devices(),
        metavar="{cpu,cuda,cuda:N}",
        help="default: cuda if available, else cpu",
    )


def _add_threads(p) -> None:
    p.add_argument(
        "--threads",
        type=_POSITIVE,
        default=None,
        help="CPU threads (default: OMP_NUM_THREADS, else min(4, cores - 1))",
    )


def _one_line_error(parser: argparse.ArgumentParser):
    """``parser.error`` that prints one line (no usage block) and exits with code 2."""

    def error(message: str):
        parser.exit(2, f"{parser.prog}: error: {message} (see {parser.prog} --help)\n")

    return error


# ----------------------------------------------------------------------------- demo
def _add_demo(sub) -> argparse.ArgumentParser:
    from flowrestore.demo.settings import TASKS, description
    from flowrestore.methods import solver_names

    demo = sub.add_parser(
        "demo",
        help="restore held-out bundled photos with the shipped predictors (default), "
        "or --task toy for the closed-form toy posteriors",
        description=description(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument(
        "--task",
        default="all",
        choices=("all", *TASKS, "toy"),
        help=f"all (default: {', '.join(TASKS)}) | {' | '.join(TASKS)} | toy (closed-form oracles)",
    )
    demo.add_argument(
        "--solver",
        nargs="+",
        default=None,
        choices=solver_names(),
        metavar="SOLVER",
        help=f"solvers to run, of {', '.join(solver_names())} (default: the runs listed above)",
    )
    demo.add_argument(
        "--steps",
        nargs="+",
        type=_POSITIVE,
        default=None,
        help="step counts, e.g. --steps 1 5 20 (default: the runs listed above)",
    )
    _add_device(demo)
    demo.add_argument(
        "--out",
        default=None,
        help="output folder for table.md, results.json and restorations.png "
        "(default ./flowrestore-demo; created and checked before anything runs)",
    )
    demo.add_argument(
        "--crop",
        type=_int_at_least(11, "an integer >= 11 (the SSIM window)"),
        default=None,
        help="center-crop size of the photos (default 192, --quick 64; at least 11, the SSIM "
        "window, at most 400)",
    )
    demo.add_argument("--seed", type=_NONNEG, default=0, help="noise seed")
    _add_threads(demo)
    demo.add_argument("--quick", action="store_true", help="a smaller, faster setting")
    demo.add_argument("--debug", action="store_true", help="show the traceback of a usage error")
    demo.set_defaults(func=_demo)
    return demo


#: demo options that only the photo tasks take: ``--task toy`` refuses them (it runs every solver
#: at fixed step counts on the CPU and writes no file).
_PHOTO_ONLY = ("solver", "steps", "device", "out", "crop")


def _demo(args: argparse.Namespace) -> int:
    if args.task == "toy":
        from flowrestore.errors import ConfigError

        given = [f"--{name}" for name in _PHOTO_ONLY if getattr(args, name) is not None]
        if given:
            raise ConfigError(
                f"--task toy does not take {' and '.join(given)}: it runs every solver at fixed "
                "step counts on the CPU and only prints its tables (it takes --quick, --seed "
                "and --threads)"
            )
        from flowrestore.demo.toy import run
        from flowrestore.runtime import set_threads

        set_threads(args.threads, "cpu")
        print(run(quick=args.quick, seed=args.seed))
        return 0
    from flowrestore.demo.settings import TASKS, plan_demo

    plan = plan_demo(
        tasks=TASKS if args.task == "all" else (args.task,),
        solvers=args.solver,
        steps=args.steps,
        device=args.device,
        out="flowrestore-demo" if args.out is None else args.out,
        crop=args.crop,
        quick=args.quick,
        seed=args.seed,
        threads=args.threads,
    )
    from flowrestore.demo.photos import run_plan

    run_plan(plan)
    return 0


# ----------------------------------------------------------------------------- restore
def _add_restore(sub) -> argparse.ArgumentParser:
    from flowrestore.methods import solver_names
    from flowrestore.pretrained import TASK_MODELS, list_pretrained
    from flowrestore.restore.help import DESCRIPTION, models_help, solvers_help

    p = sub.add_parser(
        "restore",
        help="restore image files / folders with a shipped or trained predictor",
        description=DESCRIPTION,
        epilog=models_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files and/or folders")
    p.add_argument(
        "-o", "--out", "--output-dir", dest="out", required=True,
        help="output folder (created if needed)",
    )  # fmt: skip
    tasks = list(TASK_MODELS) + [m for m in list_pretrained() if m not in TASK_MODELS]
    p.add_argument(
        "--task",
        default=None,
        choices=tasks,
        help="which shipped model (default deblur; see the list below); not with --checkpoint",
    )
    p.add_argument(
        "--checkpoint",
        default=None,
        help="a trainer checkpoint (python -m flowrestore.training --out ...) instead of a "
        "shipped predictor",
    )
    p.add_argument("--solver", default=None, choices=solver_names(), help=solvers_help())
    p.add_argument("--steps", type=_POSITIVE, default=10, help="solver steps (default 10)")
    p.add_argument(
        "--output",
        choices=("last", "posterior_mean"),
        default=None,
        help="last iterate or posterior-mean estimate (default: the method's; last for InDI, "
        "posterior_mean for Dirac)",
    )
    _add_restore_run_options(p)
    p.set_defaults(func=_restore)
    return p


def _add_restore_run_options(p) -> None:
    """``restore``'s options about how the run goes: batching, tiles, device, seed, output."""
    p.add_argument(
        "--batch-size", type=_POSITIVE, default=4,
        help="small same-size images restored together (default 4)",
    )  # fmt: skip
    p.add_argument(
        "--tile",
        type=_NONNEG,
        default=None,
        help="tile side in pixels (default: from the memory budget, at most 512 on "
        "CPU and 1024 on CUDA); 0 restores each image whole",
    )
    p.add_argument(
        "--overlap",
        type=_NONNEG,
        default=None,
        help="tile overlap in pixels (default: the model's receptive-field radius, and for a "
        "Dirac model the reach of the blur its steps apply: deblur 48, sr4 48, dirac-deblur 52)",
    )
    p.add_argument(
        "--memory",
        type=_POSITIVE,
        default=None,
        metavar="MB",
        help="memory budget for the predictor's activations, in MB (default 512 on "
        "CPU, half the free memory on CUDA)",
    )
    _add_device(p)
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace earlier outputs of flowrestore restore (never another file at their names)",
    )
    p.add_argument(
        "--no-upsample", action="store_true", help="sr4: the inputs are already at the target size"
    )
    p.add_argument(
        "--seed",
        type=_NONNEG,
        default=0,
        help="noise seed of stochastic solvers (each file's noise: from it and the file's content)",
    )
    _add_threads(p)
    p.add_argument(
        "--compile",
        action="store_true",
        help="compile the solver steps with torch.compile, once per input shape (tiles share "
        "one); pays off for long jobs, replayed as a CUDA graph on CUDA",
    )
    p.add_argument("--no-progress", action="store_true", help="do not show the progress bar")
    p.add_argument("--debug", action="store_true", help="show the full traceback of a usage error")


def _check_model_options(spec, args: argparse.Namespace) -> None:
    """The solver applies to the model's method; ``--no-upsample`` to a model that upsamples."""
    from flowrestore.errors import ConfigError

    spec.method.check_solver(args.solver)
    if args.no_upsample and spec.scale == 1:
        raise ConfigError(
            f"--no-upsample applies to super-resolution models; {spec.name or 'this model'} "
            "keeps the input's size"
        )


def _restore(args: argparse.Namespace) -> int:
    """``flowrestore restore``: 0 if no file failed, 1 otherwise; ConfigError on misuse.

    Checks that need no torch come first (inputs, the solver against a shipped model's method,
    the checkpoint file, then the output folder: a usage error leaves no folder behind), then the
    device, the model and the run.
    """
    from flowrestore import restore as R
    from flowrestore.errors import ConfigError
    from flowrestore.methods import ModelSpec
    from flowrestore.pretrained import pretrained_info
    from flowrestore.restore.models import check_checkpoint_file, model_name

    files, problems = R.list_inputs(args.paths)
    named = {str(Path(p)) for p in args.paths}
    for path, reason in problems:
        if path in named:  # a mistyped name: refused before the output folder is made
            raise ConfigError(f"input {path!r}: {reason}")
    if not files:
        raise ConfigError(f"no image files found in {args.paths}")
    if args.checkpoint is None:
        args.task = args.task or "deblur"
        _check_model_options(ModelSpec.of(pretrained_info(model_name(args.task))), args)
    elif args.task is not None:
        raise ConfigError(
            f"--task {args.task} and --checkpoint: give one (a checkpoint names its own task)"
        )
    else:
        check_checkpoint_file(Path(args.checkpoint))
    R.check_output_dir(args.out)
    device = R.resolve_device(args.device)
    R.set_threads(args.threads, device)
    model = R.load_model(args.task, args.checkpoint, device=device)
    _check_model_options(ModelSpec.of(model), args)  # a checkpoint's method and scale
    report = R.restore_files(
        args.paths,
        args.out,
        model=model,
        solver=args.solver,
        steps=args.steps,
        batch_size=args.batch_size,
        device=device,
        overwrite=args.overwrite,
        upsample=not args.no_upsample,
        seed=args.seed,
        output=args.output,
        tile=args.tile,
        overlap=args.overlap,
        memory_budget=args.memory * 2**20 if args.memory else None,
        progress=not args.no_progress,
        compile=args.compile,
    )
    return 1 if report.failed else 0


# ----------------------------------------------------------------------------- pretrained
def _pretrained(args: argparse.Namespace) -> int:
    from flowrestore.pretrained import TASK_MODELS, list_pretrained, pretrained_info
    from flowrestore.restore.help import expected_degradation

    tasks = {v: k for k, v in TASK_MODELS.items()}
    for name in list_pretrained():
        info = pretrained_info(name)
        print(f"{name}: {info['description']}")
        expects = f"restore --task {tasks.get(name, name)}: expects {expected_degradation(info)}."
        print(textwrap.fill(expects, 100, initial_indent="    ", subsequent_indent="        "))
        held = info.get("heldout", {})
        if held.get("results"):
            print(
                f"    held-out scores ({held['crop']}x{held['crop']} crops of "
                f"{', '.join(held['images'])}; noise seed {held.get('noise_seed', 0)}):"
            )
        for r in held.get("results", []):
            label = (
                "degraded input (no restoration)"
                if r["solver"] == "input"
                else f"{r['solver']:>9} steps {r['steps']:>3} {r['output']:<14}"
            )
            print(
                f"      {label:<41} NFE {r['nfe']:>3}: PSNR {r['psnr']:.2f} dB, "
                f"SSIM {r['ssim']:.4f}"
            )
        print(f"    trained with: {info['train']['command']}")
    return 0


# ----------------------------------------------------------------------------- entry point
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``flowrestore`` command (builds without importing torch)."""
    parser = argparse.ArgumentParser(
        prog="flowrestore",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"flowrestore {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = _add_demo(sub)
    restore = _add_restore(sub)
    pre = sub.add_parser(
        "pretrained",
        help="list the shipped predictors, the degradation each expects, and their held-out scores",
    )
    pre.set_defaults(func=_pretrained, debug=False)
    parser.subcommands = {"demo": demo, "restore": restore, "pretrained": pre}
    for p in (parser, demo, restore, pre):
        p.error = _one_line_error(p)
    return parser


def _new_folders(path) -> list[Path]:
    """The folders of ``path`` that do not exist yet, deepest first (those the run may create);
    ``..`` taken lexically, so a folder that exists is never among them."""
    new, p = [], Path(os.path.abspath(path))
    while not (p.exists() or p.is_symlink()) and p != p.parent:
        new.append(p)
        p = p.parent
    return new


def _remove_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first) while they are empty: what a stopped run created."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty (something was written), or already gone
            return


def _run(args: argparse.Namespace) -> int:
    """Run a subcommand; a usage error (a flowrestore error) is one line and exit code 2.

    A run that stops with an error before writing anything leaves no output folder behind
    (a usage error found after the folder was made: a tile size, an unusable device)."""
    from flowrestore.errors import FlowRestoreError

    out = getattr(args, "out", None)
    new = _new_folders(out) if isinstance(out, str) and out else []
    try:
        try:
            return args.func(args)
        except BaseException:
            _remove_empty(new)
            raise
    except FlowRestoreError as exc:
        if args.debug:
            raise
        print(f"flowrestore {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"flowrestore {args.command}: interrupted", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``flowrestore`` console script."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args, extra = parser.parse_known_args(argv)
    if extra and args.command == "restore":
        # paths after options (restore a.png --steps 5 b.png -o out): parsed intermixed, as the
        # usage line allows; an unknown option is still one line from the subcommand's parser
        rest = argv[argv.index("restore") + 1 :]
        space = argparse.Namespace(command="restore")
        args, extra = parser.subcommands["restore"].parse_intermixed_args(rest, space), []
    if extra:
        parser.subcommands[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    return _run(args)


if __name__ == "__main__":
    sys.exit(main())
