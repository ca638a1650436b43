"""Unknown degradation parameters for blind inversion (BIRD, docs/math.md §5): :class:`Param` and
:class:`BlindOperator`.

A :class:`Param` marks an argument of a degradation operator as *unknown*: BlindInversion estimates
it jointly with the latent. A :class:`BlindOperator` is built explicitly from an operator class and
its arguments, some of them Params — a template *materialised* into a concrete operator from the
current parameter values at every iteration::

    op = fr.BlindOperator(fr.degradations.GaussianBlur, width=fr.Param(init=1.0, bounds=(0.1, 5.0)))
    op.materialize(width=torch.tensor([1.2, 2.0]))  # GaussianBlur with a per-sample width [B]

(Passing a Param straight to an operator's constructor is refused with a message saying this.)

**Per sample.** By default every image of the batch has its own unknown (``shared=False``): a
parameter whose ``init`` has shape ``S`` is held as a ``[B, *S]`` leaf tensor, and the operator is
built with that batched value (a width ``[B]``, a kernel ``[B, k, k]``, a mask ``[B, C, H, W]`` from
an init of shape ``[C, H, W]``). The objective is a sum of per-sample terms and Adam is elementwise,
so the images of a batch are optimised independently: batched inversion gives what one-at-a-time
inversion gives. ``shared=True`` keeps one value for the whole batch.

**Validity** is kept by projection after every update (projected gradient, as BIRD keeps the latent
on its sphere): ``bounds=(lo, hi)`` clamps; ``constraint="positive"`` clamps below at
:data:`POSITIVE_FLOOR`; ``constraint="simplex"`` is the Euclidean projection onto
``{k ≥ 0, Σ k = 1}`` over the whole parameter (a blur kernel non-negative and normalised; sort-based
algorithm of Held, Wolfe & Crowder 1974 / Duchi et al. 2008).
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import math
import numbers

import torch

from flowrestore.errors import ArgumentTypeError, ConfigError, ShapeError, describe

__all__ = [
    "Param",
    "BlindOperator",
    "POSITIVE_FLOOR",
    "project_simplex",
    "value_checks_enabled",
]

_CONSTRAINED = contextvars.ContextVar("flowrestore_constrained_values", default=False)


def value_checks_enabled() -> bool:
    """Whether operator constructors should check tensor *values* (a host read each): ``False``
    only while :meth:`BlindOperator.materialize` builds an operator from values its Params
    already constrain (BIRD projects them onto their sets after every step)."""
    return not _CONSTRAINED.get()


@contextlib.contextmanager
def _constrained_values():
    token = _CONSTRAINED.set(True)
    try:
        yield
    finally:
        _CONSTRAINED.reset(token)


_CONSTRAINTS = (None, "simplex", "positive")

#: ``constraint="positive"`` keeps values at or above this (a width of 0 is a valid but degenerate
#: blur; a noise level of 0 makes the likelihood singular).
POSITIVE_FLOOR = 1e-6


def _number(value) -> bool:
    """A real number, numpy scalars included (``bool`` is not one)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


