"""Training machinery for restoration-flow predictors (docs/math.md §1 "Training", §3 "Training").

Reference U-Net (:class:`UNet`), time distributions p(t) (:func:`resolve_tdist`), InDI and Dirac
losses, paired patches from the bundled photos (:class:`PatchDataset`, :func:`make_degradation`),
EMA, checkpoints, each method's training objective (:mod:`.objectives`) and the training loop
(:func:`train`; the command line ``python -m flowrestore.training``, :mod:`.cli`).

Names are loaded lazily so that ``python -m flowrestore.training`` (and its alias ``python -m
flowrestore.training.trainer``) runs without the "found in sys.modules" warning.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "UNet": "unet",
    "timestep_embedding": "unet",
    "TimeDistribution": "tdist",
    "Uniform": "tdist",
    "Power": "tdist",
    "Beta": "tdist",
    "resolve_tdist": "tdist",
    "IndiBatch": "losses",
    "DiracBatch": "losses",
    "indi_components": "losses",
    "indi_loss": "losses",
    "dirac_components": "losses",
    "dirac_dsm_loss": "losses",
    "dirac_ir_loss": "losses",
    "HELDOUT_IMAGES": "data",
    "TRAINING_IMAGES": "data",
    "TASKS": "data",
    "load_image": "data",
    "heldout_images": "data",
    "training_images": "data",
    "lfw_faces": "data",
    "gaussian_blur": "data",
    "make_degradation": "data",
    "make_family": "data",
    "PatchDataset": "data",
    "EMA": "ema",
    "save_checkpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
    "load_predictor": "checkpoint",
    "TrainConfig": "trainer",
    "TrainHistory": "trainer",
    "train": "trainer",
    "build_model": "trainer",
    "objective_for": "trainer",
    "Objective": "objectives",
    "InDIObjective": "objectives",
    "DiracObjective": "objectives",
    "OBJECTIVES": "objectives",
}

__all__ = sorted(_EXPORTS)

# names computed at each access (never cached here): TASKS follows the task registry
_LIVE = frozenset({"TASKS"})


def __getattr__(name: str):
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'flowrestore.training' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"flowrestore.training.{mod}"), name)
    if name not in _LIVE:
        globals()[name] = value
    return value


def __dir__():
    return __all__
