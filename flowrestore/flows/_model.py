"""Private helpers of the model flows (diffusion, flow matching, EDM denoisers): the model's
output as a tensor, and per-sample conditioning.

A pretrained model is often conditioned — a class-conditional U-Net takes ``class_labels``, a text
transformer ``encoder_hidden_states`` — by tensors with one row per sample. The model flows take
them as ``cond={name: tensor}`` and pass them to the model as keyword arguments. A row count that
does not match the evaluated batch is refused with the name of the tensor (never silently
broadcast onto the wrong rows).
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from flowrestore.errors import ConfigError, PredictorOutputError, ShapeError, describe

__all__ = ["check_cond", "cond_for", "model_output"]


def model_output(out) -> Tensor:
    """A model's return value as a tensor: a tensor, ``.sample`` (diffusers) or ``out[0]``."""
    if isinstance(out, Tensor):
        return out
    sample = getattr(out, "sample", None)
    if isinstance(sample, Tensor):
        return sample
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor):
        return out[0]
    raise PredictorOutputError(
        "model must return a tensor, an object with .sample or a tuple whose first item is a "
        f"tensor, got {type(out).__name__}"
    )


def check_cond(cond) -> dict[str, Tensor]:
    """``cond`` as a dict of tensors with a leading batch dimension (``None``: empty)."""
    if cond is None:
        return {}
    if not isinstance(cond, Mapping):
        raise ConfigError(
            f"cond must be a dict of tensors (model keyword arguments), got {describe(cond)}"
        )
    out = {}
    for key, value in cond.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise ConfigError(f"cond keys must be keyword names, got {key!r}")
        if not isinstance(value, Tensor) or value.dim() < 1:
            raise ConfigError(
                f"cond[{key!r}] must be a tensor with a leading batch dimension, got "
                f"{describe(value)}"
            )
        out[key] = value
    return out


def cond_for(cond: dict[str, Tensor], x: Tensor) -> dict[str, Tensor]:
    """The conditioning tensors for the evaluated batch ``x`` (same number of rows)."""
    for key, value in cond.items():
        if value.shape[0] != x.shape[0]:
            raise ShapeError(
                f"cond[{key!r}] has {value.shape[0]} rows but the model is evaluated on "
                f"{x.shape[0]} (give one row per sample of x_start)"
            )
    return cond