class Param:
    """An unknown (blind) parameter of a degradation, estimated by :class:`BlindInversion`.

    Args:
        init: initial value — a number, or a tensor whose shape is the parameter's shape for one
            image (e.g. ``[k, k]`` for a free blur kernel, ``[1, H, W]`` for a mask).
        bounds: ``(lo, hi)`` with ``lo < hi`` (either may be infinite); values are clamped into it
            after every update. ``init`` must lie inside.
        constraint: ``None``, ``"positive"`` (``≥ POSITIVE_FLOOR``) or ``"simplex"`` (non-negative,
            sums to 1 over the whole parameter; ``init`` must be a non-negative tensor of ≥ 2
            entries and is normalised). ``"simplex"`` excludes ``bounds``.
        shared: one value for the whole batch instead of one per image.
        lr: learning rate of this parameter (default: the inversion's ``lr_degradation``).
        name: key in results and histories (default: the operator argument's name).
    """

    def __init__(
        self,
        init,
        *,
        bounds: tuple[float, float] | None = None,
        constraint: str | None = None,
        shared: bool = False,
        lr: float | None = None,
        name: str | None = None,
    ):
        if constraint not in _CONSTRAINTS:
            raise ConfigError(
                f"constraint must be one of {_CONSTRAINTS}, got {describe(constraint)}"
            )
        if not isinstance(shared, bool):
            raise ConfigError(f"shared must be a bool, got {describe(shared)}")
        if lr is not None and not (_number(lr) and math.isfinite(lr) and lr > 0):
            raise ConfigError(f"lr must be a positive finite number or None, got {describe(lr)}")
        if name is not None and (not isinstance(name, str) or not name):
            raise ConfigError(f"name must be a non-empty str or None, got {describe(name)}")
        value = self._parse_init(init)
        self.bounds = self._parse_bounds(bounds, constraint)
        self.constraint = constraint
        self.shared = shared
        self.lr = None if lr is None else float(lr)
        self.name = name
        self.init = self._check_init(value, init)

    # ------------------------------------------------------------------ validation
    @staticmethod
    def _parse_init(init) -> torch.Tensor:
        if _number(init):
            out = torch.tensor(float(init), dtype=torch.float64)
        elif isinstance(init, torch.Tensor):
            if init.is_complex() or init.dtype == torch.bool:
                raise ConfigError(f"init must be a real number or tensor, got {describe(init)}")
            out = init.detach().to("cpu", torch.float64).clone()
        else:
            raise ConfigError(f"init must be a number or a tensor, got {describe(init)}")
        if not bool(torch.isfinite(out).all()):
            raise ConfigError(f"init must be finite, got {describe(init)}")
        return out

    @staticmethod
    def _parse_bounds(bounds, constraint):
        if bounds is None:
            return None
        if constraint == "simplex":
            raise ConfigError(
                f"bounds cannot be combined with constraint='simplex' (entries already lie in "
                f"[0, 1]), got bounds={describe(bounds)}"
            )
        if (
            not isinstance(bounds, (tuple, list))
            or len(bounds) != 2
            or not all(_number(b) for b in bounds)
        ):
            raise ConfigError(f"bounds must be a pair of numbers (lo, hi), got {describe(bounds)}")
        lo, hi = float(bounds[0]), float(bounds[1])
        if math.isnan(lo) or math.isnan(hi) or not lo < hi:
            raise ConfigError(f"bounds must satisfy lo < hi, got {describe(bounds)}")
        return lo, hi

    def _check_init(self, value: torch.Tensor, given) -> torch.Tensor:
        if self.bounds is not None:
            lo, hi = self.bounds
            if bool((value < lo).any()) or bool((value > hi).any()):
                raise ConfigError(
                    f"init must lie within bounds={self.bounds}, got init={describe(given)}"
                )
        if self.constraint == "positive" and bool((value < POSITIVE_FLOOR).any()):
            raise ConfigError(  # a value below the floor would be refused at the first read
                f"init must be >= POSITIVE_FLOOR = {POSITIVE_FLOOR:g} for constraint='positive', "
                f"got {describe(given)}"
            )
        if self.constraint == "simplex":
            if value.numel() < 2:
                raise ConfigError(
                    f"constraint='simplex' needs a tensor init with at least 2 entries (e.g. a "
                    f"[k, k] kernel), got init={describe(given)}"
                )
            if bool((value < 0).any()) or not float(value.sum()) > 0:
                raise ConfigError(
                    f"init must be non-negative with a positive sum for constraint='simplex', "
                    f"got {describe(given)}"
                )
            value = value / value.sum()
        return value

    # ------------------------------------------------------------------ use
    @property
    def event_shape(self) -> tuple[int, ...]:
        """Shape of the parameter for one image."""
        return tuple(self.init.shape)

    def initial(self, batch: int, *, dtype: torch.dtype, device) -> torch.Tensor:
        """The starting leaf value: ``[B, *event_shape]`` (or ``event_shape`` when shared)."""
        v = self.init.to(device=device, dtype=dtype)
        return v.clone() if self.shared else v.expand(batch, *v.shape).clone()

    def check_value(self, value, batch: int, *, key: str, dtype, device) -> torch.Tensor:
        """Validate a user-given starting value (per-sample or broadcastable); return a copy."""
        try:
            v = self._parse_init(value).to(device=device, dtype=dtype)
        except ConfigError:
            raise ConfigError(
                f"params[{key!r}] must be a finite number or real tensor, got {describe(value)}"
            ) from None
        want = self.event_shape if self.shared else (batch, *self.event_shape)
        try:
            v = v.expand(want).clone()
        except RuntimeError as exc:
            raise ShapeError(
                f"params[{key!r}] must broadcast to {want} "
                f"({'shared' if self.shared else '[B, *init.shape]'}), got {describe(value)}"
            ) from exc
        projected = self.project(v.clone())
        if not torch.allclose(projected, v, rtol=1e-6, atol=1e-9):
            raise ConfigError(
                f"params[{key!r}] violates {self.describe_constraint()}, got {describe(value)}"
            )
        return v

    def describe_constraint(self) -> str:
        """Human description of what a valid value is."""
        parts = []
        if self.bounds is not None:
            parts.append(f"bounds={self.bounds}")
        if self.constraint is not None:
            parts.append(f"constraint={self.constraint!r}")
        return " and ".join(parts) if parts else "no constraint"

    def project(self, value: torch.Tensor) -> torch.Tensor:
        """Project ``value`` (``[B, *event]`` or ``event``) onto the valid set, in place."""
        with torch.no_grad():
            if self.constraint == "simplex":
                nd = len(self.event_shape)
                value.copy_(project_simplex(value, nd))
            elif self.constraint == "positive":
                value.clamp_(min=POSITIVE_FLOOR)
            if self.bounds is not None:
                lo, hi = self.bounds
                value.clamp_(min=lo, max=hi)
        return value

    def __repr__(self) -> str:
        init = float(self.init) if self.init.dim() == 0 else f"tensor(shape={self.event_shape})"
        extra = "".join(
            f", {k}={v!r}"
            for k, v in (
                ("bounds", self.bounds),
                ("constraint", self.constraint),
                ("shared", self.shared or None),
                ("lr", self.lr),
                ("name", self.name),
            )
            if v is not None
        )
        return f"Param(init={init}{extra})"


