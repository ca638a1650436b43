"""Generic ODE and SDE flows built from user callables.

``ODEFlow(f)`` integrates ``dx/dt = f(t, x)``; ``SDEFlow(f, g)`` integrates
``dx = f(t, x) dt + g(t, x) dW`` (Itô). Neither has a preferred direction or span: pass ``grid`` or
``t_span`` to :func:`flowrestore.solve`; the grid's order sets the direction.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from flowrestore.errors import ConfigError
from flowrestore.flows.base import ODE, SDE, batch_time, bcast, check_output

__all__ = ["ODEFlow", "SDEFlow"]

_TIME_SHAPES = ("batch", "broadcast")


def _shape_time(t: Tensor, x: Tensor, time_shape: str) -> Tensor:
    return batch_time(t, x) if time_shape == "batch" else bcast(batch_time(t, x), x)


class ODEFlow(ODE):
    """``dx/dt = f(t, x)`` for any callable ``f``.

    Args:
        f: the drift, called as ``f(t, x)``.
        time_shape: ``"batch"`` (default) passes ``t`` as a ``[B]`` tensor; ``"broadcast"`` passes
            it as ``[B, 1, ..., 1]`` so that ``f = lambda t, x: t * x`` broadcasts.
        check_outputs: validate shape, dtype and device of every ``f`` output (cheap, no sync).
    """

    def __init__(
        self,
        f: Callable[[Tensor, Tensor], Tensor],
        *,
        time_shape: str = "batch",
        check_outputs: bool = True,
    ):
        if not callable(f):
            raise TypeError(f"f must be callable f(t, x), got {type(f).__name__}")
        if time_shape not in _TIME_SHAPES:
            raise ConfigError(f"time_shape must be one of {_TIME_SHAPES}, got {time_shape!r}")
        self.f = f
        self.time_shape = time_shape
        self.check_outputs = check_outputs

    def drift(self, t: Tensor, x: Tensor) -> Tensor:
        """``f(t, x)``."""
        out = self.f(_shape_time(t, x, self.time_shape), x)
        return check_output("f", out, x) if self.check_outputs else out


class SDEFlow(SDE):
    """Itô SDE ``dx = f(t, x) dt + g(t, x) dW`` from callables.

    Args:
        f: drift ``f(t, x)``.
        g: diffusion ``g(t, x)``; with ``noise_type="additive"`` it may ignore ``x`` and return a
            tensor broadcastable to the state (e.g. ``[B, 1, ...]``), with ``"diagonal"`` it returns
            the state's shape.
        noise_type: ``"additive"`` or ``"diagonal"``.
    """

    def __init__(
        self,
        f: Callable[[Tensor, Tensor], Tensor],
        g: Callable[[Tensor, Tensor], Tensor],
        *,
        noise_type: str = "diagonal",
        time_shape: str = "batch",
        check_outputs: bool = True,
    ):
        if not callable(f):
            raise TypeError(f"f must be callable f(t, x), got {type(f).__name__}")
        if time_shape not in _TIME_SHAPES:
            raise ConfigError(f"time_shape must be one of {_TIME_SHAPES}, got {time_shape!r}")
        if not callable(g):
            raise TypeError(f"g must be callable g(t, x), got {type(g).__name__}")
        if noise_type not in ("additive", "diagonal"):
            raise ConfigError(f"noise_type must be 'additive' or 'diagonal', got {noise_type!r}")
        self.f, self.g = f, g
        self.noise_type = noise_type
        self.time_shape = time_shape
        self.check_outputs = check_outputs

    def drift(self, t: Tensor, x: Tensor) -> Tensor:
        """``f(t, x)``."""
        out = self.f(_shape_time(t, x, self.time_shape), x)
        return check_output("f", out, x) if self.check_outputs else out

    def diffusion(self, t: Tensor, x: Tensor) -> Tensor:
        """``g(t, x)``."""
        return self.g(_shape_time(t, x, self.time_shape), x)
