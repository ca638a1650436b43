"""Training loop for InDI and Dirac clean-image predictors (docs/math.md §1 and §3, "Training").

``train(TrainConfig(...))`` draws patches from the bundled photos (:mod:`.data`), asks the method's
:class:`~flowrestore.training.objectives.Objective` for the loss of each step — InDI's
:func:`~flowrestore.training.losses.indi_loss` (``method="indi"``) or Dirac's
:func:`~flowrestore.training.losses.dirac_ir_loss` (``method="dirac"``, geometric ``σ_t =
σ_min^{1-t} σ_max^t``, the task's family ``A_t`` from :mod:`flowrestore.tasks`) — minimises it
with Adam, keeps an EMA of the weights and writes checkpoints that resume exactly (RNG state
included). The loop itself knows no method.

Data parallel: launched under ``torchrun`` (``WORLD_SIZE > 1``) the model is wrapped in
``DistributedDataParallel`` (gloo: the model trains on the CPU); ``batch_size`` is per rank, each
rank's generator is seeded with ``seed + 7919·rank`` so ranks draw different data, and only rank 0
writes files. The command line is :mod:`flowrestore.training.cli`::

    python -m flowrestore.training --task deblur --steps 2000 --out deblur.pt
    torchrun --standalone --nproc_per_node=2 -m flowrestore.training --task sr4 --out sr4.pt

(``python -m flowrestore.training.trainer`` is the same command.)
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import numbers
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from flowrestore.errors import ConfigError, FlowRestoreError, NonFiniteError, describe
from flowrestore.tasks import get_task, task_names
from flowrestore.training.checkpoint import is_checkpoint_file, load_checkpoint, save_checkpoint
from flowrestore.training.data import PatchDataset, lfw_faces, training_images
from flowrestore.training.ema import EMA
from flowrestore.training.objectives import OBJECTIVES, Objective
from flowrestore.training.tdist import resolve_tdist
from flowrestore.training.unet import UNet
from flowrestore.training.unet import _check_config as _check_unet_config

# the arguments of the U-Net's own check, in its order
_UNET_CHECKED = (
    "in_channels", "out_channels", "base_channels", "channel_mults", "num_res_blocks", "residual",
    "velocity", "time_scale",
)  # fmt: skip

__all__ = ["TrainConfig", "TrainHistory", "train", "build_model", "objective_for"]

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

    Construction refuses (:class:`~flowrestore.errors.ConfigError` naming the option) wrong values
    and options the method would ignore: ``eps``, ``brownian``, ``loss_p`` with
    ``method="dirac"`` (its loss is squared and noise-free), ``lookahead`` with ``method="indi"``
    (each set away from its default), the task's noise parameter in ``task_params`` with
    ``method="dirac"`` (its noise is ``σ_t``, from ``sigma_min`` to ``sigma_max``),
    ``brownian=True`` with ``eps=0``, a ``patch_size`` that is not a multiple of the task's scale
    or too small for its degradation. ``grad_clip``: ``None`` or
    ``0`` mean no clipping (as ``--grad-clip 0``), a negative or non-finite value is refused.
    Training stops with :class:`~flowrestore.errors.NonFiniteError` at the first non-finite loss,
    before the optimiser applies it; no checkpoint with non-finite weights is written.
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

        def real(name):
            v = getattr(self, name)
            return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)

        def integer(name):
            v = getattr(self, name)
            return isinstance(v, int) and not isinstance(v, bool)

        if self.task not in task_names():
            bad("task", f"one of {task_names()}")
        if self.method not in OBJECTIVES:
            bad("method", f"one of {tuple(OBJECTIVES)}")
        for name in ("steps", "batch_size", "patch_size", "log_interval"):
            if not integer(name) or getattr(self, name) < 1:
                bad(name, "a positive int")
        if not integer("checkpoint_every") or self.checkpoint_every < 0:
            bad("checkpoint_every", "an int >= 0 (0: only at the end)")
        if not integer("seed") or self.seed < 0:
            bad("seed", "an int >= 0")
        if self.threads is not None and (not integer("threads") or self.threads < 1):
            bad("threads", "None or a positive int")
        if not (real("lr") and self.lr > 0):
            bad("lr", "a finite number > 0")
        if not (real("ema_decay") and 0 <= self.ema_decay < 1):
            bad("ema_decay", "a number in [0, 1)")
        if not integer("loss_p") or self.loss_p not in (1, 2):
            bad("loss_p", "1 or 2")
        if not (real("eps") and self.eps >= 0):
            bad("eps", "a finite number >= 0")
        for name in ("brownian", "augment"):
            if not isinstance(getattr(self, name), bool):
                bad(name, "True or False")
        for name in ("sigma_min", "sigma_max"):
            if not (real(name) and getattr(self, name) > 0):
                bad(name, "a finite number > 0")
        if not self.sigma_min <= self.sigma_max:
            bad("sigma_min", f"in (0, sigma_max={self.sigma_max}]")
        if not (real("lookahead") and 0 <= self.lookahead <= 1):
            bad("lookahead", "a number in [0, 1]")
        # grad_clip: None or 0 mean no clipping (as --grad-clip 0 on the command line); a negative
        # max norm would flip the gradients' signs, so it is refused.
        if self.grad_clip is not None and not (real("grad_clip") and self.grad_clip >= 0):
            bad("grad_clip", "None (no clipping), 0 (no clipping) or a finite number > 0")
        if self.channels not in (1, 3) or not integer("channels"):
            bad("channels", "1 or 3")
        if self.dataset not in ("photos", "lfw"):
            bad("dataset", "'photos' or 'lfw'")
        if self.dataset == "lfw" and self.patch_size > 25:  # found only when training started
            bad("patch_size", "at most 25 with dataset='lfw' (the faces are 25x25)")
        if self.checkpoint is not None and (
            not isinstance(self.checkpoint, (str, os.PathLike)) or not str(self.checkpoint)
        ):  # "" would silently write nothing
            bad("checkpoint", "None or a non-empty path")
        if self.checkpoint is not None:  # a Path is stored as str: the config must be JSON
            self.checkpoint = os.fspath(self.checkpoint)
        for name in ("task_params", "tdist_params"):
            if not isinstance(getattr(self, name), dict):
                bad(name, "a dict of parameter values")
        if isinstance(self.tdist, str) or isinstance(self.tdist, dict):
            resolve_tdist(self.tdist, **self.tdist_params)  # validates
        else:
            bad("tdist", "a name or a spec dict (callables cannot be saved in a checkpoint)")
        params = get_task(self.task).resolve(self.task_params)  # validates task_params
        self._check_combinations()
        self._check_unet()
        self._check_patch_size(params)

    def _check_combinations(self) -> None:
        """Options the chosen method would silently ignore (set away from their defaults)."""
        ignored = {
            "dirac": ("eps", "brownian", "loss_p"),  # dirac_ir_loss has no noise, p = 2 fixed
            "indi": ("lookahead",),
        }[self.method]
        defaults = {f.name: f.default for f in fields(self)}
        for name in ignored:
            if getattr(self, name) != defaults[name]:
                raise ConfigError(
                    f"TrainConfig: {name}={describe(getattr(self, name))} has no effect with "
                    f"method={self.method!r}; leave it at its default {defaults[name]!r}"
                )
        if self.brownian and self.eps == 0:
            raise ConfigError(
                "TrainConfig: brownian=True needs eps > 0 (the Brownian noise's scale), got eps=0"
            )
        noise = get_task(self.task).noise_param
        if self.method == "dirac" and self.task_params.get(noise, 0) != 0:
            # Dirac's degradation carries its own noise, sigma_t from sigma_min to sigma_max (a
            # task noise of 0, as the shipped dirac-deblur's recorded command gives, says so)
            raise ConfigError(
                f"TrainConfig: task_params[{noise!r}]={describe(self.task_params[noise])} has no "
                f"effect with method='dirac' (its noise is sigma_t, from sigma_min to sigma_max); "
                "set sigma_max instead"
            )

    def _check_unet(self) -> None:
        if not isinstance(self.unet, dict):
            raise ConfigError(
                f"TrainConfig: unet must be a dict of UNet keyword arguments, got "
                f"{describe(self.unet)}"
            )
        sig = inspect.signature(UNet.__init__).parameters
        unknown = sorted(set(self.unet) - (set(sig) - {"self"}))
        if unknown:
            raise ConfigError(
                f"TrainConfig: unet has unknown keys {unknown}; UNet takes "
                f"{sorted(set(sig) - {'self'})}"
            )
        for key in ("in_channels", "out_channels"):
            if key in self.unet and self.unet[key] != self.channels:
                raise ConfigError(
                    f"TrainConfig: unet[{key!r}]={describe(self.unet[key])} must equal "
                    f"channels={self.channels} (the images' channel count)"
                )
        args = {k: v.default for k, v in sig.items() if k != "self"}
        args.update({"in_channels": self.channels, **self.unet})
        if args["out_channels"] is None:
            args["out_channels"] = args["in_channels"]
        try:
            _check_unet_config(*(args[k] for k in _UNET_CHECKED), args["emb_dim"])
        except TypeError as exc:  # e.g. channel_mults not iterable
            raise ConfigError(
                f"TrainConfig: unet={describe(self.unet)} is invalid: {exc}"
            ) from None

    def _check_patch_size(self, params: dict) -> None:
        task = get_task(self.task)
        scale = int(task.scale(params))
        if self.patch_size % scale:
            raise ConfigError(
                f"TrainConfig: patch_size must be a multiple of task {self.task!r}'s scale "
                f"{scale}, got {self.patch_size}"
            )
        # the degradation (or Dirac's A_1) must accept a patch: try it on one blank patch
        x = torch.zeros(1, self.channels, self.patch_size, self.patch_size)
        try:
            if self.method == "dirac":
                task.family(params)(x, torch.ones(1))
            else:
                task.degradation(params)(x, torch.Generator().manual_seed(0))
        except FlowRestoreError as exc:
            raise ConfigError(
                f"TrainConfig: patch_size={self.patch_size} is too small for task "
                f"{self.task!r} ({exc})"
            ) from None

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
            # the model and its gradients stay on the CPU: gloo, even where CUDA is available
            # (nccl reduces only CUDA tensors, so DDP would fail on a GPU machine)
            dist.init_process_group("gloo")
            owned = True
        return dist.get_world_size(), dist.get_rank(), owned
    return 1, 0, False


def objective_for(config: TrainConfig) -> Objective:
    """The method's training objective for this config (:data:`~.objectives.OBJECTIVES`)."""
    tdist = resolve_tdist(config.tdist, **config.tdist_params)
    return OBJECTIVES[config.method](config, get_task(config.task), tdist)


