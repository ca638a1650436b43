"""Checkpoints of a training run: weights, EMA, optimiser, step, RNG state and the config used.

A checkpoint is a plain ``torch.save`` dict (loadable with ``weights_only=True``)::

    {"format": "flowrestore-checkpoint/1", "step": int, "config": dict, "unet_config": dict,
     "model": state_dict, "ema": EMA.state_dict(), "optimizer": state_dict,
     "rng": {"generators": [ByteTensor per rank], "world_size": int} | None, "history": [float]}

Recording every rank's generator state is what makes ``N`` steps in one go equal ``N/2`` steps plus
a resumed ``N/2`` bit for bit. Files are written atomically (temporary file, flushed to disk, then
``os.replace``; the temporary file is removed if writing fails), and an existing file at the path is
replaced only if it is itself a flowrestore checkpoint (a user's other file is never overwritten).
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from dataclasses import asdict, is_dataclass
from pathlib import Path

import torch
from torch import nn

from flowrestore.errors import ConfigError, describe
from flowrestore.paths import write_atomic
from flowrestore.training.ema import EMA

__all__ = [
    "CHECKPOINT_FORMAT",
    "is_checkpoint_file",
    "save_checkpoint",
    "load_checkpoint",
    "load_predictor",
]

CHECKPOINT_FORMAT = "flowrestore-checkpoint/1"


def _unwrap(model: nn.Module) -> nn.Module:
    return (
        model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model
    )


def is_checkpoint_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a file written by :func:`save_checkpoint` (any format version).

    Cheap: reads only the pickled header of the torch zip archive, not the tensors.
    """
    try:
        with zipfile.ZipFile(path) as z:
            pkl = next((n for n in z.namelist() if n.endswith("/data.pkl")), None)
            return pkl is not None and CHECKPOINT_FORMAT.split("/")[0].encode() in z.read(pkl)
    except (OSError, zipfile.BadZipFile):
        return False


def _plain(v):
    """A path as its string, a numpy or torch scalar as its number (JSON encoder fallback)."""
    if isinstance(v, os.PathLike):
        return os.fspath(v)
    if getattr(v, "ndim", None) == 0 and hasattr(v, "item"):
        return v.item()
    raise TypeError(f"{describe(v)} is not a plain JSON value")


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
    """Write a checkpoint to ``path`` (``config``: dataclass or plain dict); returns the path.

    An existing file at ``path`` that is not a flowrestore checkpoint is refused
    (:class:`~flowrestore.errors.ConfigError`), never overwritten.
    """
    model = _unwrap(model)
    if is_dataclass(config):
        config = config.to_dict() if hasattr(config, "to_dict") else asdict(config)
    if not isinstance(config, dict):
        raise ConfigError(
            f"save_checkpoint: config must be a dataclass or a dict, got {describe(config)}"
        )
    try:  # plain JSON values only: a pickled Path or numpy number would make the file
        config = json.loads(json.dumps(config, default=_plain))  # unreadable (weights_only)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"save_checkpoint: config must hold plain JSON values: {exc}") from None
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
        "history": [float(v) for v in history] if history is not None else [],
    }
    path = Path(path)
    if path.exists() and not is_checkpoint_file(path):
        raise ConfigError(
            f"save_checkpoint: path={str(path)!r} exists and is not a flowrestore checkpoint; "
            "refusing to overwrite it"
        )
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda f: torch.save(payload, f))
    return path


def _reason(exc: Exception) -> str:
    """One plain line saying why ``torch.load`` failed (its weights-only message spans lines,
    has terminal colour codes and names the pickled class only on a later line)."""
    lines = [ln.strip() for ln in re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).splitlines()]
    lines = [ln for ln in lines if ln] or [type(exc).__name__]
    unsafe = next((ln for ln in lines if "Unsupported global" in ln), None)
    return unsafe.split(" was not an allowed global")[0] if unsafe else lines[0]


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
            f"(torch.load failed: {_reason(exc)})"
        ) from None
    fmt = ck.get("format") if isinstance(ck, dict) else None
    if (
        isinstance(fmt, str)
        and fmt.startswith("flowrestore-checkpoint/")
        and fmt != CHECKPOINT_FORMAT
    ):
        raise ConfigError(
            f"load_checkpoint: path={str(path)!r} is a {fmt} file; this version of flowrestore "
            f"reads {CHECKPOINT_FORMAT}"
        )
    if fmt != CHECKPOINT_FORMAT:
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
    The training config is attached as ``model.train_config``. A checkpoint saved without EMA
    weights is refused with ``ema=True`` (:class:`~flowrestore.errors.ConfigError`; pass
    ``ema=False`` for its raw weights), never silently loaded with the raw ones.
    """
    from flowrestore.training.unet import UNet

    if not isinstance(ema, bool):
        raise ConfigError(f"load_predictor: ema must be True or False, got {describe(ema)}")
    ck = load_checkpoint(path)
    if not ck.get("unet_config"):
        raise ConfigError(f"load_predictor: checkpoint {str(path)!r} records no unet_config")
    if ema and not isinstance(ck.get("ema"), dict):
        raise ConfigError(
            f"load_predictor: ema=True but checkpoint {str(path)!r} holds no EMA weights; "
            "pass ema=False to load its raw training weights"
        )
    try:
        model = UNet(**ck["unet_config"])
        if ema:
            model.load_state_dict(ck["ema"]["shadow"])
        else:
            model.load_state_dict(ck["model"])
    except (TypeError, ValueError, KeyError, RuntimeError) as exc:  # weights of another shape
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"load_predictor: checkpoint {str(path)!r}: its weights do not fit its unet_config "
            f"{ck['unet_config']} ({first})"
        ) from None
    model.train_config = ck["config"]
    model.requires_grad_(False)
    try:  # "cuda" without CUDA: torch's AssertionError / RuntimeError at the first .to
        return model.to(device).eval()
    except (AssertionError, RuntimeError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"load_predictor: device={describe(device)} cannot be used ({first})"
        ) from None
