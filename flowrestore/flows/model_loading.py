"""Loading LOCAL diffusers checkpoints for the model flows (flow matching), never downloading.

:func:`load_model` finds the network of a pipeline or model folder (``model_index.json`` with a
``transformer/`` or ``unet/`` subfolder; or a ``config.json``), builds the diffusers class its
config names with ``local_files_only=True``, and finds the scheduler beside it.
:func:`flow_matching_config` reads a ``FlowMatchEulerDiscreteScheduler`` (object, config dict or
``scheduler_config.json``) into the options of :class:`~flowrestore.FlowMatchingFlow`, resolving
``use_dynamic_shifting`` with :func:`dynamic_shift` (diffusers' ``calculate_shift`` and
``time_shift`` rules, read from ``pipelines/flux`` and ``scheduling_flow_match_euler_discrete.py``).
Every missing piece — folder, config, weights, scheduler — is a :class:`~flowrestore.ConfigError`
that names it.
"""

from __future__ import annotations

import inspect
import json
import math
import os
from pathlib import Path

import torch

from flowrestore.errors import ConfigError, describe
from flowrestore.flows.diffusers_io import import_diffusers

__all__ = ["dynamic_shift", "flow_matching_config", "load_model", "place"]

_SCHEDULER = "FlowMatchEulerDiscreteScheduler"


class TimestepKeyword(torch.nn.Module):
    """Calls a network whose second positional argument is not the timestep (SD3/Flux-style
    transformers: ``model(hidden_states, encoder_hidden_states, ..., timestep=...)``) as
    ``model(x, timestep=timestep, **cond)``."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x, timestep, **cond):
        """``inner(x, timestep=timestep, **cond)``."""
        return self.inner(x, timestep=timestep, **cond)


def _takes_timestep_second(model) -> bool:
    try:
        params = list(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError, AttributeError):
        return True
    return len(params) >= 2 and params[1] == "timestep"


def _folder(path: Path, subfolders: tuple[str, ...]) -> tuple[Path, Path | None]:
    """``(model folder, scheduler source or None)`` of a pipeline or model folder."""
    if (path / "model_index.json").is_file():
        for name in subfolders:
            if (path / name / "config.json").is_file():
                sched = path / "scheduler"
                return path / name, sched if sched.exists() else None
        raise ConfigError(
            f"pipeline folder {str(path)!r} has none of the model subfolders {subfolders} with a "
            "config.json"
        )
    if (path / "config.json").is_file():
        candidates = (path / "scheduler_config.json", path.parent / "scheduler")
        return path, next((p for p in candidates if p.exists()), None)
    raise ConfigError(
        f"{str(path)!r} is not a diffusers model folder (config.json) or pipeline folder "
        "(model_index.json)"
    )


def load_model(obj, dtype, subfolders: tuple[str, ...]):
    """``(model, scheduler or scheduler source or None)`` from a local folder, pipeline or model."""
    if isinstance(obj, (str, os.PathLike)):
        path = Path(obj).expanduser()
        if not path.is_dir():
            raise ConfigError(
                f"path_or_model must be an existing local folder (from_diffusers never downloads "
                f"from a hub; fetch the checkpoint first and pass its folder), got {str(obj)!r}"
            )
        folder, sched = _folder(path, subfolders)
        name = json.loads((folder / "config.json").read_text()).get("_class_name")
        diffusers = import_diffusers()
        kind = getattr(diffusers, str(name), None)
        if kind is None or not hasattr(kind, "from_pretrained"):
            raise ConfigError(
                f"{str(folder / 'config.json')!r} names the class {name!r}, which diffusers "
                f"{diffusers.__version__} does not have: load the model yourself and pass it"
            )
        options = {"local_files_only": True, "low_cpu_mem_usage": False}
        if dtype is not None:
            options["torch_dtype"] = dtype
        try:
            model = kind.from_pretrained(str(folder.resolve()), **options)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"could not load {name} from {str(folder)!r} locally: {exc}") from exc
        return _callable(model), sched
    for attr in subfolders:
        if hasattr(obj, attr) and hasattr(obj, "scheduler"):
            return _callable(getattr(obj, attr)), obj.scheduler
    if callable(obj):
        return _callable(obj), None
    raise ConfigError(
        f"path_or_model must be a local folder, a pipeline or a model, got {describe(obj)}"
    )


def place(model, dtype, device):
    """A module moved to ``device``/``dtype`` (only where it is not there yet) in eval mode; any
    other callable as it is."""
    if not isinstance(model, torch.nn.Module):
        return model
    param = next(model.parameters(), None)
    if param is not None and dtype is not None and param.dtype != dtype:
        model = model.to(dtype=dtype)
    if device is not None:
        model = model.to(device=device)
    return model.eval()


def _callable(model):
    if isinstance(model, torch.nn.Module) and not _takes_timestep_second(model):
        return TimestepKeyword(model)
    return model


def _config(scheduler) -> dict:
    """A scheduler's config as a dict (object, dict, or path to its json/folder)."""
    if isinstance(scheduler, (str, os.PathLike)):
        path = Path(scheduler).expanduser()
        if path.is_dir():
            path = path / "scheduler_config.json"
        if not path.is_file():
            raise ConfigError(
                f"scheduler must be a scheduler, a config dict or an existing local "
                f"scheduler_config.json (or its folder), got {str(scheduler)!r}"
            )
        return json.loads(path.read_text())
    if isinstance(scheduler, dict):
        return dict(scheduler)
    config = getattr(scheduler, "config", None)
    if config is None:
        raise ConfigError(f"scheduler must have a config, got {describe(scheduler)}")
    return {**dict(config), "_class_name": type(scheduler).__name__}