def _dataset(config: TrainConfig, objective: Objective) -> PatchDataset:
    imgs = (
        training_images(channels=config.channels)
        if config.dataset == "photos"
        else lfw_faces("train", channels=config.channels)
    )
    return PatchDataset(
        imgs,
        patch_size=config.patch_size,
        degradation=objective.degradation(),
        augment=config.augment,
    )


def _gather_rng(gen: torch.Generator, world: int) -> dict:
    state = gen.get_state()
    if world == 1:
        return {"generators": [state], "world_size": 1}
    import torch.distributed as dist

    states = [None] * world
    dist.all_gather_object(states, state)
    return {"generators": states, "world_size": world}


@dataclass
class _Run:
    """Everything one training run holds between steps."""

    config: TrainConfig
    model: UNet
    ema: EMA
    opt: torch.optim.Optimizer
    gen: torch.Generator
    world: int
    rank: int
    owned: bool
    start: int = 0
    losses: list[float] = field(default_factory=list)
    net: torch.nn.Module | None = None


def _setup(config: TrainConfig) -> _Run:
    """Model (same initial weights on every rank), EMA, optimiser and this rank's generator."""
    world, rank, owned = _dist_info()
    # the CPU generator only: the model is built on the CPU, and torch.manual_seed would also
    # reseed every CUDA device, a state fork_rng(devices=[]) does not give back to the caller
    torch.random.default_generator.manual_seed(config.seed)
    model = build_model(config)
    return _Run(
        config=config,
        model=model,
        ema=EMA(model, decay=config.ema_decay),
        opt=torch.optim.Adam(model.parameters(), lr=config.lr),
        gen=torch.Generator().manual_seed(config.seed + 7919 * rank),
        world=world,
        rank=rank,
        owned=owned,
    )


