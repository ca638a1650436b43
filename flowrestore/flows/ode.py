"""Generic ODE and SDE flows built from user callables.

``ODEFlow(f)`` integrates ``dx/dt = f(t, x)``; ``SDEFlow(f, g)`` integrates
``dx = f(t, x) dt + g(t, x) dW`` (Itô). Neither has a preferred direction or span: pass ``grid`` or
``t_span`` to :func:`flowrestore.solve`; the grid's order sets the direction.

Per-sample parameters go through ``cond=`` so that they follow the rows the loop steps (under
per-sample error control only the unfinished samples are stepped)::

    k = torch.rand(B, 1)
    flow = fr.ODEFlow(lambda t, x, k: -k * x, cond={"k": k})   # f(t, x, k=k[rows])

A tensor ``cond`` is passed positionally instead: ``ODEFlow(lambda t, x, k: -k * x, cond=k)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from flowrestore.errors import ArgumentTypeError, ConfigError, PredictorOutputError, describe
from flowrestore.flows.base import ODE, SDE, batch_time, bcast, call_user, check_cond

__all__ = ["ODEFlow", "SDEFlow"]

_TIME_SHAPES = ("batch", "broadcast")


def _check_bool(check_outputs) -> None:
    if not isinstance(check_outputs, bool):  # "no" was kept and read as True
        raise ArgumentTypeError(f"check_outputs must be a bool, got {describe(check_outputs)}")


def _shape_time(t: Tensor, x: Tensor, time_shape: str) -> Tensor:
    return batch_time(t, x) if time_shape == "batch" else bcast(batch_time(t, x), x)


class ODEFlow(ODE):
    """``dx/dt = f(t, x)`` for any callable ``f``.

    Args:
        f: the drift, called as ``f(t, x)`` (``f(t, x, **cond)`` with a dict ``cond``).
        time_shape: ``"batch"`` (default) passes ``t`` as a ``[B]`` tensor; ``"broadcast"`` passes
            it as ``[B, 1, ..., 1]`` so that ``f = lambda t, x: t * x`` broadcasts.
        cond: per-sample parameters (module docstring): a dict of tensors passed as keyword
            arguments, or one tensor passed as a third positional argument; each 0-d or with a
            leading batch dimension.
        check_outputs: validate shape, dtype and device of every ``f`` output and refuse an ``f``
            that modifies ``x`` in place (cheap, no sync).
    """

    per_sample_fields = ("cond",)

    def __init__(
        self,
        f: Callable[..., Tensor],
        *,
        time_shape: str = "batch",
        cond: Tensor | dict[str, Tensor] | None = None,
        check_outputs: bool = True,
    ):
        if not callable(f):
            raise ArgumentTypeError(f"f must be callable f(t, x), got {type(f).__name__}")
        if time_shape not in _TIME_SHAPES:
            raise ConfigError(f"time_shape must be one of {_TIME_SHAPES}, got {time_shape!r}")
        check_cond(cond, None)
        _check_bool(check_outputs)
        self.f = f
        self.time_shape = time_shape
        self.cond = cond
        self.check_outputs = check_outputs

    def drift(self, t: Tensor, x: Tensor) -> Tensor:
        """``f(t, x)``."""
        tt = _shape_time(t, x, self.time_shape)
        return call_user("f", self.f, x, (tt, x), self.cond, check=self.check_outputs)


class SDEFlow(SDE):
    """Itô SDE ``dx = f(t, x) dt + g(t, x) dW`` from callables.

    Args:
        f: drift ``f(t, x)``.
        g: diffusion ``g(t, x)``; with ``noise_type="additive"`` it may ignore ``x`` and return a
            tensor broadcastable to the state (e.g. ``[B, 1, ...]``), with ``"diagonal"`` it returns
            the state's shape.
        noise_type: ``"additive"`` or ``"diagonal"``.
        time_shape: as for :class:`ODEFlow`.
        cond: per-sample parameters passed to both ``f`` and ``g`` (as for :class:`ODEFlow`).
        check_outputs: validate every ``f`` output and refuse callables that modify ``x`` in place.
    """

    per_sample_fields = ("cond",)

    def __init__(
        self,
        f: Callable[..., Tensor],
        g: Callable[..., Tensor],
        *,
        noise_type: str = "diagonal",
        time_shape: str = "batch",
        cond: Tensor | dict[str, Tensor] | None = None,
        check_outputs: bool = True,
    ):
        if not callable(f):
            raise ArgumentTypeError(f"f must be callable f(t, x), got {type(f).__name__}")
        if time_shape not in _TIME_SHAPES:
            raise ConfigError(f"time_shape must be one of {_TIME_SHAPES}, got {time_shape!r}")
        if not callable(g):
            raise ArgumentTypeError(f"g must be callable g(t, x), got {type(g).__name__}")
        if noise_type not in ("additive", "diagonal"):
            raise ConfigError(f"noise_type must be 'additive' or 'diagonal', got {noise_type!r}")
        check_cond(cond, None)
        _check_bool(check_outputs)
        self.f, self.g = f, g
        self.noise_type = noise_type
        self.time_shape = time_shape
        self.cond = cond
        self.check_outputs = check_outputs

    def drift(self, t: Tensor, x: Tensor) -> Tensor:
        """``f(t, x)``."""
        tt = _shape_time(t, x, self.time_shape)
        return call_user("f", self.f, x, (tt, x), self.cond, check=self.check_outputs)

    def diffusion(self, t: Tensor, x: Tensor) -> Tensor:
        """``g(t, x)``, broadcastable to the state (with ``check_outputs``: its in-place use of
        ``x`` and its shape, metadata only)."""
        tt = _shape_time(t, x, self.time_shape)
        out = call_user(
            "g", self.g, x, (tt, x), self.cond, check=self.check_outputs, output_like_x=False
        )
        if self.check_outputs and isinstance(out, Tensor):
            try:
                fits = torch.broadcast_shapes(out.shape, x.shape) == x.shape
            except RuntimeError:
                fits = False
            if not fits:  # a bare RuntimeError from inside the solver's g·dW before
                raise PredictorOutputError(
                    f"g returned shape {tuple(out.shape)}, which does not broadcast to the "
                    f"state's shape {tuple(x.shape)}"
                )
        return out
