"""Butcher tableaus as data, and the one generic explicit Runge–Kutta stepper.

A method is its tableau ``(c, A, b, b_error)`` (docs/math.md §6); :func:`rk_step` evaluates the
stages ``k_i = f(t + c_i h, x + h Σ_j a_ij k_j)`` and returns ``x + h Σ b_i k_i`` and, for embedded
pairs, the error estimate ``h Σ (b_i − b̂_i) k_i``. FSAL tableaus (last row of ``A`` equal to ``b``)
reuse the last stage as the next step's first one.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch
from torch import Tensor

from flowrestore.errors import ConfigError, describe
from flowrestore.flows.base import Flow, bcast

__all__ = [
    "BOSH3",
    "DOPRI5",
    "EULER",
    "HEUN",
    "MIDPOINT",
    "RK4_TABLEAU",
    "ButcherTableau",
    "rk_step",
]


@dataclass(frozen=True)
class ButcherTableau:
    """An explicit Runge–Kutta method.

    Args:
        c: stage times as fractions of the step.
        a: strictly lower-triangular coefficients; row ``i`` has ``i`` entries.
        b: solution weights.
        b_error: ``b − b̂`` for an embedded pair (``None`` for fixed-step methods).
        order: order of the propagated solution.
        error_order: order of the embedded solution (``None`` without one).
    """

    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    order: int
    b_error: tuple[float, ...] | None = None
    error_order: int | None = None

    def __post_init__(self):
        # coefficients as tuples of finite floats (a NaN passed every sum check below and
        # stepped NaN; lists left the frozen tableau unhashable)
        for name in ("c", "b", "b_error"):
            if name != "b_error" or self.b_error is not None:
                object.__setattr__(self, name, _coefficients(name, getattr(self, name)))
        if isinstance(self.a, (str, bytes)) or not hasattr(self.a, "__iter__"):
            raise ConfigError(f"a must be a sequence of rows of numbers, got {describe(self.a)}")
        rows = tuple(_coefficients(f"a[{i}]", row) for i, row in enumerate(self.a))
        object.__setattr__(self, "a", rows)
        for name in ("order", "error_order"):
            value = getattr(self, name)
            if name == "error_order" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ConfigError(f"{name} must be an int >= 1, got {describe(value)}")
        if (self.b_error is None) != (self.error_order is None):
            raise ConfigError(
                "b_error and error_order come together (an embedded pair's error weights and "
                f"the order of its embedded solution), got b_error={describe(self.b_error)}, "
                f"error_order={describe(self.error_order)}"
            )
        s = len(self.c)
        if s < 1 or self.c[0] != 0.0:
            # an explicit method's first stage is the drift at the step's start (row 0 of a is
            # empty); rk_step evaluates it there whatever c[0] says
            raise ConfigError(f"c must start with 0.0 (an explicit method), got {self.c!r}")
        if len(self.a) != s - 1 or any(len(row) != i + 1 for i, row in enumerate(self.a)):
            raise ConfigError(f"a must have {s - 1} rows of lengths 1..{s - 1}, got {self.a!r}")
        for name in ("b", "b_error"):
            weights = getattr(self, name)
            if weights is not None and len(weights) != s:
                raise ConfigError(
                    f"{name} must have {s} entries (one per stage, as c), got {len(weights)}: "
                    f"{weights!r}"
                )
        if abs(sum(self.b) - 1.0) > 1e-12:
            raise ConfigError(f"b must sum to 1, got {sum(self.b)!r}")
        if self.b_error is not None and abs(sum(self.b_error)) > 1e-12:
            # b − b̂ of two consistent weight sets: an estimate that does not vanish with h
            raise ConfigError(f"b_error (b − b̂) must sum to 0, got {sum(self.b_error)!r}")
        for i, row in enumerate(self.a):
            if abs(sum(row) - self.c[i + 1]) > 1e-12:
                raise ConfigError(
                    f"row {i + 1} of a must sum to c[{i + 1}]={self.c[i + 1]!r}, got "
                    f"a[{i}]={row!r} (sum {sum(row)!r})"
                )

    @property
    def fsal(self) -> bool:
        """First-same-as-last: the last stage is evaluated at the step's result."""
        return (
            len(self.a) > 0
            and self.c[-1] == 1.0
            and tuple(self.a[-1]) == tuple(self.b[:-1])
            and self.b[-1] == 0.0
        )


