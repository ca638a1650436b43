"""Base classes of the degradation operators ``A`` and the per-sample time helper.

A :class:`LinearOperator` has ``A(x)``, ``A_adjoint(y)`` and a self-test :meth:`check_adjoint` of
``<A x, y> = <x, Aᵀ y>`` (the identity behind every adjoint used by guidance and data consistency,
docs/math.md §3). :class:`Identity` and :class:`Diagonal` (elementwise scaling, self-adjoint) live
here.
"""

from __future__ import annotations

import copy
import inspect
import math
import numbers

import torch

from flowrestore.degradations._conv import check_tensor
from flowrestore.degradations.blind import Param, value_checks_enabled
from flowrestore.errors import ConfigError, ShapeError, describe
from flowrestore.schedules import as_time_tensor
from flowrestore.tensors import broadcasts_to

__all__ = ["LinearOperator", "Identity", "Diagonal", "batch_time", "resident", "shares_time"]


def batch_time(
    t, x: torch.Tensor, *, name: str = "t", check: bool = True
) -> tuple[torch.Tensor, float | None]:
    """Per-sample severities ``[B]`` in ``x``'s dtype/device, checked to lie in [0, 1].

    ``t`` may be a float (returned second as well, so callers can take a shared-parameter fast
    path), a 0-dim tensor (expanded: a stride-0 ``[B]`` view, all samples share it) or a ``[B]``
    tensor. A float is checked on the host; a tensor is checked by reading it unless
    ``check=False`` — the path of a flow inside a solve, whose times were validated when the solve
    was planned (then nothing reads a device value).
    """
    check_tensor(x)
    scalar = None
    if isinstance(t, numbers.Real) and not isinstance(t, bool):
        scalar = float(t)
    if check or not isinstance(t, torch.Tensor):
        tt = as_time_tensor(t, name=name, like=x)
    else:
        tt = t
    b = x.shape[0]
    if tt.dim() != 0 and tt.shape != (b,):
        raise ShapeError(
            f"{name} must be a float, a 0-dim tensor or a [B]=[{b}] tensor, got {describe(t)}"
        )
    tt = tt.to(device=x.device, dtype=x.dtype if x.is_floating_point() else tt.dtype)
    return (tt.expand(b) if tt.dim() == 0 else tt), scalar


