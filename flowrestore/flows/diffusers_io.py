"""Loading LOCAL diffusers checkpoints for the model flows, never downloading (docs/math.md §8, §9).

The one loader of :class:`~flowrestore.DiffusionFlow` and :class:`~flowrestore.FlowMatchingFlow`:

* :func:`load_model` finds the network of a pipeline folder (``model_index.json`` with one of the
  flow's subfolders: ``unet/``, ``transformer/``) or a model folder (``config.json``), builds the
  diffusers class its config names with ``local_files_only=True`` (a flow may restrict the
  classes), and finds the scheduler beside it (``scheduler/``, ``scheduler_config.json`` or
  ``../scheduler``); a pipeline object or a model is taken as it is. A network whose
  ``timestep`` parameter is not its second (SD3 transformers) is called with ``timestep=`` by
  keyword; one without such a parameter (``forward(x, t)``) positionally.
* :func:`scheduler_config` reads a scheduler given as an object, a config dict or the path of its
  ``scheduler_config.json`` (or folder); :func:`require_scheduler` says what to pass when none
  was found; :func:`place` moves a module to a dtype/device in eval mode.
* For :class:`~flowrestore.DiffusionFlow` (DDPM/DDIM-type schedulers): :func:`diffusion_schedule`
  reads ``ᾱ`` (``alphas_cumprod``) and the config (``prediction_type``, the clean-estimate
  clipping ``clip_sample``/``thresholding``); :func:`scheduler_grid` turns a scheduler's timesteps
  into a grid, refusing what the flow's steps cannot reproduce. Flow matching's ``shift`` rules
  live with :class:`~flowrestore.FlowMatchingFlow`.

diffusers is imported only here and only when used; without it
:class:`~flowrestore.errors.MissingDependencyError` names the extra. Every missing piece —
folder, config, weights, scheduler — is a :class:`~flowrestore.ConfigError` that names it.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from flowrestore.errors import ArgumentTypeError, ConfigError, MissingDependencyError, describe
from flowrestore.flows.estimates import DynamicThreshold, clip_from_config
from flowrestore.oracles.diffusion import ZERO_SNR_ALPHA_CUMPROD

__all__ = [
    "check_discrete_timesteps",
    "check_model_cond",
    "diffusion_schedule",
    "import_diffusers",
    "learned_variance",
    "load_model",
    "place",
    "require_scheduler",
    "sampler_config",
    "scheduler_config",
    "scheduler_grid",
]


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
    """Whether ``model(x, timestep)`` reaches the timestep positionally: ``forward`` has no
    parameter named ``timestep`` (a user's ``forward(x, t)``, ``forward(x, sigma)``) or has it
    second (``UNet2DModel``). Only a ``timestep`` further on (SD3-style transformers) is passed by
    keyword; a ``forward(x, t)`` was called as ``forward(x, timestep=t)`` and refused."""
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError, AttributeError):
        return True
    if "timestep" not in [p.name for p in params]:
        return True
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return len(params) >= 2 and params[1].name == "timestep" and params[1].kind in positional


def _callable(model):
    if isinstance(model, torch.nn.Module) and not _takes_timestep_second(model):
        return TimestepKeyword(model)
    return model


def _local_folder(obj) -> Path:
    path = Path(obj).expanduser()
    if not path.is_dir():
        raise ConfigError(
            f"path_or_model must be an existing local folder (from_diffusers never downloads "
            f"from a hub; fetch the checkpoint first and pass its folder), got {str(obj)!r}"
        )
    return path


def _model_folder(path: Path, subfolders: tuple[str, ...]) -> tuple[Path, Path | None]:
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


def _read_config(path: Path) -> dict:
    """The JSON object of a diffusers config file, or a :class:`ConfigError` naming the file."""
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(
            f"could not read {str(path)!r} as a diffusers config (JSON): {exc}"
        ) from exc
    if not isinstance(config, dict):
        raise ConfigError(
            f"{str(path)!r} is not a diffusers config: it holds a JSON {type(config).__name__}, "
            "not an object"
        )
    return config


def _from_folder(folder: Path, dtype, classes: tuple[str, ...] | None):
    """The diffusers model of ``folder`` (its config's class), loaded with local files only."""
    name = _read_config(folder / "config.json").get("_class_name")
    if classes is not None and name not in classes:
        raise ConfigError(
            f"from_diffusers loads a {' or '.join(classes)} here; {str(folder)!r} holds a "
            f"{name!r}: load it yourself and pass the model"
        )
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
        return kind.from_pretrained(str(folder.resolve()), **options)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"could not load {name} from {str(folder)!r} locally: {exc}") from exc


def load_model(obj, *, subfolders: tuple[str, ...], dtype=None, classes=None):
    """``(model, scheduler or scheduler source or None)`` from a local folder, a pipeline object
    (its attribute named in ``subfolders`` and ``.scheduler``) or a model (module docstring).
    ``classes``: the diffusers class names a folder may hold (``None``: any)."""
    if isinstance(obj, (str, os.PathLike)):
        folder, sched = _model_folder(_local_folder(obj), subfolders)
        return _callable(_from_folder(folder, dtype, classes)), sched
    for attr in subfolders:
        if hasattr(obj, attr) and hasattr(obj, "scheduler"):
            return _callable(getattr(obj, attr)), obj.scheduler
    if callable(obj):
        return _callable(obj), None
    raise ConfigError(
        f"path_or_model must be a local folder, a pipeline or a model, got {describe(obj)}"
    )


def _class_conditional(inner) -> bool:
    """Whether a diffusers network needs ``class_labels``: a ``UNet2DModel``'s
    ``class_embedding``, or a label embedder inside it (a DiT's ``LabelEmbedding``, in its
    ada-norm blocks: it has no ``class_embedding`` and failed at the first evaluation with a bare
    ``TypeError`` from ``embedding()``)."""
    if getattr(inner, "class_embedding", None) is not None:
        return True
    if not isinstance(inner, torch.nn.Module):
        return False
    return any(type(m).__name__ == "LabelEmbedding" for m in inner.modules())


def check_model_cond(model, cond, flow: str) -> None:
    """Refuse a class-conditional diffusers network (one with a class embedding, e.g. a
    ``UNet2DModel`` with ``num_class_embeds`` or a DiT) without ``cond["class_labels"]``, and, for a
    module, ``cond`` that its ``forward`` cannot take: a required argument left out (a
    ``UNet2DConditionModel``'s ``encoder_hidden_states``) or a keyword it does not have. Both
    failed at the first evaluation, as a bare ``TypeError`` from inside the network."""
    inner = model.inner if isinstance(model, TimestepKeyword) else model
    cond = {} if cond is None else cond
    if _class_conditional(inner) and "class_labels" not in cond:
        raise ConfigError(
            f"the model is class-conditional ({type(inner).__name__} with a class embedding): "
            f"pass cond={{'class_labels': labels}} (one label per sample) to {flow}"
        )
    if not isinstance(inner, torch.nn.Module) or not hasattr(cond, "keys"):
        return
    try:
        params = list(inspect.signature(inner.forward).parameters.values())
    except (TypeError, ValueError):
        return
    kinds = inspect.Parameter
    positional = [
        p for p in params if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)
    ]
    # what the flow passes itself: the state (first) and the timestep (second, or by keyword)
    given = {p.name for p in positional[:1]}
    given |= (
        {"timestep"} if isinstance(model, TimestepKeyword) else {p.name for p in positional[1:2]}
    )
    missing = [
        p.name
        for p in params
        if p.name not in given
        and p.name not in cond
        and p.default is kinds.empty
        and p.kind in (kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY)
    ]
    name = type(inner).__name__
    if missing:
        raise ConfigError(
            f"{name}.forward needs {missing}: pass cond={{{missing[0]!r}: tensor}} (one row per "
            f"sample) to {flow}"
        )
    if any(p.kind is kinds.VAR_KEYWORD for p in params):
        return
    takes = [p.name for p in params if p.name not in given and p.kind is not kinds.VAR_POSITIONAL]
    unknown = sorted(k for k in cond if k not in takes)
    if unknown:
        raise ConfigError(
            f"cond has keywords {unknown} that {name}.forward does not take (it takes {takes})"
        )


