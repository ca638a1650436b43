"""Training loop for InDI and Dirac clean-image predictors (docs/math.md §1 and §3, "Training").

``train(TrainConfig(...))`` draws paired patches from the bundled photos (:mod:`.data`), minimises
:func:`~flowrestore.training.losses.indi_loss` (``method="indi"``) or
:func:`~flowrestore.training.losses.dirac_ir_loss` (``method="dirac"``, geometric ``σ_t =
σ_min^{1-t} σ_max^t``, family from :func:`~flowrestore.training.data.make_family`) with Adam, keeps
an EMA of the weights and writes checkpoints that resume exactly (RNG state included).

Data parallel: launched under ``torchrun`` (``WORLD_SIZE > 1``) the model is wrapped in
``DistributedDataParallel`` (gloo on CPU, nccl on CUDA); ``batch_size`` is per rank, each rank's
generator is seeded with ``seed + 7919·rank`` so ranks draw different data, and only rank 0 writes
files. Entry point::

    python -m flowrestore.training.trainer --task deblur --steps 2000 --out deblur.pt
    torchrun --standalone --nproc_per_node=2 -m flowrestore.training.trainer \
        --task sr4 --out sr4.pt
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields

import torch

from flowrestore.errors import ConfigError, describe
from flowrestore.training.checkpoint import load_checkpoint, save_checkpoint
from flowrestore.training.data import (
    TASKS,
    PatchDataset,
    lfw_faces,
    make_degradation,
    make_family,
    training_images,
)
from flowrestore.training.ema import EMA
from flowrestore.training.losses import dirac_ir_loss, indi_loss
from flowrestore.training.tdist import resolve_tdist
from flowrestore.training.unet import UNet

__all__ = ["TrainConfig", "TrainHistory", "train", "build_model", "main"]

log = logging.getLogger("flowrestore.training")

# Fields that may change between a run and its resumption.
_RESUMABLE = {"steps", "checkpoint", "checkpoint_every", "log_interval", "threads"}


@dataclass(kw_only=True)
class TrainConfig:
    """Everything that defines a training run; ``to_dict``/``from_dict`` give the plain-dict form.

    Defaults are sized for a 2-core CPU: 187k-parameter U-Net, 48×48 patches, batch 8 (per rank),
    lr 5e-4, EMA 0.999, p = 1, uniform p(t). Measured (one thread, busy machine): 2500 deblur steps
    in 6.4 min lift held-out PSNR from 27.7 dB (y) to 30.1 dB (one step F(y, 1)) and 29.2 dB
    (10 Euler steps); lr 2e-3 failed to learn in 800 steps, so keep lr <= 1e-3.
    """

    task: str = "deblur"
    task_params: dict = field(default_factory=dict)
    method: str = "indi"
    steps: int = 2000
    batch_size: int = 8
    patch_size: int = 48
    lr: float = 5e-4
    ema_decay: float = 0.999
    loss_p: int = 1
    tdist: str | dict = "uniform"
    tdist_params: dict = field(default_factory=dict)
    eps: float = 0.0
    brownian: bool = False
    sigma_min: float = 0.01
    sigma_max: float = 0.05
    lookahead: float = 0.0
    seed: int = 0
    channels: int = 3
    dataset: str = "photos"
    augment: bool = True
    unet: dict = field(default_factory=dict)
    grad_clip: float | None = 1.0
    checkpoint: str | None = None
    checkpoint_every: int = 0
    log_interval: int = 50
    threads: int | None = None

    def __post_init__(self):
        def bad(name, want):
            raise ConfigError(
                f"TrainConfig: {name} must be {want}, got {describe(getattr(self, name))}"
            )

        if self.task not in TASKS:
            bad("task", f"one of {TASKS}")
        if self.method not in ("indi", "dirac"):
            bad("method", "'indi' or 'dirac'")
        for name in ("steps", "batch_size", "patch_size", "log_interval"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                bad(name, "a positive int")
        if not isinstance(self.checkpoint_every, int) or self.checkpoint_every < 0:
            bad("checkpoint_every", "an int >= 0 (0: only at the end)")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0 and math.isfinite(self.lr)):
            bad("lr", "a finite number > 0")
        if not (isinstance(self.ema_decay, (int, float)) and 0 <= self.ema_decay < 1):
            bad("ema_decay", "a number in [0, 1)")
        if self.loss_p not in (1, 2):
            bad("loss_p", "1 or 2")
        if not (isinstance(self.eps, (int, float)) and self.eps >= 0):
            bad("eps", "a number >= 0")
        if not (0 < self.sigma_min <= self.sigma_max):
            bad("sigma_min", f"in (0, sigma_max={self.sigma_max}]")
        if not (0 <= self.lookahead <= 1):
            bad("lookahead", "in [0, 1]")
        if self.channels not in (1, 3):
            bad("channels", "1 or 3")
        if self.dataset not in ("photos", "lfw"):
            bad("dataset", "'photos' or 'lfw'")
        if not isinstance(self.unet, dict):
            bad("unet", "a dict of UNet keyword arguments")
        if isinstance(self.tdist, str) or isinstance(self.tdist, dict):
            resolve_tdist(self.tdist, **self.tdist_params)  # validates
        else:
            bad("tdist", "a name or a spec dict (callables cannot be saved in a checkpoint)")
        make_degradation(self.task, **self.task_params)  # validates task_params

    def to_dict(self) -> dict:
        """Plain dict (JSON-serialisable) of all fields."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Rebuild from :meth:`to_dict` output; unknown keys are a :class:`ConfigError`."""
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ConfigError(f"TrainConfig.from_dict: unknown keys {sorted(unknown)}")
        return cls(**d)


