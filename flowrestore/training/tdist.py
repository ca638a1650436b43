"""Training-time distributions p(t) of the severity t ∈ [0, 1] (docs/math.md §1, "Training").

InDI found that ``p(t)`` matters and that laws biased toward ``t = 1`` (more degradation) work best.
Offered here, each with a reproducible ``sample(n, generator)`` and an exact ``cdf`` (for KS tests):

- ``"uniform"``: ``t ~ U[0, 1]``.
- ``"power"`` (parameter ``k > 0``): ``t = 1 - u**k`` with ``u ~ U[0, 1]``. For ``k > 1`` the law is
  biased toward 1: ``P(t <= s) = 1 - (1 - s)**(1/k)``, density ``(1/k)(1 - s)**(1/k - 1)``
  (unbounded at ``s = 1``), mean ``k / (k + 1)``. (The other form, ``t = u**k``, biases toward 0 for
  ``k > 1``; ``t = u**(1/k)`` is ``Beta(k, 1)``, available as ``"beta"``.)
- ``"beta"`` (parameters ``a, b > 0``): ``t ~ Beta(a, b)``, mean ``a / (a + b)``; ``a > b`` biases
  toward 1. Sampled by inverse CDF (``scipy.special.betaincinv``) of a uniform drawn from the torch
  generator, so it is reproducible through that generator.

:func:`resolve_tdist` accepts a name (with keyword parameters), a ``{"name": ..., **params}`` dict
(what checkpoints store), an instance, or any callable ``(n, generator) -> t`` tensor ``[n]``.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.special
import torch

from flowrestore.errors import ConfigError, describe

__all__ = [
    "TimeDistribution",
    "Uniform",
    "Power",
    "Beta",
    "CallableTimeDistribution",
    "resolve_tdist",
    "TDIST_NAMES",
]


def _check_n(n) -> int:
    """``n`` of ``sample``: a positive int (numpy ints taken; bools and floats refused)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"TimeDistribution.sample: n must be a positive int, got {describe(n)}")
    return int(n)


