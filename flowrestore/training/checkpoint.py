"""Checkpoints of a training run: weights, EMA, optimiser, step, RNG state and the config used.

A checkpoint is a plain ``torch.save`` dict (loadable with ``weights_only=True``)::

    {"format": "flowrestore-checkpoint/1", "step": int, "config": dict, "unet_config": dict,
     "model": state_dict, "ema": EMA.state_dict(), "optimizer": state_dict,
     "rng": {"generators": [ByteTensor per rank], "world_size": int} | None, "history": [float]}

Recording every rank's generator state is what makes ``N`` steps in one go equal ``N/2`` steps plus
a resumed ``N/2`` bit for bit. Files are written atomically (temporary file, then ``os.replace``).
"""

from __future__ import annotations

import os
from dataclasses import asdict, is_dataclass
from pathlib import Path

import torch
from torch import nn

from flowrestore.errors import ConfigError, describe
from flowrestore.training.ema import EMA

__all__ = ["CHECKPOINT_FORMAT", "save_checkpoint", "load_checkpoint", "load_predictor"]

CHECKPOINT_FORMAT = "flowrestore-checkpoint/1"


def _unwrap(model: nn.Module) -> nn.Module:
    return (
        model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model
    )


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    ema: EMA | None,
    optimizer: torch.optim.Optimizer | None,
    step: int,
    config,
    *,
    rng: dict | None = None,
    history: list[float] | None = None,
) -> Path:
    """Write a checkpoint to ``path`` (``config``: dataclass or plain dict); returns the path."""
    model = _unwrap(model)
    if is_dataclass(config):
        config = config.to_dict() if hasattr(config, "to_dict") else asdict(config)
    if not isinstance(config, dict):
        raise ConfigError(
            f"save_checkpoint: config must be a dataclass or a dict, got {describe(config)}"
        )
    unet_config = getattr(model, "config", None)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "step": int(step),
        "config": dict(config),
        "unet_config": dict(unet_config) if isinstance(unet_config, dict) else None,
        "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "ema": ema.state_dict() if ema is not None else None,
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "rng": rng,
        "history": list(history) if history is not None else [],
    }
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | os.PathLike, *, map_location="cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only`` loading)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"load_checkpoint: no file at path={str(path)!r}")
    try:
        ck = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # not a torch file, or one with arbitrary pickled objects
        raise ConfigError(
            f"load_checkpoint: path={str(path)!r} is not a flowrestore training checkpoint "
            f"(torch.load failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
        ) from None
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
        raise ConfigError(
            f"load_checkpoint: path={str(path)!r} is not a flowrestore training checkpoint "
            f"({CHECKPOINT_FORMAT} file)"
        )
    return ck


def load_predictor(
    path: str | os.PathLike, *, device: str | torch.device = "cpu", ema: bool = True
):
    """The trained U-Net (EMA weights unless ``ema=False``) in eval mode, callable as ``F(x, t)``.

    Parameters do not require grad; gradients with respect to the input still flow (for guidance).
    The training config is attached as ``model.train_config``.
    """
    from flowrestore.training.unet import UNet

    ck = load_checkpoint(path)
    if not ck.get("unet_config"):
        raise ConfigError(f"load_predictor: checkpoint {str(path)!r} records no unet_config")
    model = UNet(**ck["unet_config"])
    if ema and ck.get("ema") is not None:
        model.load_state_dict(ck["ema"]["shadow"])
    else:
        model.load_state_dict(ck["model"])
    model.train_config = ck["config"]
    model.requires_grad_(False)
    return model.to(device).eval()