def _coefficients(name: str, values) -> tuple[float, ...]:
    """``values`` as a tuple of finite Python floats, else a :class:`ConfigError` naming it."""
    ok = not isinstance(values, (str, bytes)) and hasattr(values, "__iter__")
    items = tuple(values) if ok else ()
    # 0-d real tensors as Python floats: rk_step compares each coefficient with 0 every step
    items = tuple(
        float(v) if isinstance(v, Tensor) and v.dim() == 0 and v.dtype.is_floating_point else v
        for v in items
    )
    ok = ok and all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) for v in items
    )
    if not ok:
        raise ConfigError(f"{name} must be a sequence of finite numbers, got {describe(values)}")
    return tuple(float(v) for v in items)


def _combine(coeffs, ks: list[Tensor]) -> Tensor | None:
    acc = None
    for coef, k in zip(coeffs, ks, strict=True):
        if coef == 0.0:
            continue
        if acc is None:
            acc = k if coef == 1.0 else k * coef  # no multiply by 1 (Euler): one op less per step
        else:
            acc = acc.add(k, alpha=coef)
    return acc


def rk_step(
    tableau: ButcherTableau, flow: Flow, t: Tensor, x: Tensor, h: Tensor, k1: Tensor | None = None
) -> tuple[Tensor, Tensor | None, Tensor, int]:
    """One explicit RK step. Returns ``(x_next, error_or_None, last_stage, nfe)``, ``last_stage``
    the drift at the last stage."""
    hb = bcast(h, x)
    nfe = 0
    if k1 is None:
        k1 = flow.drift(t, x)
        nfe += 1
    ks = [k1]
    x_next = None
    for i, row in enumerate(tableau.a, start=1):
        incr = _combine(row, ks)
        xi = x if incr is None else torch.addcmul(x, hb, incr)
        ks.append(flow.drift(t + tableau.c[i] * h, xi))
        nfe += 1
        if i == len(tableau.a) and tableau.fsal:
            x_next = xi
    if x_next is None:
        x_next = torch.addcmul(x, hb, _combine(tableau.b, ks))
    err = None
    if tableau.b_error is not None:
        err = hb * _combine(tableau.b_error, ks)
    return x_next, err, ks[-1], nfe


EULER = ButcherTableau(c=(0.0,), a=(), b=(1.0,), order=1)
MIDPOINT = ButcherTableau(c=(0.0, 0.5), a=((0.5,),), b=(0.0, 1.0), order=2)
HEUN = ButcherTableau(c=(0.0, 1.0), a=((1.0,),), b=(0.5, 0.5), order=2)
RK4_TABLEAU = ButcherTableau(
    c=(0.0, 0.5, 0.5, 1.0),
    a=((0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
    b=(1 / 6, 1 / 3, 1 / 3, 1 / 6),
    order=4,
)
BOSH3 = ButcherTableau(
    c=(0.0, 0.5, 0.75, 1.0),
    a=((0.5,), (0.0, 0.75), (2 / 9, 1 / 3, 4 / 9)),
    b=(2 / 9, 1 / 3, 4 / 9, 0.0),
    b_error=(2 / 9 - 7 / 24, 1 / 3 - 1 / 4, 4 / 9 - 1 / 3, -1 / 8),
    order=3,
    error_order=2,
)
_DP_B = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
_DP_BHAT = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)
DOPRI5 = ButcherTableau(
    c=(0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0),
    a=(
        (1 / 5,),
        (3 / 40, 9 / 40),
        (44 / 45, -56 / 15, 32 / 9),
        (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
        (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
        _DP_B[:-1],
    ),
    b=_DP_B,
    b_error=tuple(b - bh for b, bh in zip(_DP_B, _DP_BHAT, strict=True)),
    order=5,
    error_order=4,
)
