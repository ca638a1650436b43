"""What the model flows share (diffusion, flow matching, EDM denoisers; docs/math.md §8–§10).

:class:`ModelFlow` is the residual flow of a pretrained network: it holds the network (its
:attr:`~ModelFlow.network`), the per-sample conditioning ``cond`` and the output checks, calls
the network (:meth:`~ModelFlow.call_model`), and declares the protocol the guided baselines and
BIRD ask every model flow for: ``state_coefficients(t) -> (α_t, σ_t)`` (the state is
``x_t = α_t x_0 + σ_t ε``), ``input_scale(t)`` (the network sees ``state / k_t``) and
``latent_std`` (the noise at ``t = 1`` in the model's units).

A pretrained model is often conditioned — a class-conditional U-Net takes ``class_labels``, a text
transformer ``encoder_hidden_states`` — by tensors with one row per sample. The model flows take
them as ``cond={name: tensor}`` and pass them to the model as keyword arguments. A row count that
does not match the evaluated batch is refused with the name of the tensor (never silently
broadcast onto the wrong rows).

**Classifier-free guidance** (Ho & Salimans 2022, "Classifier-free diffusion guidance", eq. 6):
with ``uncond={name: tensor}`` — the same keywords for the unconditional model (the null class
label, the empty prompt's embeddings), one row per sample — and ``guidance_scale=w``, every
evaluation is the guided output ``u + w (c − u)`` of the conditional ``c`` and unconditional ``u``
outputs, taken in one call of the network on the doubled batch, as diffusers' pipelines do. The
clean estimate and the velocity are affine in the output with the same coefficients for both, so
this is guidance on ``D`` (and on ``ε``, ``v``, the flow-matching velocity) alike; ``w = 1`` is the
conditional model (the unconditional half is then not computed), ``w = 0`` the unconditional one.
``guidance_rescale=φ`` (Lin et al. 2024, "Common diffusion noise schedules and sample steps are
flawed", §3.4, for large ``w`` on zero-terminal-SNR models) mixes in the guided output rescaled to
the conditional output's per-sample standard deviation: ``φ g σ(c)/σ(g) + (1 − φ) g`` — diffusers'
``rescale_noise_cfg`` on the model's output (``ε`` or ``v`` for a diffusion model).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from typing import ClassVar

import torch
from torch import Tensor

from flowrestore.errors import (
    ArgumentTypeError,
    ConfigError,
    PredictorOutputError,
    ShapeError,
    describe,
)
from flowrestore.flows.base import ResidualFlow, check_output
from flowrestore.flows.declared import DeclaredGrids

__all__ = [
    "ModelFlow",
    "check_guidance",
    "check_model_cond",
    "check_rescale",
    "cond_for",
    "model_output",
    "network_dtype",
]


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


def check_model_cond(cond) -> dict[str, Tensor]:
    """``cond`` as a dict of tensors with a leading batch dimension (``None``: empty): a model's
    keyword arguments. Stricter than :func:`flowrestore.flows.base.check_cond` (which also takes
    one positional tensor and 0-d shared values): a network's keywords are named and per-sample."""
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


def check_guidance(cond: dict[str, Tensor], uncond, guidance_scale) -> tuple:
    """``(uncond, guidance_scale)`` checked: ``uncond`` holds exactly ``cond``'s keywords (one row
    per sample each); ``guidance_scale`` is a finite real number, and one other than 1 needs
    ``uncond``."""
    if isinstance(guidance_scale, bool) or not isinstance(guidance_scale, numbers.Real):
        raise ArgumentTypeError(
            f"guidance_scale must be a real number, got {describe(guidance_scale)}"
        )
    if not math.isfinite(guidance_scale):
        raise ConfigError(f"guidance_scale must be finite, got {guidance_scale!r}")
    if uncond is None:
        if guidance_scale != 1.0:
            raise ConfigError(
                f"guidance_scale={guidance_scale!r} needs uncond= (the unconditional keywords, "
                "e.g. the null class label or the empty prompt's embeddings)"
            )
        return None, 1.0
    uncond = check_model_cond(uncond)
    if not cond or set(uncond) != set(cond):
        raise ConfigError(
            f"uncond must hold the same keywords as cond (cond: {sorted(cond)}, uncond: "
            f"{sorted(uncond)})"
        )
    for key, value in uncond.items():
        if value.shape[1:] != cond[key].shape[1:] or value.shape[0] != cond[key].shape[0]:
            raise ShapeError(
                f"uncond[{key!r}] has shape {tuple(value.shape)}; it must match "
                f"cond[{key!r}]'s {tuple(cond[key].shape)} (one row per sample)"
            )
        # both halves go to the network in one torch.cat: int64 class labels next to a float
        # null label became float (an embedding lookup failed inside the network), float32
        # negative-prompt embeddings next to float16 ones made the batch float32
        if value.dtype != cond[key].dtype or value.device != cond[key].device:
            raise ConfigError(
                f"uncond[{key!r}] is {value.dtype} on {value.device} but cond[{key!r}] is "
                f"{cond[key].dtype} on {cond[key].device}: both halves of the guided batch must "
                f"have the same dtype and device (uncond[{key!r}].to(cond[{key!r}]))"
            )
    return uncond, float(guidance_scale)