@dataclass
class TrainHistory:
    """What a run produced besides the model: per-step (this rank's) losses, the EMA, timing."""

    loss: list[float]
    ema: EMA
    step: int
    seconds_per_step: float
    world_size: int = 1


def build_model(config: TrainConfig) -> UNet:
    """The U-Net a config describes (``in_channels`` defaults to ``config.channels``)."""
    return UNet(**{"in_channels": config.channels, **config.unet})


def _dist_info():
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and dist.is_available():
        owned = False
        if not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
            owned = True
        return dist.get_world_size(), dist.get_rank(), owned
    return 1, 0, False


def _dataset(config: TrainConfig) -> PatchDataset:
    imgs = (
        training_images(channels=config.channels)
        if config.dataset == "photos"
        else lfw_faces("train", channels=config.channels)
    )
    deg = make_degradation(config.task, **config.task_params) if config.method == "indi" else None
    return PatchDataset(imgs, patch_size=config.patch_size, degradation=deg, augment=config.augment)


def _gather_rng(gen: torch.Generator, world: int) -> dict:
    state = gen.get_state()
    if world == 1:
        return {"generators": [state], "world_size": 1}
    import torch.distributed as dist

    states = [None] * world
    dist.all_gather_object(states, state)
    return {"generators": states, "world_size": world}