def _check_writable(path) -> None:
    """Refuse, before training, a checkpoint path whose folder cannot be created or written."""
    from flowrestore.paths import check_output_dir

    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"train: checkpoint={str(path)!r} is a folder, not a file path")
    if path.exists() and not is_checkpoint_file(path):
        raise ConfigError(
            f"train: checkpoint={str(path)!r} exists and is not a flowrestore checkpoint; "
            "refusing to overwrite it"
        )
    try:
        check_output_dir(path.parent)
    except ConfigError as exc:
        raise ConfigError(f"train: checkpoint={str(path)!r} cannot be written: {exc}") from None


def _resume(run: _Run, path, ck: dict) -> None:
    """Load weights, EMA, optimiser, RNG and history from a checkpoint of the same config."""
    missing = [
        k for k in ("config", "model", "ema", "optimizer") if not isinstance(ck.get(k), dict)
    ]
    if missing:
        raise ConfigError(
            f"train: resume={str(path)!r} cannot be resumed: it records no {missing} "
            "(written by save_checkpoint without them?)"
        )
    old = {k: v for k, v in ck["config"].items() if k not in _RESUMABLE}
    new = {k: v for k, v in run.config.to_dict().items() if k not in _RESUMABLE}
    diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if diff:
        raise ConfigError(f"train: resume={str(path)!r} was made with a different config ({diff})")
    try:
        run.model.load_state_dict(ck["model"])
        run.ema.load_state_dict(ck["ema"])
        run.opt.load_state_dict(ck["optimizer"])
    except (TypeError, ValueError, KeyError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"train: resume={str(path)!r} holds weights that do not fit its config ({first})"
        ) from None
    rng = ck.get("rng") or {}
    if rng.get("world_size") == run.world:
        run.gen.set_state(rng["generators"][run.rank])
    else:
        log.warning(
            "resume: checkpoint world size %s != %s; reseeding data RNG",
            rng.get("world_size"),
            run.world,
        )
        run.gen.manual_seed(run.config.seed + 7919 * run.rank + 104729 * int(ck["step"]))
    if run.config.steps <= int(ck["step"]):
        raise ConfigError(
            f"train: steps={run.config.steps} must exceed the step {int(ck['step'])} of "
            f"resume={str(path)!r} (steps is the total to reach, not the number to add)"
        )
    run.start = int(ck["step"])
    run.losses = list(ck.get("history", []))[: run.start]