def require_scheduler(scheduler, source, kind: str):
    """``scheduler``, or a :class:`ConfigError` saying none was found for ``source`` and what to
    pass (``kind``: the scheduler class the flow needs)."""
    if scheduler is None:
        raise ConfigError(
            f"no scheduler found for {describe(source)}: pass scheduler= (a {kind}, its config "
            "dict, or the path of its scheduler_config.json)"
        )
    return scheduler


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


def scheduler_config(scheduler) -> dict:
    """A scheduler's config as a dict with its ``_class_name`` (object, dict, or the path of its
    ``scheduler_config.json`` or folder)."""
    if isinstance(scheduler, (str, os.PathLike)):
        path = Path(scheduler).expanduser()
        if path.is_dir():
            path = path / "scheduler_config.json"
        if not path.is_file():
            raise ConfigError(
                f"scheduler must be a scheduler, a config dict or an existing local "
                f"scheduler_config.json (or its folder), got {str(scheduler)!r}"
            )
        return _read_config(path)
    if isinstance(scheduler, dict):
        return dict(scheduler)
    if isinstance(scheduler, type):  # its ``config`` is a property object: a bare TypeError
        raise ConfigError(
            f"scheduler must be a scheduler object, a config dict or a path, got the class "
            f"{scheduler.__name__}: pass {scheduler.__name__}(...) or its from_config(...)"
        )
    config = getattr(scheduler, "config", None)
    if config is None or not isinstance(config, Mapping):
        raise ConfigError(f"scheduler must have a config, got {describe(scheduler)}")
    return {**dict(config), "_class_name": type(scheduler).__name__}


