"""Private helpers shared by the closed-form oracles: argument checking, time broadcasting and
the samplers' generator and device (:func:`draw_device`).

Nothing here is public; the oracles in :mod:`flowrestore.oracles.gaussian`,
:mod:`flowrestore.oracles.mixture` and :mod:`flowrestore.oracles.generative` use it to parse their
parameters (stored as float64 tensors, moved with ``.to(x)`` on use) and to turn a time argument
(python float, 0-d tensor or per-sample ``[B]`` tensor) into a tensor that broadcasts against a
batched state ``[B, *event_shape]``.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable, Sequence

import torch

from flowrestore.errors import ConfigError, ShapeError, describe

TimeLike = float | torch.Tensor

#: dtypes whose resolution is too coarse for the oracles' closed forms (``1 − ᾱ`` near ``ᾱ = 1``,
#: a schedule index near ``T``): the oracles compute in float32 and return the input's dtype
HALF_DTYPES = (torch.float16, torch.bfloat16)


def widened(fn: Callable) -> Callable:
    """Evaluate ``fn`` (a method ``fn(self, x, ...)`` or a function ``fn(x, ...)``) on a
    half-precision state ``x`` (bf16, fp16: its first tensor argument) in float32 and return its
    output in ``x``'s dtype; any other ``x`` passes through unchanged.

    A closed form in bf16 is wrong, not merely coarse: ``ᾱ = 0.99999`` rounds to 1 and
    ``√(1 − ᾱ)`` to 0. Time arguments follow ``x`` into float32 where ``fn`` casts them to
    ``x``'s dtype (:func:`time_vector`, the diffusion oracles' timesteps).
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        for i, x in enumerate(args):
            if isinstance(x, torch.Tensor):
                if x.dtype in HALF_DTYPES:
                    wide = (*args[:i], x.float(), *args[i + 1 :])
                    return fn(*wide, **kwargs).to(x.dtype)
                break
        return fn(*args, **kwargs)

    return wrapper


def exact_dtype(device: torch.device) -> torch.dtype:
    """The dtype of schedule lookups on ``device``: float64, or float32 where the device has no
    float64 (Apple's ``mps``)."""
    return torch.float32 if device.type == "mps" else torch.float64


def positive_float(value, name: str, *, allow_zero: bool = False) -> float:
    """Return ``value`` as a finite python float, positive (or non-negative), else ConfigError."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ConfigError(f"{name} must be a scalar, got {describe(value)}")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a real number, got {describe(value)}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        kind = "non-negative" if allow_zero else "positive"
        raise ConfigError(f"{name} must be finite and {kind}, got {describe(value)}")
    return value


def as_param(value, name: str) -> torch.Tensor:
    """Convert a scalar or tensor parameter to a finite float64 CPU tensor, else ConfigError."""
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be a real number or a tensor, got {describe(value)}")
    if isinstance(value, (int, float)):
        out = torch.tensor(float(value), dtype=torch.float64)
    elif isinstance(value, torch.Tensor):
        if value.is_complex() or not (value.is_floating_point() or value.dtype in _INT_DTYPES):
            raise ConfigError(f"{name} must be a real tensor, got {describe(value)}")
        out = value.detach().to(device="cpu", dtype=torch.float64).clone()
    else:
        try:
            out = torch.as_tensor(value, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ConfigError(
                f"{name} must be a real number or a tensor, got {describe(value)}"
            ) from exc
    if not bool(torch.isfinite(out).all()):
        raise ConfigError(f"{name} must be finite, got {describe(value)}")
    return out


_INT_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)


def resolve_event_shape(
    params: dict[str, torch.Tensor], event_shape: Sequence[int] | None
) -> tuple[int, ...]:
    """Event shape from ``event_shape`` or from the broadcast of the tensor parameters' shapes."""
    if event_shape is not None:
        try:
            shape = tuple(int(s) for s in event_shape)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"event_shape must be a sequence of positive ints, got {describe(event_shape)}"
            ) from exc
        if any(s <= 0 for s in shape):
            raise ConfigError(
                f"event_shape must be a sequence of positive ints, got {describe(event_shape)}"
            )
    else:
        shapes = [tuple(p.shape) for p in params.values() if p.dim() > 0]
        if not shapes:
            names = ", ".join(params)
            raise ConfigError(
                f"event_shape is required when {names} are all scalars, got event_shape=None"
            )
        try:
            shape = tuple(torch.broadcast_shapes(*shapes))
        except RuntimeError as exc:
            desc = ", ".join(f"{k}: {tuple(v.shape)}" for k, v in params.items())
            raise ConfigError(f"parameter shapes do not broadcast together ({desc})") from exc
        if len(shape) == 0:
            raise ConfigError("event_shape could not be inferred; pass event_shape explicitly")
    for key, value in params.items():
        try:
            if tuple(torch.broadcast_shapes(tuple(value.shape), shape)) != shape:
                raise RuntimeError("parameter has more elements than the event")
        except RuntimeError as exc:
            raise ConfigError(
                f"{key} of shape {tuple(value.shape)} does not broadcast to event_shape {shape}"
            ) from exc
    return shape