def _step(run: _Run, objective: Objective, data: PatchDataset) -> float:
    """One optimiser step on the objective's loss; updates the EMA; returns the loss."""
    loss = objective.loss(run.net, data, run.config.batch_size, run.gen)
    value = float(loss.detach())  # the one host read of a step (the history needs it anyway)
    where = "" if run.world == 1 else f" on rank {run.rank}"
    if run.world > 1:  # all ranks stop together: one stopping alone leaves the others waiting
        import torch.distributed as dist  # in DDP's gradient all-reduce

        flag = torch.tensor([0.0 if math.isfinite(value) else 1.0])
        dist.all_reduce(flag)
        if flag.item() > 0 and math.isfinite(value):
            value, where = math.nan, " on another rank"
    if not math.isfinite(value):
        raise NonFiniteError(
            f"train: the loss of step {len(run.losses) + 1} is {value}{where} (lr="
            f"{run.config.lr}, grad_clip={run.config.grad_clip}); stopped before the optimiser "
            "applied it"
        )
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    if run.config.grad_clip:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.config.grad_clip)
    run.opt.step()
    run.ema.update(run.model)
    run.losses.append(value)
    return value


def _progress_bar(run: _Run, progress: bool):
    if not progress or run.rank != 0:
        return None
    from tqdm.auto import tqdm

    c = run.config
    return tqdm(total=c.steps, initial=run.start, desc=f"{c.method}:{c.task}")


