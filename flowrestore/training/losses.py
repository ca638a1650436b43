"""Training losses for restoration flows (docs/math.md §1 "Training" and §3 "Training").

InDI (docs/math.md §1, the paper's eq. with ``ε_t``)::

    x_t = (1 - t) x + t y + t ε_t n,   n ~ N(0, I),   t ~ p(t)
    L   = E || F(x_t, t) - x ||_p

with ``ε_t = ε`` (constant, noise only on the input) or ``ε_t = ε / sqrt(t)`` (Brownian; computed as
``t ε_t = ε sqrt(t)`` so ``t = 0`` is safe). ``p = 1`` is the mean absolute error over all
coordinates (the paper's choice), ``p = 2`` the mean squared error.

Dirac (docs/math.md §3, eqs. 12 and 14)::

    y_t = A_t(x0) + σ_t z,   τ = max(t - Δt, 0),   w(t) = 1 / σ_t²
    L   = E w(t) || A_τ(Φ(y_t, t)) - A_τ(x0) ||²

``Δt = 0`` is denoising score matching (eq. 12), ``Δt > 0`` the incremental-reconstruction loss (eq.
14; ``Δt = 1`` compares in the clean-image domain). The squared norm is taken as the *mean* over
pixels (the paper's sum divided by the image dimension: the same minimiser, a scale that does not
depend on the image size).

Random draws, all from ``generator`` and in this order: ``t`` (one per sample, by the time
distribution's :meth:`~flowrestore.training.tdist.TimeDistribution.sample`), then the Gaussian noise
``torch.randn(x.shape)`` — only when it is used (``eps > 0`` for InDI; always for Dirac).
:func:`indi_components` and :func:`dirac_components` return the pieces so that tests can recompute
the loss by hand.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass

import torch

from flowrestore.errors import ConfigError, ShapeError, describe
from flowrestore.training.tdist import resolve_tdist

__all__ = [
    "IndiBatch",
    "DiracBatch",
    "indi_components",
    "indi_loss",
    "dirac_components",
    "dirac_dsm_loss",
    "dirac_ir_loss",
    "reduce_loss",
]

_REDUCTIONS = ("mean", "sum", "none")


def _bcast(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1, *([1] * (x.ndim - 1)))


def _check_batch(name: str, x) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim < 2:
        raise ShapeError(f"{name} must be a tensor [B, ...] with ndim >= 2, got {describe(x)}")


def _sample_t(tdist, n, generator, x, t):
    if t is not None:
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        if t.ndim == 0:
            t = t.expand(n)
        if t.shape != (n,):
            raise ShapeError(f"t must be a scalar or a tensor [B]={n}, got {describe(t)}")
        if not bool(((t >= 0) & (t <= 1)).all()):  # also refuses NaN
            raise ConfigError(f"t must lie in [0, 1] (the severity), got {describe(t)}")
        return t
    return resolve_tdist(tdist).sample(n, generator, dtype=x.dtype).to(x.device)


def _check_reduction(reduction) -> None:
    """Refuse an unknown ``reduction`` before any predictor evaluation."""
    if not (isinstance(reduction, str) and reduction in _REDUCTIONS):
        raise ConfigError(f"reduction must be one of {_REDUCTIONS}, got {describe(reduction)}")


def reduce_loss(per_sample: torch.Tensor, reduction: str) -> torch.Tensor:
    """Reduce per-sample losses ``[B]`` by ``"mean"``, ``"sum"`` or ``"none"``."""
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "sum":
        return per_sample.sum()
    if reduction == "none":
        return per_sample
    raise ConfigError(f"reduction must be one of {_REDUCTIONS}, got {describe(reduction)}")


@dataclass
class IndiBatch:
    """One InDI batch: input ``x_t``, times ``t`` [B], ``target`` (= x) and the noise used."""

    x_t: torch.Tensor
    t: torch.Tensor
    target: torch.Tensor
    noise: torch.Tensor | None


def indi_components(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    tdist="uniform",
    eps: float = 0.0,
    brownian: bool = False,
    generator: torch.Generator | None = None,
    t: torch.Tensor | float | None = None,
) -> IndiBatch:
    """Draw ``t`` and noise; build ``x_t = (1-t)x + t y + t ε_t n`` (``t`` may be given instead)."""
    _check_batch("x", x)
    if not isinstance(y, torch.Tensor) or y.shape != x.shape:
        raise ShapeError(
            f"y must have the shape of x {tuple(x.shape)} (InDI needs it), got {describe(y)}"
        )
    if not (isinstance(eps, numbers.Real) and not isinstance(eps, bool) and 0 <= eps < math.inf):
        raise ConfigError(f"eps must be a finite number >= 0, got {describe(eps)}")
    b = x.shape[0]
    tt = _sample_t(tdist, b, generator, x, t)
    tb = _bcast(tt, x)
    x_t = (1 - tb) * x + tb * y
    noise = None
    if eps > 0:
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        scale = eps * torch.sqrt(tb) if brownian else eps * tb  # t·ε_t
        x_t = x_t + scale * noise
    return IndiBatch(x_t=x_t, t=tt, target=x, noise=noise)


def indi_loss(
    predictor: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    p: int = 1,
    tdist="uniform",
    eps: float = 0.0,
    brownian: bool = False,
    generator: torch.Generator | None = None,
    reduction: str = "mean",
    t: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """InDI loss ``E ||F(x_t, t) - x||_p`` (p=1: mean |·|, p=2: mean (·)²) over pixels, samples."""
    if isinstance(p, bool) or p not in (1, 2):
        raise ConfigError(f"p must be 1 or 2, got {describe(p)}")
    _check_reduction(reduction)  # before the predictor runs, not after
    batch = indi_components(x, y, tdist=tdist, eps=eps, brownian=brownian, generator=generator, t=t)
    pred = predictor(batch.x_t, batch.t)
    if not isinstance(pred, torch.Tensor) or pred.shape != x.shape:
        raise ShapeError(
            f"predictor output must have the shape of x {tuple(x.shape)}, got {describe(pred)}"
        )
    diff = pred - batch.target
    err = diff.abs() if p == 1 else diff.square()
    return reduce_loss(err.flatten(1).mean(dim=1), reduction)


@dataclass
class DiracBatch:
    """One Dirac batch: ``y_t``, ``t``, ``tau``, weight ``1/σ_t²``, ``target = A_τ(x0)``, noise."""

    y_t: torch.Tensor
    t: torch.Tensor
    tau: torch.Tensor
    weight: torch.Tensor
    target: torch.Tensor
    noise: torch.Tensor


def _sigma_of(sigma, t, b):
    s = torch.as_tensor(sigma(t), dtype=t.dtype, device=t.device)
    if s.ndim == 0:
        s = s.expand(b)
    if s.shape != (b,) or not bool((s > 0).all()):
        raise ShapeError(
            f"sigma(t) must return positive values of shape [B]={b}, got {describe(s)}"
        )
    return s


def dirac_components(
    x0: torch.Tensor,
    *,
    A: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    sigma: Callable[[torch.Tensor], torch.Tensor],
    lookahead: float = 0.0,
    tdist="uniform",
    generator: torch.Generator | None = None,
    t: torch.Tensor | float | None = None,
) -> DiracBatch:
    """Draw ``t`` then ``z``; build ``y_t = A_t(x0) + σ_t z``, ``τ = max(t-Δt, 0)``, ``A_τ(x0)``."""
    _check_batch("x0", x0)
    if not (
        isinstance(lookahead, numbers.Real)
        and not isinstance(lookahead, bool)
        and 0 <= lookahead <= 1
    ):
        raise ConfigError(f"lookahead must be a number in [0, 1], got {describe(lookahead)}")
    b = x0.shape[0]
    tt = _sample_t(tdist, b, generator, x0, t)
    s = _sigma_of(sigma, tt, b)
    z = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
    a_t = A(x0, tt)
    if not isinstance(a_t, torch.Tensor) or a_t.shape != x0.shape:
        raise ShapeError(
            f"A(x0, t) must have the shape of x0 {tuple(x0.shape)} (y_t = A_t(x0) + σ_t z), "
            f"got {describe(a_t)}"
        )
    y_t = a_t + _bcast(s, x0) * z
    tau = torch.clamp(tt - lookahead, min=0.0)
    target = a_t if lookahead == 0 else A(x0, tau)
    return DiracBatch(y_t=y_t, t=tt, tau=tau, weight=1.0 / s**2, target=target, noise=z)


def dirac_ir_loss(
    phi: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x0: torch.Tensor,
    *,
    A: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    sigma: Callable[[torch.Tensor], torch.Tensor],
    lookahead: float,
    tdist="uniform",
    generator: torch.Generator | None = None,
    reduction: str = "mean",
    t: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """Incremental-reconstruction loss ``E w(t) ||A_τ(Φ(y_t,t)) - A_τ(x0)||²``, τ = max(t-Δt, 0)."""
    _check_reduction(reduction)  # before the network runs, not after
    batch = dirac_components(
        x0, A=A, sigma=sigma, lookahead=lookahead, tdist=tdist, generator=generator, t=t
    )
    pred = phi(batch.y_t, batch.t)
    if not isinstance(pred, torch.Tensor) or pred.shape != x0.shape:
        raise ShapeError(
            f"phi output must have the shape of x0 {tuple(x0.shape)}, got {describe(pred)}"
        )
    a_pred = A(pred, batch.tau)
    per = (a_pred - batch.target).square().flatten(1).mean(dim=1) * batch.weight
    return reduce_loss(per, reduction)


def dirac_dsm_loss(
    phi: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x0: torch.Tensor,
    *,
    A: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    sigma: Callable[[torch.Tensor], torch.Tensor],
    tdist="uniform",
    generator: torch.Generator | None = None,
    reduction: str = "mean",
    t: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """Denoising score matching, clean-image form (eq.12): ``E w(t) ||A_t(Φ(y_t,t))-A_t(x0)||²``."""
    return dirac_ir_loss(
        phi,
        x0,
        A=A,
        sigma=sigma,
        lookahead=0.0,
        tdist=tdist,
        generator=generator,
        reduction=reduction,
        t=t,
    )