def check_rescale(uncond, guidance_rescale) -> float:
    """``guidance_rescale`` checked: a real number in ``[0, 1]``; one above 0 needs ``uncond``."""
    if isinstance(guidance_rescale, bool) or not isinstance(guidance_rescale, numbers.Real):
        raise ArgumentTypeError(
            f"guidance_rescale must be a real number, got {describe(guidance_rescale)}"
        )
    if not 0.0 <= guidance_rescale <= 1.0:
        raise ConfigError(f"guidance_rescale must lie in [0, 1], got {guidance_rescale!r}")
    if guidance_rescale > 0 and uncond is None:
        raise ConfigError(
            f"guidance_rescale={guidance_rescale!r} rescales classifier-free guidance: it needs "
            "uncond= and guidance_scale="
        )
    return float(guidance_rescale)


def network_dtype(model) -> torch.dtype | None:
    """The dtype of a network's first floating parameter (a module, or the module a
    :class:`~flowrestore.flows.diffusers_io.TimestepKeyword` wraps), ``None`` for a plain callable
    or a module without floating parameters. :meth:`ModelFlow.call_model` casts the network's
    inputs to it and its output back to the state's dtype: a half-precision checkpoint can be
    stepped in float32, where a zero-terminal-SNR or cosine schedule's state ``x̄ ≈ σ_max z``
    (``σ_max ≈ 2·10⁴``) neither overflows nor cancels (float16 holds ``|x̄| ≤ 65504``)."""
    if not isinstance(model, torch.nn.Module):
        return None
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return None


def _floating_to(value, dtype: torch.dtype):
    if isinstance(value, Tensor) and value.is_floating_point():
        return value.to(dtype)
    return value


def _doubled_channels(out: Tensor, x: Tensor) -> bool:
    """Whether ``out`` is ``x``'s shape with twice its channels (dim 1): a learned variance."""
    return (
        isinstance(out, Tensor)
        and out.dim() == x.dim() >= 2
        and out.shape[0] == x.shape[0]
        and out.shape[1] == 2 * x.shape[1]
        and out.shape[2:] == x.shape[2:]
    )


def cond_for(cond: dict[str, Tensor], x: Tensor) -> dict[str, Tensor]:
    """The conditioning tensors for the evaluated batch ``x`` (same number of rows)."""
    for key, value in cond.items():
        if value.shape[0] != x.shape[0]:
            raise ShapeError(
                f"cond[{key!r}] has {value.shape[0]} rows but the model is evaluated on "
                f"{x.shape[0]} (give one row per sample of x_start)"
            )
    return cond