def diffusion_schedule(scheduler) -> tuple[Tensor, dict]:
    """``(alphas_cumprod, config)`` of a DDPM/DDIM-type scheduler (object, config dict or path;
    a config is built into the diffusers scheduler class it names, by default ``DDPMScheduler``;
    a name that is no diffusers scheduler is refused)."""
    if isinstance(scheduler, (str, os.PathLike, dict, type)):  # a class: refused by name
        config = scheduler_config(scheduler)
        diffusers = import_diffusers()
        name = config.get("_class_name")
        kind = diffusers.DDPMScheduler if name is None else getattr(diffusers, str(name), None)
        if not (isinstance(kind, type) and issubclass(kind, diffusers.SchedulerMixin)):
            # a typo or another library's class was read as a DDPMScheduler (clip_sample=True)
            raise ConfigError(
                f"the scheduler config's _class_name {name!r} is no scheduler of diffusers "
                f"{diffusers.__version__}: name a DDPM/DDIM-type scheduler (or leave "
                "_class_name out for DDPMScheduler), or pass the scheduler object"
            )
        scheduler = kind.from_config(config)
    abar = getattr(scheduler, "alphas_cumprod", None)
    if abar is None:
        raise ConfigError(
            f"scheduler must have alphas_cumprod (a diffusers DDPM/DDIM-type scheduler; a "
            f"flow-matching one belongs to fr.FlowMatchingFlow), got {describe(scheduler)}"
        )
    check_discrete_timesteps(scheduler)
    return zero_snr_as_zero(scheduler), sampler_config(scheduler)


def check_discrete_timesteps(scheduler) -> None:
    """Refuse a scheduler that calls its model with EDM's continuous ``timestep = ¼ log σ``
    instead of the trained timestep: diffusers' ``EulerDiscreteScheduler`` with
    ``timestep_type="continuous"`` and ``prediction_type="v_prediction"`` (CosXL-type
    checkpoints). :class:`~flowrestore.DiffusionFlow` queries the model at timesteps in
    ``[0, T − 1]``, which such a network reads as noise levels ``σ = e^{4τ}`` up to ``e^{4000}``:
    its estimates were wrong without an error."""
    config = dict(getattr(scheduler, "config", {}) or {})
    if (
        config.get("timestep_type") == "continuous"
        and config.get("prediction_type") == "v_prediction"
    ):
        raise ConfigError(
            f"this {type(scheduler).__name__} has timestep_type='continuous' (its model takes "
            "timestep = 0.25 * log(sigma), not a timestep in [0, T - 1]), which DiffusionFlow "
            "does not call: wrap the network as the EDM denoiser D(x, sigma) = x / (sigma^2 + 1)"
            " - sigma / sqrt(sigma^2 + 1) * net(x / sqrt(sigma^2 + 1), 0.25 * log(sigma)) of "
            "fr.DenoiserFlow (x = x_0 + sigma * noise; sigma_max from the scheduler's sigmas)"
        )


def sampler_config(scheduler) -> dict:
    """A scheduler's config without the clean-estimate clipping switches (``clip_sample``,
    ``thresholding``) that its diffusers class does not take: ``from_config`` keeps every key of
    the config it was built from, so ``EulerDiscreteScheduler.from_config(ddpm.config)`` (the
    usual way to swap a pipeline's sampler) still read ``clip_sample=True``, which its ``step``
    never applies, and the flow clipped where the scheduler did not."""
    config = dict(getattr(scheduler, "config", {}) or {})
    kind = type(scheduler)
    if not kind.__module__.startswith("diffusers."):
        return config
    try:
        params = inspect.signature(kind.__init__).parameters
    except (TypeError, ValueError):
        return config
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return config
    return {k: v for k, v in config.items() if k not in _CLIP_SWITCHES or k in params}


#: the config keys by which a diffusers scheduler clips its clean estimate
_CLIP_SWITCHES = ("clip_sample", "thresholding")