def resident(owner, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``t`` on ``like``'s device (and dtype, for a floating ``like``), copied once per device.

    An operator built from a CPU tensor (a mask, a kernel) and applied to states on a GPU would
    otherwise copy it at every evaluation — a host-to-device copy from pageable memory, which
    makes the stream wait. The copy is kept on ``owner`` while ``t`` is unchanged (its version
    counter); a ``t`` that requires grad, or a call being traced by ``torch.compile``, is copied
    each time (the copy stays in the autograd graph / the compiled graph).
    """
    dtype = like.dtype if like.is_floating_point() else t.dtype
    if t.device == like.device and t.dtype == dtype:
        return t
    if t.requires_grad or torch.compiler.is_compiling():
        return t.to(device=like.device, dtype=dtype)
    cache = owner.__dict__.setdefault("_resident", {})  # one copy per device and dtype
    key = (like.device, dtype)
    hit = cache.get(key)
    if hit is None or hit[0] is not t or hit[1] != t._version:
        hit = (t, t._version, t.to(device=like.device, dtype=dtype))
        cache[key] = hit
    return hit[2]


def shares_time(tt: torch.Tensor) -> bool:
    """Whether every sample of the ``[B]`` times ``tt`` is the same time, known from its layout
    alone (one sample, or a stride-0 view of one value): no value is read."""
    return tt.shape[0] == 1 or tt.stride(0) == 0


def per_sample(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape a ``[B]`` tensor to ``[B, 1, ..., 1]`` to broadcast against ``x``."""
    return v.reshape(v.shape[0], *([1] * (x.dim() - 1)))


def _inner(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum()


class LinearOperator:
    """A linear degradation ``A`` with its adjoint. ``op(x)`` is ``op.A(x)``.

    Subclasses implement :meth:`A` and :meth:`A_adjoint` on batches ``[B, *]``.

    An operator with unknown parameters is built explicitly,
    ``BlindOperator(GaussianBlur, width=Param(...))``; handing a :class:`Param` to the constructor
    itself is refused with that hint.
    """

    def __new__(cls, *args, **kwargs):
        names = [p for p in inspect.signature(cls.__init__).parameters][1:]
        named = [(names[i] if i < len(names) else f"argument {i}", a) for i, a in enumerate(args)]
        for name, v in [*named, *kwargs.items()]:
            if isinstance(v, Param):
                raise ConfigError(
                    f"{cls.__name__}: {name} is a Param, but a {cls.__name__} needs known values; "
                    f"an operator with unknowns is a template: "
                    f"fr.BlindOperator({cls.__name__}, {name}=Param(...))"
                )
        return super().__new__(cls)

    def __getstate__(self):
        """Pickled (and deep-copied) without its per-device copies (:func:`resident`): a saved
        operator must load on a machine without the GPU it last ran on."""
        state = dict(self.__dict__)
        state.pop("_resident", None)
        return state

    def A(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Apply the operator."""
        raise NotImplementedError

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Apply the adjoint (transpose) operator."""
        raise NotImplementedError

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.A(x)

    def select_rows(self, rows: torch.Tensor, ndim: int) -> LinearOperator:
        """This operator for the batch rows ``rows`` of a batch of ``ndim``-dim images.

        Called when a solve steps a subset of its batch (``GuidedFlow.restrict``): an operator
        with per-sample parameters returns a copy holding those rows only; one shared by every
        sample returns itself (the default).
        """
        return self

    def _with(self, **fields) -> LinearOperator:
        """A shallow copy with ``fields`` replaced and no per-device copies (:func:`resident`)."""
        sub = copy.copy(self)
        sub.__dict__.pop("_resident", None)
        sub.__dict__.update(fields)
        return sub

    def check_adjoint(
        self,
        shape: tuple[int, ...],
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> float:
        """Relative adjointness error ``|<Ax,y> - <x,Aᵀy>| / (|<Ax,y>| + tiny)`` on random x, y."""
        x = torch.randn(tuple(shape), generator=generator, dtype=dtype, device=device)
        ax = self.A(x)
        y = torch.randn(ax.shape, generator=generator, dtype=dtype, device=device)
        lhs, rhs = _inner(ax, y), _inner(x, self.A_adjoint(y))
        tiny = torch.finfo(dtype).tiny
        return float((lhs - rhs).abs() / (lhs.abs() + tiny))


class Identity(LinearOperator):
    """The identity ``A x = x`` (pure denoising)."""

    def A(self, x):
        """Return ``x``."""
        return x

    def A_adjoint(self, y):
        """Return ``y``."""
        return y

    def __repr__(self) -> str:
        return "Identity()"


class Diagonal(LinearOperator):
    """Elementwise scaling ``A x = scale ⊙ x`` (self-adjoint); ``scale`` broadcasts against ``x``.

    ``scale`` is a float or a tensor (may require grad); it must broadcast to the batch's shape
    without changing it.
    """

    _name = "scale"

    def __init__(self, scale: float | torch.Tensor):
        if isinstance(scale, bool) or not isinstance(scale, (numbers.Real, torch.Tensor)):
            raise ConfigError(f"{self._name} must be a float or a tensor, got {describe(scale)}")
        if isinstance(scale, torch.Tensor) and scale.is_complex():  # cast to real, silently
            raise ConfigError(f"{self._name} must be a real tensor, got {describe(scale)}")
        if not isinstance(scale, (torch.Tensor, int, float)):
            scale = float(scale)  # a numpy scalar
        finite = (
            math.isfinite(scale)
            if not isinstance(scale, torch.Tensor)
            else not value_checks_enabled() or bool(torch.isfinite(scale.detach()).all())
        )  # a tensor's check is a host read, skipped where BIRD's Params constrain the values
        if not finite:
            raise ConfigError(f"{self._name} must be finite, got {describe(scale)}")
        self.scale = scale

    def _scale_for(self, x: torch.Tensor):
        check_tensor(x)
        s = self.scale
        if not isinstance(s, torch.Tensor):
            return s
        if not broadcasts_to(s.shape, x.shape):
            raise ShapeError(
                f"{self._name} of shape {tuple(s.shape)} does not match the image batch of shape "
                f"{tuple(x.shape)} (it must broadcast to it), got {describe(s)}"
            )
        return resident(self, s, x)

    def select_rows(self, rows, ndim):
        """The rows ``rows`` of a per-sample ``scale`` (one with the image's ``ndim`` dimensions
        and more than one row); a shared scale returns this operator."""
        s = self.scale
        if not isinstance(s, torch.Tensor) or s.dim() != ndim or s.shape[0] == 1:
            return self
        return self._with(scale=s[rows.to(s.device)])

    def A(self, x):
        """Return ``scale ⊙ x``."""
        return self._scale_for(x) * x

    def A_adjoint(self, y):
        """Return ``scale ⊙ y`` (a real diagonal is self-adjoint)."""
        return self._scale_for(y) * y

    def __repr__(self) -> str:
        return f"{type(self).__name__}({describe(self.scale)})"
