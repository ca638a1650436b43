"""Small predictors trained with the project's own trainer, shipped inside the package.

::

    import flowrestore as fr
    from flowrestore.pretrained import pretrained, list_pretrained, flow_for, degrade_for

    list_pretrained()                       # ['dirac-deblur', 'indi-deblur', 'indi-sr4']
    F = pretrained("indi-deblur")           # UNet in eval mode, EMA weights, float32, on CPU
    F.metadata["heldout"]                   # measured held-out PSNR/SSIM, training command, ...
    y = degrade_for(F, x, generator=g)      # the degradation it was trained for
    sol = fr.solve(flow_for(F), fr.Heun(), y, steps=10)

Each entry of ``registry.json`` names its weights file (a plain float32 ``state_dict`` of the EMA
weights, loaded with ``weights_only=True``) and its SHA-256 (checked at every load), the method (a
record of :mod:`flowrestore.methods`) and its settings, the task and its parameters (a record of
:mod:`flowrestore.tasks`), the U-Net configuration, the exact training command (``python -m
flowrestore.pretrained.train_all`` re-runs all of them), and the PSNR/SSIM measured on center crops
of the held-out photos ``("astronaut", "camera", "coffee")``, which are never used for training. An
InDI entry also records its few-NFE grids (``"grids"``: fitted for ``SemiLinearMultistep()`` at
3–10 steps on crops of the held-out photos and checked against the default grid on other crops;
``python -m flowrestore.pretrained.fit_grids`` re-fits them), which :func:`flow_for` declares
(:class:`~flowrestore.FittedGrids`): ``steps=N`` with that solver runs on them. It also declares
the grid spacing of each of its other solvers (``"spacings": {"per_solver": ...}``: ``Euler``,
``Midpoint``, ``Heun``, ``RK4``, ``IPNDM``, ``DataIPNDM``, ``Bosh3``, ``Dopri5``, each on a
``StartRefined(rho, closing_pair=False)`` — wrapped in ``Unrefined`` for Heun, RK4, Midpoint and
the embedded pairs: laid exactly, without the loop's end refinements, which cost them up to 6 dB —
chosen per solver on the validation photos by ``python -m benchmarks.indi_spacing --split val
--write``, for Bosh3 and Dopri5 at 3–10 steps by ``python -m benchmarks.indi_spacing_pairs``),
which :func:`flow_for` passes as ``InDIFlow(spacings=...)``. Importing this module does not import
torch (the command line lists the models without it).

Models:

* ``indi-deblur`` — InDI, Gaussian blur std 2 px + noise σ = 0.01 (``y`` at t = 1).
* ``indi-sr4`` — InDI, 4× super-resolution: 4×4 average pooling then bicubic upsampling back to
  full size (``y`` has the size of ``x``; :func:`degrade_for` does both).
* ``dirac-deblur`` — Dirac (clean-image predictor Φ), blur family ``A_t = G_{2t}`` (std grows
  linearly to 2 px at t = 1) and noise ``σ_t = 0.01^{1-t} 0.05^t``: the observation is
  ``A_1(x) + 0.05 z``. Run it with :class:`~flowrestore.flows.dirac.DiracSDE` and
  :class:`~flowrestore.DiracStep` (:func:`flow_for` builds the flow, :func:`default_solver` the
  step).
"""

from __future__ import annotations

import importlib
import json
import re
from functools import lru_cache
from importlib import resources

from flowrestore.errors import ConfigError, describe
from flowrestore.methods import ModelSpec
from flowrestore.paths import write_atomic

__all__ = [
    "pretrained",
    "list_pretrained",
    "pretrained_info",
    "model_spec",
    "flow_for",
    "degrade_for",
    "default_solver",
    "heldout_crops",
    "REGISTRY_FILE",
    "TASK_MODELS",
]

REGISTRY_FILE = "registry.json"
#: the submodules reached as attributes of :data:`pretrained` (they import torch when reached)
_SUBMODULES = ("fit_grids", "scores", "train_all")

#: The command line's task names (``restore --task``, ``demo --task``) and the shipped model each
#: one runs.
TASK_MODELS = {"deblur": "indi-deblur", "sr4": "indi-sr4", "dirac-deblur": "dirac-deblur"}