def zero_snr_as_zero(scheduler) -> Tensor:
    """The scheduler's ``alphas_cumprod`` (float64) with diffusers' stand-in for a zero terminal
    SNR put back to ``ᾱ = 0``.

    ``EulerDiscreteScheduler(rescale_betas_zero_snr=True)`` (and its kin) stores its last
    ``ᾱ = 0`` as ``2⁻²⁴``, above the previous entry on DDPM's linear schedule (4.2·10⁻⁹): the
    table no longer decreased and was refused, for a v-model too, and an ε-model was taken on
    the schedule a DDPM/DDIM scheduler's config refuses it on. As 0 it is the zero-SNR schedule
    it is: :func:`~flowrestore.oracles.diffusion.check_alphas_cumprod` takes it for a v or x₀
    model and refuses it for an ε-model, whichever scheduler class holds it."""
    abar = torch.as_tensor(scheduler.alphas_cumprod).detach().to("cpu", torch.float64).clone()
    config = dict(getattr(scheduler, "config", {}) or {})
    if abar.dim() == 1 and abar.numel() >= 2 and bool(abar[-1] == ZERO_SNR_ALPHA_CUMPROD):
        if config.get("rescale_betas_zero_snr") or bool(abar[-2] <= abar[-1]):
            abar[-1] = 0
    return abar


def learned_variance(model, config: dict) -> bool:
    """Whether a diffusers network also predicts its variance: its config has twice as many output
    as input channels (the rule of diffusers' DiT pipeline; improved DDPM / ADM / DeepFloyd IF
    checkpoints pair it with ``variance_type="learned_range"``, on which ``DDPMScheduler.step``
    splits the output the same way)."""
    inner = getattr(model, "inner", model)
    mc = getattr(inner, "config", None)
    cin, cout = getattr(mc, "in_channels", None), getattr(mc, "out_channels", None)
    return isinstance(cin, int) and isinstance(cout, int) and cout == 2 * cin


def scheduler_grid(flow, scheduler, *, check: bool, use_clipped_model_output: bool) -> Tensor:
    """The body of :meth:`DiffusionFlow.grid_from_scheduler <flowrestore.DiffusionFlow.\
grid_from_scheduler>`: ``flow``'s times of ``scheduler.timesteps`` plus its final step."""
    for name, value in (("check", check), ("use_clipped_model_output", use_clipped_model_output)):
        if not isinstance(value, bool):  # "no" was read as True
            raise ArgumentTypeError(f"{name} must be a bool, got {describe(value)}")
    timesteps = getattr(scheduler, "timesteps", None)
    if timesteps is None or getattr(scheduler, "num_inference_steps", 1) is None:
        raise ConfigError(
            f"scheduler has no timesteps; call scheduler.set_timesteps(N) first, got "
            f"{type(scheduler).__name__}"
        )
    theirs = getattr(scheduler, "alphas_cumprod", None)
    if theirs is None:  # a flow-matching scheduler's σ·T timesteps were refused as out of range
        raise ConfigError(
            f"scheduler must be a DDPM/DDIM-type scheduler with alphas_cumprod, got a "
            f"{type(scheduler).__name__} (a flow-matching one belongs to "
            "fr.FlowMatchingFlow.grid_from_scheduler; bare timesteps to flow.grid_from_timesteps)"
        )
    check_discrete_timesteps(scheduler)  # its timesteps ¼ log σ were read as trained ones
    ours = flow.alphas_cumprod
    theirs = zero_snr_as_zero(scheduler)
    if theirs.shape == ours.shape and bool(theirs[-1] == 0):
        theirs[-1] = ours[-1]  # zero terminal SNR: the flow's stand-in for ᾱ = 0
    if theirs.shape != ours.shape or not torch.allclose(theirs, ours, rtol=1e-5, atol=0):
        raise ConfigError(
            f"scheduler's alphas_cumprod (T={theirs.numel()}) differs from the flow's "
            f"(T={flow.num_train_timesteps}): build the flow from this scheduler"
        )
    _check_clip(flow.clip, sampler_config(scheduler), use_clipped_model_output)
    # a pipeline's set_timesteps(N, device="cuda"): the host's copy (the CPU table indexed it)
    ts = torch.as_tensor(timesteps).detach().to("cpu", torch.float64).reshape(-1)
    final = getattr(scheduler, "final_alpha_cumprod", None)
    sigmas = getattr(scheduler, "sigmas", None)
    if final is None and isinstance(sigmas, Tensor) and sigmas.numel() > 0:
        # a σ-based scheduler (Euler, DPM-Solver, ...) ends at its last σ, not at ᾱ = 1: with
        # final_sigmas_type="sigma_min" its last step stays at σ_min (a zero-length step) and it
        # returns the still noisy x̄ there, which the grid onto t = 0 silently did not reproduce
        end = float(sigmas.detach().reshape(-1)[-1].cpu())  # host-side planning, not a step
        if end != 0:
            setting = getattr(getattr(scheduler, "config", None), "final_sigmas_type", None)
            raise ConfigError(
                f"this {type(scheduler).__name__} ends at sigma = {end:.6g} "
                f"(final_sigmas_type={setting!r}), not at sigma = 0 where this grid's final "
                "step lands (the clean image): build the scheduler with "
                "final_sigmas_type='zero', or lay the grid with flow.grid_from_timesteps"
            )
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