class TimeDistribution:
    """Base class: a law of t on [0, 1] with ``sample`` and ``cdf``."""

    name: str = "base"

    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """Draw ``n`` times as a tensor ``[n]``; all randomness comes from ``generator``."""
        n = _check_n(n)
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        return self._from_uniform(u).to(dtype=dtype, device=device)

    def _from_uniform(self, u: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def cdf(self, t):
        """Cumulative distribution function at ``t`` (array-like), as a numpy array."""
        raise NotImplementedError

    @property
    def mean(self) -> float:
        """Expected value of t."""
        raise NotImplementedError

    def to_spec(self) -> dict:
        """Plain-dict description ``{"name": ..., **params}`` that :func:`resolve_tdist` accepts."""
        raise NotImplementedError

    def __call__(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.sample(n, generator)


@dataclass(frozen=True)
class Uniform(TimeDistribution):
    """``t ~ U[0, 1]``."""

    name = "uniform"

    def _from_uniform(self, u):
        return u

    def cdf(self, t):
        return np.clip(np.asarray(t, dtype=np.float64), 0.0, 1.0)

    @property
    def mean(self) -> float:
        return 0.5

    def to_spec(self) -> dict:
        return {"name": "uniform"}


@dataclass(frozen=True)
class Power(TimeDistribution):
    """``t = 1 - u**k``: biased toward ``t = 1`` for ``k > 1`` (mean ``k/(k+1)``)."""

    k: float = 2.0
    name = "power"

    def __post_init__(self):
        k = self.k
        if not (
            isinstance(k, numbers.Real) and not isinstance(k, bool) and np.isfinite(k) and k > 0
        ):
            raise ConfigError(
                f"Power time distribution: k must be a finite number > 0, got {describe(self.k)}"
            )

    def _from_uniform(self, u):
        return 1.0 - u**self.k

    def cdf(self, t):
        s = np.clip(np.asarray(t, dtype=np.float64), 0.0, 1.0)
        return 1.0 - (1.0 - s) ** (1.0 / self.k)

    @property
    def mean(self) -> float:
        return self.k / (self.k + 1.0)

    def to_spec(self) -> dict:
        return {"name": "power", "k": float(self.k)}


@dataclass(frozen=True)
class Beta(TimeDistribution):
    """``t ~ Beta(a, b)``: biased toward ``t = 1`` when ``a > b`` (mean ``a/(a+b)``)."""

    a: float = 2.0
    b: float = 1.0
    name = "beta"

    def __post_init__(self):
        for nm, v in (("a", self.a), ("b", self.b)):
            if not (
                isinstance(v, numbers.Real) and not isinstance(v, bool) and np.isfinite(v) and v > 0
            ):
                raise ConfigError(
                    f"Beta time distribution: {nm} must be a finite number > 0, got {describe(v)}"
                )

    def _from_uniform(self, u):
        return torch.from_numpy(scipy.special.betaincinv(self.a, self.b, u.numpy()))

    def cdf(self, t):
        s = np.clip(np.asarray(t, dtype=np.float64), 0.0, 1.0)
        return scipy.special.betainc(self.a, self.b, s)

    @property
    def mean(self) -> float:
        return self.a / (self.a + self.b)

    def to_spec(self) -> dict:
        return {"name": "beta", "a": float(self.a), "b": float(self.b)}


class CallableTimeDistribution(TimeDistribution):
    """Wraps a user callable ``(n, generator) -> t [n]``; no cdf is known."""

    name = "callable"

    def __init__(self, fn: Callable[[int, torch.Generator | None], torch.Tensor]):
        self.fn = fn

    def sample(self, n, generator=None, *, dtype=torch.float32, device=None):
        """Call the wrapped function; refuse a result that is no ``[n]`` tensor in [0, 1]."""
        n = _check_n(n)
        t = torch.as_tensor(self.fn(n, generator))
        if t.shape != (n,):
            raise ConfigError(
                f"time distribution callable {self.fn!r} must return a tensor [n]={n}, "
                f"got {describe(t)}"
            )
        if not bool(((t >= 0) & (t <= 1)).all()):
            raise ConfigError(
                f"time distribution callable {self.fn!r} returned t outside [0, 1]: {describe(t)}"
            )
        return t.to(dtype=dtype, device=device)

    def cdf(self, t):
        raise NotImplementedError("a callable time distribution has no known cdf")

    def to_spec(self) -> dict:
        raise ConfigError(
            f"a callable time distribution ({self.fn!r}) cannot be stored as a plain dict; "
            "use a named one ('uniform', 'power', 'beta') in saved configurations"
        )


_REGISTRY: dict[str, type[TimeDistribution]] = {"uniform": Uniform, "power": Power, "beta": Beta}
TDIST_NAMES = tuple(_REGISTRY)


def resolve_tdist(spec="uniform", **params) -> TimeDistribution:
    """Turn a name (+ keyword params), a spec dict, an instance or a callable into a law of t."""
    if isinstance(spec, TimeDistribution):
        if params:
            raise ConfigError(f"resolve_tdist: parameters {params} given with an instance {spec!r}")
        return spec
    if isinstance(spec, dict):
        spec = dict(spec)
        name = spec.pop("name", None)
        both = sorted(set(spec) & set(params))
        if both:
            raise ConfigError(
                f"resolve_tdist: parameters {both} given both in the spec dict and as keywords"
            )
        return resolve_tdist(name, **spec, **params)
    if isinstance(spec, str):
        cls = _REGISTRY.get(spec.lower())
        if cls is None:
            raise ConfigError(
                f"tdist: unknown time distribution {spec!r}; choose one of {TDIST_NAMES}"
            )
        try:
            return cls(**params)
        except TypeError as err:
            raise ConfigError(f"tdist {spec!r}: bad parameters {params}: {err}") from None
    if callable(spec):
        if params:
            raise ConfigError(f"resolve_tdist: parameters {params} given with a callable {spec!r}")
        return CallableTimeDistribution(spec)
    raise ConfigError(
        f"tdist must be a name {TDIST_NAMES}, a dict, a TimeDistribution or a callable, "
        f"got {describe(spec)}"
    )