@lru_cache(maxsize=1)
def _registry() -> dict:
    ref = resources.files(__name__).joinpath(REGISTRY_FILE)
    if not ref.is_file():
        return {}
    data = json.loads(ref.read_text())
    return data.get("models", {})


def _write_registry_file(path, data: dict) -> None:
    """Write a registry (``{"format": ..., "models": {...}}``) to ``path`` atomically, and
    forget the one read before: this process's next :func:`pretrained` reads the new entries
    (the SHA-256 of weights just exported, grids just fitted), not the stale ones."""
    text = json.dumps(data, indent=1) + "\n"
    write_atomic(path, lambda f: f.write(text.encode()))
    _registry.cache_clear()


def list_pretrained() -> list[str]:
    """Names of the shipped predictors (sorted)."""
    return sorted(_registry())


def pretrained_info(name: str) -> dict:
    """The registry entry of a shipped predictor (a copy): task, parameters, command, scores."""
    reg = _registry()
    if not isinstance(name, str) or name not in reg:
        raise ConfigError(
            f"pretrained: no shipped predictor named {describe(name)}; "
            f"available: {list_pretrained()}"
        )
    return json.loads(json.dumps({"name": name, **reg[name]}))


def _first_line(exc: BaseException) -> str:
    """One plain line of an exception's message (torch's load errors span lines and colours)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


def _read_weights(path, name: str, unet_config: dict, sha256: str | None = None):
    """The U-Net of ``unet_config`` with the weights file ``path`` of the shipped ``name``.

    The file's SHA-256 must be the registry's ``sha256`` (when recorded: a flipped byte in a
    weight otherwise loads silently); it is read with ``weights_only=True`` (no code in it runs).
    A missing, truncated or corrupted file, one that is not a plain state dict, or weights of
    another shape is a one-line :class:`ConfigError` naming the model and the file.
    """
    import hashlib
    import io

    import torch

    from flowrestore.training.unet import UNet

    def refuse(why: str):
        return ConfigError(
            f"pretrained: the weights file {str(path)!r} of {name!r} cannot be used ({why}); "
            "the installation is damaged: reinstall flowrestore"
        )

    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise refuse(f"it cannot be read: {exc.strerror or type(exc).__name__}") from None
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise refuse(f"its SHA-256 is not the registry's {sha256[:12]}...")
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 (truncated, not a torch file, unsafe pickle)
        raise refuse(f"torch.load failed: {type(exc).__name__}: {_first_line(exc)}") from None
    if not (
        isinstance(state, dict)
        and state
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())
    ):
        raise refuse("it is not a state dict of named tensors")
    model = UNet(**unet_config)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise refuse(f"its weights do not fit the registry's unet: {_first_line(exc)}") from None
    return model


def _load(name: str, device="cpu"):
    from flowrestore.runtime import resolve_device

    info = pretrained_info(name)
    device = resolve_device(device, hint="use device='cpu'")
    ref = resources.files(__name__).joinpath(info["file"])
    with resources.as_file(ref) as path:
        model = _read_weights(path, name, info["unet"], info.get("sha256"))
    model.requires_grad_(False)
    model.metadata = info
    model.train_config = info.get("train", {}).get("config")
    _declare_inputs(model, name)
    return model.to(device).eval()


def _declare_inputs(model, name: str) -> None:
    """What a shipped predictor takes, declared on it: any flow over it — ``fr.InDIFlow(model)``,
    ``fr.DiracSDE(model, ...)``, not only :func:`flow_for`'s — refuses a start state far outside
    its value range (``0..255`` pixels) before anything is evaluated
    (:mod:`flowrestore.flows.value_range`)."""
    from flowrestore.methods.base import IMAGE_RANGE
    from flowrestore.methods.spec import ModelSpec

    model.value_range = IMAGE_RANGE
    model.input_noise_std = float(ModelSpec.of(model).input_noise)
    model.model_name = name


class _Pretrained:
    """``pretrained(name, device="cpu")``: a shipped predictor (U-Net, eval mode, EMA weights).

    The model carries ``model.metadata`` (its registry entry, see :func:`pretrained_info`) and
    ``model.train_config``. Parameters do not require grad; gradients with respect to the input
    still flow (for guidance). ``pretrained.list()`` lists the names. A ``device`` that is not
    usable (``"cuda"`` without CUDA) is refused with a :class:`ConfigError` saying why.
    """

    def __call__(self, name: str, device="cpu"):
        return _load(name, device)

    @staticmethod
    def list() -> list[str]:
        """Names of the shipped predictors."""
        return list_pretrained()

    @staticmethod
    def info(name: str) -> dict:
        """Registry entry of a shipped predictor."""
        return pretrained_info(name)

    def __getattr__(self, name: str):
        """The module's functions and submodules: ``flowrestore.pretrained`` is this object
        after ``import flowrestore``, so ``flowrestore.pretrained.flow_for(model)`` and
        ``import flowrestore.pretrained as P; P.degrade_for(...)`` reach them through it."""
        if name in __all__:
            return globals()[name]
        if name in _SUBMODULES:
            return importlib.import_module(f"{__name__}.{name}")
        raise AttributeError(f"flowrestore.pretrained has no attribute {name!r}")

    def __repr__(self) -> str:
        return f"<flowrestore pretrained predictors: {', '.join(list_pretrained())}>"


pretrained = _Pretrained()


def model_spec(model_or_meta) -> ModelSpec:
    """What a predictor was trained for: its method and task records and parameters
    (:class:`flowrestore.methods.ModelSpec`).

    ``model_or_meta``: a shipped predictor (its ``.metadata``), a registry entry (a dict), or a
    trainer checkpoint's predictor from :func:`flowrestore.training.checkpoint.load_predictor`
    (no ``.metadata``: read from its ``.train_config``, as ``restore --checkpoint`` does).
    """
    if isinstance(model_or_meta, str):  # flow_for("indi-deblur"): the name, not the model
        raise ConfigError(
            f"expected a predictor, got the name {model_or_meta!r}: load it first with "
            f"pretrained(name), name one of {list_pretrained()}"
        )
    meta = getattr(model_or_meta, "metadata", None)
    config = getattr(model_or_meta, "train_config", None)
    if not isinstance(model_or_meta, dict) and not isinstance(meta, dict):
        if isinstance(config, dict) and "method" in config and "task" in config:
            return ModelSpec.from_train_config(config)
    return ModelSpec.of(model_or_meta)


def flow_for(model, **kwargs):
    """The flow a predictor was trained for, built by its method's record: ``InDIFlow(model)`` or
    ``DiracSDE(model, A_t, σ_t)`` (refusing start states outside the images' value range).
    ``model``: a shipped predictor or one loaded from a trainer checkpoint (``load_predictor``:
    its task's declared spacings, as ``restore --checkpoint`` uses), see :func:`model_spec`.

    ``kwargs`` go to the flow (e.g. ``guidance=`` for Dirac; the step's ``increment=`` is
    ``DiracStep``'s). An InDI flow carries the model's recorded few-NFE grids
    (:class:`~flowrestore.FittedGrids`) and declared spacings; ``grids=None`` and
    ``spacings=None`` leave them off.
    """
    return model_spec(model).flow(model, **kwargs)


def default_solver(model):
    """The method's default step: ``SemiLinearMultistep()`` for InDI (one evaluation per step, its
    few-NFE grid), ``DiracStep()`` (Dirac's eq. 7) for Dirac."""
    return model_spec(model).method.solver()


def degrade_for(model, x, generator=None):
    """Degrade clean images ``x`` ``[B, C, H, W]`` the way the predictor's training data was.

    InDI: the task's degradation (with its noise). Dirac: ``A_1(x) + σ_max z``.
    """
    return model_spec(model).observe(x, generator)


def heldout_crops(size: int = 192, *, channels: int = 3):
    """Center ``size``×``size`` crops of the held-out photos: ``(names, [3, C, size, size])``."""
    import torch

    from flowrestore.training.data import HELDOUT_IMAGES, load_image

    if not (isinstance(size, int) and size >= 8):
        raise ConfigError(f"heldout_crops: size must be an int >= 8, got {describe(size)}")
    crops = []
    for n in HELDOUT_IMAGES:
        im = load_image(n, channels=channels)
        h, w = im.shape[-2:]
        if min(h, w) < size:
            raise ConfigError(f"heldout_crops: size={size} larger than {n} ({h}x{w})")
        top, left = (h - size) // 2, (w - size) // 2
        crops.append(im[:, top : top + size, left : left + size])
    return list(HELDOUT_IMAGES), torch.stack(crops).contiguous()
