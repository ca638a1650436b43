"""The ``flowrestore`` command line: ``flowrestore demo`` (and, with trained predictors,
``flowrestore restore``)."""

from __future__ import annotations

import argparse
import sys


def _demo(args: argparse.Namespace) -> int:
    if args.task == "toy":
        from flowrestore.demo.toy import run

        print(run(quick=args.quick))
        return 0
    from flowrestore.demo.photos import main as photos_main  # noqa: PLC0415

    return photos_main(args)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``flowrestore`` command."""
    parser = argparse.ArgumentParser(prog="flowrestore", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="restore bundled photos / run the toy-posterior demonstration")
    demo.add_argument("--task", default="toy", help="toy (closed-form oracles)")
    demo.add_argument("--quick", action="store_true", help="a smaller, faster setting")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``flowrestore`` console script."""
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