def train(config: TrainConfig, *, progress: bool = True, resume=None, callback=None):
    """Train a predictor; returns ``(model, history)`` (trained weights; EMA in ``history.ema``).

    ``resume``: a checkpoint path; training continues from its step up to ``config.steps`` and is
    bit-identical to an uninterrupted run. ``callback(step, loss, model)`` runs after each step.
    """
    if not isinstance(config, TrainConfig):
        raise ConfigError(f"train: config must be a TrainConfig, got {describe(config)}")
    if config.threads:
        torch.set_num_threads(config.threads)
    world, rank, owned = _dist_info()
    torch.manual_seed(config.seed)  # same initial weights on every rank
    model = build_model(config)
    ema = EMA(model, decay=config.ema_decay)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    gen = torch.Generator().manual_seed(config.seed + 7919 * rank)
    start, losses = 0, []
    if resume is not None:
        ck = load_checkpoint(resume)
        old = {k: v for k, v in ck["config"].items() if k not in _RESUMABLE}
        new = {k: v for k, v in config.to_dict().items() if k not in _RESUMABLE}
        diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        if diff:
            raise ConfigError(
                f"train: resume={str(resume)!r} was made with a different config ({diff})"
            )
        model.load_state_dict(ck["model"])
        ema.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["optimizer"])
        rng = ck.get("rng") or {}
        if rng.get("world_size") == world:
            gen.set_state(rng["generators"][rank])
        else:
            log.warning(
                "resume: checkpoint world size %s != %s; reseeding data RNG",
                rng.get("world_size"),
                world,
            )
            gen.manual_seed(config.seed + 7919 * rank + 104729 * int(ck["step"]))
        start, losses = int(ck["step"]), list(ck.get("history", []))[: int(ck["step"])]
    net = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model)
    data = _dataset(config)
    tdist = resolve_tdist(config.tdist, **config.tdist_params)
    if config.method == "dirac":
        family = make_family(config.task, **config.task_params)
        lo, hi = math.log(config.sigma_min), math.log(config.sigma_max)

        def sigma(t):
            return torch.exp(lo + (hi - lo) * t)

    bar = None
    if progress and rank == 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.steps, initial=start, desc=f"{config.method}:{config.task}")
    model.train()
    t0 = time.perf_counter()
    for step in range(start, config.steps):
        if config.method == "indi":
            x, y = data.sample(config.batch_size, gen)
            loss = indi_loss(
                net,
                x,
                y,
                p=config.loss_p,
                tdist=tdist,
                eps=config.eps,
                brownian=config.brownian,
                generator=gen,
            )
        else:
            x0 = data.sample_clean(config.batch_size, gen)
            loss = dirac_ir_loss(
                net,
                x0,
                A=family,
                sigma=sigma,
                lookahead=config.lookahead,
                tdist=tdist,
                generator=gen,
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        opt.step()
        ema.update(model)
        losses.append(float(loss.detach()))
        done = step + 1
        if bar is not None:
            bar.update(1)
            if done % config.log_interval == 0 or done == config.steps:
                recent = losses[-config.log_interval :]
                bar.set_postfix(loss=f"{sum(recent) / len(recent):.4g}")
        if callback is not None:
            callback(done, losses[-1], model)
        if config.checkpoint and (
            done == config.steps
            or (config.checkpoint_every and done % config.checkpoint_every == 0)
        ):
            rng = _gather_rng(gen, world)
            if rank == 0:
                save_checkpoint(
                    config.checkpoint, model, ema, opt, done, config, rng=rng, history=losses
                )
    if bar is not None:
        bar.close()
    elapsed = time.perf_counter() - t0
    n_run = max(config.steps - start, 1)
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
        if owned:
            dist.destroy_process_group()
    hist = TrainHistory(
        loss=losses, ema=ema, step=config.steps, seconds_per_step=elapsed / n_run, world_size=world
    )
    return model, hist


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m flowrestore.training.trainer",
        description="Train an InDI / Dirac clean-image predictor on CPU or GPU.",
    )
    d = TrainConfig()
    p.add_argument("--task", choices=TASKS, default=d.task)
    p.add_argument(
        "--task-param",
        action="append",
        default=[],
        metavar="K=V",
        help="degradation parameter, e.g. blur_sigma=2.0 (repeatable; JSON values)",
    )
    p.add_argument("--method", choices=("indi", "dirac"), default=d.method)
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
    p.add_argument("--grad-clip", type=float, default=d.grad_clip)
    p.add_argument("--out", required=True, help="checkpoint path (written by rank 0)")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    p.add_argument("--resume", default=None, help="checkpoint to continue from")
    p.add_argument("--log-interval", type=int, default=d.log_interval)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-progress", action="store_true")
    return p


def _kv(items, flag):
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"{flag} expects K=V, got {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def config_from_args(argv=None) -> tuple[TrainConfig, argparse.Namespace]:
    """Parse command-line arguments into a :class:`TrainConfig` (and the raw namespace)."""
    a = _parser().parse_args(argv)
    unet = {}
    if a.base_channels is not None:
        unet["base_channels"] = a.base_channels
    if a.channel_mults:
        unet["channel_mults"] = [int(s) for s in a.channel_mults.split(",")]
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
        grad_clip=a.grad_clip if a.grad_clip and a.grad_clip > 0 else None,
        checkpoint=a.out,
        checkpoint_every=a.checkpoint_every,
        log_interval=a.log_interval,
        threads=a.threads,
    )
    return cfg, a


def main(argv=None) -> int:
    """Command-line entry point; see the module docstring."""
    cfg, a = config_from_args(argv)
    _, hist = train(cfg, progress=not a.no_progress, resume=a.resume)
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


if __name__ == "__main__":
    raise SystemExit(main())