class ModelFlow(DeclaredGrids, ResidualFlow):
    """Base of the model flows: a network ``model(x, time, **cond)`` and its protocol (module
    docstring). Subclasses implement ``denoise`` and ``state_coefficients``."""

    #: attributes with one row per sample, selected with the rows the loop steps
    per_sample_fields: ClassVar[tuple[str, ...]] = ("cond", "uncond")
    #: classifier-free guidance (module docstring): the unconditional keywords and the scale
    uncond: dict[str, Tensor] | None = None
    guidance_scale: float = 1.0
    guidance_rescale: float = 0.0
    #: the noise at ``t = 1`` in the model's units (BIRD's latent is ``z``, the start
    #: ``latent_std · z``)
    latent_std: float = 1.0

    def _set_model(
        self,
        model: Callable,
        cond,
        check_outputs,
        call: str,
        uncond=None,
        guidance_scale=1.0,
        guidance_rescale=0.0,
        grids=None,
        spacings=None,
    ) -> None:
        if not callable(model):
            raise ArgumentTypeError(f"model must be callable {call}, got {describe(model)}")
        if not isinstance(check_outputs, bool):  # bool("no") was True: checks left on
            raise ArgumentTypeError(f"check_outputs must be a bool, got {describe(check_outputs)}")
        self.model = model
        self.cond = check_model_cond(cond)
        self.check_outputs = check_outputs
        self.uncond, self.guidance_scale = check_guidance(self.cond, uncond, guidance_scale)
        self.guidance_rescale = check_rescale(self.uncond, guidance_rescale)
        self._declare_grids(grids, spacings)

    def _guidance_repr(self) -> str:
        """``", guidance_scale=…"`` (and the rescale) for a guided flow's ``repr``, else ``""``."""
        if self.uncond is None:
            return ""
        rescale = f", guidance_rescale={self.guidance_rescale:g}" if self.guidance_rescale else ""
        return f", guidance_scale={self.guidance_scale:g}{rescale}"

    @property
    def network(self):
        """The network (:attr:`Flow.network <flowrestore.flows.Flow.network>`)."""
        return self.model

    def call_model(self, x: Tensor, time: Tensor, *, split: bool = False) -> Tensor:
        """``model(x, time, **cond)`` as a tensor (checked against ``x`` if ``check_outputs``,
        which also refuses a model that modifies ``x`` in place);
        ``split``: the output has twice ``x``'s channels (dim 1) and the first half is kept (a
        model that also predicts its variance). With ``uncond`` and ``guidance_scale ≠ 1``: the
        guided output ``u + w (c − u)``, one call on the doubled batch (module docstring). A
        network whose parameters have another dtype than ``x`` gets its floating inputs in its
        own dtype and returns in ``x``'s (:func:`network_dtype`); its floating ``cond`` tensors
        are cast to its dtype whatever the state's."""
        if self.uncond is None or self.guidance_scale == 1.0:
            return self._output(x, time, self.cond, split)
        cond_for(self.cond, x)
        cond_for(self.uncond, x)
        both = {k: torch.cat([self.cond[k], self.uncond[k]]) for k in self.cond}
        out = self._output(torch.cat([x, x]), torch.cat([time, time]), both, split)
        c, u = out.chunk(2)
        g = u + self.guidance_scale * (c - u)
        if self.guidance_rescale == 0.0:
            return g
        # per sample, over its own values ([B, n] views): on a [B] state std(dim=[]) reduced
        # over the whole batch, so one sample's output depended on the others'
        shape = g.shape
        c, g = c.reshape(shape[0], -1), g.reshape(shape[0], -1)
        dims = [1]
        sc, sg = c.std(dim=dims, keepdim=True), g.std(dim=dims, keepdim=True)
        ratio = torch.where(sg > 0, sc / sg, torch.ones_like(sg))  # a constant g stays as it is
        out = self.guidance_rescale * ratio * g + (1 - self.guidance_rescale) * g
        return out.reshape(shape)

    def _output(self, x: Tensor, time: Tensor, cond: dict[str, Tensor], split: bool) -> Tensor:
        cond = cond_for(cond, x)
        want = network_dtype(self.model)
        if want is not None:  # float32 prompt embeddings for a float16 network on a float16
            # state reached it uncast and failed inside it (mat1 and mat2 dtypes differ)
            cond = {k: _floating_to(v, want) for k, v in cond.items()}
        if want is None or want == x.dtype:
            # the state itself reaches the model (flow matching, EDM): an in-place change of it
            # moved the solver's state silently (metadata only, as call_user checks InDI's)
            tracked = self.check_outputs and not torch.compiler.is_compiling()
            tracked = tracked and not x.is_inference()
            version = x._version if tracked else 0
            out = model_output(self.model(x, time, **cond))
            if tracked and x._version != version:
                raise PredictorOutputError(
                    "model modified its input x in place (e.g. x.clamp_(...), x /= s); the "
                    "solver reuses that tensor, so the solve would be silently wrong. Compute a "
                    "new tensor instead (x = x / s)"
                )
        else:  # a float16 network stepped in float32: its inputs in its dtype, its output back
            out = model_output(self.model(x.to(want), _floating_to(time, want), **cond))
            out = _floating_to(out, x.dtype)
        if split:
            if out.dim() < 2 or x.dim() < 2 or out.shape[1] != 2 * x.shape[1]:
                raise PredictorOutputError(
                    f"model returned shape {tuple(out.shape)}; with learned_variance=True it "
                    f"must have twice the input's {x.shape[1] if x.dim() > 1 else 0} channels "
                    f"(the prediction, then the variance)"
                )
            out = out[:, : x.shape[1]]
        elif self.check_outputs and _doubled_channels(out, x):
            # check_output's bare "expected the state's shape" did not say what to do
            raise PredictorOutputError(
                f"model returned shape {tuple(out.shape)}, twice the input's {x.shape[1]} "
                f"channels (state shape {tuple(x.shape)}): a model that also predicts its "
                "variance (improved DDPM / ADM learn_sigma, variance_type='learned_range') needs "
                "fr.DiffusionFlow(..., learned_variance=True), which keeps the first half"
            )
        return check_output("model", out, x) if self.check_outputs else out

    def state_coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(α_t, σ_t)`` with the state ``x_t = α_t x_0 + σ_t ε``."""
        raise NotImplementedError

    def input_scale(self, t: Tensor) -> Tensor:
        """``k_t`` with the network's input ``state / k_t`` (here 1: the state is its ``x``)."""
        return torch.ones_like(t)