def project_simplex(v: torch.Tensor, event_dims: int) -> torch.Tensor:
    """Euclidean projection of each ``event``-shaped block of ``v`` onto the probability simplex.

    ``v`` has shape ``[*batch, *event]`` with ``event_dims`` (``1 ≤ event_dims ≤ v.dim()``)
    trailing event dimensions. Sort-based: with ``u`` sorted decreasingly,
    ``ρ = max{j : u_j − (Σ_{i≤j} u_i − 1)/j > 0}``, ``θ = (Σ_{i≤ρ} u_i − 1)/ρ``, and the
    projection is ``max(v − θ, 0)``.

    The projection does not change when a constant is added to every entry of a block, so each
    block is first shifted to have its largest entry at 0: large entries neither overflow the
    running sums nor swamp the ``− 1`` (``[1e8, 1e8, 0]`` in float32 gave all zeros, off the
    simplex). Infinite entries get the limit of the projection: a block with ``+inf`` entries
    maps to equal weights on them (``[1, inf, 0] → [0, 1, 0]``; it was NaN), a block of ``-inf``
    only to equal weights on all; ``-inf`` entries beside finite ones map to 0. A NaN stays NaN.
    No host read (per-iteration use in :class:`BlindInversion`).
    """
    if not isinstance(v, torch.Tensor) or not torch.is_floating_point(v):
        raise ArgumentTypeError(f"v must be a floating-point tensor, got {describe(v)}")
    if (
        not isinstance(event_dims, numbers.Integral)
        or isinstance(event_dims, bool)
        or not 1 <= event_dims <= v.dim()
    ):
        raise ConfigError(
            f"event_dims must be an int in [1, v.dim() = {v.dim()}] (the trailing dimensions "
            f"of one block), got {describe(event_dims)} for v of shape {tuple(v.shape)}"
        )
    n = math.prod(v.shape[v.dim() - event_dims :])
    if n == 0:
        raise ShapeError(f"the simplex blocks of v have no entry: v of shape {tuple(v.shape)}")
    flat = v.reshape(-1, n)
    top = flat.amax(dim=1, keepdim=True)
    inf = math.inf
    w = torch.where(top == inf, torch.where(flat == inf, 0.0, -inf), flat - top)
    w = torch.where(top == -inf, 0.0, w)  # every entry -inf: the limit is uniform
    u, _ = w.sort(dim=1, descending=True)
    css = u.cumsum(dim=1) - 1
    j = torch.arange(1, n + 1, dtype=v.dtype, device=v.device)
    rho = ((u - css / j) > 0).sum(dim=1, keepdim=True).clamp_min(1)
    theta = css.gather(1, rho - 1) / rho.to(v.dtype)
    return (w - theta).clamp_min(0).reshape(v.shape)


