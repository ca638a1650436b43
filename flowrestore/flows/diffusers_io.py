"""Loading diffusers checkpoints for :class:`~flowrestore.DiffusionFlow` (docs/math.md §8).

Reads a LOCAL ``UNet2DModel`` folder, pipeline folder or object and its scheduler: the schedule
``ᾱ`` (``alphas_cumprod``), the ``prediction_type`` and the clean-estimate clipping the scheduler
applies (``clip_sample``/``clip_sample_range`` or ``thresholding``, see
:mod:`flowrestore.flows.diffusion`); and turns a diffusers scheduler's timesteps into a grid
(:func:`scheduler_grid`, refusing what the flow's steps cannot reproduce). diffusers is imported
only here and only when used; without it :class:`~flowrestore.errors.MissingDependencyError`
names the extra. Nothing is downloaded: a path
must exist and is loaded with ``local_files_only=True``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from flowrestore.errors import ConfigError, MissingDependencyError, describe
from flowrestore.flows.estimates import DynamicThreshold, clip_from_config

__all__ = ["Checkpoint", "import_diffusers", "load_checkpoint", "scheduler_grid"]


def import_diffusers():
    """Import diffusers lazily, or raise :class:`MissingDependencyError` naming the extra."""
    try:
        import diffusers
    except ImportError as exc:
        raise MissingDependencyError(
            "loading diffusers checkpoints needs the optional dependency diffusers: "
            "pip install 'flowrestore[diffusers]'"
        ) from exc
    return diffusers


@dataclass(frozen=True)
class Checkpoint:
    """What a diffusers checkpoint says about its flow: the model, ``ᾱ`` and the scheduler's
    config (``prediction_type``, ``clip_sample``, ``thresholding``, ...)."""

    model: object
    alphas_cumprod: Tensor
    config: dict


def load_checkpoint(path_or_model, scheduler=None, *, dtype=None, device=None) -> Checkpoint:
    """The model (in eval mode, moved to ``device``/``dtype``), ``ᾱ`` and the scheduler config
    of a local folder, pipeline or model; ``scheduler`` overrides the one found beside it."""
    model, found = _load_model(path_or_model, dtype)
    scheduler = found if scheduler is None else scheduler
    if scheduler is None:
        raise ConfigError(
            f"no scheduler found for {describe(path_or_model)}: pass scheduler= (a diffusers "
            "scheduler, its config dict, or the path of its scheduler_config.json)"
        )
    abar, config = _schedule_from(scheduler)
    if isinstance(model, torch.nn.Module):
        if dtype is not None or device is not None:
            model = model.to(device=device, dtype=dtype)
        model = model.eval()
    return Checkpoint(model, abar, config)


def _load_model(obj, dtype=None):
    """``(model, scheduler or scheduler source or None)`` from a path, pipeline or model."""
    if isinstance(obj, (str, os.PathLike)):
        path = Path(obj).expanduser()
        if not path.is_dir():
            raise ConfigError(
                f"path_or_model must be an existing local folder (from_diffusers never downloads "
                f"from a hub; fetch the checkpoint first and pass its folder), got {str(obj)!r}"
            )
        if (path / "model_index.json").is_file():
            unet, sched = path / "unet", path / "scheduler"
        elif (path / "config.json").is_file():
            unet = path
            sched = next(
                (
                    p
                    for p in (path / "scheduler_config.json", path.parent / "scheduler")
                    if p.exists()
                ),
                None,
            )
        else:
            raise ConfigError(
                f"{str(obj)!r} is not a diffusers model folder (config.json) or pipeline folder "
                "(model_index.json)"
            )
        name = json.loads((unet / "config.json").read_text()).get("_class_name")
        if name != "UNet2DModel":
            raise ConfigError(
                f"from_diffusers loads a UNet2DModel; {str(unet)!r} holds a {name!r}: load it "
                "yourself and pass DiffusionFlow(model, alphas_cumprod=...)"
            )
        diffusers = import_diffusers()
        options = {"local_files_only": True, "low_cpu_mem_usage": False}
        if dtype is not None:
            options["torch_dtype"] = dtype
        model = diffusers.UNet2DModel.from_pretrained(str(unet.resolve()), **options)
        return model, sched
    if hasattr(obj, "unet") and hasattr(obj, "scheduler"):
        return obj.unet, obj.scheduler
    if callable(obj):
        return obj, None
    raise ConfigError(
        f"path_or_model must be a local folder, a pipeline or a model, got {describe(obj)}"
    )


def _schedule_from(scheduler) -> tuple[Tensor, dict]:
    """``(alphas_cumprod, config)`` from a scheduler object, config dict or path."""
    if isinstance(scheduler, (str, os.PathLike)):
        path = Path(scheduler).expanduser()
        if path.is_dir():
            path = path / "scheduler_config.json"
        if not path.is_file():
            raise ConfigError(
                f"scheduler must be a scheduler, a config dict or an existing local "
                f"scheduler_config.json (or its folder), got {str(scheduler)!r}"
            )
        scheduler = json.loads(path.read_text())
    if isinstance(scheduler, dict):
        diffusers = import_diffusers()
        kind = getattr(diffusers, str(scheduler.get("_class_name")), None)
        kind = kind if hasattr(kind, "from_config") else diffusers.DDPMScheduler
        scheduler = kind.from_config(scheduler)
    abar = getattr(scheduler, "alphas_cumprod", None)
    if abar is None:
        raise ConfigError(
            f"scheduler must have alphas_cumprod (a diffusers DDPM/DDIM-type scheduler), got "
            f"{describe(scheduler)}"
        )
    return torch.as_tensor(abar), dict(getattr(scheduler, "config", {}) or {})


def scheduler_grid(flow, scheduler, *, check: bool, use_clipped_model_output: bool) -> Tensor:
    """The body of :meth:`DiffusionFlow.grid_from_scheduler <flowrestore.DiffusionFlow.\
grid_from_scheduler>`: ``flow``'s times of ``scheduler.timesteps`` plus its final step."""
    timesteps = getattr(scheduler, "timesteps", None)
    if timesteps is None or getattr(scheduler, "num_inference_steps", 1) is None:
        raise ConfigError(
            f"scheduler has no timesteps; call scheduler.set_timesteps(N) first, got "
            f"{type(scheduler).__name__}"
        )
    theirs = getattr(scheduler, "alphas_cumprod", None)
    if theirs is not None and not torch.allclose(
        torch.as_tensor(theirs, dtype=torch.float64), flow.alphas_cumprod, rtol=1e-5, atol=0
    ):
        raise ConfigError(
            f"scheduler's alphas_cumprod (T={len(theirs)}) differs from the flow's "
            f"(T={flow.num_train_timesteps}): build the flow from this scheduler"
        )
    _check_clip(flow.clip, dict(getattr(scheduler, "config", {}) or {}), use_clipped_model_output)
    ts = torch.as_tensor(timesteps, dtype=torch.float64).reshape(-1)
    final = getattr(scheduler, "final_alpha_cumprod", None)
    final = 1.0 if final is None else float(final)
    if check and type(scheduler).__name__ == "DDIMScheduler":
        n = int(scheduler.num_inference_steps)
        prev = ts - flow.num_train_timesteps // n
        nxt = torch.cat([ts[1:], torch.tensor([-1.0], dtype=torch.float64)])
        bad = ((prev >= 0) | (nxt >= 0)) & (prev != nxt)
        if bool(bad.any()):
            k = int(bad.nonzero()[0])
            raise ConfigError(
                f"this DDIMScheduler steps from timestep {int(ts[k])} to {int(prev[k])} but "
                f"its next step starts at {int(nxt[k])} (timestep_spacing="
                f"{scheduler.config.timestep_spacing!r}, {n} steps): no single grid "
                "reproduces it; use 'leading' or 'trailing' with T % N == 0, or check=False"
            )
    return flow.grid_from_timesteps(ts, final_alpha_cumprod=final)