def dynamic_shift(config: dict, *, mu=None, image_seq_len=None) -> float:
    """The shift of a ``use_dynamic_shifting`` scheduler: ``μ`` given, or diffusers' linear rule
    ``μ = base_shift + (max_shift − base_shift)(L − base_seq_len)/(max_seq_len − base_seq_len)``
    of the image sequence length ``L``; then ``s = exp(μ)`` ("exponential") or ``s = μ``."""
    if mu is None:
        if image_seq_len is None:
            raise ConfigError(
                "this scheduler has use_dynamic_shifting=True: pass mu= or image_seq_len= "
                "(the number of latent patches, as the pipeline computes it)"
            )
        if isinstance(image_seq_len, bool) or not isinstance(image_seq_len, int):
            raise ConfigError(f"image_seq_len must be an int, got {describe(image_seq_len)}")
        b0, b1 = config.get("base_shift", 0.5), config.get("max_shift", 1.15)
        l0, l1 = config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096)
        mu = b0 + (b1 - b0) * (image_seq_len - l0) / (l1 - l0)
    elif image_seq_len is not None:
        raise ConfigError("pass mu= or image_seq_len=, not both")
    if isinstance(mu, bool) or not isinstance(mu, (int, float)) or not math.isfinite(mu):
        raise ConfigError(f"mu must be a finite number, got {describe(mu)}")
    kind = config.get("time_shift_type", "exponential")
    if kind == "exponential":
        return math.exp(mu)
    if kind == "linear":
        if mu <= 0:
            raise ConfigError(f"mu must be > 0 for time_shift_type='linear', got {describe(mu)}")
        return float(mu)
    raise ConfigError(f"time_shift_type must be 'exponential' or 'linear', got {kind!r}")


def flow_matching_config(scheduler, *, mu=None, image_seq_len=None) -> dict:
    """``{num_train_timesteps, shift}`` for :class:`~flowrestore.FlowMatchingFlow` from a
    ``FlowMatchEulerDiscreteScheduler`` (module docstring)."""
    config = _config(scheduler)
    name = config.get("_class_name")
    if name is not None and name != _SCHEDULER:
        raise ConfigError(
            f"a flow-matching model needs a {_SCHEDULER}, got a {name}; a DDPM/DDIM-type "
            "scheduler belongs to fr.DiffusionFlow.from_diffusers"
        )
    if config.get("invert_sigmas"):
        raise ConfigError(
            "scheduler has invert_sigmas=True (the model takes timestep (1 − σ)·T): not the "
            "rectified-flow convention FlowMatchingFlow implements"
        )
    if config.get("use_dynamic_shifting"):
        shift = dynamic_shift(config, mu=mu, image_seq_len=image_seq_len)
    else:
        if mu is not None or image_seq_len is not None:
            raise ConfigError(
                "mu=/image_seq_len= apply to use_dynamic_shifting schedulers only; this one has "
                f"a fixed shift={config.get('shift', 1.0)}"
            )
        shift = float(config.get("shift", 1.0))
    return {"num_train_timesteps": int(config.get("num_train_timesteps", 1000)), "shift": shift}