def check_state(x, event_shape: tuple[int, ...], name: str) -> torch.Tensor:
    """Check that ``x`` is a floating tensor of shape ``[B, *event_shape]``."""
    if not isinstance(x, torch.Tensor):
        raise ShapeError(f"{name} must be a tensor of shape [B, *{event_shape}], got {describe(x)}")
    if not x.is_floating_point():
        raise ConfigError(f"{name} must be a floating-point tensor, got {describe(x)}")
    if x.dim() != len(event_shape) + 1 or tuple(x.shape[1:]) != tuple(event_shape):
        raise ShapeError(
            f"{name} must have shape [B, *{tuple(event_shape)}], got shape {tuple(x.shape)}"
        )
    return x


def time_vector(
    t: TimeLike, batch: int, like: torch.Tensor, name: str = "t", *, strict: bool = False
) -> torch.Tensor:
    """Turn ``t`` (float, 0-d tensor or ``[B]`` tensor) into a ``[B]`` tensor in ``like``'s dtype.

    Raises ShapeError for a wrongly shaped tensor and ConfigError for a number outside ``[0, 1]``.
    A tensor's values are not read on the host (an oracle is evaluated inside a solve's steps,
    which never wait for the device: issue 17): an entry outside ``[0, 1]`` (or NaN) becomes NaN,
    which makes that sample's output NaN and a solve's finite check report it. ``strict``
    (the closed-form solutions, never evaluated inside a solve): refuse such a tensor with a
    ConfigError instead (one host read).
    """
    if isinstance(t, bool):
        raise ConfigError(f"{name} must be a float or a tensor, got {describe(t)}")
    if isinstance(t, numbers.Real):  # numpy scalars too
        if not (0.0 <= float(t) <= 1.0):
            raise ConfigError(f"{name} must lie in [0, 1], got {describe(t)}")
        return torch.full((batch,), float(t), dtype=like.dtype, device=like.device)
    if not isinstance(t, torch.Tensor):
        raise ConfigError(f"{name} must be a float or a tensor, got {describe(t)}")
    if t.dim() == 0:
        tt = t.to(dtype=like.dtype, device=like.device).expand(batch)
    elif t.dim() == 1 and t.shape[0] == batch:
        tt = t.to(dtype=like.dtype, device=like.device)
    else:
        raise ShapeError(
            f"{name} must be a scalar or have shape [B] = [{batch}], got shape {tuple(t.shape)}"
        )
    inside = (tt >= 0) & (tt <= 1)
    if strict and not bool(inside.all()):
        raise ConfigError(f"{name} must lie in [0, 1], got {describe(t)}")
    return torch.where(inside, tt, torch.full_like(tt, math.nan))


def expand_time(tv: torch.Tensor, ndim: int) -> torch.Tensor:
    """Reshape a ``[B]`` time vector to ``[B, 1, ..., 1]`` with ``ndim`` dimensions in total."""
    return tv.reshape(tv.shape[0], *([1] * (ndim - 1)))


def count_arg(n, name: str = "n") -> int:
    """Check a sample count."""
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise ConfigError(f"{name} must be a positive int, got {describe(n)}")
    return n


def check_generator(generator, name: str = "generator") -> None:
    """Check that ``generator`` is ``None`` or a ``torch.Generator``."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ConfigError(f"{name} must be a torch.Generator or None, got {describe(generator)}")


def draw_device(generator, device) -> torch.device:
    """The device that draws with ``generator`` land on: ``device`` resolved (``None`` is torch's
    default device), checked against the generator's device type.

    A generator draws only on its own device type (a CUDA generator cannot fill a CPU tensor, nor
    the reverse); a mismatch is refused here, naming both, instead of inside torch.
    """
    check_generator(generator)
    if device is None:
        where = torch.empty(0).device  # torch's default device (torch.set_default_device)
    else:
        try:
            where = torch.device(device)
        except (TypeError, RuntimeError) as exc:
            raise ConfigError(
                f"device must name a torch device, got {describe(device)} ({exc})"
            ) from exc
    if generator is not None and generator.device.type != where.type:
        raise ConfigError(
            f"generator lives on {generator.device} but the draws are asked on device={where}: "
            f"pass a generator of that device (torch.Generator(device=...)) or that device"
        )
    return where


def standard_normal(n, event_shape, generator, dtype, device) -> torch.Tensor:
    """``n`` checked standard-normal draws ``[n, *event_shape]`` (the latents of the oracles)."""
    n = count_arg(n)
    device = draw_device(generator, device)
    return torch.randn((n, *event_shape), generator=generator, dtype=dtype, device=device)


class PosteriorOracle:
    """Shared surface of the oracles: the exact posterior mean as a clean-image predictor.

    Subclasses implement ``posterior_mean(x_t, t)``; ``.predictor`` and calling the oracle itself
    return it, so ``fr.InDIFlow(oracle)`` and ``fr.InDIFlow(oracle.predictor)`` both work.
    """

    def posterior_mean(self, x_t: torch.Tensor, t) -> torch.Tensor:
        """``E[x | x_t]`` at time ``t``."""
        raise NotImplementedError

    @property
    def predictor(self):
        """The exact clean-image predictor ``F(x_t, t) = E[x | x_t]`` (a bound method)."""
        return self.posterior_mean

    def __call__(self, x_t: torch.Tensor, t) -> torch.Tensor:
        """Same as :meth:`posterior_mean`."""
        return self.posterior_mean(x_t, t)

    def mmse(self, y: torch.Tensor) -> torch.Tensor:
        """MMSE estimate ``E[x | y]``: the posterior mean at ``t = 1``."""
        return self.posterior_mean(y, 1.0)