def _show(bar, run: _Run, done: int) -> None:
    if bar is None:
        return
    bar.update(1)
    n = run.config.log_interval
    if done % n == 0 or done == run.config.steps:
        recent = run.losses[-n:]
        bar.set_postfix(loss=f"{sum(recent) / len(recent):.4g}")


def _maybe_checkpoint(run: _Run, done: int) -> None:
    c = run.config
    due = done == c.steps or (c.checkpoint_every and done % c.checkpoint_every == 0)
    if not c.checkpoint or not due:
        return
    bad = [n for n, p in run.model.named_parameters() if not torch.isfinite(p).all()]
    if bad:  # checked only when a checkpoint is due: never write non-finite weights
        raise NonFiniteError(
            f"train: after step {done} the weights {bad[:3]} are not finite; checkpoint "
            f"{str(c.checkpoint)!r} not written"
        )
    rng = _gather_rng(run.gen, run.world)  # every rank takes part in the gather
    if run.rank == 0:
        save_checkpoint(
            c.checkpoint, run.model, run.ema, run.opt, done, c, rng=rng, history=run.losses
        )


def _finish(run: _Run, elapsed: float) -> TrainHistory:
    if run.world > 1:
        import torch.distributed as dist

        dist.barrier()
        if run.owned:
            dist.destroy_process_group()
    n_run = max(run.config.steps - run.start, 1)
    return TrainHistory(
        loss=run.losses,
        ema=run.ema,
        step=run.config.steps,
        seconds_per_step=elapsed / n_run,
        world_size=run.world,
    )


def train(config: TrainConfig, *, progress: bool = True, resume=None, callback=None):
    """Train a predictor; returns ``(model, history)`` (trained weights; EMA in ``history.ema``).

    ``resume``: a checkpoint path; training continues from its step up to ``config.steps`` and is
    bit-identical to an uninterrupted run. ``callback(step, loss, model)`` runs after each step.
    """
    if not isinstance(config, TrainConfig):
        raise ConfigError(f"train: config must be a TrainConfig, got {describe(config)}")
    ck = load_checkpoint(resume) if resume is not None else None  # refused before any work
    if config.checkpoint and int(os.environ.get("RANK", "0")) == 0:
        _check_writable(config.checkpoint)
    threads = torch.get_num_threads()
    # the caller's global random state and thread count are theirs: training seeds and sets
    # its own, and both are given back when it returns or raises
    with torch.random.fork_rng(devices=[]):
        try:
            if config.threads:
                torch.set_num_threads(config.threads)
            return _train(config, progress, resume, callback, ck)
        finally:
            torch.set_num_threads(threads)


def _train(config: TrainConfig, progress: bool, resume, callback, ck):
    run = _setup(config)
    bar = None
    try:
        if resume is not None:
            _resume(run, resume, ck)
        run.net = run.model
        if run.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            run.net = DistributedDataParallel(run.model)
        objective = objective_for(config)
        data = _dataset(config, objective)
        bar = _progress_bar(run, progress)
        run.model.train()
        t0 = time.perf_counter()
        for step in range(run.start, config.steps):
            loss = _step(run, objective, data)
            _show(bar, run, step + 1)
            if callback is not None:
                callback(step + 1, loss, run.model)
            _maybe_checkpoint(run, step + 1)
        return run.model, _finish(run, time.perf_counter() - t0)
    except BaseException:
        # a refused resume, a non-finite loss or an interrupt: the process group this call
        # opened is closed on the way out too (it was left open, and torch warned at exit)
        if run.owned:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
        raise
    finally:
        if bar is not None:
            bar.close()


if (
    __name__ == "__main__"
):  # python -m flowrestore.training.trainer: an alias of -m flowrestore.training
    import runpy

    runpy.run_module("flowrestore.training", run_name="__main__", alter_sys=True)