def _check_clip(ours, config: dict, use_clipped_model_output: bool) -> None:
    """Refuse a scheduler whose clean-estimate clipping the flow's steps do not reproduce."""
    theirs = clip_from_config(config)
    if isinstance(theirs, DynamicThreshold):
        setting = (
            f"thresholding=True (dynamic_thresholding_ratio={theirs.ratio!r}, "
            f"sample_max_value={theirs.max_value!r})"
        )
    elif theirs is not None:
        setting = f"clip_sample=True, clip_sample_range={theirs.range!r}"
    else:
        setting = "clip_sample=False, thresholding=False"
    if theirs != ours:
        want = "clip=None" if theirs is None else f"clip=fr.{theirs!r}"
        raise ConfigError(
            f"the scheduler has {setting} but the flow has clip={ours!r}: its steps would "
            f"differ; build the flow with {want} (from_diffusers carries the scheduler's setting)"
        )
    if theirs is not None and not use_clipped_model_output:
        raise ConfigError(
            f"the scheduler has {setting}: its default step moves by the clipped x₀ but the "
            "model's unclipped ε, an update that depends on the step size beyond h·f(x, t), so "
            "no grid reproduces it. Pass use_clipped_model_output=True to match "
            "scheduler.step(..., use_clipped_model_output=True) (ε re-derived from the clipped "
            "x₀: Euler on this flow), or turn clipping off on both"
        )
