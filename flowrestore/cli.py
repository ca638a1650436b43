"""The flowrestore command line.

flowrestore demo        restore the held-out bundled photos with the shipped predictors at
                        several NFEs and solvers, print PSNR/SSIM/NFE/time tables and write a
                        figure (--task toy: the closed-form toy-posterior tables instead)
flowrestore restore     restore your own image files: flowrestore restore PATH... -o OUTDIR
flowrestore pretrained  list the shipped predictors, what each expects, and their scores
"""

from __future__ import annotations

import argparse
import sys
import textwrap

DEMO_TASKS = ("all", "deblur", "sr4", "dirac-deblur", "toy")


def _demo(args: argparse.Namespace) -> int:
    if args.task == "toy":
        from flowrestore.demo.toy import run

        print(run(quick=args.quick))
        return 0
    from flowrestore.demo.photos import main as photos_main  # noqa: PLC0415

    return photos_main(args)


def _restore(args: argparse.Namespace) -> int:
    from flowrestore.errors import FlowRestoreError
    from flowrestore.restore import main as restore_main

    try:
        return restore_main(args)
    except FlowRestoreError as exc:
        if args.debug:
            raise
        print(f"flowrestore restore: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("flowrestore restore: interrupted", file=sys.stderr)
        return 130


def _pretrained(args: argparse.Namespace) -> int:
    from flowrestore.pretrained import list_pretrained, pretrained_info
    from flowrestore.restore import TASK_MODELS, expected_degradation

    tasks = {v: k for k, v in TASK_MODELS.items()}
    for name in list_pretrained():
        info = pretrained_info(name)
        print(f"{name}: {info['description']}")
        expects = f"restore --task {tasks.get(name, name)}: expects {expected_degradation(info)}."
        print(textwrap.fill(expects, 100, initial_indent="    ", subsequent_indent="        "))
        res = info.get("heldout", {}).get("results", [])
        for r in res:
            print(
                f"    {r['solver']:>6} steps {r['steps']:>3} {r['output']:<14} "
                f"NFE {r['nfe']:>3}: PSNR {r['psnr']:.2f} dB, SSIM {r['ssim']:.4f}"
            )
        print(f"    trained with: {info['train']['command']}")
    return 0


def _one_line_error(parser: argparse.ArgumentParser):
    """``parser.error`` that prints one line (no usage block) and exits with code 2."""

    def error(message: str):
        parser.exit(2, f"{parser.prog}: error: {message} (see {parser.prog} --help)\n")

    return error


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``flowrestore`` command."""
    parser = argparse.ArgumentParser(
        prog="flowrestore",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="restore held-out bundled photos with the shipped predictors (default), "
        "or --task toy for the closed-form toy posteriors",
    )
    demo.add_argument(
        "--task",
        default="all",
        choices=DEMO_TASKS,
        help="all (default: deblur, sr4 and dirac-deblur) | deblur | sr4 | "
        "dirac-deblur | toy (closed-form oracles)",
    )
    demo.add_argument(
        "--solver",
        nargs="+",
        default=None,
        help="solvers to run: multistep euler heun midpoint rk4 indi (InDI), em sra1 (Dirac); "
        "default: a fixed set per task",
    )
    demo.add_argument(
        "--steps",
        nargs="+",
        type=int,
        default=None,
        help="step counts, e.g. --steps 1 5 20 (default: a fixed set per task)",
    )
    demo.add_argument("--device", default=None, help="cpu | cuda (default: cuda if available)")
    demo.add_argument(
        "--out",
        default=None,
        help="output folder for table.md, results.json and restorations.png "
        "(default ./flowrestore-demo)",
    )
    demo.add_argument(
        "--crop",
        type=int,
        default=None,
        help="center-crop size of the photos (default 192, --quick 64)",
    )
    demo.add_argument("--seed", type=int, default=0, help="noise seed")
    demo.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads (default: OMP_NUM_THREADS, else min(4, cores - 1))",
    )
    demo.add_argument("--quick", action="store_true", help="a smaller, faster setting")
    demo.set_defaults(func=_demo)

    import flowrestore.restore as restore_mod

    restore = sub.add_parser(
        "restore",
        help="restore image files / folders with a shipped or trained predictor",
        description=restore_mod.DESCRIPTION,
        epilog=restore_mod.models_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    restore_mod.add_arguments(restore)
    restore.error = _one_line_error(restore)
    restore.set_defaults(func=_restore)

    pre = sub.add_parser(
        "pretrained",
        help="list the shipped predictors, the degradation each expects, and their held-out scores",
    )
    pre.error = _one_line_error(pre)
    pre.set_defaults(func=_pretrained)
    parser.subcommands = {"demo": demo, "restore": restore, "pretrained": pre}
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``flowrestore`` console script."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        if args.command in ("restore", "pretrained"):
            parser.subcommands[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
