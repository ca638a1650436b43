"""The training command line: ``python -m flowrestore.training`` (also ``torchrun ... -m``).

::

    python -m flowrestore.training --task deblur --steps 2000 --velocity --time-scale 10 \\
        --out deblur.pt
    torchrun --standalone --nproc_per_node=2 -m flowrestore.training --task sr4 --out sr4.pt

Arguments map one to one onto :class:`~flowrestore.training.trainer.TrainConfig` (``--task-param
K=V`` and ``--tdist-param K=V`` take JSON values); the last line printed (rank 0) is a JSON summary
of the run. A bad argument or a refused option is one line on stderr naming it, exit code 2
(``--debug`` shows the traceback of a refused option). ``python -m flowrestore.training.trainer``
is the same command.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from flowrestore.errors import ConfigError, FlowRestoreError
from flowrestore.tasks import task_names
from flowrestore.training.objectives import OBJECTIVES
from flowrestore.training.trainer import TrainConfig, train

__all__ = ["build_parser", "config_from_args", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m flowrestore.training``."""
    p = argparse.ArgumentParser(
        prog="python -m flowrestore.training",
        description="Train an InDI / Dirac clean-image predictor (on the CPU).",
    )
    # a usage error is one line naming the option (argparse printed its whole usage block first)
    p.error = _one_line_error(p)
    d = TrainConfig()
    p.add_argument("--task", choices=task_names(), default=d.task)
    p.add_argument(
        "--task-param",
        action="append",
        default=[],
        metavar="K=V",
        help="degradation parameter, e.g. blur_sigma=2.0 (repeatable; JSON values)",
    )
    p.add_argument("--method", choices=tuple(OBJECTIVES), default=d.method)
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="per rank")
    p.add_argument("--patch-size", type=int, default=d.patch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--ema-decay", type=float, default=d.ema_decay)
    p.add_argument("--loss-p", type=int, choices=(1, 2), default=d.loss_p)
    p.add_argument("--tdist", default=d.tdist, help="uniform | power | beta")
    p.add_argument("--tdist-param", action="append", default=[], metavar="K=V", help="e.g. k=2")
    p.add_argument("--eps", type=float, default=d.eps)
    p.add_argument("--brownian", action="store_true")
    p.add_argument("--sigma-min", type=float, default=d.sigma_min)
    p.add_argument("--sigma-max", type=float, default=d.sigma_max)
    p.add_argument("--lookahead", type=float, default=d.lookahead)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--channels", type=int, choices=(1, 3), default=d.channels)
    p.add_argument("--dataset", choices=("photos", "lfw"), default=d.dataset)
    p.add_argument("--base-channels", type=int, default=None)
    p.add_argument("--channel-mults", default=None, help="comma list, e.g. 1,2,2")
    p.add_argument("--num-res-blocks", type=int, default=None)
    p.add_argument("--no-residual", action="store_true")
    p.add_argument(
        "--velocity",
        action="store_true",
        help="parametrise F(x, t) = x - t*v(x, t): InDI's flow then has a limit at t = 0",
    )
    p.add_argument(
        "--time-scale", type=float, default=None, help="time embedding scale (default 1000)"
    )
    p.add_argument(
        "--grad-clip", type=float, default=d.grad_clip, help="max gradient norm; <= 0: no clipping"
    )
    p.add_argument("--out", required=True, help="checkpoint path (written by rank 0)")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    p.add_argument("--resume", default=None, help="checkpoint to continue from")
    p.add_argument("--log-interval", type=int, default=d.log_interval)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    return p


def _one_line_error(parser: argparse.ArgumentParser):
    """``parser.error`` that prints one line (no usage block) and exits with code 2."""

    def error(message: str):
        parser.exit(2, f"{parser.prog}: error: {message} (see {parser.prog} --help)\n")

    return error


def _kv(items, flag):
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"{flag} expects K=V, got {item!r}")
        k, v = item.split("=", 1)
        if not k.strip():
            raise ConfigError(f"{flag} expects K=V with a name K, got {item!r}")
        if k in out:
            raise ConfigError(f"{flag} {k} given twice ({out[k]!r}, then {v!r}); give it once")
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def config_from_args(argv=None) -> tuple[TrainConfig, argparse.Namespace]:
    """Parse command-line arguments into a :class:`TrainConfig` (and the raw namespace)."""
    a = build_parser().parse_args(argv)
    unet = {}
    if a.base_channels is not None:
        unet["base_channels"] = a.base_channels
    if a.channel_mults is not None:  # "" is refused below, never read as "the default"
        try:
            unet["channel_mults"] = [int(s) for s in a.channel_mults.split(",")]
        except ValueError:
            raise ConfigError(
                f"--channel-mults expects a comma list of ints, e.g. 1,2,2, got {a.channel_mults!r}"
            ) from None
    if a.num_res_blocks is not None:
        unet["num_res_blocks"] = a.num_res_blocks
    if a.no_residual:
        unet["residual"] = False
    if a.velocity:
        unet["velocity"] = True
    if a.time_scale is not None:
        unet["time_scale"] = a.time_scale
    cfg = TrainConfig(
        task=a.task,
        task_params=_kv(a.task_param, "--task-param"),
        method=a.method,
        steps=a.steps,
        batch_size=a.batch_size,
        patch_size=a.patch_size,
        lr=a.lr,
        ema_decay=a.ema_decay,
        loss_p=a.loss_p,
        tdist=a.tdist,
        tdist_params=_kv(a.tdist_param, "--tdist-param"),
        eps=a.eps,
        brownian=a.brownian,
        sigma_min=a.sigma_min,
        sigma_max=a.sigma_max,
        lookahead=a.lookahead,
        seed=a.seed,
        channels=a.channels,
        dataset=a.dataset,
        unet=unet,
        # <= 0: no clipping; NaN goes through so that TrainConfig refuses it (not "no clipping")
        grad_clip=None if a.grad_clip is not None and a.grad_clip <= 0 else a.grad_clip,
        checkpoint=a.out,
        checkpoint_every=a.checkpoint_every,
        log_interval=a.log_interval,
        threads=a.threads,
    )
    return cfg, a


def main(argv=None) -> int:
    """Command-line entry point; see the module docstring."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    try:
        cfg, a = config_from_args(argv)
        _, hist = train(cfg, progress=not a.no_progress, resume=a.resume)
    except FlowRestoreError as exc:  # a usage error or a failed run: one line, exit code 2
        if debug:
            raise
        print(f"python -m flowrestore.training: error: {exc}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        tail = hist.loss[-cfg.log_interval :]
        print(
            json.dumps(
                {
                    "out": cfg.checkpoint,
                    "steps": hist.step,
                    "world_size": hist.world_size,
                    "final_loss": sum(tail) / max(len(tail), 1),
                    "seconds_per_step": hist.seconds_per_step,
                }
            )
        )
    return 0