class BlindOperator:
    """A degradation operator with unknown (:class:`Param`) arguments — a template.

    ``BlindOperator(GaussianBlur, width=Param(1.0, bounds=(0.1, 5)))``; :meth:`materialize` builds
    the concrete operator from tensor values of the unknowns. An operator class may fill in
    arguments that must not change while its unknowns are estimated with a classmethod
    ``blind_defaults(fixed, params) -> dict`` (e.g. GaussianBlur fixes its kernel size from the
    width's upper bound).
    """

    def __init__(self, op_class, *args, **kwargs):
        if not isinstance(op_class, type) or not callable(op_class):
            raise ConfigError(f"op_class must be an operator class, got {describe(op_class)}")
        bound = _bind(op_class, args, kwargs)
        arguments = dict(bound.arguments)
        arguments.pop(next(iter(arguments)))  # self
        sig_params = inspect.signature(op_class.__init__).parameters
        for k, v in arguments.items():
            kind = sig_params[k].kind
            var = kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
            items = v.values() if isinstance(v, dict) else v if var else ()
            if var and any(isinstance(i, Param) for i in items):
                raise ConfigError(
                    f"{op_class.__name__}: blind operators need named arguments, got *{k}={v!r}"
                )
        self.op_class = op_class
        self.params: dict[str, Param] = {k: v for k, v in arguments.items() if isinstance(v, Param)}
        if not self.params:
            raise ConfigError(
                f"{op_class.__name__}: no Param among the arguments, nothing is blind"
            )
        self.fixed = {k: v for k, v in arguments.items() if not isinstance(v, Param)}
        self._kernel_size_hint()

    def _kernel_size_hint(self) -> None:
        hook = getattr(self.op_class, "blind_defaults", None)
        if hook is not None:
            self.fixed.update(hook(dict(self.fixed), dict(self.params)))

    def materialize(self, *, constrained: bool = False, **values):
        """The concrete operator with ``values`` (one tensor per Param argument) substituted.

        ``constrained=True`` says the values already satisfy their Params' constraints (they were
        projected): the operator then skips its value checks, which read the device."""
        missing = set(self.params) - set(values)
        extra = set(values) - set(self.params)
        if missing or extra:
            raise ConfigError(
                f"{self.op_class.__name__}.materialize needs exactly {sorted(self.params)}, got "
                f"{sorted(values)}"
            )
        if not constrained:
            return self.op_class(**self.fixed, **values)
        with _constrained_values():
            return self.op_class(**self.fixed, **values)

    def check_reads_no_values(self) -> None:
        """Refuse (:class:`ConfigError`) an operator whose construction reads the value of an
        unknown — e.g. a :class:`GaussianBlur` width with no ``kernel_size`` and no finite upper
        bound takes its kernel size from the width's maximum. BIRD materialises the operator at
        every iteration: each read would stall the device, and a size following the values would
        make an image's result depend on the rest of its batch. Probed on the host from values
        that have shapes but no data (the ``meta`` device), before any work."""
        values = {
            k: torch.empty(
                p.event_shape if p.shared else (2, *p.event_shape), device="meta"
            ).requires_grad_(True)
            for k, p in self.params.items()
        }
        try:
            self.materialize(constrained=True, **values)
        except Exception as exc:  # noqa: BLE001 - only a value read is this check's business
            if not any(m in str(exc) for m in _VALUE_READS):
                return
            raise ConfigError(
                f"{self!r} reads the value of {sorted(self.params)} when built, so every "
                f"iteration of a blind inversion would read it from the device; fix what the "
                f"operator derives from it (for GaussianBlur: pass kernel_size=, or give the "
                f"width Param bounds with a finite upper bound)"
            ) from None

    def __call__(self, x):
        raise ConfigError(
            f"{self!r} has unknown parameters: estimate them with BlindInversion, or build a "
            f"concrete operator with .materialize({', '.join(f'{k}=...' for k in self.params)})"
        )

    A = __call__

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in {**self.fixed, **self.params}.items())
        return f"{self.op_class.__name__}({args})  [blind]"


#: What torch says when a value is read from a ``meta`` tensor (``.item()``, a copy to the host, a
#: data-dependent shape): :meth:`BlindOperator.check_reads_no_values`.
_VALUE_READS = (
    "cannot be called on meta tensors",
    "Cannot copy out of meta tensor",
    "data-independent implementation does not exist",
)


def _bind(op_class, args, kwargs) -> inspect.BoundArguments:
    """Bind the arguments of ``op_class(...)``, or a ConfigError naming the argument that is
    unknown or missing and listing the ones the operator takes."""
    sig = inspect.signature(op_class.__init__)
    params = list(sig.parameters.values())[1:]  # without self
    named = [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    takes = ", ".join(
        p.name if p.default is p.empty else f"{p.name}={p.default!r}"
        for p in params
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    )
    if not any(p.kind == p.VAR_KEYWORD for p in params):
        unknown = [k for k in kwargs if k not in named]
        if unknown:
            which = ", ".join(repr(k) for k in unknown)
            raise ConfigError(f"{op_class.__name__} has no argument {which}; it takes ({takes})")
    try:
        return sig.bind(None, *args, **kwargs)
    except TypeError as exc:
        raise ConfigError(
            f"invalid arguments for {op_class.__name__}: {exc}; it takes ({takes})"
        ) from exc
